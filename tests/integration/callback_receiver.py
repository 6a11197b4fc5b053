"""A real HTTP receiver of status callbacks for the integration tests: a Starlette app
served by uvicorn on 127.0.0.1 (an ephemeral port) in the test's loop. It checks the
signature of every callback (as docs/http.md tells a receiver to), answers as told
(``ok`` 200, ``fail`` 503, ``hang`` no answer until told otherwise) and records what
arrived."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class Callback:
    """One request that reached the receiver."""

    path: str
    method: str
    fields: dict[str, Any]
    signed: bool | None  # None: unsigned
    answered: int
    host: str = ""
    #: the receiver's epoch when the request arrived (a test moves it on at a kill)
    epoch: int = 0
    at: float = field(default_factory=time.monotonic)


async def _endless() -> AsyncIterator[bytes]:
    chunk = b"x" * 65536
    while True:
        yield chunk
        await asyncio.sleep(0)


class CallbackReceiver:
    def __init__(self, secret: str = "") -> None:
        self.secret = secret
        self.mode = "ok"
        self.calls: list[Callback] = []
        #: requests that arrived (answered or not yet)
        self.arrivals = 0
        self.epoch = 0
        #: path -> (status, body, headers) answered there whatever the mode; body None:
        #: an answer that never ends
        self.routes: dict[str, tuple[int, bytes | None, dict[str, str]]] = {}
        self._arrived = asyncio.Event()
        self._released = asyncio.Event()
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.port = 0

    def url(self, path: str = "cb") -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        if mode != "hang":
            self._released.set()
            self._released = asyncio.Event()

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        raw_query = request.scope.get("query_string", b"")
        signed_part = body if request.method == "POST" else raw_query
        signed: bool | None = None
        ts = request.headers.get("x-smppbridge-timestamp")
        sig = request.headers.get("x-smppbridge-signature")
        if ts is not None and sig is not None:
            mac = hmac.new(self.secret.encode(), ts.encode() + b"." + signed_part,
                           hashlib.sha256).hexdigest()
            signed = hmac.compare_digest("v1=" + mac, sig)
        if request.headers.get("content-type", "").startswith("application/json"):
            fields: dict[str, Any] = json.loads(body or b"{}")
        elif request.method == "POST":
            fields = dict(urllib.parse.parse_qsl(body.decode()))
        else:
            fields = dict(urllib.parse.parse_qsl(raw_query.decode()))
        self.arrivals += 1
        epoch = self.epoch
        self._arrived.set()
        host = request.headers.get("host", "")
        fixed = self.routes.get(request.url.path)
        if fixed is not None:
            status, content, headers = fixed
            self.calls.append(Callback(request.url.path, request.method, fields, signed,
                                       status, host, epoch))
            if content is None:
                return StreamingResponse(_endless(), status_code=status, headers=headers)
            return PlainTextResponse(content, status_code=status, headers=headers)
        while self.mode == "hang":
            await self._released.wait()
        status = 200 if self.mode == "ok" else 503
        self.calls.append(Callback(request.url.path, request.method, fields, signed, status,
                                   host, epoch))
        self._arrived.set()
        return PlainTextResponse("ACK/Jasmin" if status == 200 else "down", status_code=status)

    async def start(self, port: int = 0, **ssl: str) -> None:
        app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["GET", "POST"])])
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                lifespan="off", access_log=False, **ssl)  # type: ignore[arg-type]
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.set_mode("ok")
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            self._server.force_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._task, 10)

    def delivered(self, pred: Callable[[Callback], bool] = lambda c: True) -> list[Callback]:
        """Callbacks answered 200 that match ``pred``."""
        return [c for c in self.calls if c.answered == 200 and pred(c)]

    async def wait(self, pred: Callable[[CallbackReceiver], bool], timeout: float) -> bool:
        """Until ``pred(self)`` holds (woken by each callback), at most ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while not pred(self):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)
        return True
