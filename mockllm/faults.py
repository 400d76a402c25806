"""Fault specifications: the ``X-Mock-Fault`` grammar, parsed into a frozen value.

Grammar (also used by rules and the in-prompt directive)::

    spec   := fault ("," fault)*
    fault  := NAME ["=" VALUE] (";" PARAM "=" VALUE)*

Examples: ``status=429;retry_after=2``, ``abort_after=3``, ``truncate_after=3``,
``stall_after=5;seconds=2``,
``malformed_after=4``, ``error_after=3``, ``no_done``, ``split_chunk``, ``slow_headers=500``,
``abort_after=10,no_done``. ``none`` cancels a fault chosen by a lower-priority source.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from mockllm.errors import InvalidRequest, excerpt

__all__ = ["FAULT_NAMES", "Faults", "parse_faults"]

# name -> (value required?, allowed parameters)
_SPEC: dict[str, tuple[bool | None, tuple[str, ...]]] = {
    "status": (True, ("retry_after",)),
    "slow_headers": (True, ()),
    "abort_after": (True, ()),
    "truncate_after": (True, ()),
    "stall_after": (True, ("seconds",)),
    "malformed_after": (True, ()),
    "error_after": (True, ()),
    "no_done": (False, ()),
    "split_chunk": (None, ("pause_ms",)),
    "none": (False, ()),
}
FAULT_NAMES: tuple[str, ...] = tuple(_SPEC)


@dataclass(frozen=True)
class Faults:
    """Every fault that applies to one request (all off by default)."""

    status: int | None = None
    retry_after: float | None = None
    slow_headers_ms: float = 0.0
    abort_after: int | None = None
    # End the body cleanly after N tokens: no finish_reason, no [DONE] (a gateway that closes
    # a stream early); a client must not take it for a whole answer.
    truncate_after: int | None = None
    stall_after: int | None = None
    stall_seconds: float = 1.0
    malformed_after: int | None = None
    error_after: int | None = None
    no_done: bool = False
    # None: no split; -1: split every content chunk; k >= 0: split the chunk that carries token k.
    split_chunk: int | None = None
    split_pause_ms: float = 5.0

    @property
    def names(self) -> tuple[str, ...]:
        active = []
        if self.status is not None:
            active.append("status")
        if self.slow_headers_ms:
            active.append("slow_headers")
        cuts = ("abort_after", "truncate_after", "stall_after", "malformed_after", "error_after")
        for name in (*cuts, "split_chunk"):
            if getattr(self, name) is not None:
                active.append(name)
        if self.no_done:
            active.append("no_done")
        return tuple(active)


NO_FAULTS = Faults()


def _number(name: str, raw: str, *, integer: bool, minimum: float, maximum: float) -> float:
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise InvalidRequest(
            f"Invalid fault value {name}={excerpt(raw)}: expected {kind}.", param="X-Mock-Fault"
        ) from None
    if not minimum <= value <= maximum:
        raise InvalidRequest(
            f"Invalid fault value {name}={excerpt(raw)}: "
            f"expected {minimum:g} <= value <= {maximum:g}.",
            param="X-Mock-Fault",
        )
    return value


def parse_faults(spec: str) -> Faults:
    """Parse a fault specification; raises :class:`InvalidRequest` naming what is wrong."""
    fields: dict[str, object] = {}
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        parts = [part.strip() for part in item.split(";")]
        name, _, value = parts[0].partition("=")
        name = name.strip().lower()
        value = value.strip()
        if name not in _SPEC:
            raise InvalidRequest(
                f"Unknown fault {excerpt(name)}. Known faults: {', '.join(FAULT_NAMES)}.",
                param="X-Mock-Fault",
                code="unknown_fault",
            )
        needs_value, allowed = _SPEC[name]
        if needs_value is True and not value:
            raise InvalidRequest(
                f"Fault {excerpt(name)} needs a value ({name}=...).", param="X-Mock-Fault"
            )
        if needs_value is False and value:
            raise InvalidRequest(f"Fault {excerpt(name)} takes no value.", param="X-Mock-Fault")
        params: dict[str, str] = {}
        for part in parts[1:]:
            if not part:
                continue
            key, eq, pvalue = part.partition("=")
            key = key.strip().lower()
            if key not in allowed or not eq:
                known = ", ".join(allowed) or "none"
                raise InvalidRequest(
                    f"Unknown or malformed parameter {excerpt(part)} for fault {excerpt(name)}. "
                    f"Parameters it accepts: {known}.",
                    param="X-Mock-Fault",
                )
            params[key] = pvalue.strip()
        if name == "none":
            fields.clear()
        elif name == "status":
            fields["status"] = int(_number(name, value, integer=True, minimum=400, maximum=599))
            if "retry_after" in params:
                fields["retry_after"] = _number(
                    "retry_after", params["retry_after"], integer=False, minimum=0, maximum=86400
                )
        elif name == "slow_headers":
            fields["slow_headers_ms"] = _number(name, value, integer=False, minimum=0, maximum=6e5)
        elif name == "split_chunk":
            fields["split_chunk"] = (
                int(_number(name, value, integer=True, minimum=0, maximum=1e9)) if value else -1
            )
            if "pause_ms" in params:
                fields["split_pause_ms"] = _number(
                    "pause_ms", params["pause_ms"], integer=False, minimum=0, maximum=60000
                )
        elif name == "no_done":
            fields["no_done"] = True
        else:
            fields[name] = int(_number(name, value, integer=True, minimum=0, maximum=1e9))
            if name == "stall_after" and "seconds" in params:
                fields["stall_seconds"] = _number(
                    "seconds", params["seconds"], integer=False, minimum=0, maximum=3600
                )
    return dataclasses.replace(NO_FAULTS, **fields)  # type: ignore[arg-type]
