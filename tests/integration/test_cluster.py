"""Cluster mode: several bridge processes sharing one Redis behave as one SMSC.

Each test starts a private redis-server (AOF, fsync always), two or three
`smppbridge serve` processes on loopback, and the provider simulator in this process
(mysmpp XML API over HTTP)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from smppbridge.providers.simulator.settings import SimConfig
from smppbridge.simulator.app import Simulator
from smppbridge.smpp import pdu as P
from smppbridge.smpp.constants import CommandStatus
from smppbridge.smpp.receipts import parse_receipt
from tests.integration.cluster import Bridge, Esme, RedisServer, free_port

S = CommandStatus


ADMIN = "cluster-admin-token-1234"


def _config(port: int, redis_url: str, sim_port: int, *, claim_after: float = 30.0,
            account_extra: str = "", http_port: int | None = None) -> str:
    http = (f'listen = "127.0.0.1:{http_port}"\nadmin_tokens = ["{ADMIN}"]'
            if http_port else 'listen = ""')
    return f"""
[smpp]
listen = "127.0.0.1:{port}"
window = 300
shutdown_grace = 2.0
[http]
{http}
[store]
url = "{redis_url}?prefix=c:&claim_after={claim_after}"
[log]
level = "warning"
format = "json"
[[accounts]]
system_id = "acme"
password = "pw"
max_binds = 20
window = 300
providers = ["mysmpp"]
{account_extra}
[[providers]]
name = "mysmpp"
type = "mysmpp-xml"
url = "http://127.0.0.1:{sim_port}/xml"
status_url = "http://127.0.0.1:{sim_port}/xml/state.php"
login = "user"
password = "pass"
poll_interval = 0.2
"""


class Cluster:
    def __init__(self, tmp: Path, redis: RedisServer, sim: Simulator, sim_port: int) -> None:
        self.tmp = tmp
        self.redis = redis
        self.sim = sim
        self.sim_port = sim_port
        self.nodes: list[Bridge] = []
        self.esmes: list[Esme] = []

    async def node(self, name: str, **kw: object) -> Bridge:
        port = free_port()
        bridge = Bridge(self.tmp, name, _config(port, self.redis.url, self.sim_port,
                                                **kw), port)  # type: ignore[arg-type]
        await bridge.start()
        self.nodes.append(bridge)
        return bridge

    async def api_node(self, name: str) -> tuple[Bridge, str]:
        """A node with its HTTP side on: (the node, its API's base URL)."""
        http_port = free_port()
        bridge = await self.node(name, http_port=http_port)
        base = f"http://127.0.0.1:{http_port}"
        deadline = time.monotonic() + 15
        async with httpx.AsyncClient() as client:
            while True:
                try:
                    if (await client.get(f"{base}/readyz")).status_code == 200:
                        return bridge, base
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, bridge.log.read_text()[-3000:]
                await asyncio.sleep(0.05)

    async def esme(self, node: Bridge, cls: type[P.Pdu] = P.BindTransceiver) -> Esme:
        e = Esme()
        self.esmes.append(e)
        assert await e.bind(node.port, "acme", "pw", cls) == S.ESME_ROK
        return e

    def at_provider(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for m in self.sim.engine.messages.values():
            counts[m.client_id] = counts.get(m.client_id, 0) + 1
        return counts

    async def wait_at_provider(self, ids: set[str], timeout: float = 60.0) -> dict[str, int]:
        deadline = time.monotonic() + timeout
        while not ids <= self.at_provider().keys() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        return self.at_provider()


@contextlib.asynccontextmanager
async def running_cluster(tmp_path: Path, redis: RedisServer) -> AsyncIterator[Cluster]:
    """Bridges on ``redis`` (started already) with the simulator; all stopped after,
    ``redis`` too."""
    sim = Simulator(SimConfig(login="user", password="pass", deliver_after=0.3))
    _, sim_port = await sim.start("127.0.0.1", 0)
    c = Cluster(tmp_path, redis, sim, sim_port)
    try:
        yield c
    finally:
        for e in c.esmes:
            await e.close()
        # Off the event loop: a stopping bridge may still be talking to the simulator,
        # which runs on this loop.
        await asyncio.gather(*(asyncio.to_thread(n.stop) for n in c.nodes))
        await sim.aclose()
        redis.stop()


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    redis = RedisServer(tmp_path / "redis")
    await redis.start()
    async with running_cluster(tmp_path, redis) as c:
        yield c


async def test_flood_rules_hold_across_nodes(cluster: Cluster) -> None:
    """The duplicate and subscriber-flood rules count messages from every node."""
    a = await cluster.node("a", account_extra="flood = { flood_limit = 3 }")
    b = await cluster.node("b", account_extra="flood = { flood_limit = 3 }")
    ea, eb = await cluster.esme(a), await cluster.esme(b)
    assert (await ea.submit("79009", "same text")).command_status == S.ESME_ROK
    assert (await eb.submit("79009", "same text")).command_status == S.VENDOR_DUPLICATE
    # subscriber flood (limit 3 here): attempts to 79001 within 30 s of each other,
    # alternating between the nodes
    assert (await ea.submit("79001", "one")).command_status == S.ESME_ROK
    assert (await eb.submit("79001", "two")).command_status == S.ESME_ROK
    assert (await ea.submit("79001", "three")).command_status == S.ESME_ROK
    assert (await eb.submit("79001", "four")).command_status == S.VENDOR_SUBSCRIBER_FLOOD
    assert (await ea.submit("79002", "other number")).command_status == S.ESME_ROK


async def test_receipt_reaches_the_receiver_on_another_node(cluster: Cluster) -> None:
    """Submitted on node A, the receipt is delivered to the receiver bound on node B; when
    that receiver moves to node A, later receipts follow it there."""
    a = await cluster.node("a")
    b = await cluster.node("b")
    tx = await cluster.esme(a, P.BindTransmitter)
    rx_b = await cluster.esme(b, P.BindReceiver)
    first = await tx.submit("79003", "to b")
    assert first.command_status == S.ESME_ROK
    await asyncio.wait_for(rx_b.receipt_event.wait(), 30)
    got = parse_receipt(rx_b.receipts[0].short_message.decode())
    assert (got["id"], got["stat"]) == (first.message_id, "DELIVRD")  # type: ignore[attr-defined]
    await rx_b.close()
    second = await tx.submit("79004", "to a later")
    assert second.command_status == S.ESME_ROK
    rx_a = await cluster.esme(a, P.BindReceiver)
    await asyncio.wait_for(rx_a.receipt_event.wait(), 30)
    got = parse_receipt(rx_a.receipts[0].short_message.decode())
    assert got["id"] == second.message_id  # type: ignore[attr-defined]


async def _load(esme: Esme, count: int, window: int, tag: str, prefix: str = "7901",
                stop_after: int | None = None,
                stored_unacked: set[str] | None = None) -> set[str]:
    """Submit ``count`` distinct messages with a window; return the acked ids.
    ESME_RMSGQFUL / ESME_RTHROTTLED are retried. A retry refused as a duplicate means
    the earlier attempt was stored although its answer was lost in the outage: its
    destination goes into ``stored_unacked``. Stops early after ``stop_after`` acks or
    when the link drops."""
    acked: set[str] = set()
    unanswered: list[int] = []
    slots = asyncio.Semaphore(window)

    async def one(i: int) -> None:
        async with slots:
            retried = False
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not esme.closed.is_set():
                if stop_after is not None and len(acked) >= stop_after:
                    return
                try:
                    # generous: in an outage the store's own retries run first
                    resp = await asyncio.wait_for(esme.submit(f"{prefix}{i:07d}", f"{tag} {i}"),
                                                  45)
                except (ConnectionError, TimeoutError):
                    unanswered.append(i)
                    return
                if resp.command_status == S.ESME_ROK:
                    acked.add(resp.message_id)  # type: ignore[attr-defined]
                    return
                if resp.command_status == S.VENDOR_DUPLICATE and retried \
                        and stored_unacked is not None:
                    stored_unacked.add(f"{prefix}{i:07d}")
                    return
                assert resp.command_status in (S.ESME_RMSGQFUL, S.ESME_RTHROTTLED), resp
                retried = True
                await asyncio.sleep(0.05)

    await asyncio.gather(*(one(i) for i in range(count)))
    if not esme.closed.is_set():
        assert not unanswered, f"submits never answered: {unanswered[:10]}"
    return acked


async def test_kill9_of_a_node_with_pending_work(cluster: Cluster) -> None:
    """Node A is killed with messages taken but not finished (the provider is slow); node
    B claims them after claim_after and sends them: every acked message reaches the
    provider exactly once."""
    cluster.sim.engine.control({"latency": 1.0})
    a = await cluster.node("a", claim_after=1.0)
    b = await cluster.node("b", claim_after=1.0)
    esme = await cluster.esme(a)
    acked = await _load(esme, 300, 100, "kill")
    assert len(acked) == 300
    await asyncio.to_thread(a.kill)
    counts = await cluster.wait_at_provider(acked)
    missing = acked - counts.keys()
    assert not missing, f"{len(missing)} acked messages never reached the provider"
    assert max(counts.values()) == 1
    assert b.proc is not None
    assert b.proc.poll() is None


async def test_redis_restart_mid_load_loses_nothing(cluster: Cluster) -> None:
    """Redis stops in the middle of a load and comes back: submits in the gap are refused
    with ESME_RMSGQFUL (temporary), sessions stay up, and every acked message reaches
    the provider exactly once."""
    a = await cluster.node("a")
    b = await cluster.node("b")
    ea, eb = await cluster.esme(a), await cluster.esme(b)
    unacked: set[str] = set()
    # distinct destinations per load: a phone in `unacked` names one message
    load = asyncio.gather(_load(ea, 400, 50, "ra", "7901", stored_unacked=unacked),
                          _load(eb, 400, 50, "rb", "7902", stored_unacked=unacked))
    deadline = time.monotonic() + 30
    while len(cluster.sim.engine.messages) < 50 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)  # the load is under way: messages reach the provider
    cluster.redis.stop()
    await asyncio.sleep(1.0)  # how long Redis stays down (the scenario, not a wait)
    await cluster.redis.start()
    acked_a, acked_b = await asyncio.wait_for(load, 90)
    acked = acked_a | acked_b
    assert len(acked) + len(unacked) == 800
    assert not ea.closed.is_set(), "a session was dropped"
    assert not eb.closed.is_set(), "a session was dropped"
    counts = await cluster.wait_at_provider(acked)
    missing = acked - counts.keys()
    assert not missing, f"{len(missing)} acked messages never reached the provider"
    assert max(counts.values()) == 1
    # a message stored in the outage whose answer was lost is still sent, once (after
    # the sender's retry back-off, which the outage may have stretched)
    deadline = time.monotonic() + 90
    phones: dict[str, int] = {}
    while time.monotonic() < deadline:
        phones = {}
        for m in cluster.sim.engine.messages.values():
            phones[m.phone] = phones.get(m.phone, 0) + 1
        if all(phones.get(p, 0) >= 1 for p in unacked):
            break
        await asyncio.sleep(0.1)
    assert all(phones.get(p, 0) == 1 for p in unacked), {p: phones.get(p, 0) for p in unacked}


async def test_the_api_of_any_node_shows_the_whole_cluster(cluster: Cluster) -> None:
    """A message submitted on node 1 is found through node 2's API (by id and by
    destination), and once its receipt is out its whole timeline too; either node lists
    the binds of both; node 2 can unbind a bind that node 1 holds; /stats has one series
    per live node."""
    one, api1 = await cluster.api_node("api1")
    _two, api2 = await cluster.api_node("api2")
    esme = await cluster.esme(one)
    resp = await asyncio.wait_for(esme.submit("79009990001", "across the cluster"), 10)
    assert resp.command_status == S.ESME_ROK
    message_id = resp.message_id  # type: ignore[attr-defined]
    headers = {"authorization": f"Bearer {ADMIN}"}
    async with httpx.AsyncClient(headers=headers, timeout=5) as http:
        found = await http.get(f"{api2}/api/v1/messages/{message_id}")
        assert found.status_code == 200, found.text
        assert found.json()["text"] == "across the cluster"
        listed = (await http.get(f"{api2}/api/v1/messages",
                                 params={"to": "79009990001"})).json()["items"]
        assert [m["id"] for m in listed] == [message_id]

        async def binds_seen_from(api: str) -> list[dict[str, object]]:
            deadline = time.monotonic() + 10
            while True:
                binds = (await http.get(f"{api}/api/v1/binds")).json()
                if binds:
                    return list(binds)
                assert time.monotonic() < deadline, "no bind listed"
                await asyncio.sleep(0.1)

        from_two = await binds_seen_from(api2)
        from_one = await binds_seen_from(api1)
        assert [b["id"] for b in from_two] == [b["id"] for b in from_one]
        assert from_two[0]["system_id"] == "acme"
        node_of_bind = from_two[0]["node"]
        stats = (await http.get(f"{api2}/api/v1/stats", params={"minutes": 1})).json()
        assert len(stats["nodes"]) == 2
        assert node_of_bind in {n["node"] for n in stats["nodes"]}

        await asyncio.wait_for(esme.receipt_event.wait(), 20)
        deadline = time.monotonic() + 10
        while True:
            detail = (await http.get(f"{api2}/api/v1/messages/{message_id}")).json()
            if detail["receipts"] and detail["receipts"][0]["state"] == "delivered":
                break
            assert time.monotonic() < deadline, detail
            await asyncio.sleep(0.1)
        assert (detail["state"], detail["stat"]) == ("final", "DELIVRD")
        assert detail["timeline"][0]["state"] == "queued"
        assert detail["timeline"][-1]["state"] == "final"
        assert any(e["state"] == "sent" for e in detail["timeline"])

        r = await http.delete(f"{api2}/api/v1/binds/{from_two[0]['id']}")
        assert r.status_code == 202, r.text
        await asyncio.wait_for(esme.closed.wait(), 10)
