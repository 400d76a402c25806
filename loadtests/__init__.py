"""loadtests: Locust users with exact streaming metrics, load shapes, CI gates and benchmarks.

The package's pure API is re-exported here and imports neither Locust nor gevent (Locust
monkey-patches the interpreter when imported): ``loadtests.users`` and
``loadtests.locustfile`` are the only modules that do, and only Locust processes load them.
"""

from loadtests.errors import LoadTestError, MetricsError
from loadtests.gates import Gate, GateResult, all_passed, evaluate, make_gate
from loadtests.metrics import (
    ExactHistogram,
    LoadMetrics,
    Slo,
    StreamSample,
    summarise_stream,
)
from loadtests.shapes import SHAPE_NAMES, Shape, make_shape

__all__ = [
    "SHAPE_NAMES",
    "ExactHistogram",
    "Gate",
    "GateResult",
    "LoadMetrics",
    "LoadTestError",
    "MetricsError",
    "Shape",
    "Slo",
    "StreamSample",
    "all_passed",
    "evaluate",
    "make_gate",
    "make_shape",
    "summarise_stream",
]
