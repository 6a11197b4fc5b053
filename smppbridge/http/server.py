"""A small asyncio HTTP/1.1 server on h11: the HTTP side (metrics, health, webhooks) and
the provider simulator.

Theory of operation: one task per connection drives an ``h11.Connection`` (sans-IO, like
our SMPP core): read bytes, feed them in, pull events until a whole request is there,
call the routed handler, write the response, and start the next cycle when both sides
allow keep-alive. The asyncio code only moves bytes, as uvicorn's ``h11_impl.py`` does.

Limits and their reasons:

- ``max_body`` (413): webhook and provider bodies are small; the cap stops a client
  from making us buffer an unbounded body. A declared Content-Length over the cap is
  refused before its body is read; a chunked body is refused once it grows past it.
- ``MAX_HEADER_BYTES``: h11's limit on an incomplete request head (RFC 9112 puts no
  bound; 16 KiB is what most servers accept), so a peer cannot grow the buffer forever.
- ``keepalive_timeout``: an idle connection between requests is closed after it, and
  it also bounds how long one request may take to arrive (slowloris).

Anything the peer sends that h11 cannot parse is answered 400 and the connection is
closed; a handler that raises is answered 500 and logged, and the connection survives.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, unquote

import h11
import structlog

from smppbridge.http.request import HttpRequest, HttpResponse

__all__ = [
    "MAX_HEADER_BYTES",
    "CloseConnection",
    "Handler",
    "HttpServer",
    "Request",
    "Response",
    "Router",
]

#: Largest request line plus headers we buffer (h11 ``max_incomplete_event_size``).
MAX_HEADER_BYTES = 16 * 1024
#: Bytes asked of the socket per read.
_READ_SIZE = 64 * 1024
_SERVER_HEADER = (b"server", b"smppbridge")

_log = structlog.get_logger()


#: the request type handlers get (the node's own, server-neutral one)
Request = HttpRequest


#: what handlers answer (the node's own, server-neutral type)
Response = HttpResponse


Handler = Callable[[Request], Awaitable[Response]]


class CloseConnection(Exception):
    """Raised by a handler to drop the connection without answering (the simulator's
    outage mode; the client sees the server disconnect)."""


def _error(status: HTTPStatus) -> Response:
    return Response.text(f"{status.value} {status.phrase}\n", status=status.value)


@dataclass
class Router:
    """Maps (method, path) to a handler: exact paths first, then the longest prefix.

    A path that is known under another method gets 405 with an ``Allow`` header; an
    unknown path gets 404.
    """

    _exact: dict[str, dict[str, Handler]] = field(default_factory=dict)
    _prefixes: list[tuple[str, dict[str, Handler]]] = field(default_factory=list)

    def add(self, method: str, path: str, handler: Handler) -> None:
        """Route ``method path`` (exact match) to ``handler``."""
        self._exact.setdefault(path, {})[method.upper()] = handler

    def add_prefix(self, method: str, prefix: str, handler: Handler) -> None:
        """Route every path starting with ``prefix`` (e.g. ``/webhooks/``) to ``handler``."""
        for known, methods in self._prefixes:
            if known == prefix:
                methods[method.upper()] = handler
                return
        self._prefixes.append((prefix, {method.upper(): handler}))
        self._prefixes.sort(key=lambda item: len(item[0]), reverse=True)

    def resolve(self, method: str, path: str) -> Handler | Response:
        """The handler for ``method path``, or the 404/405 response to send instead."""
        methods = self._exact.get(path)
        if methods is None:
            methods = next((m for p, m in self._prefixes if path.startswith(p)), None)
        if methods is None:
            return _error(HTTPStatus.NOT_FOUND)
        handler = methods.get(method)
        if handler is None:
            resp = _error(HTTPStatus.METHOD_NOT_ALLOWED)
            allow = ", ".join(sorted(methods))
            return Response(resp.status, resp.body, resp.content_type, (("Allow", allow),))
        return handler


class _Refused(Exception):
    """A request we answer with ``response`` and then close the connection."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


