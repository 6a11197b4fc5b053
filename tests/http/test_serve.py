"""uvicorn inside the running loop (smppbridge.http.serve): a real listener on
127.0.0.1, the limits of HttpLimits, graceful close."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from smppbridge.http.serve import HttpLimits, ServedApp, _listen, serve_app

LIMITS = HttpLimits(max_body=1000, max_header=4096, keepalive_timeout=1.0,
                    max_connections=50, shutdown_grace=1.0)


async def _echo(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({"method": request.method, "length": len(body),
                         "query": request.query_params.getlist("a")})


gate = asyncio.Event()


async def _slow(_: Request) -> PlainTextResponse:
    await gate.wait()
    return PlainTextResponse("done")


APP = Starlette(routes=[Route("/echo", _echo, methods=["GET", "POST"]),
                        Route("/slow", _slow)])


@pytest.fixture
async def served() -> AsyncIterator[ServedApp]:
    app = await serve_app(APP, "127.0.0.1", 0, limits=LIMITS)
    yield app
    await app.close()


@pytest.fixture
async def client(served: ServedApp) -> AsyncIterator[httpx.AsyncClient]:
    host, port = served.address
    async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as c:
        yield c


async def _raw(served: ServedApp, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(*served.address)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), 5)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def test_port_zero_gives_the_bound_port(served: ServedApp,
                                              client: httpx.AsyncClient) -> None:
    """Port 0 binds an ephemeral port; address is the real one, and it answers."""
    assert served.address[1] > 0
    r = await client.get("/echo", params=[("a", "1"), ("a", "2")])
    assert r.json() == {"method": "GET", "length": 0, "query": ["1", "2"]}


def test_listening_socket_is_tcp_so_nagle_is_off() -> None:
    """The socket handed to uvicorn says IPPROTO_TCP: asyncio then sets TCP_NODELAY on
    each connection (with protocol 0 it did not, and every keep-alive response waited
    for the client's delayed ACK, ~44 ms)."""
    sock = _listen("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()


async def test_declared_body_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    """A Content-Length over max_body is refused with 413 and a JSON error."""
    r = await client.post("/echo", content=b"x" * 1001)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "body_too_large"
    assert (await client.post("/echo", content=b"x" * 1000)).json()["length"] == 1000


async def test_chunked_body_over_the_limit_is_413(served: ServedApp) -> None:
    """A chunked body that grows past max_body is answered 413 without being read
    whole, and the connection is closed."""
    chunk = b"3e8\r\n" + b"x" * 1000 + b"\r\n"
    got = await _raw(served, b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
                             b"\r\n\r\n" + chunk + chunk + b"0\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 413")


async def test_a_head_over_the_limit_is_refused(served: ServedApp) -> None:
    """An unfinished request head that grows past max_header is not buffered further:
    the server answers 400 and closes (uvicorn reports it as an invalid request)."""
    got = await _raw(served, b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8000)
    assert got.startswith(b"HTTP/1.1 400")
    assert b"connection: close" in got.lower()


async def test_malformed_request_is_400(served: ServedApp) -> None:
    """Bytes that are not HTTP/1.1 get 400."""
    got = await _raw(served, b"NOT HTTP AT ALL\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 400")


async def test_close_lets_a_request_in_flight_finish() -> None:
    """close() stops listening and lets a request being handled finish."""
    gate.clear()
    app = await serve_app(APP, "127.0.0.1", 0, limits=LIMITS)
    host, port = app.address
    async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as c:
        slow = asyncio.create_task(c.get("/slow"))
        await asyncio.sleep(0)  # let the request go out
        while not slow.done() and not await _in_progress(c):
            await asyncio.sleep(0.01)
        closing = asyncio.create_task(app.close())
        gate.set()
        r = await slow
        await closing
    assert r.text == "done"
    with pytest.raises(httpx.TransportError):
        async with httpx.AsyncClient() as c2:
            await c2.get(f"http://{host}:{port}/echo")


async def _in_progress(_: httpx.AsyncClient) -> bool:
    # The slow handler is running once the gate has a waiter.
    return bool(gate._waiters)  # type: ignore[attr-defined]


GUARDED = HttpLimits(max_body=1000, header_timeout=0.3, max_connections=50,
                     max_connections_per_ip=5, keepalive_timeout=5.0, shutdown_grace=1.0)


async def test_a_slow_request_head_is_cut_off_while_others_are_served() -> None:
    """A client that sends its headers a byte at a time, and one that connects and sends
    nothing, are closed after header_timeout; another client is answered meanwhile."""
    app = await serve_app(APP, "127.0.0.1", 0, limits=GUARDED)
    try:
        silent_r, silent_w = await asyncio.open_connection(*app.address)
        slow_r, slow_w = await asyncio.open_connection(*app.address)
        head = b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100

        async def trickle() -> None:
            for byte in head:
                if slow_w.is_closing():
                    return
                slow_w.write(bytes([byte]))
                with contextlib.suppress(ConnectionError):
                    await slow_w.drain()
                await asyncio.sleep(0.02)  # the client's own pace, the thing under test

        feeder = asyncio.create_task(trickle())
        host, port = app.address
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as c:
            assert (await c.get("/echo")).status_code == 200
        assert await asyncio.wait_for(silent_r.read(), 3) == b""
        assert await asyncio.wait_for(slow_r.read(), 3) == b""
        feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeder
        for w in (silent_w, slow_w):
            w.close()
            with contextlib.suppress(ConnectionError):
                await w.wait_closed()
    finally:
        await app.close()


async def test_one_client_cannot_hold_every_connection() -> None:
    """A client over max_connections_per_ip has its further connections closed at once;
    the connections it holds do not make the server refuse others (no 503)."""
    app = await serve_app(APP, "127.0.0.1", 0, limits=GUARDED)
    held: list[asyncio.StreamWriter] = []
    try:
        for _ in range(GUARDED.max_connections_per_ip):
            _, w = await asyncio.open_connection(*app.address)
            held.append(w)
        extra_r, extra_w = await asyncio.open_connection(*app.address)
        held.append(extra_w)
        assert await asyncio.wait_for(extra_r.read(), 3) == b""
        # the held ones are idle (no head): the timeout frees them, and a request
        # from this address is served again
        host, port = app.address
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as c:
            deadline = asyncio.get_running_loop().time() + 5
            while True:
                try:
                    r = await c.get("/echo")
                    break
                except httpx.TransportError:
                    assert asyncio.get_running_loop().time() < deadline
                    await asyncio.sleep(0.05)
            assert r.status_code == 200
    finally:
        for w in held:
            w.close()
            with contextlib.suppress(ConnectionError):
                await w.wait_closed()
        await app.close()
