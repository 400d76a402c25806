"""loadtests: Locust users with exact streaming metrics, load shapes, CI gates and benchmarks."""
