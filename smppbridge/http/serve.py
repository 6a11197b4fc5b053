"""An ASGI application served by uvicorn inside the running event loop.

Theory of operation: the node (and the simulator) run one asyncio loop; uvicorn's
:class:`uvicorn.Server` runs in it as one more task, not as a second process or thread.
The listening socket is bound here first (so a bind error is reported by ``start`` and
port 0 gives its port at once), then handed to ``Server.serve``. uvicorn's own signal
handling is switched off: the node owns SIGTERM/SIGHUP and stops the server itself.

Limits come from uvicorn's settings where it has one, each with its reason
(:class:`HttpLimits`): keep-alive and graceful-shutdown timeouts, the largest request
head (h11's ``max_incomplete_event_size``) and the number of connections served at once.
uvicorn has none for three things, so they are a few lines here:

* the size of a request body — :class:`BodyLimit` (ASGI middleware) answers 413 to a
  declared Content-Length over the cap before reading, and to a body that grows past it
  while it streams in;
* how long a request head may take to arrive — uvicorn times out only an idle
  keep-alive connection, so a client that opens a connection and sends nothing, or its
  headers one byte a second (slowloris), held it for ever; :class:`_GuardedH11` closes a
  connection whose request head is not complete ``header_timeout`` seconds after it
  began;
* connections per client address — past ``max_connections`` uvicorn answers 503 to
  every request, so one client's idle connections could make ``/metrics`` and
  ``/readyz`` answer 503 to everyone; :class:`_GuardedH11` refuses a client's
  connections past ``max_connections_per_ip``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any, ClassVar

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["BodyLimit", "HttpLimits", "ServedApp", "serve_app"]

#: An ASGI 3 application (FastAPI, Starlette, middleware around them).
Asgi = Callable[[MutableMapping[str, Any], Callable[[], Awaitable[Any]],
                 Callable[[Any], Awaitable[None]]], Awaitable[None]]
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]

#: Status of a body over the limit (RFC 9110 §15.5.14).
_TOO_LARGE = 413


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """The HTTP server's limits (``[http]`` keys of the same names)."""

    #: largest request body, octets: webhook, API and provider bodies are small; the cap
    #: stops a client from making us buffer an unbounded body (HTTP 413 beyond it)
    max_body: int = 1_048_576
    #: largest request line plus headers, octets (RFC 9112 sets no bound; 16 KiB is what
    #: most servers accept); a longer head is answered 431 / the connection closed
    max_header: int = 16 * 1024
    #: an idle keep-alive connection is closed after this many seconds
    keepalive_timeout: float = 30.0
    #: connections served at once; past it uvicorn answers 503 (a flood of idle
    #: connections cannot hold every slot of the node's HTTP side)
    max_connections: int = 1000
    #: seconds a stop waits for requests in progress before closing their connections
    shutdown_grace: float = 5.0
    #: seconds a request head (request line and headers) may take to arrive, from the
    #: connection's start or the end of the previous response (slowloris)
    header_timeout: float = 10.0
    #: connections one client address may hold at once (0 = no limit)
    max_connections_per_ip: int = 100


class BodyLimit:
    """ASGI middleware: a request body of more than ``max_body`` octets is answered 413
    (by its Content-Length before anything is read, else as soon as it grows past)."""

    def __init__(self, app: Asgi, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive,
                       send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body:
                await _too_large(send)
                return
        seen = 0
        started = refused = False

        async def limited_receive() -> Any:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    # Answer now and tell the app the client went away: whatever it
                    # sends after this is dropped.
                    refused = True
                    if not started:
                        await _too_large(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Any) -> None:
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, limited_receive, guarded_send)


async def _too_large(send: Send) -> None:
    body = b'{"error":{"code":"body_too_large","message":"request body too large"}}'
    await send({"type": "http.response.start", "status": _TOO_LARGE,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class _GuardedH11(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a request-head timeout and a per-client
    connection cap (see the module docstring). ``limits`` and ``per_ip`` are set on a
    subclass made per served app (:func:`serve_app`)."""

    limits: ClassVar[HttpLimits] = HttpLimits()
    per_ip: ClassVar[Counter[str]] = Counter()

    _head_timer: asyncio.TimerHandle | None = None
    _counted: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        ip = str(peer[0]) if peer else ""
        cap = self.limits.max_connections_per_ip
        if cap and self.per_ip[ip] >= cap:
            transport.close()
            return
        self.per_ip[ip] += 1
        self._counted = ip
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        if self._counted is None:
            return  # refused at once: uvicorn never saw it
        self.per_ip[self._counted] -= 1
        if self.per_ip[self._counted] <= 0:
            del self.per_ip[self._counted]
        self._counted = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE:
            self._arm_head_timer()  # a head in progress (or the next one)
        else:
            self._cancel_head_timer()  # the head is complete

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # The next request's head has its own time from now (uvicorn's keep-alive timer
        # closes the connection if nothing comes at all).
        self._cancel_head_timer()

    def _arm_head_timer(self) -> None:
        if self._head_timer is None and self.transport is not None:
            self._head_timer = self.loop.call_later(self.limits.header_timeout,
                                                    self._head_too_slow)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


class _InLoopServer(uvicorn.Server):
    """uvicorn without its signal handlers: the node stops it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ServedApp:
    """One running HTTP listener; :meth:`close` stops it gracefully."""

    def __init__(self, server: _InLoopServer, task: asyncio.Task[None],
                 address: tuple[str, int]) -> None:
        self._server = server
        self._task = task
        self.address = address

    async def close(self) -> None:
        """Stop accepting, let requests in progress finish (up to the grace), close."""
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def serve_app(app: Asgi, host: str, port: int, *,
                    limits: HttpLimits | None = None, name: str = "http") -> ServedApp:
    """Serve ``app`` on ``host:port`` (0: any free port) in the running loop."""
    limits = limits or HttpLimits()
    sock = _listen(host, port)
    # One protocol class per served app: its limits and its count of connections per
    # client address.
    protocol = type("GuardedH11", (_GuardedH11,), {"limits": limits, "per_ip": Counter()})
    config = uvicorn.Config(
        BodyLimit(app, limits.max_body), lifespan="off", log_config=None, access_log=False,
        server_header=False, date_header=True, proxy_headers=False,
        timeout_keep_alive=max(1, round(limits.keepalive_timeout)),
        timeout_graceful_shutdown=max(1, round(limits.shutdown_grace)),
        limit_concurrency=limits.max_connections,
        h11_max_incomplete_event_size=limits.max_header,
        loop="none", http=protocol, ws="none")
    server = _InLoopServer(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]), name=name)
    address = sock.getsockname()[:2]
    return ServedApp(server, task, (str(address[0]), int(address[1])))


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns Nagle off (TCP_NODELAY) only for a socket whose
    # protocol says TCP, and uvicorn writes a head and a body separately: with Nagle on,
    # every keep-alive response waited out the client's delayed ACK (~44 ms here).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
