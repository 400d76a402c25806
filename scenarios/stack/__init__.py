"""The stack a scenario runs on: child processes, nginx, and the whole chain on loopback.

::

    client -> [nginx] -> [fault proxy "downstream"] -> server -> [fault proxy "upstream"] -> mockllm

- ``procs.py``: start a child, wait for its ``listening on`` line, capture its log, always stop it;
- ``nginx.py``: the nginx config for WebSocket and SSE (round-robin over several workers), and
  the process;
- ``redis.py``: a private ``redis-server`` for the workers' shared stream store;
- ``launch.py``: :class:`Stack`, which starts what a :class:`StackSpec` asks for, in order.
"""

from __future__ import annotations

from scenarios.stack.launch import (
    NginxError,
    NginxUnavailable,
    ProcessStartError,
    RedisUnavailable,
    Stack,
    StackError,
    StackSpec,
)

__all__ = [
    "NginxError",
    "NginxUnavailable",
    "ProcessStartError",
    "RedisUnavailable",
    "Stack",
    "StackError",
    "StackSpec",
]