class HttpServer:
    """HTTP/1.1 with keep-alive over asyncio streams; see the module docstring."""

    def __init__(self, router: Router, *, max_body: int = 1_048_576,
                 keepalive_timeout: float = 30.0) -> None:
        self.router = router
        self.max_body = max_body
        self.keepalive_timeout = keepalive_timeout
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], _ConnState] = {}
        self._closing = False

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen on ``host:port``; returns the bound address (port 0 → ephemeral)."""
        self._server = await asyncio.start_server(self._accept, host, port)
        sockname = self._server.sockets[0].getsockname()
        return str(sockname[0]), int(sockname[1])

    async def close(self, grace: float = 5.0) -> None:
        """Stop listening, close idle keep-alive connections at once, let requests in
        flight finish (answered with ``Connection: close``) for up to ``grace`` seconds,
        then cancel what remains."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        for task, state in list(self._connections.items()):
            if not state.busy:
                task.cancel()
        tasks = list(self._connections)
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # A closed transport releases its socket in a callback of the next loop
            # iteration; let that run so no socket outlives close().
            await asyncio.sleep(0)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if self._closing:
            writer.close()
            return
        state = _ConnState()
        self._connections[task] = state
        try:
            await _Connection(self, reader, writer, state).run()
        except asyncio.CancelledError:
            pass
        finally:
            self._connections.pop(task, None)
            writer.close()
            # close() may cancel us again while we wait here; a connection task must end
            # quietly (asyncio logs a cancelled client_connected_cb task as an error).
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()


@dataclass(slots=True)
class _ConnState:
    busy: bool = False


class _Connection:
    """One client connection: the h11 state machine plus the socket."""

    def __init__(self, server: HttpServer, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, state: _ConnState) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.state = state
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        peer = writer.get_extra_info("peername")
        self.client: tuple[str, int] = (str(peer[0]), int(peer[1])) if peer else ("", 0)

    async def run(self) -> None:
        while True:
            try:
                request = await self._read_request()
            except _Refused as refused:
                await self._send(refused.response, close=True)
                return
            if request is None:
                return
            self.state.busy = True
            try:
                response = await self._dispatch(request)
            except CloseConnection:
                return
            closing = self.server._closing
            await self._send(response, close=closing, head=request.method == "HEAD")
            self.state.busy = False
            if closing or self.h11.our_state is not h11.DONE \
                    or self.h11.their_state is not h11.DONE:
                return
            self.h11.start_next_cycle()

    async def _next_event(self) -> Any:
        """The next h11 event, reading from the socket while h11 needs data."""
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as exc:
                status = exc.error_status_hint
                raise _Refused(_error(HTTPStatus(status))) from None
            if event is not h11.NEED_DATA:
                return event
            try:
                async with asyncio.timeout(self.server.keepalive_timeout):
                    data = await self.reader.read(_READ_SIZE)
            except (TimeoutError, ConnectionError):
                data = b""
            self.h11.receive_data(data)

    async def _read_request(self) -> Request | None:
        event = await self._next_event()
        if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return None
        if not isinstance(event, h11.Request):
            raise _Refused(_error(HTTPStatus.BAD_REQUEST))
        self.state.busy = True
        headers: dict[str, str] = {}
        for name, value in event.headers:
            key = name.decode("latin-1")
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.server.max_body:
            raise _Refused(_error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE))
        if self.h11.they_are_waiting_for_100_continue:
            self.writer.write(self.h11.send(h11.InformationalResponse(
                status_code=100, headers=[_SERVER_HEADER])) or b"")
        body = bytearray()
        while True:
            part = await self._next_event()
            if isinstance(part, h11.Data):
                body += part.data
                if len(body) > self.server.max_body:
                    raise _Refused(_error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE))
            elif isinstance(part, h11.EndOfMessage):
                break
            else:  # ConnectionClosed mid-body
                return None
        target = event.target.decode("latin-1")
        raw_path, _, raw_query = target.partition("?")
        return Request(
            method=event.method.decode("ascii").upper(),
            path=unquote(raw_path),
            query=parse_qs(raw_query, keep_blank_values=True),
            headers=headers,
            body=bytes(body),
            client=self.client,
        )

    async def _dispatch(self, request: Request) -> Response:
        route = self.server.router.resolve(request.method, request.path)
        if isinstance(route, Response):
            return route
        try:
            return await route(request)
        except CloseConnection:
            raise
        except Exception:
            _log.exception("http.handler_failed", method=request.method, path=request.path,
                           client=f"{request.client[0]}:{request.client[1]}")
            return _error(HTTPStatus.INTERNAL_SERVER_ERROR)

    async def _send(self, response: Response, *, close: bool, head: bool = False) -> None:
        if self.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        headers = [
            _SERVER_HEADER,
            (b"content-type", response.content_type.encode("latin-1")),
            (b"content-length", str(len(response.body)).encode()),
        ]
        headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
        if close:
            headers.append((b"connection", b"close"))
        try:
            out = self.h11.send(h11.Response(status_code=response.status, headers=headers))
            if response.body and not head:
                out = (out or b"") + (self.h11.send(h11.Data(data=response.body)) or b"")
            out = (out or b"") + (self.h11.send(h11.EndOfMessage()) or b"")
        except h11.LocalProtocolError:
            _log.exception("http.response_invalid", status=response.status)
            return
        self.writer.write(out)
        with contextlib.suppress(ConnectionError):
            await self.writer.drain()
