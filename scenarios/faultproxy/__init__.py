"""Embedded Toxiproxy-compatible TCP fault proxy with seeded, replayable toxics.

Run it with ``streamharness proxy`` (or ``python -m scenarios.faultproxy``) and drive it over
the Toxiproxy HTTP API, e.g. with :class:`ToxiproxyClient`. Modules: ``toxics`` (pure toxic
logic), ``models`` (REST shapes), ``addresses`` (pure: host:port as Go reads it),
``listeners`` (resolving and binding listen addresses), ``engine`` (asyncio TCP), ``api``
(HTTP), ``client``.
"""

from scenarios.faultproxy.errors import (
    AlreadyExists,
    ApiError,
    FaultProxyError,
    NotFound,
    ServerUnavailable,
)

__all__ = [
    "AlreadyExists",
    "ApiError",
    "FaultProxyError",
    "NotFound",
    "ServerUnavailable",
]
