"""The provider simulator: the mysmpp XML and JSON APIs, SMS-fly and the generic
http-json API (with HLR) in one small ASGI app (Starlette, served by uvicorn in the
running loop), for the demo and the tests.

Endpoints (paths as on the real services where they have one; handlers in
:mod:`smppbridge.simulator.apis`):

- ``POST /xml`` and ``POST /xml/state.php`` — mysmpp XML send and status
- ``POST /json`` — mysmpp JSON send
- ``POST /api/v2/api.php`` — SMS-fly (SENDMESSAGE, GETMESSAGESTATUS, GETBALANCE,
  GETBALANCEEXT)
- ``POST /http-json/send`` and ``POST /http-json/status`` — smppbridge's generic API
- ``GET /control`` — settings and counters; ``POST /control`` — change them (JSON with
  SimConfig keys plus ``fail_next``, ``down_for``, ``up``, ``reset``)
- ``POST /mo`` — send one mobile-originated message now (JSON ``from``, ``to``,
  ``text``, each defaulting to ``mo_from``/``mo_to``/``mo_text``) to ``mo_url`` (a
  node's ``/webhooks/<provider>/mo``), answered with the node's status; with
  ``mo_every`` set the pusher sends one every that many seconds

The fault switches apply to every API request: ``latency`` delays the answer,
``fail_rate``/``fail_next`` answer ``fail_status``, ``down_for`` drops the connection
without an answer, as a dead server would (see :class:`DropConnection`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx
import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from smppbridge.http.serve import HttpLimits, ServedApp, serve_app
from smppbridge.providers.simulator.engine import SimEngine
from smppbridge.providers.simulator.settings import SimConfig
from smppbridge.simulator.apis import Failure, Handler, ProviderApis

__all__ = ["DropConnection", "Simulator", "build_router", "main", "run_simulator"]

_log = structlog.get_logger()

#: The old server's limits (1 MiB bodies, 30 s keep-alive); a stop does not wait for
#: requests in progress (uvicorn still gives them up to a second).
_LIMITS = HttpLimits(shutdown_grace=0.0)


class _Dropped(Exception):
    """Raised after a response head so that the server closes the connection."""


class DropConnection(Response):
    """The outage answer: the connection is closed before a response is complete.

    ASGI has no message to drop a connection. An application that raises after the
    response has started makes uvicorn close the transport (nothing else can be sent),
    so this sends a head that promises a one-octet body and raises: an HTTP client sees
    the peer disconnect with the response incomplete (httpx: ``RemoteProtocolError``, a
    ``TransportError``), never a usable status. (The 503 head does reach the wire, where
    the old h11 server sent nothing; a client reading only the head sees "unavailable".)
    uvicorn's log of that exception is dropped by :class:`_QuietDrops`: it is
    deliberate, not an application error.
    """

    def __init__(self) -> None:
        super().__init__(status_code=503)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code,
                    "headers": [(b"content-length", b"1"), (b"connection", b"close")]})
        raise _Dropped


class _QuietDrops(logging.Filter):
    """Drops uvicorn's "Exception in ASGI application" record for a :class:`_Dropped`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], _Dropped))


_QUIET_DROPS = _QuietDrops()


