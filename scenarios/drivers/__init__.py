"""Drivers: how a simulated client talks to the target, one per kind of protocol.

- :func:`scenarios.drivers.v1ws.drive_v1`: protocol v1 over WebSocket (docs/protocol.md);
- :func:`scenarios.drivers.v1http.drive_v1_http`: the reference HTTP stream API (SSE,
  polling, blocking), for client groups that ask for it;
- :func:`scenarios.drivers.generic.drive_profile`: every other profile, read with its rules;
- :func:`scenarios.drivers.browser.drive_browser`: ``kind: browser`` groups, a Chromium page
  per client running a bundled frontend.

All have the signature :class:`Driver`; :func:`driver_for` picks one.
"""

from __future__ import annotations

from scenarios import model
from scenarios.drivers.base import (
    ClientContext,
    Driver,
    Endpoints,
    Live,
    StreamState,
    TargetUnreachable,
)
from scenarios.profiles.schema import Profile

__all__ = [
    "ClientContext",
    "Driver",
    "Endpoints",
    "Live",
    "StreamState",
    "TargetUnreachable",
    "driver_for",
]


def driver_for(profile: Profile, group: model.ClientGroup) -> Driver:
    """The driver for a client group against a target with ``profile``."""
    if group.kind == "browser":
        from scenarios.drivers.browser import drive_browser

        return drive_browser
    if group.probe or group.http_probe:
        from scenarios.drivers.probe import drive_http_probe, drive_probe

        return drive_probe if group.probe else drive_http_probe
    if group.transport != "default":
        from scenarios.drivers.v1http import drive_v1_http

        return drive_v1_http
    if profile.protocol == "v1":
        from scenarios.drivers.v1ws import drive_v1

        return drive_v1
    from scenarios.drivers.generic import drive_profile

    return drive_profile
