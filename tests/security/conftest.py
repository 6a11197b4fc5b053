"""Security tests: fixtures that start nodes and open clients (closing everything at
teardown). Slow tests (long fuzz profiles) are deselected by the project's addopts
(``-m 'not slow'``); ``pytest -m slow`` runs them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from smppbridge.node.node import Node
from tests.security.net import Client, Watchdog, start_node

_HERE = Path(__file__).parent

StartNode = Callable[[str], Awaitable[Node]]
Connect = Callable[..., Awaitable[Client]]
StartWatchdog = Callable[[tuple[str, int]], Awaitable[Watchdog]]


@pytest.fixture
async def nodes() -> AsyncIterator[StartNode]:
    """Factory: ``await nodes(node_toml(...))`` → a started Node, stopped at teardown."""
    started: list[Node] = []

    async def start(toml: str) -> Node:
        node = await start_node(toml)
        started.append(node)
        return node

    yield start
    for node in started:
        await asyncio.wait_for(node.stop(), 15)


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """Factory: ``await connect(address, **open_connection_kwargs)`` → a Client, closed
    at teardown."""
    clients: list[Client] = []

    async def open_client(address: tuple[str, int] | None, **kwargs: Any) -> Client:
        client = await Client.connect(address, **kwargs)
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        await client.close()


@pytest.fixture
async def watchdog() -> AsyncIterator[StartWatchdog]:
    """Factory: ``await watchdog(address)`` → a running Watchdog, closed at teardown."""
    dogs: list[Watchdog] = []

    async def start(address: tuple[str, int]) -> Watchdog:
        dog = await Watchdog.start(address)
        dogs.append(dog)
        return dog

    yield start
    for dog in dogs:
        await dog.close()
