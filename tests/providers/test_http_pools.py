"""HttpProvider.post: at most max_connections requests reach httpx, spread over pools of
up to 4 connections (real HTTP on loopback, a server that holds requests until told)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from smppbridge.providers.base import HttpProvider
from smppbridge.providers.settings import parse_provider


class HoldingServer:
    """Answers each HTTP/1.1 request with 200 once ``release`` is set; counts the
    requests being held at once and the connections used."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.held = 0
        self.max_held = 0
        self.connections = 0
        self.answered = 0
        self.reached = asyncio.Condition()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                async with self.reached:
                    self.held += 1
                    self.max_held = max(self.max_held, self.held)
                    self.reached.notify_all()
                await self.release.wait()
                self.held -= 1
                self.answered += 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def wait_held(self, n: int) -> None:
        async with self.reached:
            await self.reached.wait_for(lambda: self.held >= n)


@asynccontextmanager
async def holding_server() -> AsyncIterator[tuple[HoldingServer, str]]:
    state = HoldingServer()
    server = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield state, f"http://127.0.0.1:{port}/send"
    finally:
        state.release.set()
        server.close()
        await server.wait_closed()


def _provider(url: str, max_connections: int) -> HttpProvider:
    settings = parse_provider({"name": "p", "type": "smsfly", "url": url, "key": "k",
                               "max_connections": max_connections})
    return HttpProvider(settings)


async def test_requests_in_flight_never_exceed_max_connections() -> None:
    async with holding_server() as (server, url):
        provider = _provider(url, 6)
        try:
            posts = [asyncio.ensure_future(provider.post(url, b"{}", "application/json"))
                     for _ in range(15)]
            async with asyncio.timeout(10):
                await server.wait_held(6)
                # the other 9 wait in our semaphore, not inside httpx's pool
                assert sum(provider._busy) == 6
                server.release.set()
                responses = await asyncio.gather(*posts)
        finally:
            await provider.aclose()
    assert [r.status_code for r in responses] == [200] * 15
    assert server.max_held == 6
    assert server.connections <= 6


async def test_connections_are_spread_over_pools_of_four() -> None:
    async with holding_server() as (server, url):
        provider = _provider(url, 20)
        try:
            assert len(provider._clients) == 5
            posts = [asyncio.ensure_future(provider.post(url, b"{}", "application/json"))
                     for _ in range(20)]
            async with asyncio.timeout(10):
                await server.wait_held(20)
                # all 20 are held at once: no pool was asked for a fifth connection
                assert provider._busy == [4, 4, 4, 4, 4]
                server.release.set()
                await asyncio.gather(*posts)
        finally:
            await provider.aclose()
    assert server.connections == 20
    assert server.answered == 20


async def test_a_given_client_is_the_only_pool() -> None:
    import httpx

    async with holding_server() as (server, url):
        server.release.set()
        async with httpx.AsyncClient() as client:
            settings = parse_provider({"name": "p", "type": "smsfly", "url": url,
                                       "key": "k"})
            provider = HttpProvider(settings, client=client)
            assert provider._clients == [client]
            response = await provider.post(url, b"{}", "application/json",
                                           {"X-Extra": "1"})
            await provider.aclose()  # not ours: stays open
            assert not client.is_closed
    assert response.status_code == 200
