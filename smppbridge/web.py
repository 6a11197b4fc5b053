"""The HTTP side: ``/healthz`` (alive), ``/readyz`` (listeners up, store reachable).

The operations issue adds ``/metrics``; the provider issue mounts webhooks under
``/webhooks/<provider>`` on the same router.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from smppbridge.http.server import Request, Response, Router

__all__ = ["build_router"]


def build_router(ready_checks: dict[str, Callable[[], Awaitable[bool]]]) -> Router:
    """A router with the health endpoints; ``ready_checks`` name what /readyz needs."""
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
        return Response.json({"ready": ok, "checks": results}, status=200 if ok else 503)

    router.add("GET", "/healthz", healthz)
    router.add("GET", "/readyz", readyz)
    return router
