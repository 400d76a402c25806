"""Benchmark: the mock against a raw-asyncio SSE writer and CopilotKit's aimock, same run.

``python -m mockllm.bench`` starts each server in its own process pinned to one CPU core (when
the machine has more than one): the real mock (``python -m mockllm``), a baseline written
directly on asyncio streams that does nothing but write the same pre-encoded chunks on the
same schedule, one ``write`` per chunk, and aimock (Node) when it is installed. A raw-asyncio
client pinned to the other core(s) runs four workloads on each, server after server, round
after round, and reports medians and the ratios of each round:

- **requests** (the default comparison, a load test's shape): users on keep-alive connections
  sending requests back to back for a few seconds, each answer many content chunks at zero
  delay: chunks and requests per second, server CPU per request and per chunk, TTFT;
- **burst**: every stream starts at once, tokens paced: TTFT of those first requests and the
  error of every inter-token gap;
- **long**: long answers at zero delay: chunks per second of server CPU;
- **timing**: many paced streams with starts spread: gap errors, whole run and while all live.

See docs/mockllm.md ("Speed") for the figures measured on our machine.
"""

from __future__ import annotations

from mockllm.bench.cli import build_parser, main
from mockllm.bench.client import StreamResult, gap_errors_ms, gap_summary

__all__ = ["StreamResult", "build_parser", "gap_errors_ms", "gap_summary", "main"]
