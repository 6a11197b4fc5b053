"""Faults that used to stop the work without saying so, made real: a full disk under the
SQLite store, a Redis out of memory, and HTTP clients that hold connections. Each
asserts the answers (ESME_RMSGQFUL, never ESME_RSYSERR or silence), readiness, a
couple of log lines for the whole episode, and that every acknowledged message reaches
the provider exactly once after the room comes back, without a restart."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from smppbridge.config import parse_config
from smppbridge.node.node import Node
from smppbridge.providers.simulator.provider import SimulatorProvider
from smppbridge.smpp import pdu as P
from smppbridge.smpp.constants import CommandStatus
from tests.integration.cluster import RedisServer
from tests.integration.conftest import OpenPeer, Peer

S = CommandStatus
#: events that mean a worker died or a message became a traceback
_CRASHES = {"send.crashed", "task.crashed", "status.poll_crashed", "receipts.worker_crashed",
            "submit.failed", "store.batch_failed"}


def _config(store_url: str) -> str:
    return f"""
[smpp]
listen = "127.0.0.1:0"
window = 50
shutdown_grace = 2.0
[http]
listen = "127.0.0.1:0"
[store]
url = "{store_url}"
[[accounts]]
system_id = "acme"
password = "pw"
window = 50
providers = ["sim"]
flood = {{ enabled = false }}
[[providers]]
name = "sim"
type = "simulator"
poll_interval = 0.2
simulator = {{ deliver_after = 0.2 }}
"""


@pytest.fixture
async def make_node() -> AsyncIterator[Callable[[str], Awaitable[Node]]]:
    nodes: list[Node] = []

    async def make(store_url: str) -> Node:
        node = Node(parse_config(_config(store_url), env={}))
        await node.start()
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        await asyncio.wait_for(node.stop(), 15)


async def _load(peer: Peer, total: int, window: int = 50) -> list[P.Pdu]:
    """``total`` submits with ``window`` outstanding; every response, in order of
    arrival (enquire_link and receipts answered on the way)."""
    answers: list[P.Pdu] = []
    sent = 0
    outstanding = 0
    while len(answers) < total:
        while outstanding < window and sent < total:
            peer.send(P.SubmitSm(sequence_number=peer.next_seq(), source_addr="Shop",
                                 destination_addr=f"7901{sent:07d}",
                                 short_message=f"fault {sent}".encode()))
            sent += 1
            outstanding += 1
        pdu = await peer.read(10)
        if isinstance(pdu, P.SubmitSmResp):
            answers.append(pdu)
            outstanding -= 1
        elif isinstance(pdu, P.EnquireLink):
            peer.send(P.EnquireLinkResp(sequence_number=pdu.sequence_number))
    return answers


async def _ready(node: Node) -> tuple[int, dict[str, Any]]:
    assert node.http_address is not None
    host, port = node.http_address
    async with httpx.AsyncClient() as client:
        r = await client.get(f"http://{host}:{port}/readyz", timeout=10)
    return r.status_code, r.json()


def _at_provider(node: Node) -> dict[str, int]:
    """How many messages the simulator holds for each of our message ids."""
    sim = node.providers["sim"]
    assert isinstance(sim, SimulatorProvider)
    counts: dict[str, int] = {}
    for m in sim.engine.messages.values():
        counts[m.our_id] = counts.get(m.our_id, 0) + 1
    return counts


async def _until(probe: Callable[[], Awaitable[bool]], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await probe():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def _full_then_room(node: Node, open_peer: OpenPeer, fill: Callable[[], Awaitable[None]],
                          room: Callable[[], Awaitable[None]], kind: str) -> None:
    """The walk both stores share: load until the store refuses, check the answers,
    readiness and logs, give room, check that everything acked is sent once."""
    peer = await open_peer(node.smpp.addresses["smpp"])
    assert (await peer.bind(system_id="acme", password="pw")).command_status == S.ESME_ROK
    with capture_logs() as logs:
        await fill()
        answers = await _load(peer, 3000)
        statuses = [a.command_status for a in answers]
        acked = {a.message_id for a in answers if a.command_status == S.ESME_ROK}
        assert len(answers) == 3000  # every PDU got an answer
        assert set(statuses) <= {S.ESME_ROK, S.ESME_RMSGQFUL}, set(statuses)
        assert acked, "nothing was acknowledged before the store filled"
        assert statuses.count(S.ESME_RMSGQFUL) > 0, "the store never refused"
        code, body = await _ready(node)
        assert code == 503
        assert body["checks"]["store"] is False
        assert kind in body["store_error"]
        await room()

        async def recovered() -> bool:
            return (await _ready(node))[0] == 200

        await _until(recovered, "the store to accept writes again", 20)
        # work resumes by itself: every acked message reaches the provider once
        async def all_sent() -> bool:
            return acked <= _at_provider(node).keys()

        await _until(all_sent, "every acked message at the provider", 60)
        more = await _load(peer, 100)
        assert {a.command_status for a in more} == {S.ESME_ROK}
    counts = _at_provider(node)
    assert max(counts.values()) == 1, "a message reached the provider twice"
    events = [e["event"] for e in logs]
    assert events.count("store.failing") == 1, events.count("store.failing")
    assert events.count("store.recovered") == 1
    assert not _CRASHES & set(events), _CRASHES & set(events)
    assert not [e for e in logs if e.get("exc_info")], "a traceback was logged"


async def test_full_disk_is_msgqfull_not_ready_and_recovers_without_restart(
        tmp_path: Path, make_node: Callable[[str], Awaitable[Node]],
        open_peer: OpenPeer) -> None:
    """SQLite on a file capped a little above its size (PRAGMA max_page_count), 3,000
    submits at W=50: acks, then ESME_RMSGQFUL (never ESME_RSYSERR, every PDU answered),
    /readyz 503 naming disk_full, one log line for the episode's start and one for its
    end; the cap lifted, the node is ready again and every acked message reaches the
    provider exactly once, with no restart."""
    node = await make_node(f"sqlite:///{tmp_path}/full.db")
    store = node.store

    async def fill() -> None:
        await store.limit_size(await store.page_count() + 40)  # type: ignore[attr-defined]

    async def room() -> None:
        await store.limit_size(None)  # type: ignore[attr-defined]

    await _full_then_room(node, open_peer, fill, room, "disk_full")


@pytest.fixture
async def small_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    await server.start()
    yield server
    server.stop()


async def test_redis_out_of_memory_is_msgqfull_and_recovers_without_restart(
        small_redis: RedisServer, make_node: Callable[[str], Awaitable[Node]],
        open_peer: OpenPeer) -> None:
    """A Redis with maxmemory and noeviction filled under load: the same walk as the
    full disk (ESME_RMSGQFUL, /readyz 503 naming out_of_memory, one log line each way);
    maxmemory raised, work resumes and every acked message is sent exactly once."""
    node = await make_node(small_redis.url)
    admin = aioredis.Redis.from_url(small_redis.url)
    try:
        async def fill() -> None:
            used = int((await admin.info("memory"))["used_memory"])
            await admin.config_set("maxmemory-policy", "noeviction")
            await admin.config_set("maxmemory", str(used + 2_000_000))

        async def room() -> None:
            await admin.config_set("maxmemory", "0")

        await _full_then_room(node, open_peer, fill, room, "out_of_memory")
    finally:
        await admin.aclose()


async def test_slow_and_idle_http_clients_cannot_hold_the_http_side(
        make_node: Callable[[str], Awaitable[Node]]) -> None:
    """150 connections from one address (127.0.0.2), some sending their headers a byte
    at a time, the rest nothing: /metrics and /readyz keep answering another client
    (127.0.0.1) at once, and the slow connections are closed by the header timeout."""
    node = await make_node("memory://")
    assert node.http_address is not None
    host, port = node.http_address
    writers: list[asyncio.StreamWriter] = []
    readers: list[asyncio.StreamReader] = []
    loop = asyncio.get_running_loop()
    for i in range(150):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.2", 0))
        sock.setblocking(False)
        await loop.sock_connect(sock, (host, port))
        reader, writer = await asyncio.open_connection(sock=sock)
        readers.append(reader)
        writers.append(writer)
        if i % 3 == 0:
            writer.write(b"GET /metrics HTTP/1.1\r\nHo")
    try:
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=5) as c:
            for _ in range(5):
                started = time.monotonic()
                assert (await c.get("/metrics")).status_code == 200
                assert (await c.get("/readyz")).status_code == 200
                assert time.monotonic() - started < 1.0
        closed = await asyncio.gather(*(asyncio.wait_for(r.read(), 20) for r in readers),
                                      return_exceptions=True)
        assert all(c == b"" for c in closed), [c for c in closed if c != b""][:3]
    finally:
        for w in writers:
            w.close()
            with contextlib.suppress(ConnectionError):
                await w.wait_closed()
