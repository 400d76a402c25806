"""The Locust processes' reactor: many sockets read from one greenlet (real loopback sockets,
in a subprocess because gevent patches the interpreter it runs in)."""

from __future__ import annotations

import pytest

from tests.support import run_probe

pytestmark = pytest.mark.integration


def test_one_greenlet_reads_every_socket_and_a_failed_one_leaves_the_others() -> None:
    seen = run_probe("tests.loadtests.reactor_probe")
    assert seen["all_received"] is True
    # the peer of socket 0 closed: its handler was told (EOF), then the reactor forgot it
    assert seen["first_error"] == "ConnectionResetError"
    assert seen["registered"] == 18  # 20 - the failed one - the one removed by hand
