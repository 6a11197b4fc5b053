"""The node's HTTP side, one ASGI application (FastAPI) served in the node's loop:
``/healthz`` (alive), ``/readyz`` (listeners up, store reachable; provider health as
information), ``/metrics`` (Prometheus text format; on its own address with ``[http]
metrics_listen``), the provider webhooks ``POST /webhooks/<provider>``, the operator
API and console, and the submit doors (``POST /api/v1/messages``, Jasmin's ``/send``,
Kannel's ``/cgi-bin/sendsms``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from smppbridge import __version__
from smppbridge.delivery.webhooks import Webhooks
from smppbridge.http.request import HttpRequest
from smppbridge.node.api import PREFIX, add_api
from smppbridge.node.compat import add_compat
from smppbridge.node.console import add_console
from smppbridge.node.context import ApiContext
from smppbridge.node.submit_api import add_submit_api
from smppbridge.observability.metrics import METRICS, Metrics

__all__ = ["build_app", "build_metrics_app", "http_request"]

_log = structlog.get_logger("smppbridge.http")

ReadyCheck = Callable[[], Awaitable[bool]]
#: the files the pages and the API docs use, shipped in the package (no CDN)
STATIC_DIR = Path(__file__).parent / "static"


def _bare_app() -> FastAPI:
    # The operator API adds its own documented routes; these endpoints are not part of
    # the OpenAPI description (they are the same on every HTTP service of ours).
    return FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


def add_metrics(app: FastAPI, metrics: Metrics = METRICS,
                refresh: Callable[[], Awaitable[None]] | None = None) -> None:
    """``GET /metrics``: the Prometheus text format; ``refresh`` updates gauges read from
    the store before a scrape."""

    @app.api_route("/metrics", methods=["GET", "HEAD"], include_in_schema=False)
    async def scrape() -> Response:
        if refresh is not None:
            try:
                await refresh()
            except Exception:  # a failing gauge refresh must not hide the counters
                _log.warning("metrics.refresh_failed", exc_info=True)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


def build_metrics_app(refresh: Callable[[], Awaitable[None]] | None = None) -> FastAPI:
    """``/metrics`` alone, for ``[http] metrics_listen`` (a private address)."""
    app = _bare_app()
    add_metrics(app, refresh=refresh)
    return app


def build_app(ready_checks: dict[str, ReadyCheck], *,
              info: Callable[[], Awaitable[dict[str, object]]] | None = None,
              refresh: Callable[[], Awaitable[None]] | None = None,
              webhooks: Webhooks | None = None,
              serve_metrics: bool = True, api: ApiContext | None = None) -> FastAPI:
    """The health endpoints; ``ready_checks`` name what /readyz needs; ``info`` adds
    informational fields (provider health) that never make a node unready; ``refresh``
    updates gauges read from the store before a scrape; ``serve_metrics = False`` leaves
    /metrics out (it is served on its own address); ``api`` mounts the operator API
    (``/api/v1``, its OpenAPI document and docs)."""
    app = _bare_app() if api is None else FastAPI(
        title="smppbridge", version=__version__, openapi_url=f"{PREFIX}/openapi.json",
        docs_url=None, redoc_url=None,
        description="The operator API of an smppbridge node: message history, binds, "
                    "providers, accounts and traffic (docs/http.md).")

    @app.api_route("/healthz", methods=["GET", "HEAD"], include_in_schema=False)
    async def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok\n")

    @app.api_route("/readyz", methods=["GET", "HEAD"], include_in_schema=False)
    async def readyz() -> JSONResponse:
        results: dict[str, bool] = {}
        for name, check in ready_checks.items():
            try:
                results[name] = await check()
            except Exception:  # a failing probe is "not ready", never a 500
                results[name] = False
        ok = all(results.values())
        body: dict[str, object] = {"ready": ok, "checks": results}
        if info is not None:
            try:
                body.update(await info())
            except Exception:  # informational only
                body["info_error"] = True
        return JSONResponse(body, status_code=200 if ok else 503)

    if serve_metrics:
        add_metrics(app, refresh=refresh)
    if webhooks is not None:
        hooks = webhooks

        @app.post("/webhooks/{provider:path}", include_in_schema=False)
        async def webhook(provider: str, request: Request) -> Response:
            answer = await hooks.handle(provider.strip("/"), await http_request(request))
            return Response(answer.body, status_code=answer.status,
                            media_type=answer.content_type)

    if api is not None:
        add_api(app, api)
        if api.doors is not None:
            add_submit_api(app, api, api.doors)
            add_compat(app, api.doors)
        add_console(app, api)
        app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


async def http_request(request: Request) -> HttpRequest:
    """The framework's request as the node's own plain one (what providers parse)."""
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    query: dict[str, list[str]] = {}
    for name, value in request.query_params.multi_items():
        query.setdefault(name, []).append(value)
    client = request.client
    return HttpRequest(method=request.method, path=request.url.path, query=query,
                       headers=headers, body=await request.body(),
                       client=(client.host, client.port) if client else ("", 0))
