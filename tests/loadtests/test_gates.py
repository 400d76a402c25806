from __future__ import annotations

import pytest

from loadtests.gates import all_passed, evaluate, make_gate
from loadtests.metrics import LoadMetrics, Slo


def _summary() -> dict[str, object]:
    m = LoadMetrics()
    for i in range(10):
        m.record_stream(
            transport="ws",
            outcome="completed" if i else "error",
            sent_at=0.0,
            sent_at_epoch=0.0,
            arrivals=[0.2, 0.25, 0.3],
            ended_at=0.31,
        )
    return m.summary(Slo(ttft_s=0.25))


def test_gates_pass_and_fail_with_named_lines() -> None:
    s = _summary()
    results = evaluate(
        [
            make_gate("ttft-p95-ms", 250),
            make_gate("itl-p99-ms", 40),
            make_gate("max-error-rate", 0.2),
        ],
        s,
    )
    assert [r.passed for r in results] == [True, False, True]
    assert "gate itl-p99-ms FAILED" in results[1].message
    assert not all_passed(results)
    good = evaluate([make_gate("min-goodput", 0.95)], s)[0]
    assert not good.passed and "min-goodput" in good.message and "0.9" in good.message


def test_gate_without_samples_fails() -> None:
    r = evaluate([make_gate("e2e-p99-ms", 1000)], LoadMetrics().summary())[0]
    assert not r.passed and "no samples" in r.message


@pytest.mark.parametrize(
    ("name", "value", "match"),
    [("nope", 1, "unknown gate"), ("ttft-p95-ms", -1, "non-negative"), ("min-goodput", 2, "share")],
)
def test_bad_gates(name: str, value: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_gate(name, value)
