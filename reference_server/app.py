"""The ASGI application: ``create_app(settings)`` wires store, upstream client and transports."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse

from reference_server.collector import managed_collections
from reference_server.manager import StreamManager
from reference_server.providers import provider_named
from reference_server.settings import Settings
from reference_server.streams import InMemoryStreamStore, SharedStreamStore, StreamStore
from reference_server.transports.http import router as http_router
from reference_server.transports.ws import websocket_endpoint
from reference_server.upstream import RetryPolicy, UpstreamClient

__all__ = ["create_app", "create_store"]


def create_store(settings: Settings) -> StreamStore:
    """The store ``settings.store`` names (Redis is imported only when asked for)."""
    if settings.store == "memory":
        return InMemoryStreamStore()
    from reference_server.redis_store import RedisStreamStore

    lease = settings.redis_lease_s
    return RedisStreamStore(
        settings.store,
        session_ttl_s=max(settings.resume_grace_s, settings.stream_retention_s),
        live_ttl_s=settings.stream_retention_s + lease,
        retention_s=max(settings.stream_retention_s, 1.0),
        lease_s=lease,
        max_events=settings.redis_max_stream_events,
        prefix=settings.redis_key_prefix,
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        upstream = UpstreamClient(
            settings.upstream_url,
            provider=provider_named(settings.provider),
            default_max_tokens=settings.default_max_tokens,
            api_key=settings.api_key.get_secret_value() if settings.api_key else None,
            connect_timeout_s=settings.upstream_connect_timeout_s,
            read_timeout_s=settings.upstream_read_timeout_s,
            retry=RetryPolicy(
                max_retries=settings.upstream_max_retries,
                backoff_base_s=settings.upstream_backoff_base_s,
                backoff_max_s=settings.upstream_backoff_max_s,
                max_retry_after_s=settings.upstream_max_retry_after_s,
            ),
            max_connections=settings.upstream_max_connections,
        )
        store = create_store(settings)
        manager = StreamManager(settings, store, upstream)
        app.state.manager = manager
        manager.start()
        shared = store if isinstance(store, SharedStreamStore) else None
        if shared is not None:
            await shared.start(manager)
        try:
            async with managed_collections(
                settings.full_gc_interval_s,
                active=lambda: manager.active_generations,
                traffic=lambda: manager.totals["streams"],
            ):
                yield
        finally:
            if not manager.shutting_down:
                await manager.shutdown()
            await manager.close()
            if shared is not None:
                await shared.close()
            await upstream.aclose()

    app = FastAPI(
        title="streamharness reference_server",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    if settings.allowed_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.allowed_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID", "X-Resume-Token"],
        )
    app.add_api_websocket_route("/ws/chat/{client_id}", websocket_endpoint)
    app.include_router(http_router)

    @app.get("/")
    async def client_page() -> HTMLResponse:
        page = resources.files("reference_server").joinpath("client.html").read_text("utf-8")
        return HTMLResponse(page)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        manager: StreamManager = app.state.manager
        status = "shutting_down" if manager.shutting_down else "ok"
        return JSONResponse({"status": status}, status_code=503 if manager.shutting_down else 200)

    @app.get("/stats")
    async def stats() -> JSONResponse:
        manager: StreamManager = app.state.manager
        return JSONResponse(manager.stats())

    return app
