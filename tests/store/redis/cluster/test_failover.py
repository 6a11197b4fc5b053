"""A master of the Redis Cluster is killed (kill -9) under load and its replica promoted
(cluster-node-timeout 1 s), with ``min_replicas=1`` — the prescription of
docs/cluster.md (Durability): every message acknowledged before, during and after the
failover is found afterwards by a new store.

Replication is asynchronous, so what makes that hold is that no write is acknowledged
before the replica has it (WAIT). The test shows that mechanism directly: the replica is
stopped (SIGSTOP) for a while before the kill, and not one write to the master's
partitions sent meanwhile is acknowledged (each is refused once WAIT times out: the
ESME gets ESME_RMSGQFUL and retries) while the other masters' partitions go on
acknowledging. (Without WAIT those writes are acknowledged; whether they are then lost
depends on whether the replication stream still sat in the kernel's socket buffers when
the master died — on loopback it usually does, so a loss cannot be provoked reliably.)"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.crc import key_slot

from smppbridge.core.errors import StoreUnavailable
from smppbridge.store.redis.sharded import ShardedRedisStore
from tests.store.redis.cluster.support import LocalCluster, until
from tests.store.samples import sample_message

#: messages acknowledged before the replica stops, and after the recovery
BEFORE, AFTER = 200, 200
#: messages of the victim's partitions answered while its replica is stopped
WHILE_STOPPED = 60


@pytest.fixture
async def own_cluster(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    """A cluster of this test's own (it kills a master of it)."""
    c = LocalCluster(tmp_path / "cluster")
    try:
        await c.start()
        await c.wait_replicated()
        yield c
    finally:
        for node in c.nodes:  # a stopped replica would not stop
            if node.proc is not None and node.proc.poll() is None:
                os.kill(node.proc.pid, signal.SIGCONT)
        c.stop()


async def test_acknowledged_messages_survive_a_master_failover(
        own_cluster: LocalCluster) -> None:
    c = own_cluster
    store = ShardedRedisStore(
        c.url_with(partitions=6, min_replicas=1, replica_timeout=0.5),
        prefix="fo:", node_id="loader", connect_timeout=0.3, refresh_interval=0.5)
    await store.open()
    # the master of partition 0's slot: the home of the ids and the registry too
    slot = key_slot(store.home.prefix.encode())
    victims = {i for i, p in enumerate(store.parts)
               if c.owner(await c.master_ports(), key_slot(p.prefix.encode()))
               == c.owner(await c.master_ports(), slot)}
    acked: set[str] = set()
    answered = {"victim": 0}
    #: acks of writes sent while the replica was stopped: (victim's, others')
    stopped = {"now": False, "victim": 0, "others": 0}
    refused = 0
    numbers = itertools.count()
    stop = asyncio.Event()

    async def loader() -> None:
        nonlocal refused
        while not stop.is_set():
            batch = [sample_message(next(numbers)) for _ in range(20)]
            during = stopped["now"]
            try:
                verdicts = await store.accept_many(batch)
            except StoreUnavailable:
                verdicts = [StoreUnavailable("all refused")] * len(batch)
            for m, v in zip(batch, verdicts, strict=True):
                if store.index(m.message_id) in victims:
                    answered["victim"] += 1
                if v is None:
                    acked.add(m.message_id)
                    if during:
                        side = "victim" if store.index(m.message_id) in victims else "others"
                        stopped[side] += 1
                else:
                    assert isinstance(v, StoreUnavailable), v
                    refused += 1
            await asyncio.sleep(0)

    tasks = [asyncio.create_task(loader()) for _ in range(4)]
    try:
        await until("the first acks", lambda: len(acked) >= BEFORE)
        master = c.node(c.owner(await c.master_ports(), slot))
        replica = await c.replica_of(master)
        assert replica.proc is not None
        os.kill(replica.proc.pid, signal.SIGSTOP)
        stopped["now"] = True
        mark = answered["victim"]
        await until("writes while the replica is stopped",
                     lambda: answered["victim"] >= mark + WHILE_STOPPED)
        stopped["now"] = False
        master.kill()
        os.kill(replica.proc.pid, signal.SIGCONT)
        await c.wait_promoted(master.port, slot)
        # the killed node comes back as the new master's replica (WAIT 1 holds again)
        await master.start(c.node_timeout_ms)
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
    assert stopped["victim"] == 0  # nothing acked that only the master had
    assert stopped["others"] > 0  # the other masters went on meanwhile



