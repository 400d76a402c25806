"""When the server runs full garbage collections: between streams, not in the middle of them.

The policy is the mock's (mockllm/collector.py, where the measurements behind it are), shared
rather than copied: ``app.py`` enters :func:`managed_collections` with the count of running
generations and of started ones, for ``full_gc_interval_s``. At 500 concurrent streams CPython's
automatic full collections stalled every stream for 40-150 ms, several times a minute
(``python -m loadtests.bench relay --concurrency 500``).
"""

from __future__ import annotations

from mockllm.collector import full_collection_due, managed_collections, run_collector

__all__ = ["full_collection_due", "managed_collections", "run_collector"]