class Simulator:
    """The simulator app: an engine, its HTTP routes (``app``), and the webhook pusher."""

    def __init__(self, config: SimConfig | None = None, *,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.engine = SimEngine(config or SimConfig(), clock)
        self.clock = clock
        self.sleep = sleep
        self.apis = ProviderApis(self.engine, clock)
        self.app = build_router(self)
        self._served: ServedApp | None = None
        self._client: httpx.AsyncClient | None = None
        self._pusher: asyncio.Task[None] | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0, *,
                    webhook_interval: float | None = 0.2) -> tuple[str, int]:
        """Serve on ``host:port``; push due webhooks every ``webhook_interval`` seconds
        (None: only when :meth:`deliver_webhooks` is called)."""
        # Adding the same filter again is a no-op (logging.Filterer.addFilter).
        logging.getLogger("uvicorn.error").addFilter(_QUIET_DROPS)
        self._served = await serve_app(self.app, host, port, limits=_LIMITS,
                                       name="simulator-http")
        if webhook_interval is not None:
            self._pusher = asyncio.get_running_loop().create_task(
                self._push_loop(webhook_interval))
        return self._served.address

    async def aclose(self) -> None:
        if self._pusher is not None:
            self._pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pusher
            self._pusher = None
        if self._served is not None:
            served, self._served = self._served, None
            await served.close()
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def _push_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.deliver_webhooks()
            due = self.engine.due_mo()  # made (and counted) even with no mo_url yet
            if self.engine.config.mo_url:
                for mo in due:
                    await self.send_mo(mo)

    async def send_mo(self, mo: dict[str, str]) -> int | None:
        """POST one MO to ``mo_url``: the node's HTTP status, or None when it could
        not be reached (logged; a scheduled MO is not sent again)."""
        url = self.engine.config.mo_url
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=5.0)
        try:
            r = await self._client.post(url, json=mo)
        except httpx.HTTPError as exc:
            _log.warning("simulator.mo_failed", url=url, error=str(exc))
            return None
        return r.status_code

    async def mo(self, request: Request) -> Response:
        """``POST /mo``: one MO now (see the module docstring)."""
        if not self.engine.config.mo_url:
            return JSONResponse({"error": "no mo_url set (POST /control {\"mo_url\": ...})"},
                                409)
        try:
            raw = json.loads(await request.body() or b"{}")
            if not isinstance(raw, dict):
                raise ValueError("expected a JSON object")
            mo = self.engine.mo(raw)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        status = await self.send_mo(mo)
        return JSONResponse({"mo": mo, "status": status}, 200 if status == 200 else 502)

    async def deliver_webhooks(self) -> int:
        """POST the final status of every http-json message that is due and has a
        callback; returns how many were delivered."""
        due = self.engine.due_webhooks()
        if not due:
            return 0
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=5.0)
        sent = 0
        for msg in due:
            url = msg.callback or self.engine.config.webhook_url
            try:
                r = await self._client.post(url, json=self.apis.http_status_of(msg))
                sent += r.status_code < 300
            except httpx.HTTPError as exc:
                _log.warning("simulator.webhook_failed", url=url, error=str(exc))
        return sent

    def guard(self, handler: Handler, failure: Failure) -> Handler:
        """Apply latency and the fault switches before ``handler``."""

        async def guarded(request: Request) -> Response:
            latency = self.engine.config.latency
            if latency:
                await self.sleep(latency)
            fault = self.engine.fault()
            if fault.drop:
                return DropConnection()
            if fault.status:
                return failure(fault.status)
            return await handler(request)

        return guarded

    # --- control ------------------------------------------------------------------------

    async def control(self, request: Request) -> Response:
        """``GET /control``: the settings and counters; ``POST /control``: change
        settings and switches, answered with the new snapshot."""
        if request.method != "POST":
            return JSONResponse(self.engine.snapshot())
        try:
            raw = json.loads(await request.body() or b"{}")
            if not isinstance(raw, dict):
                raise ValueError("expected a JSON object")
            self.engine.control(raw)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        return JSONResponse(self.engine.snapshot())


def build_router(sim: Simulator) -> Starlette:
    """The simulator's ASGI app (see the module docstring): every API route behind the
    fault switches, and ``/control``."""
    routes = [Route(path, sim.guard(handler, failure), methods=["POST"])
              for path, handler, failure in sim.apis.routes()]
    # One route for both methods, so that a 405 there allows GET and POST.
    routes.append(Route("/control", sim.control, methods=["GET", "POST"]))
    routes.append(Route("/mo", sim.mo, methods=["POST"]))
    return Starlette(routes=routes)


async def run_simulator(host: str, port: int,
                        config: SimConfig | Mapping[str, Any] | None = None, *,
                        on_ready: Callable[[tuple[str, int]], None] | None = None) -> None:
    """Serve the simulator until cancelled (``smppbridge simulator --listen HOST:PORT``);
    ``on_ready`` gets the bound address (port 0 picks one)."""
    if config is not None and not isinstance(config, SimConfig):
        config = SimConfig.from_dict(config)
    sim = Simulator(config)
    bound = await sim.start(host, port)
    _log.info("simulator.started", listen=f"{bound[0]}:{bound[1]}")
    if on_ready is not None:
        on_ready(bound)
    try:
        await asyncio.Event().wait()
    finally:
        await sim.aclose()


def main(host: str, port: int, config: SimConfig | Mapping[str, Any] | None = None) -> int:
    """Blocking entry point of ``smppbridge simulator``: serve until SIGINT or SIGTERM;
    prints the bound address; returns the process exit code (1 when it cannot bind)."""

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

        def ready(bound: tuple[str, int]) -> None:
            print(f"simulator listening on http://{bound[0]}:{bound[1]}", flush=True)

        server = asyncio.create_task(run_simulator(host, port, config, on_ready=ready))
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({server, stopping}, return_when=asyncio.FIRST_COMPLETED)
        for task in (server, stopping):
            task.cancel()
        await asyncio.gather(server, stopping, return_exceptions=True)
        failure = None if server.cancelled() else server.exception()
        if failure is not None:
            raise failure

    try:
        asyncio.run(serve())
    except OSError as exc:
        print(f"smppbridge simulator: cannot listen on {host}:{port}: {exc.strerror}",
              file=sys.stderr)
        return 1
    return 0
