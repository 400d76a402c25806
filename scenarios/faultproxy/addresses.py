"""``host:port`` strings as Toxiproxy's Go code reads them (pure: no sockets, no DNS).

The real server hands ``listen`` and ``upstream`` to Go's ``net`` package, so what it accepts
is what ``net.SplitHostPort`` and Go's port parser accept: ``"127.0.0.1:8000"``, ``":8000"``
(every interface), ``"[::1]:8000"``, ``"localhost:0"``, ``"127.0.0.1:"`` (port 0) and service
names such as ``"127.0.0.1:http"``. Error texts are Go's (``address X: missing port in
address``). The one deliberate difference: a numeric port outside 0-65535 is a 400 here, where
the real server answers 500 (and our engine, before this check, would silently bind the port
modulo 65536).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from scenarios.faultproxy.errors import ApiError

__all__ = ["HostPort", "format_host_port", "parse_address", "parse_port", "split_host_port"]

_MAX_PORT: Final = 65535


@dataclass(frozen=True, slots=True)
class HostPort:
    """``host`` without brackets (``""`` = every interface); ``port`` numeric or a service."""

    host: str
    port: str


def _address_error(address: str, why: str) -> ApiError:
    # Go's AddrError text; a 500 because the real server answers these with 500.
    return ApiError(f"address {address}: {why}", 500)


def split_host_port(address: str) -> HostPort:
    """Go's ``net.SplitHostPort``, same checks in the same order."""
    i = address.rfind(":")
    if i < 0:
        raise _address_error(address, "missing port in address")
    j = k = 0
    if address.startswith("["):
        end = address.find("]")
        if end < 0:
            raise _address_error(address, "missing ']' in address")
        if end + 1 == len(address):
            raise _address_error(address, "missing port in address")
        if end + 1 != i:
            # ']' is not followed by the last colon: a colon after it means too many of them.
            if address[end + 1] == ":":
                raise _address_error(address, "too many colons in address")
            raise _address_error(address, "missing port in address")
        host = address[1:end]
        j, k = 1, end + 1
    else:
        host = address[:i]
        if ":" in host:
            raise _address_error(address, "too many colons in address")
    if "[" in address[j:]:
        raise _address_error(address, "unexpected '[' in address")
    if "]" in address[k:]:
        raise _address_error(address, "unexpected ']' in address")
    return HostPort(host, address[i + 1 :])


def parse_port(service: str) -> int | None:
    """A numeric port (Go's ``parsePort``: optional sign, digits), or None for a service name.

    Raises a 400 for a number outside 0-65535: Go refuses it too ("invalid port", as a 500),
    and the message here says what is allowed.
    """
    if service == "":
        return 0
    digits = service[1:] if service[0] in "+-" else service
    if not digits or not digits.isascii() or not digits.isdigit():
        return None
    port = -int(digits) if service[0] == "-" else int(digits)
    if not 0 <= port <= _MAX_PORT:
        raise ApiError(
            f"invalid port {service}: a port is 0-{_MAX_PORT} (0 picks a free port)", 400
        )
    return port


def format_host_port(host: str, port: int) -> str:
    """Go's ``TCPAddr.String()``: IPv6 hosts in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_address(address: str) -> tuple[HostPort, int | None]:
    """Split and check ``address`` (no DNS): the parts and the numeric port, if it is one."""
    parts = split_host_port(address)
    return parts, parse_port(parts.port)
