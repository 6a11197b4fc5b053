"""Security tests: fixtures that start nodes and open clients (closing everything at
teardown), and the ``slow`` switch: slow tests (long fuzz profiles) run only when asked
for with ``-m slow``, as the README promises for the whole suite."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from smppbridge.app import Node
from tests.security.net import Client, Watchdog, start_node

_HERE = Path(__file__).parent

StartNode = Callable[[str], Awaitable[Node]]
Connect = Callable[..., Awaitable[Client]]
StartWatchdog = Callable[[tuple[str, int]], Awaitable[Watchdog]]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow")
    for item in items:
        if "slow" in item.keywords and _HERE in item.path.parents:
            item.add_marker(skip)


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
