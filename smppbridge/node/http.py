"""The HTTP side: ``/healthz`` (alive), ``/readyz`` (listeners up, store reachable),
``/metrics`` (Prometheus text format; on its own address with ``[http]
metrics_listen``); the provider layer mounts webhooks under ``/webhooks/<provider>`` on
the same router.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from smppbridge.http.server import Handler, Request, Response, Router
from smppbridge.observability.metrics import METRICS, Metrics

__all__ = ["build_router", "metrics_handler"]

_log = structlog.get_logger("smppbridge.http")


def metrics_handler(metrics: Metrics = METRICS,
                    refresh: Callable[[], Awaitable[None]] | None = None) -> Handler:
    """``GET /metrics``: the Prometheus text format; ``refresh`` updates gauges read from
    the store before a scrape."""

    async def scrape(_: Request) -> Response:
        if refresh is not None:
            try:
                await refresh()
            except Exception:  # a failing gauge refresh must not hide the counters
                _log.warning("metrics.refresh_failed", exc_info=True)
        return Response(body=generate_latest(metrics.registry),
                        content_type=CONTENT_TYPE_LATEST)

    return scrape


def build_router(ready_checks: dict[str, Callable[[], Awaitable[bool]]], *,
                 info: Callable[[], Awaitable[dict[str, object]]] | None = None,
                 metrics: Metrics = METRICS,
                 refresh: Callable[[], Awaitable[None]] | None = None,
                 serve_metrics: bool = True) -> Router:
    """A router with the health endpoints; ``ready_checks`` name what /readyz needs;
    ``info`` adds informational fields (provider health) that never make a node unready;
    ``refresh`` updates gauges read from the store before a scrape. ``serve_metrics =
    False`` leaves /metrics out (it is served on its own address)."""
    router = Router()

    async def healthz(_: Request) -> Response:
        return Response.text("ok\n")

    async def readyz(_: Request) -> Response:
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
        return Response.json(body, status=200 if ok else 503)

    router.add("GET", "/healthz", healthz)
    router.add("GET", "/readyz", readyz)
    if serve_metrics:
        router.add("GET", "/metrics", metrics_handler(metrics, refresh))
    return router
