"""What the sharded store adds on a Redis Cluster: partitions spread over the masters
(hash-tagged keys, every key of a partition in its slot), work claimed from every
partition across nodes, receipts of one account gathered from every partition, flood
windows shared by nodes, search pages merged without skipping a match, leftover parts
of a stored message dropped, and the ``redis-cluster://`` URL."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

import pytest
from redis.crc import key_slot

from smppbridge.core.accounts import FloodRules
from smppbridge.core.errors import StoreUnavailable
from smppbridge.core.history import MessageQuery
from smppbridge.core.records import DeliveryState, PartRecord
from smppbridge.smpp.constants import CommandStatus
from smppbridge.store.redis import history as redis_history
from smppbridge.store.redis.sharded import ShardedRedisStore, partition_tags
from smppbridge.store.redis.urls import parse_cluster_url
from tests.store.redis.cluster.conftest import PARTITIONS
from tests.store.redis.cluster.support import LocalCluster
from tests.store.samples import sample_message, sample_receipt

Factory = Any


def _in(ranges: list[tuple[int, int]], slot: int) -> bool:
    return any(lo <= slot <= hi for lo, hi in ranges)


async def test_partitions_are_spread_over_every_master(
        cluster: LocalCluster, store: ShardedRedisStore, prefix: str) -> None:
    """Each partition's keys are in its prefix's slot, on the master that serves it;
    the six partitions are two on each of the three masters, and messages accepted land
    on all three."""
    masters = await cluster.master_ports()
    where: dict[int, int] = {}
    for part in store.parts:
        slot = key_slot(part.prefix.encode())
        (port,) = [p for p, ranges in masters.items() if _in(ranges, slot)]
        where[port] = where.get(port, 0) + 1
    assert sorted(where.values()) == [2, 2, 2]
    await asyncio.gather(*(store.accept(sample_message(i)) for i in range(60)))
    holding = set()
    for port in masters:
        client = cluster.node(port).client()
        try:
            keys = [k async for k in client.scan_iter(match=prefix + "*")]
        finally:
            await client.aclose()
        for key in keys:
            tag = key[key.index("{") + 1:key.index("}")]
            assert _in(masters[port], key_slot(f"{{{tag}}}".encode()))
        if any(":m:" in k for k in keys):
            holding.add(port)
    assert holding == set(masters)


def test_partition_tags_fall_in_their_share_of_the_slots() -> None:
    """Partition i of n hashes into the i-th n-th of the 16384 slots, whatever n."""
    for n in (1, 3, 6, 16, 100):
        for i, tag in enumerate(partition_tags(n)):
            assert i * 16384 // n <= key_slot(f"{{{tag}}}".encode()) < (i + 1) * 16384 // n


async def test_a_batch_over_every_partition_is_one_pipeline_per_master(
        store: ShardedRedisStore) -> None:
    """accept_many, mark_final_many and a claim that touch all six partitions send one
    pipeline to each of the three masters (the partitions of a master share it), each
    partition's calls still answered on their own."""
    messages = [sample_message(i) for i in range(60)]
    assert {store.index(m.message_id) for m in messages} == set(range(PARTITIONS))
    before = store.round_trips
    assert await store.accept_many(messages) == [None] * 60
    assert store.round_trips - before == 3
    before = store.round_trips
    claimed = await store.due(5000.0, 600)  # each partition asked for 100: one round
    assert store.round_trips - before == 3
    assert sorted(m.message.message_id for m in claimed) == sorted(
        m.message_id for m in messages)
    before = store.round_trips
    await store.mark_final_many([(m.message_id, "DELIVRD", 0, 3000.0, (), "poll")
                                 for m in messages])
    assert store.round_trips - before == 3
    found = await store.find(messages[7].message_id)
    assert found is not None
    assert found.state is DeliveryState.FINAL


