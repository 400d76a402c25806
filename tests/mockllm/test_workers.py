"""``--workers N``: several processes on one port, one ledger, rules and config for all.

Real processes on port 0. Every request goes on a connection of its own, so the kernel
spreads them over the workers; the ledger's ``worker`` field shows that both served some.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import psutil
import pytest

from mockllm.childproc import Child, stop_process
from mockllm.config import MockConfig
from mockllm.process import MockProcess
from mockllm.rules import parse_rules
from mockllm.server import MockServer
from tests.support import start_cli, wait_for

pytestmark = pytest.mark.integration

CHAT = "/v1/chat/completions"
# Connections are spread over the workers by a hash of their addresses: with this many, the
# chance that one worker gets them all (and a "served by both" check fails) is 2^-19.
STREAMS = 20


def body(prompt: str = "hi", stream: bool = False, **extra: Any) -> dict[str, Any]:
    return {
        "model": "mock-instant",
        "messages": [{"role": "user", "content": prompt}],
        "stream": stream,
        "max_tokens": 8,
        **extra,
    }


def post(url: str, path: str, payload: Any = None, **kwargs: Any) -> httpx.Response:
    """One request on a connection of its own (so any worker may get it)."""
    return httpx.post(f"{url}{path}", json=payload, timeout=30, **kwargs)


def get(url: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(f"{url}{path}", timeout=30, **kwargs)


def ledger(url: str, **params: str) -> list[dict[str, Any]]:
    response = get(url, "/_mock/requests", params=params)
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["requests"]
    return entries


def start(*extra: str, workers: int = 2) -> Child:
    return start_cli("mockllm", "--port", "0", "--workers", str(workers), *extra)


@pytest.fixture
def mock() -> Iterator[Child]:
    child = start()
    try:
        yield child
    finally:
        assert stop_process(child.proc) == 0, child.text


def _served_by_both(entries: list[dict[str, Any]]) -> None:
    workers = {e["worker"] for e in entries}
    assert workers == {0, 1}, f"one worker served everything ({workers}); rerun"


def test_the_ledger_is_whole_whichever_worker_answers(mock: Child) -> None:
    ids = [post(mock.url, CHAT, body(f"q{i}")).json()["id"] for i in range(24)]
    # Each listing is answered through a new connection, so by either worker: all agree.
    listings = [ledger(mock.url) for _ in range(6)]
    for entries in listings:
        assert [e["seq"] for e in entries] == list(range(1, 25))
        assert [e["id"] for e in entries] == ids
    _served_by_both(listings[0])
    # The sequence number is global: it is the id's last digits, whoever served it.
    assert [int(i[-6:]) for i in ids] == list(range(1, 25))
    since = ledger(mock.url, since_id=ids[19])
    assert [e["seq"] for e in since] == [21, 22, 23, 24]
    missing = get(mock.url, "/_mock/requests", params={"since_id": "chatcmpl-nope"})
    assert missing.status_code == 404
    stats = get(mock.url, "/_mock/stats").json()
    assert stats["ledger_entries"] == 24
    assert stats["workers"] == 2


def test_a_wait_sees_requests_served_by_every_worker(mock: Child) -> None:
    answers: list[httpx.Response] = []

    def wait() -> None:
        answers.append(post(mock.url, "/_mock/requests/wait", {"count": STREAMS, "timeout": 20}))

    waiters = [threading.Thread(target=wait) for _ in range(4)]
    for waiter in waiters:
        waiter.start()
    wait_for(lambda: get(mock.url, "/_mock/stats").json()["waiters"] >= 4, what="4 waits")
    for i in range(STREAMS):
        post(mock.url, CHAT, body(f"w{i}"))
    for waiter in waiters:
        waiter.join(30)
    assert [a.status_code for a in answers] == [200] * 4
    for answer in answers:
        assert [e["seq"] for e in answer.json()["requests"]][:STREAMS] == list(
            range(1, STREAMS + 1)
        )
    _served_by_both(answers[0].json()["requests"])
    late = post(mock.url, "/_mock/requests/wait", {"count": 99, "timeout": 0.2})
    assert late.status_code == 408
    assert len(late.json()["requests"]) == STREAMS


def test_rules_reach_every_worker_and_times_counts_across_them(mock: Child) -> None:
    created = post(
        mock.url,
        "/_mock/rules",
        {"rules": [{"match": {}, "times": 1, "respond": {"fault": "status=503"}}]},
    )
    assert created.status_code == 201, created.text
    rule_id = created.json()["rules"][0]["id"]
    statuses = [post(mock.url, CHAT, body(f"r{i}")).status_code for i in range(STREAMS)]
    assert statuses == [503] + [200] * (STREAMS - 1)
    entries = ledger(mock.url)
    _served_by_both(entries)
    for _ in range(4):
        (rule,) = get(mock.url, "/_mock/rules").json()["rules"]
        assert (rule["id"], rule["seen"], rule["applied"]) == (rule_id, STREAMS, 1)
    # A text rule answers on every worker as soon as the add has answered.
    post(mock.url, "/_mock/rules", {"match": {"prompt": "ping"}, "respond": {"text": "pong"}})
    texts = [
        post(mock.url, CHAT, body("ping")).json()["choices"][0]["message"]["content"]
        for _ in range(10)
    ]
    assert texts == ["pong"] * 10
    assert get(mock.url, "/_mock/rules").json()["rules"][1]["seen"] == 10
    bad = post(mock.url, "/_mock/rules", {"match": {"nth": 0}})
    assert bad.status_code == 400
    assert len(get(mock.url, "/_mock/rules").json()["rules"]) == 2
    assert httpx.delete(f"{mock.url}/_mock/rules/{rule_id}").status_code == 204
    assert httpx.delete(f"{mock.url}/_mock/rules/{rule_id}").status_code == 404
    for _ in range(4):
        assert [r["id"] for r in get(mock.url, "/_mock/rules").json()["rules"]] != [rule_id]
        assert len(get(mock.url, "/_mock/rules").json()["rules"]) == 1


def test_a_times_1_rule_fires_once_among_simultaneous_requests(mock: Child) -> None:
    post(mock.url, "/_mock/rules", {"match": {}, "times": 1, "respond": {"text": "once"}})
    texts: list[str] = []

    def ask(i: int) -> None:
        answer = post(mock.url, CHAT, body(f"c{i}"))
        texts.append(answer.json()["choices"][0]["message"]["content"])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(texts) == 24
    assert texts.count("once") == 1
    (rule,) = get(mock.url, "/_mock/rules").json()["rules"]
    assert (rule["seen"], rule["applied"]) == (24, 1)
    entries = ledger(mock.url)
    _served_by_both(entries)
    assert sorted(e["seq"] for e in entries) == list(range(1, 25))


def test_config_patch_reaches_every_worker(mock: Child) -> None:
    assert httpx.patch(f"{mock.url}/_mock/config", json={"seed": 5}).status_code == 200
    assert httpx.patch(f"{mock.url}/_mock/config", json={"seed": "x"}).status_code == 400
    assert {get(mock.url, "/_mock/config").json()["seed"] for _ in range(8)} == {5}


def test_reset_resets_every_worker_as_one(mock: Child) -> None:
    post(mock.url, "/_mock/rules", {"match": {}, "times": 1, "respond": {"text": "once"}})
    for i in range(10):
        post(mock.url, CHAT, body(f"x{i}"))
    assert post(mock.url, "/_mock/reset").json() == {"status": "reset"}
    for _ in range(4):
        assert ledger(mock.url) == []
        assert get(mock.url, "/_mock/rules").json()["rules"] == []
    ids = [post(mock.url, CHAT, body(f"y{i}")).json()["id"] for i in range(24)]
    assert [int(i[-6:]) for i in ids] == list(range(1, 25))
    _served_by_both(ledger(mock.url))


def _normalised(raw: bytes) -> bytes:
    # The only thing that may differ between two runs: the second the answer was made.
    return re.sub(rb'"created":\d+', b'"created":0', raw)


def _exchange(url: str) -> list[bytes]:
    out = []
    for i in range(24):
        seeded = {"seed": i % 3} if i % 3 else {}
        payload = body(f"same {i % 5}", stream=i % 2 == 0, **seeded)
        with httpx.stream("POST", f"{url}{CHAT}", json=payload, timeout=30) as response:
            out.append(_normalised(response.read()))
    return out


def test_a_request_gets_the_same_bytes_from_one_worker_or_two() -> None:
    one, two = start("--seed", "7", workers=1), start("--seed", "7")
    try:
        single, double = _exchange(one.url), _exchange(two.url)
        _served_by_both(ledger(two.url))
    finally:
        stop_process(one.proc)
        stop_process(two.proc)
    assert len(set(single)) > 4  # the requests differ, so the comparison means something
    assert double == single


def test_a_disconnect_is_recorded_by_the_worker_that_served_it(mock: Child) -> None:
    for i in range(STREAMS):
        with httpx.stream(
            "POST",
            f"{mock.url}{CHAT}",
            json=body(f"slow {i}", stream=True, max_tokens=200),
            headers={"X-Mock-Itl-Ms": "50"},
            timeout=30,
        ) as response:
            next(response.iter_raw())  # the first bytes, then leave
    done = post(
        mock.url,
        "/_mock/requests/wait",
        {"count": STREAMS, "outcome": "client_disconnected", "timeout": 20},
    )
    assert done.status_code == 200, done.text
    entries = done.json()["requests"]
    _served_by_both(entries)
    for entry in entries:
        assert entry["outcome"] == "client_disconnected"
        assert 1 <= entry["disconnect_index"] < 200
        assert entry["text"]


@pytest.mark.parametrize("value", ["0", "-1", "two", "65"])
def test_bad_worker_counts_are_refused(value: str) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "mockllm", "--port", "0", "--workers", value],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 2
    assert "--workers" in run.stderr
    assert "listening" not in run.stdout


def test_the_config_refuses_bad_worker_counts() -> None:
    for value in (0, 65, True, 1.5):
        with pytest.raises(ValueError, match="workers must be"):
            MockConfig(workers=value)  # type: ignore[arg-type]


def _workers_of(child: Child) -> list[psutil.Process]:
    return wait_for(
        lambda: psutil.Process(child.proc.pid).children(),
        until=lambda kids: len(kids) == 2,
        what="two workers",
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_stops_every_worker(sig: signal.Signals) -> None:
    child = start()
    workers = _workers_of(child)
    post(child.url, CHAT, body())
    child.proc.send_signal(sig)
    assert child.proc.wait(15) == 0
    _, alive = psutil.wait_procs(workers, timeout=5)
    assert alive == []


def test_a_dead_worker_stops_the_mock_with_a_message() -> None:
    child = start()
    workers = _workers_of(child)
    workers[1].kill()
    assert child.proc.wait(15) == 1
    if child.reader is not None:
        child.reader.join(5)
    assert "worker" in child.text and "SIGKILL" in child.text, child.text
    assert "start it again" in child.text
    _, alive = psutil.wait_procs(workers, timeout=5)
    assert alive == []


def test_a_killed_parent_takes_its_workers_with_it() -> None:
    child = start()
    workers = _workers_of(child)
    child.proc.kill()
    child.proc.wait(5)
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert alive == []


def test_mock_process_runs_a_config_with_workers_and_rules() -> None:
    rules = parse_rules([{"match": {"prompt": "ping"}, "respond": {"text": "pong"}}])
    mock = MockProcess(MockConfig(seed=3, workers=2, rules=rules)).start()
    try:
        texts = [
            post(mock.url, CHAT, body("ping")).json()["choices"][0]["message"]["content"]
            for _ in range(24)
        ]
        assert texts == ["pong"] * 24
        _served_by_both(ledger(mock.url))
        assert get(mock.url, "/_mock/config").json()["seed"] == 3
    finally:
        code = mock.stop()
    assert code == 0, mock.output


def test_mock_server_points_at_mock_process_for_workers() -> None:
    with pytest.raises(ValueError, match="MockProcess"):
        MockServer(MockConfig(workers=2))


def test_a_second_mock_cannot_share_the_port_of_one_with_workers(mock: Child) -> None:
    port = mock.url.rsplit(":", 1)[1]
    for workers in ("2", "1"):
        run = subprocess.run(
            [sys.executable, "-m", "mockllm", "--port", port, "--workers", workers],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert run.returncode == 2, run.stdout
        assert f"cannot listen on 127.0.0.1:{port}" in run.stderr
    assert post(mock.url, CHAT, body()).status_code == 200
