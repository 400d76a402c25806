"""scenarios: fault proxy, stack launcher, scenario catalogue, runner and reports."""