async def test_with_min_replicas_each_master_pipeline_waits_once(
        cluster: LocalCluster, make_store: Factory) -> None:
    """min_replicas=1: a batch over all six partitions sends one WAIT to each master
    (after the pipeline that wrote its partitions' messages), and is acknowledged."""
    await cluster.wait_replicated()
    store = await make_store(min_replicas=1)
    messages = [sample_message(i * 100) for i in range(30)]
    assert len({store.index(m.message_id) for m in messages}) == PARTITIONS

    async def waits() -> dict[int, int]:
        out = {}
        for port in await cluster.master_ports():
            client = cluster.node(port).client()
            try:
                stats = await client.info("commandstats")
            finally:
                await client.aclose()
            out[port] = int(stats.get("cmdstat_wait", {}).get("calls", 0))
        return out

    before = await waits()
    assert await store.accept_many(messages) == [None] * 30
    after = await waits()
    assert {port: after[port] - before[port] for port in after} == dict.fromkeys(after, 1)


def test_consecutive_ids_share_a_partition_and_runs_spread_over_all() -> None:
    """A message's partition is a function of its id without the last two characters:
    the 100 decimal ids of a run (256 hex) are in one partition, and runs are spread
    over every partition."""
    s = ShardedRedisStore("redis-cluster://127.0.0.1:1/?partitions=16")
    assert len({s.index(str(n)) for n in range(123400, 123500)}) == 1
    assert len({s.index(f"{n:x}") for n in range(0x1f00, 0x2000)}) == 1
    assert {s.index(str(n * 100)) for n in range(1000, 1400)} == set(range(16))


async def test_work_of_every_partition_is_claimed_once_across_nodes(
        make_store: Factory) -> None:
    """Two nodes draining 200 messages in small claims take each exactly once, from
    every partition, and never more than the limit asked for."""
    a, b = await make_store(), await make_store()
    assert await a.accept_many([sample_message(i) for i in range(200)]) == [None] * 200
    taken: dict[str, list[str]] = {"a": [], "b": []}

    async def drain(name: str, s: ShardedRedisStore) -> None:
        while batch := await s.due(5000.0, 5):
            assert len(batch) <= 5
            taken[name] += [m.message.message_id for m in batch]

    await asyncio.gather(drain("a", a), drain("b", b))
    assert sorted(taken["a"] + taken["b"]) == sorted(f"{i}-0" for i in range(200))
    assert taken["a"]
    assert taken["b"]
    assert {a.index(mid) for mid in taken["a"] + taken["b"]} == set(range(PARTITIONS))


async def test_receipts_of_messages_on_every_partition_reach_another_node(
        make_store: Factory) -> None:
    """Node A accepts messages (all partitions) and finalises them with receipts; node
    B, where the receiver is bound, is handed every receipt (leased, in pages) and
    marks them delivered; the outbox is then empty on every partition."""
    a, b = await make_store(receipt_lease=30.0), await make_store(receipt_lease=30.0)
    ids = [f"{i}-0" for i in range(40)]
    await a.accept_many([sample_message(i) for i in range(40)])
    await a.mark_final_many([(mid, "DELIVRD", 0, 3000.0, (sample_receipt(mid),), "poll")
                             for mid in ids])
    assert await b.count_receipts("acme") == 40
    assert await b.accounts_with_receipts(5000.0) == ["acme"]
    got: list[str] = []
    while page := await b.receipts_for("acme", 5000.0, 7):
        assert len(page) <= 7
        got += [r.message_id for r in page]
        await b.receipt_done([r.seq for r in page], 5000.0)
    assert sorted(got) == sorted(ids)
    assert await a.count_receipts() == 0
    views = await a.receipts_of(ids[0])
    assert [v.state.value for v in views] == ["delivered"]


async def test_flood_rules_hold_across_nodes_and_partitions(make_store: Factory) -> None:
    """A duplicate sent through another node is refused; the subscriber flood counts
    attempts from both nodes."""
    a, b = await make_store(), await make_store()
    fa, fb = a.flood_state(), b.flood_state()
    rules = FloodRules(flood_limit=2, flood_gap=30.0, duplicate_window=60.0)

    async def check(f: Any, dest: str, digest: bytes, now: float) -> int:
        return int(await f.check_and_record(account="acme", source="s", destination=dest,
                                            text_digest=digest, now=now, rules=rules))

    assert await check(fa, "79001", b"x", 100.0) == CommandStatus.ESME_ROK
    assert await check(fb, "79001", b"x", 101.0) == rules.duplicate_status
    assert await check(fb, "79002", b"1", 100.0) == CommandStatus.ESME_ROK
    assert await check(fa, "79002", b"2", 101.0) == CommandStatus.ESME_ROK
    assert await check(fb, "79002", b"3", 102.0) == rules.flood_status


