"""The Toxiproxy HTTP API (Starlette) over the engine.

Routes, status codes, defaults and error messages are those of Toxiproxy 2.12 (``api.go``);
the shapes live in ``models.py``. Errors are ``{"error": ..., "status": ...}``.

Routes match the path as sent (``raw_path``), and each ``{proxy}``/``{toxic}`` segment is
percent-decoded on its own: a name holding ``/``, ``?`` or ``%`` is reached by encoding it
(``/proxies/a%2Fb``), so every name the API accepts can be read, changed and deleted.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import unquote_to_bytes

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from scenarios.faultproxy.engine import Engine, Proxy
from scenarios.faultproxy.errors import ApiError
from scenarios.faultproxy.models import (
    decode_proxy_create,
    decode_proxy_update,
    decode_toxic_create,
    decode_toxic_update,
    parse_json,
    populate_items,
)

__all__ = ["DEFAULT_LISTEN", "VERSION", "create_app"]

#: The Toxiproxy release whose API this server speaks.
VERSION: Final = "2.12.0"
#: Deliberate difference: the real server listens on every interface when ``listen`` is
#: omitted; we stay on loopback unless asked (``":8000"`` or ``"0.0.0.0:8000"``).
DEFAULT_LISTEN: Final = "127.0.0.1:0"

Handler = Callable[[Request], Awaitable[Response]]


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data) + "\n", status, media_type="application/json")


def _error(exc: ApiError) -> Response:
    return _json(exc.to_json(), exc.status)


async def _body(request: Request) -> Any:
    return parse_json(await request.body())


def _name(request: Request, param: str, missing: str) -> str:
    """A path segment decoded on its own (routes matched the still-encoded path)."""
    # The segment holds the raw bytes as latin-1 characters: percent escapes and any bytes
    # sent unescaped are both UTF-8 once back to bytes.
    raw = request.path_params[param].encode("latin-1")
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        # Not UTF-8: no name the API accepted can be spelled so.
        raise ApiError(missing, 404) from None


def _on_raw_path(app: ASGIApp) -> ASGIApp:
    """Route on the path as sent, so an encoded "/" inside a name stays inside its segment."""

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path")
        if scope["type"] == "http" and raw:
            scope = {**scope, "path": raw.decode("latin-1")}
        await app(scope, receive, send)

    return asgi


def create_app(engine: Engine) -> ASGIApp:
    def api(handler: Handler) -> Handler:
        async def wrapped(request: Request) -> Response:
            # The real server refuses browsers (CSRF protection for a local admin API).
            if request.headers.get("user-agent", "").startswith("Mozilla/"):
                return Response("User agent not allowed\n", 403, media_type="text/plain")
            try:
                return await handler(request)
            except ApiError as exc:
                return _error(exc)

        return wrapped

    def no_content() -> Response:
        return Response(status_code=204)

    async def version(request: Request) -> Response:
        return Response(
            json.dumps({"version": VERSION}) + "\n",
            media_type="application/json;charset=utf-8",
        )

    async def reset(request: Request) -> Response:
        await engine.reset()
        return no_content()

    async def proxy_index(request: Request) -> Response:
        return _json({name: p.to_json() for name, p in engine.proxies.items()})

    async def proxy_create(request: Request) -> Response:
        spec = decode_proxy_create(await _body(request), default_listen=DEFAULT_LISTEN)
        proxy = await engine.create(spec)
        return _json(proxy.to_json(), 201)

    async def populate(request: Request) -> Response:
        try:
            specs = populate_items(await _body(request), default_listen=DEFAULT_LISTEN)
            proxies = await engine.populate(specs)
        except ApiError as exc:
            return _json({**exc.to_json(), "proxies": None}, exc.status)
        return _json({"proxies": [p.to_json() for p in proxies]}, 201)

    def proxy_of(request: Request) -> Proxy:
        return engine.get(_name(request, "proxy", "proxy not found"))

    def toxic_name(request: Request) -> str:
        return _name(request, "toxic", "toxic not found")

    async def proxy_show(request: Request) -> Response:
        return _json(proxy_of(request).to_json())

    async def proxy_update(request: Request) -> Response:
        name = proxy_of(request).name
        update = decode_proxy_update(await _body(request), default_listen=DEFAULT_LISTEN)
        proxy = await engine.update(name, update)
        return _json(proxy.to_json())

    async def proxy_delete(request: Request) -> Response:
        await engine.delete(proxy_of(request).name)
        return no_content()

    async def toxic_index(request: Request) -> Response:
        proxy = proxy_of(request)
        return _json([t.to_json() for t in proxy.toxic_list()])

    async def toxic_create(request: Request) -> Response:
        proxy = proxy_of(request)
        names = {t.name for t in proxy.toxic_list()}
        config = decode_toxic_create(await _body(request), names)
        proxy.add_toxic(config)
        # 200, not 201: the real server answers toxic creation with a plain OK.
        return _json(config.to_json())

    async def toxic_show(request: Request) -> Response:
        proxy = proxy_of(request)
        toxic = proxy.find_toxic(toxic_name(request))
        if toxic is None:
            raise ApiError("toxic not found", 404)
        return _json(toxic.to_json())

    async def toxic_update(request: Request) -> Response:
        proxy = proxy_of(request)
        current = proxy.find_toxic(toxic_name(request))
        if current is None:
            raise ApiError("toxic not found", 404)
        config = decode_toxic_update(await _body(request), current)
        proxy.update_toxic(config)
        return _json(config.to_json())

    async def toxic_delete(request: Request) -> Response:
        proxy = proxy_of(request)
        name = toxic_name(request)
        if proxy.find_toxic(name) is None:
            raise ApiError("toxic not found", 404)
        proxy.remove_toxic(name)
        return no_content()

    async def metrics(request: Request) -> Response:
        return Response(engine.metrics_text(), media_type="text/plain; version=0.0.4")

    routes = [
        Route("/reset", api(reset), methods=["POST"]),
        Route("/proxies", api(proxy_index), methods=["GET"]),
        Route("/proxies", api(proxy_create), methods=["POST"]),
        Route("/populate", api(populate), methods=["POST"]),
        Route("/proxies/{proxy}", api(proxy_show), methods=["GET"]),
        Route("/proxies/{proxy}", api(proxy_update), methods=["POST", "PATCH"]),
        Route("/proxies/{proxy}", api(proxy_delete), methods=["DELETE"]),
        Route("/proxies/{proxy}/toxics", api(toxic_index), methods=["GET"]),
        Route("/proxies/{proxy}/toxics", api(toxic_create), methods=["POST"]),
        Route("/proxies/{proxy}/toxics/{toxic}", api(toxic_show), methods=["GET"]),
        Route("/proxies/{proxy}/toxics/{toxic}", api(toxic_update), methods=["POST", "PATCH"]),
        Route("/proxies/{proxy}/toxics/{toxic}", api(toxic_delete), methods=["DELETE"]),
        Route("/version", api(version), methods=["GET"]),
        Route("/metrics", api(metrics), methods=["GET"]),
    ]
    return _on_raw_path(Starlette(routes=routes))
