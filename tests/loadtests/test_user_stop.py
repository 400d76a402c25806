"""What the exact metrics keep of the stream a user was in when Locust stopped it.

Locust is imported in a child process (``stop_probe.py``): it patches the interpreter with
gevent, which the asyncio tests sharing this process must not get.
"""

from __future__ import annotations

from tests.support import run_probe


def test_a_stream_ended_but_not_yet_reported_is_kept_as_it_ended() -> None:
    seen = run_probe("tests.loadtests.stop_probe")
    # Dropping it would make the report count fewer streams than the server served.
    assert seen["ended"] == ["completed"]
    assert seen["running"] == ["unfinished"]
