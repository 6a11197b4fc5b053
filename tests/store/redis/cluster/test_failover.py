"""A master of the Redis Cluster is killed (kill -9) under load; its replica is promoted
(cluster-node-timeout 1 s); with ``min_replicas=1`` — the prescription of
docs/cluster.md (Durability) — every message acknowledged before, during and after the
failover is found afterwards by a new store. Writes to the dead master's partitions are
refused as StoreUnavailable (ESME_RMSGQFUL at the SMPP side) until the promoted replica
serves them and the killed node is back as its replica, never acknowledged and lost."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.crc import key_slot

from smppbridge.core.errors import StoreUnavailable
from smppbridge.store.redis.sharded import ShardedRedisStore
from tests.store.redis.cluster.support import DEADLINE, LocalCluster
from tests.store.samples import sample_message

#: messages acknowledged before the kill, and after the recovery
BEFORE, AFTER = 300, 300


@pytest.fixture
async def own_cluster(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    """A cluster of this test's own (it kills a master of it)."""
    c = LocalCluster(tmp_path / "cluster")
    try:
        await c.start()
        await c.wait_replicated()
        yield c
    finally:
        c.stop()


async def test_acknowledged_messages_survive_a_master_failover(
        own_cluster: LocalCluster) -> None:
    c = own_cluster
    store = ShardedRedisStore(c.url_with(partitions=6, min_replicas=1, replica_timeout=2.0),
                              prefix="fo:", node_id="loader", connect_timeout=0.3,
                              refresh_interval=0.5)
    await store.open()
    acked: set[str] = set()
    refused = 0
    numbers = itertools.count()
    stop = asyncio.Event()

    async def loader() -> None:
        nonlocal refused
        while not stop.is_set():
            batch = [sample_message(next(numbers)) for _ in range(20)]
            try:
                verdicts = await store.accept_many(batch)
            except StoreUnavailable:
                refused += len(batch)
                await asyncio.sleep(0.01)
                continue
            for m, v in zip(batch, verdicts, strict=True):
                if v is None:
                    acked.add(m.message_id)
                else:
                    assert isinstance(v, StoreUnavailable), v
                    refused += 1

    async def until(what: str, probe: object) -> None:
        deadline = time.monotonic() + DEADLINE
        while not probe():  # type: ignore[operator]
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.02)

    tasks = [asyncio.create_task(loader()) for _ in range(4)]
    try:
        await until("the first acks", lambda: len(acked) >= BEFORE)
        # the master of partition 0's slot: the home of the ids and the registry too
        slot = key_slot(store.home.prefix.encode())
        masters = await c.master_ports()
        (port,) = [p for p, ranges in masters.items()
                   if any(lo <= slot <= hi for lo, hi in ranges)]
        victim = c.node(port)
        victim.kill()
        await c.wait_promoted(port, slot)
        # the killed node comes back as the new master's replica: WAIT 1 holds again
        await victim.start(c.node_timeout_ms)
        await c.wait_replicated()
        mark = len(acked)
        await until("acks after the recovery", lambda: len(acked) >= mark + AFTER)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await store.close()
    assert refused > 0  # the dead master's partitions refused writes meanwhile
    fresh = ShardedRedisStore(c.url_with(partitions=6), prefix="fo:", node_id="checker")
    await fresh.open()
    try:
        found = await asyncio.gather(*(fresh.find(mid) for mid in sorted(acked)))
    finally:
        await fresh.close()
    lost = [mid for mid, f in zip(sorted(acked), found, strict=True) if f is None]
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged messages lost: {lost[:10]}"