async def test_merged_search_pages_skip_and_repeat_nothing(
        store: ShardedRedisStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a tiny per-call budget (pages stop short on some partitions), following the
    cursors returns every match exactly once, newest first, across the partitions."""
    monkeypatch.setattr(redis_history, "CALL_BUDGET", 3)
    monkeypatch.setattr(redis_history, "SEARCH_CALLS", 2)
    await store.accept_many([sample_message(i) for i in range(60)])
    for i in range(0, 60, 4):
        await store.mark_final(f"{i}-0", "DELIVRD", 0, 3000.0)
    for query in (MessageQuery(limit=7), MessageQuery(state=DeliveryState.FINAL, limit=4)):
        seen: list[str] = []
        q = query
        for _ in range(200):
            page = await store.search(q)
            assert len(page.items) <= q.limit
            seen += [m.message.message_id for m in page.items]
            if page.next is None:
                break
            q = MessageQuery(state=query.state, limit=query.limit, after=page.next)
        wanted = [f"{i}-0" for i in reversed(range(60))
                  if query.state is None or i % 4 == 0]
        assert seen == wanted


async def test_leftover_parts_of_a_stored_message_are_dropped(
        store: ShardedRedisStore) -> None:
    """Parts held on several partitions: accepting their message drops them all; a part
    left behind (a crash between the two writes) whose message is stored is not
    replayed by load_parts, and is dropped."""
    # ids far enough apart to be in other partitions (consecutive ids share one)
    ids = tuple(f"{k}5-{k}" for k in range(4))
    m = replace(sample_message(5, parts=4), message_id=ids[-1], part_ids=ids)
    assert len({store.index(p) for p in m.part_ids}) > 1  # parts on several partitions
    for k, pid in enumerate(m.part_ids[:-1]):
        await store.save_part(PartRecord(pid, "acme", "k", b"pdu", 1.0 + k, "", 0x34))
    assert {p.part_id for p in await store.load_parts()} == set(m.part_ids[:-1])
    await store.accept(m)
    assert await store.load_parts() == []
    # the crash case: a part still held although its message is stored
    await store.save_part(PartRecord(m.part_ids[0], "acme", "k", b"pdu", 1.0, "", 0x34))
    assert await store.load_parts() == []
    assert await store.parts[store.index(m.part_ids[0])].load_parts() == []
    found = await store.find(m.part_ids[0])  # any part id finds it, on any partition
    assert found is not None
    assert found.message == m


def test_cluster_url_form_and_its_errors() -> None:
    """Seeds, partitions, credentials and the store's options; each mistake named."""
    u = parse_cluster_url("redis-cluster://u:p%40ss@h1:7000,[::1]:7001/"
                          "?partitions=12&min_replicas=1&prefix=x:")
    assert u.seeds == (("h1", 7000), ("::1", 7001))
    assert (u.partitions, u.username, u.password, u.tls) == (12, "u", "p@ss", False)
    assert u.options == {"min_replicas": 1, "prefix": "x:"}
    assert parse_cluster_url("rediss-cluster://h:1").tls
    for bad, says in (("redis-cluster://h1", "HOST:PORT"),
                      ("redis-cluster://h:7000/3", "database"),
                      ("redis-cluster://h:7000/?partitions=0", "partitions"),
                      ("redis-cluster://h:7000/?partitions=x", "partitions"),
                      ("redis-cluster://h:7000/?nope=1", "unknown parameter 'nope'"),
                      ("redis-cluster://h:7000/?min_replicas=one", "min_replicas"),
                      ("redis-cluster://h:7000/?prefix=a{b}:", "prefix")):
        with pytest.raises(ValueError, match=says):
            parse_cluster_url(bad)


async def test_no_seed_answering_fails_the_open() -> None:
    """A store whose seeds are all down refuses to open, as StoreUnavailable."""
    s = ShardedRedisStore("redis-cluster://127.0.0.1:1/?partitions=2", connect_timeout=0.2)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="no seed"):
        await s.open()
    assert time.monotonic() - started < 5
