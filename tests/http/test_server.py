"""The h11 HTTP server, over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from structlog.testing import capture_logs

from smppbridge.http import HttpServer, Request, Response, Router


async def _echo(request: Request) -> Response:
    return Response.json({
        "method": request.method,
        "path": request.path,
        "query": request.query,
        "headers": request.headers,
        "body": request.body.decode(),
        "client": list(request.client),
    })


async def _boom(request: Request) -> Response:
    raise RuntimeError("handler bug")


def _router() -> Router:
    router = Router()
    router.add("GET", "/echo", _echo)
    router.add("POST", "/echo", _echo)
    router.add("GET", "/boom", _boom)
    router.add_prefix("POST", "/webhooks/", _echo)
    return router


@pytest.fixture
async def server() -> AsyncIterator[tuple[HttpServer, str, int]]:
    srv = HttpServer(_router(), max_body=1000)
    host, port = await srv.start("127.0.0.1", 0)
    try:
        yield srv, host, port
    finally:
        await srv.close()


@pytest.fixture
async def client(server: tuple[HttpServer, str, int]) -> AsyncIterator[httpx.AsyncClient]:
    _, host, port = server
    async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as c:
        yield c


async def _raw(port: int, data: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    return reader, writer


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


async def test_start_returns_the_ephemeral_port(server: tuple[HttpServer, str, int]) -> None:
    """Port 0 binds an ephemeral port and start() returns the real one."""
    _, host, port = server
    assert host == "127.0.0.1"
    assert port > 0


async def test_get_passes_path_query_headers_and_client(client: httpx.AsyncClient) -> None:
    """The handler sees the method, decoded path, repeated query values, lower-case
    header names and the peer address."""
    r = await client.get("/echo", params=[("a", "1"), ("a", "2"), ("b", "")],
                         headers={"X-Thing": "v"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    data = r.json()
    assert data["method"] == "GET"
    assert data["path"] == "/echo"
    assert data["query"] == {"a": ["1", "2"], "b": [""]}
    assert data["headers"]["x-thing"] == "v"
    assert data["client"][0] == "127.0.0.1"


async def test_post_body_is_delivered(client: httpx.AsyncClient) -> None:
    """A Content-Length body reaches the handler whole."""
    r = await client.post("/echo", content=b"hello body")
    assert r.json()["body"] == "hello body"


async def test_prefix_route(client: httpx.AsyncClient) -> None:
    """add_prefix routes every path under the prefix, with the full path kept."""
    r = await client.post("/webhooks/mysmpp", content=b"{}")
    assert r.json()["path"] == "/webhooks/mysmpp"


async def test_unknown_path_is_404(client: httpx.AsyncClient) -> None:
    """A path no route knows is 404."""
    r = await client.get("/nope")
    assert r.status_code == 404


async def test_wrong_method_is_405_with_allow(client: httpx.AsyncClient) -> None:
    """A known path under another method is 405 and lists the allowed methods."""
    r = await client.delete("/echo")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, POST"
    r = await client.get("/webhooks/x")
    assert r.status_code == 405


async def test_handler_error_is_500_logged_and_connection_survives(
        server: tuple[HttpServer, str, int]) -> None:
    """A raising handler becomes 500, is logged as http.handler_failed, and the same
    connection serves the next request."""
    _, _, port = server
    with capture_logs() as logs:
        reader, writer = await _raw(port, b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, _ = await _read_response(reader)
        writer.write(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        status2, _, body = await _read_response(reader)
        writer.close()
        await writer.wait_closed()
    assert status == 500
    assert status2 == 200
    assert json.loads(body)["path"] == "/echo"
    assert [e["event"] for e in logs] == ["http.handler_failed"]
    assert logs[0]["path"] == "/boom"
    assert logs[0]["log_level"] == "error"


async def test_keep_alive_serves_pipelined_requests(server: tuple[HttpServer, str, int]) -> None:
    """Several requests sent back to back on one connection are all answered in order."""
    _, _, port = server
    req = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
    reader, writer = await _raw(port, b"".join(req % (len(b), b) for b in (b"one", b"two")))
    bodies = [json.loads((await _read_response(reader))[2])["body"] for _ in range(2)]
    writer.close()
    await writer.wait_closed()
    assert bodies == ["one", "two"]


async def test_chunked_body_is_supported(server: tuple[HttpServer, str, int]) -> None:
    """A chunked request body is reassembled."""
    _, _, port = server
    reader, writer = await _raw(
        port, b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    status, _, body = await _read_response(reader)
    writer.close()
    await writer.wait_closed()
    assert status == 200
    assert json.loads(body)["body"] == "abcde"


async def test_declared_body_over_limit_is_413(client: httpx.AsyncClient) -> None:
    """A Content-Length over max_body is refused with 413 before the body is read."""
    r = await client.post("/echo", content=b"x" * 1001)
    assert r.status_code == 413
    assert r.headers["connection"] == "close"


async def test_chunked_body_over_limit_is_413(server: tuple[HttpServer, str, int]) -> None:
    """A chunked body that grows past max_body is refused with 413 and the connection closed."""
    _, _, port = server
    chunk = b"3e8\r\n" + b"x" * 1000 + b"\r\n"
    reader, writer = await _raw(
        port, b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
              + chunk + chunk)
    status, headers, _ = await _read_response(reader)
    assert status == 413
    assert headers["connection"] == "close"
    assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()


async def test_malformed_request_is_400_and_closed(server: tuple[HttpServer, str, int]) -> None:
    """Bytes that are not HTTP/1.1 get 400 and the connection is closed."""
    _, _, port = server
    reader, writer = await _raw(port, b"THIS IS NOT HTTP\r\n\r\n")
    status, _, _ = await _read_response(reader)
    assert status == 400
    assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()


async def test_response_helpers() -> None:
    """Response.json is compact UTF-8 JSON; Response.text is UTF-8 text; both keep status."""
    r = Response.json({"a": "é"}, status=201)
    assert (r.status, r.body, r.content_type) == (201, '{"a":"é"}'.encode(), "application/json")
    t = Response.text("ok", status=202)
    assert (t.status, t.body, t.content_type) == (202, b"ok", "text/plain; charset=utf-8")


async def test_close_closes_idle_keep_alive_connections() -> None:
    """close() stops listening and closes a connection idle between requests."""
    srv = HttpServer(_router())
    _, port = await srv.start("127.0.0.1", 0)
    reader, writer = await _raw(port, b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _, _ = await _read_response(reader)
    assert status == 200
    await srv.close()
    assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_close_lets_a_request_in_flight_finish_with_connection_close() -> None:
    """A request being handled when close() starts is answered, with Connection: close."""
    entered = asyncio.Event()
    release = asyncio.Event()

    async def slow(request: Request) -> Response:
        entered.set()
        await release.wait()
        return Response.text("done")

    router = Router()
    router.add("GET", "/slow", slow)
    srv = HttpServer(router)
    _, port = await srv.start("127.0.0.1", 0)
    reader, writer = await _raw(port, b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    await entered.wait()
    closing = asyncio.create_task(srv.close())
    release.set()  # the close task runs first (FIFO), so the handler resumes while closing
    status, headers, body = await _read_response(reader)
    await closing
    writer.close()
    await writer.wait_closed()
    assert (status, body) == (200, b"done")
    assert headers["connection"] == "close"
