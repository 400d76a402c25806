"""mockllm.faults: the X-Mock-Fault grammar."""

from __future__ import annotations

import pytest

from mockllm.errors import InvalidRequest
from mockllm.faults import FAULT_NAMES, Faults, parse_faults


def test_examples_from_the_docs() -> None:
    assert parse_faults("status=429;retry_after=2") == Faults(status=429, retry_after=2)
    assert parse_faults("abort_after=3") == Faults(abort_after=3)
    assert parse_faults("stall_after=5;seconds=2") == Faults(stall_after=5, stall_seconds=2)
    assert parse_faults("malformed_after=4") == Faults(malformed_after=4)
    assert parse_faults("error_after=3") == Faults(error_after=3)
    assert parse_faults("no_done") == Faults(no_done=True)
    assert parse_faults("split_chunk") == Faults(split_chunk=-1)
    assert parse_faults("split_chunk=2;pause_ms=1") == Faults(split_chunk=2, split_pause_ms=1)
    assert parse_faults("slow_headers=250") == Faults(slow_headers_ms=250)


def test_faults_combine_and_none_resets() -> None:
    assert parse_faults("abort_after=10, no_done") == Faults(abort_after=10, no_done=True)
    assert parse_faults("abort_after=10,none") == Faults()


def test_unknown_fault_lists_the_known_names() -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_faults("explode")
    assert info.value.code == "unknown_fault"
    for name in FAULT_NAMES:
        assert name in info.value.message


@pytest.mark.parametrize(
    "spec",
    [
        "status",
        "status=200",
        "status=abc",
        "abort_after=-1",
        "no_done=1",
        "stall_after=2;secs=3",
        "status=429;retry_after=x",
    ],
)
def test_bad_specs_are_invalid_requests(spec: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_faults(spec)


def test_names_lists_active_faults() -> None:
    assert parse_faults("status=500,no_done").names == ("status", "no_done")
