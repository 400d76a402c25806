"""Listening sockets of the proxies: resolve a ``listen`` address, bind it, serve on it.

Split from the engine so that a change of address can be prepared completely (resolved,
bound, listening, a server created but not yet accepting) before anything of the running
proxy is touched: a failure then leaves the proxy exactly as it was. Errors are the real
server's (``listen tcp ADDR: bind: address already in use``, 500).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from scenarios.faultproxy.addresses import format_host_port, parse_address
from scenarios.faultproxy.errors import ApiError

__all__ = ["Listener", "ResolvedAddress", "open_listener", "resolve_listen"]

BACKLOG: Final = 1024


@dataclass(frozen=True, slots=True)
class ResolvedAddress:
    """Where a ``listen`` string binds, and how the API shows it once listening there."""

    family: int
    sockaddr: tuple[Any, ...]
    #: Go's resolved form ("127.0.0.1:8000", "[::1]:8000"); every interface shows as
    #: "[::]:PORT", which is how the real server shows its dual-stack wildcard.
    shown: str
    #: No host given: every interface.
    wildcard: bool = False

    @property
    def port(self) -> int:
        return int(self.sockaddr[1])


async def resolve_listen(loop: asyncio.AbstractEventLoop, address: str) -> ResolvedAddress:
    """Go's ``net.ResolveTCPAddr``: 500 with Go's text when it fails (400: port out of range)."""
    parts, port = parse_address(address)
    if port is None:
        try:
            port = socket.getservbyname(parts.port, "tcp")
        except OSError:
            raise ApiError(f"lookup tcp/{parts.port}: unknown port", 500) from None
    if not parts.host:
        # Deliberately IPv4 only; the real server binds both stacks here.
        shown = format_host_port("::", port)
        return ResolvedAddress(socket.AF_INET, ("0.0.0.0", port), shown, wildcard=True)
    try:
        infos = await loop.getaddrinfo(
            parts.host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        why = "no such host" if exc.errno == socket.EAI_NONAME else str(exc.strerror).lower()
        raise ApiError(f"lookup {parts.host}: {why}", 500) from None
    # Go's "tcp" prefers IPv4 for a name that has both (localhost is 127.0.0.1).
    family, _, _, _, sockaddr = sorted(infos, key=lambda info: info[0] != socket.AF_INET)[0]
    return ResolvedAddress(family, sockaddr, format_host_port(str(sockaddr[0]), int(sockaddr[1])))


class Listener:
    """A listening socket and the server accepting on it for one proxy at a time.

    ``owner`` is read at each accept, so a listener can be handed from a proxy to the proxy
    replacing it on the same address (``/populate``) without closing the port.
    """

    def __init__(self, sock: socket.socket, resolved: ResolvedAddress) -> None:
        self.sock = sock
        self.resolved = resolved
        self.accept: Callable[[], asyncio.Protocol] | None = None
        self.server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    @property
    def shown(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return format_host_port("::" if self.resolved.wildcard else host, port)

    def _protocol(self) -> asyncio.Protocol:
        assert self.accept is not None, "a listener serves only once handed to a proxy"
        return self.accept()

    async def prepare(self, loop: asyncio.AbstractEventLoop) -> None:
        """Create the server without accepting yet (so creating it can fail harmlessly)."""
        self.server = await loop.create_server(
            self._protocol, sock=self.sock, backlog=BACKLOG, start_serving=False
        )

    async def serve(self, accept: Callable[[], asyncio.Protocol]) -> None:
        self.accept = accept
        assert self.server is not None
        await self.server.start_serving()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        else:
            self.sock.close()


def _bind(resolved: ResolvedAddress, address: str) -> socket.socket:
    sock = socket.socket(resolved.family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(resolved.sockaddr)
        # Listening at once reserves the port: a second bind to it (another item of the
        # same /populate) fails now rather than after something was changed.
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        reason = (exc.strerror or str(exc)).lower()
        raise ApiError(f"listen tcp {address}: bind: {reason}", 500) from None
    sock.setblocking(False)
    return sock


async def open_listener(
    loop: asyncio.AbstractEventLoop, address: str, resolved: ResolvedAddress | None = None
) -> Listener:
    """Resolve (unless done), bind and prepare ``address``; nothing accepts until ``serve``."""
    if resolved is None:
        resolved = await resolve_listen(loop, address)
    listener = Listener(_bind(resolved, address), resolved)
    try:
        await listener.prepare(loop)
    except OSError as exc:
        listener.close()
        raise ApiError(f"listen tcp {address}: {exc}", 500) from None
    return listener
