from __future__ import annotations

import pytest

from reference_server.state import (
    TERMINAL,
    InvalidTransition,
    StreamInput,
    StreamState,
    transition,
)


def test_happy_path() -> None:
    state = transition(StreamState.STARTING, StreamInput.TOKEN)
    assert state is StreamState.STREAMING
    assert transition(state, StreamInput.TOKEN) is StreamState.STREAMING
    assert transition(state, StreamInput.FINISH) is StreamState.ENDED


@pytest.mark.parametrize("start", [StreamState.STARTING, StreamState.STREAMING])
def test_cancel_and_fail_from_live_states(start: StreamState) -> None:
    assert transition(start, StreamInput.CANCEL) is StreamState.CANCELLED
    assert transition(start, StreamInput.FAIL) is StreamState.FAILED


@pytest.mark.parametrize("terminal", sorted(TERMINAL, key=str))
@pytest.mark.parametrize("event", list(StreamInput))
def test_terminal_states_accept_nothing(terminal: StreamState, event: StreamInput) -> None:
    with pytest.raises(InvalidTransition):
        transition(terminal, event)
