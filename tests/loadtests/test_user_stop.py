"""What the exact metrics keep of the stream a user was in when Locust stopped it.

Locust is imported in a child process (``stop_probe.py``): it patches the interpreter with
gevent, which the asyncio tests sharing this process must not get.
"""

from __future__ import annotations

import json
import subprocess
import sys


def test_a_stream_ended_but_not_yet_reported_is_kept_as_it_ended() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tests.loadtests.stop_probe"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    # Dropping it would make the report count fewer streams than the server served.
    assert seen["ended"] == ["completed"]
    assert seen["running"] == ["unfinished"]
