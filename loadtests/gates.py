"""CI gates over a load run's summary (pure).

A gate compares one figure of :meth:`loadtests.metrics.LoadMetrics.summary` against a
threshold. A gate whose figure is missing (no samples at all) fails: a load test that measured
nothing must not pass CI.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Direction = Literal["max", "min"]


@dataclass(frozen=True)
class Gate:
    """``name`` is the CLI flag without dashes (``ttft-p95-ms``)."""

    name: str
    path: tuple[str, ...]
    threshold: float
    direction: Direction
    unit: str = ""

    def evaluate(self, summary: Mapping[str, Any]) -> GateResult:
        value: Any = summary
        for key in self.path:
            value = value.get(key) if isinstance(value, Mapping) else None
        if value is None:
            return GateResult(self, None, False, f"gate {self.name} FAILED: no samples measured")
        actual = float(value)
        ok = actual <= self.threshold if self.direction == "max" else actual >= self.threshold
        op = "<=" if self.direction == "max" else ">="
        verdict = "passed" if ok else "FAILED"
        message = (
            f"gate {self.name} {verdict}: {_fmt(actual)}{self.unit} "
            f"(required {op} {_fmt(self.threshold)}{self.unit})"
        )
        return GateResult(self, actual, ok, message)


@dataclass(frozen=True)
class GateResult:
    gate: Gate
    actual: float | None
    passed: bool
    message: str


def _fmt(v: float) -> str:
    return f"{v:.4g}" if abs(v) < 1 else f"{v:.1f}"


# flag name -> (summary path, direction, unit)
GATE_SPECS: dict[str, tuple[tuple[str, ...], Direction, str]] = {
    "ttft-p50-ms": (("metrics_ms", "ttft", "p50"), "max", " ms"),
    "ttft-p95-ms": (("metrics_ms", "ttft", "p95"), "max", " ms"),
    "ttft-p99-ms": (("metrics_ms", "ttft", "p99"), "max", " ms"),
    "itl-p50-ms": (("metrics_ms", "itl", "p50"), "max", " ms"),
    "itl-p99-ms": (("metrics_ms", "itl", "p99"), "max", " ms"),
    "tpot-p99-ms": (("metrics_ms", "tpot", "p99"), "max", " ms"),
    "e2e-p95-ms": (("metrics_ms", "e2e", "p95"), "max", " ms"),
    "e2e-p99-ms": (("metrics_ms", "e2e", "p99"), "max", " ms"),
    "max-error-rate": (("error_rate",), "max", ""),
    "min-goodput": (("goodput",), "min", ""),
}


def make_gate(name: str, threshold: float) -> Gate:
    if name not in GATE_SPECS:
        raise ValueError(f"unknown gate {name!r}; known: {', '.join(GATE_SPECS)}")
    if threshold < 0:
        raise ValueError(f"gate {name} needs a non-negative threshold, got {threshold}")
    if name in {"max-error-rate", "min-goodput"} and threshold > 1:
        raise ValueError(f"gate {name} is a share between 0 and 1, got {threshold}")
    path, direction, unit = GATE_SPECS[name]
    return Gate(name, path, threshold, direction, unit)


def evaluate(gates: Sequence[Gate], summary: Mapping[str, Any]) -> list[GateResult]:
    return [g.evaluate(summary) for g in gates]


def all_passed(results: Sequence[GateResult]) -> bool:
    return all(r.passed for r in results)
