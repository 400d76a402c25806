"""A stream's life as an enum plus a transition table (pure; the shape of h11's ``_state.py``).

::

    STARTING --token--> STREAMING --token--> STREAMING
    STARTING | STREAMING --finish--> ENDED
    STARTING | STREAMING --cancel--> CANCELLED
    STARTING | STREAMING --fail----> FAILED

ENDED, CANCELLED and FAILED are terminal: nothing moves a stream out of them.
"""

from __future__ import annotations

import enum

__all__ = ["TERMINAL", "InvalidTransition", "StreamInput", "StreamState", "transition"]


class StreamState(enum.Enum):
    STARTING = "starting"
    STREAMING = "streaming"
    ENDED = "ended"
    CANCELLED = "cancelled"
    FAILED = "failed"


class StreamInput(enum.Enum):
    TOKEN = "token"
    FINISH = "finish"
    CANCEL = "cancel"
    FAIL = "fail"


class InvalidTransition(Exception):
    """A programming error: an input that the current state does not accept."""


_S, _I = StreamState, StreamInput
_TRANSITIONS: dict[tuple[StreamState, StreamInput], StreamState] = {
    (_S.STARTING, _I.TOKEN): _S.STREAMING,
    (_S.STARTING, _I.FINISH): _S.ENDED,
    (_S.STARTING, _I.CANCEL): _S.CANCELLED,
    (_S.STARTING, _I.FAIL): _S.FAILED,
    (_S.STREAMING, _I.TOKEN): _S.STREAMING,
    (_S.STREAMING, _I.FINISH): _S.ENDED,
    (_S.STREAMING, _I.CANCEL): _S.CANCELLED,
    (_S.STREAMING, _I.FAIL): _S.FAILED,
}

TERMINAL = frozenset({_S.ENDED, _S.CANCELLED, _S.FAILED})


def transition(state: StreamState, event: StreamInput) -> StreamState:
    try:
        return _TRANSITIONS[(state, event)]
    except KeyError:
        raise InvalidTransition(
            f"{event.value!r} is not allowed in state {state.value!r}"
        ) from None
