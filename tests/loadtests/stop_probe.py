"""Run in its own process (Locust patches the interpreter with gevent): stops a user the way
Locust does at the end of a run, while its stream is in each state, and prints one JSON line
of the outcomes the exact metrics kept. Used by test_user_stop.py."""

from __future__ import annotations

import json
from typing import Any

import gevent
from gevent.pool import Group
from locust.env import Environment

from loadtests.users import WsV1User, metrics_of
from scenarios.clients.records import StreamRecord


class _EndedUnreported(WsV1User):
    """The stream ended in another greenlet (the reactor's); the kill comes before this
    user's greenlet wakes to report it."""

    def run_stream(self) -> StreamRecord:
        record = self.new_record()
        record.sent_at = record.sent_at_epoch = 1.0
        record.finish("completed", 2.0)
        gevent.sleep(60)
        return record


class _Running(WsV1User):
    """The stream is still reading when the kill comes."""

    def run_stream(self) -> StreamRecord:
        record = self.new_record()
        record.sent_at = record.sent_at_epoch = 1.0
        gevent.sleep(60)
        return record


def _outcomes(cls: Any) -> list[str]:
    env = Environment(user_classes=[cls])
    user = cls(env)
    user.start(Group())
    gevent.sleep(0.05)  # let the user's greenlet reach run_stream's wait
    user.stop(force=True)  # what Locust's runner does to every user at the end of a run
    return [s.outcome for s in metrics_of(env).streams]


if __name__ == "__main__":
    print(json.dumps({"ended": _outcomes(_EndedUnreported), "running": _outcomes(_Running)}))
