"""The root of every error the ``scenarios`` package raises.

Each part keeps its own errors next to its code and derives them from :class:`HarnessError`, so
a caller (the CLI, a user's script) can catch one class::

    HarnessError                      root; never raised itself
    ├── DataFileError     yamlfile    a YAML file (scenario, profile) with problems, by line
    ├── ScenarioError     model       a scenario or catalogue that cannot be used
    ├── ProfileError      profiles    a target profile that cannot be used (a DataFileError)
    ├── StackError        procs       a child process (mockllm, server, proxy, nginx) not ready
    ├── TargetUnreachable drivers     the target could not be reached at all
    ├── ClientError       clients     a frame off the protocol, a connection that failed
    ├── FaultProxyError   faultproxy  the Toxiproxy API's errors, client and server side
    └── MutantError       mutation    a mutant whose text no longer matches the server
"""

from __future__ import annotations

__all__ = ["HarnessError"]


class HarnessError(Exception):
    """Root of every error of the scenario harness."""
