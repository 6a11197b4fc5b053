"""The Redis store's batch paths (issue 21): a batch of messages is ONE script call for
accept_many, mark_sent_many and mark_final_many (and receipts_for / receipt_done), a
replay of a batch (redis-py re-sending a pipeline) changes nothing, batches above the
per-call limit are split without losing order, and the flood checks of concurrent
submits travel in the store's pipelines. Real Redis (conftest.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import replace

import pytest
import redis.asyncio as aioredis

from smppbridge.core.accounts import FloodRules
from smppbridge.core.records import DeliveryState
from smppbridge.ingest.flood import text_digest
from smppbridge.smpp.constants import CommandStatus
from smppbridge.store.redis import store as redis_store
from smppbridge.store.redis.records import json_array
from smppbridge.store.redis.store import MessageExists, RedisStore
from tests.store.samples import sample_message, sample_receipt


async def test_each_batch_operation_is_one_script_call(store: RedisStore) -> None:
    """300 messages through their whole life: each batch step sends one operation."""
    batch = [sample_message(i) for i in range(1, 301)]
    ids = [m.message_id for m in batch]
    steps: list[int] = []

    async def counted(step: Awaitable[object]) -> None:
        before = store._batch.operations
        await step
        steps.append(store._batch.operations - before)

    await counted(store.accept_many(batch))
    await counted(store.due(5000.0, 1000))
    await counted(store.mark_sent_many(
        [(mid, "sim", f"P{mid}", "ENROUTE", 1.0, []) for mid in ids]))
    await counted(store.mark_final_many(
        [(mid, "DELIVRD", 0, 2.0, [sample_receipt(mid)], "status from poll") for mid in ids]))
    leased = await store.receipts_for("acme", 5000.0, 1000)
    await counted(store.receipt_done([r.seq for r in leased], 3.0))
    assert steps == [1, 1, 1, 1, 1]
    assert len(leased) == 300
    assert [r.message_id for r in leased] == ids  # in creation order
    assert await store.count(DeliveryState.FINAL) == 300
    assert await store.count(DeliveryState.SENT) == 0
    assert await store.count_receipts() == 0
    views = await store.receipts_of(ids[0])
    assert [v.state.value for v in views] == ["delivered"]


async def test_batches_above_the_call_limit_are_split_in_order(
        store: RedisStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """With 7 messages a call, 20 messages go in 3 calls; every receipt gets its own
    seq, in the order of the messages."""
    monkeypatch.setattr(redis_store, "_BATCH", 7)
    batch = [sample_message(i) for i in range(1, 21)]
    before = store._batch.operations
    assert await store.accept_many(batch) == [None] * 20
    assert store._batch.operations - before == 3
    ids = [m.message_id for m in batch]
    await store.due(5000.0, 100)
    await store.mark_sent_many([(mid, "sim", f"P{mid}", "ENROUTE", 1.0, [])
                                for mid in ids])
    await store.mark_final_many([(mid, "DELIVRD", 0, 2.0, [sample_receipt(mid)], "")
                                 for mid in ids])
    leased = await store.receipts_for("acme", 5000.0, 100)
    assert [r.message_id for r in leased] == ids
    assert len({r.seq for r in leased}) == 20


async def test_a_replayed_accept_batch_changes_nothing(store: RedisStore,
                                                       raw: aioredis.Redis) -> None:
    """The same accept call sent twice (its reply lost, the pipeline re-sent): the
    second finds its tokens and answers 0 for each; the queue holds each message once."""
    entries = [store._accept_entry(sample_message(i)) for i in (1, 2, 3)]
    first = await store._batch.script("accept", json_array(entries), 60)
    again = await store._batch.script("accept", json_array(entries), 60)
    assert (first, again) == ([1, 1, 1], [0, 0, 0])
    assert await raw.xlen(store.prefix + "work") == 3
    assert await store.count(DeliveryState.QUEUED) == 3


async def test_a_batch_with_an_id_already_stored_fails_that_message_alone(
        store: RedisStore) -> None:
    await store.accept(sample_message(2))
    out = await store.accept_many([sample_message(1), sample_message(2), sample_message(3)])
    assert out[0] is None
    assert isinstance(out[1], MessageExists)
    assert out[2] is None
    assert await store.count(DeliveryState.QUEUED) == 3


async def test_a_replayed_mark_sent_batch_counts_one_attempt(store: RedisStore) -> None:
    await store.accept_many([sample_message(1), sample_message(2)])
    await store.due(5000.0, 10)
    entries = [[f"tok{i}", f"{i}-0", "sim", f"P{i}", store._provider_key("sim", f"P{i}"),
                "ENROUTE", "1.0", [0], [0]] for i in (1, 2)]
    assert await store._batch.script("mark_sent", json_array(entries), 60) == [1, 1]
    assert await store._batch.script("mark_sent", json_array(entries), 60) == [0, 0]
    found = await store.find("1-0")
    assert found is not None
    assert (found.state, found.attempts) == (DeliveryState.SENT, 1)


async def test_flood_checks_travel_in_the_store_pipelines(store: RedisStore,
                                                         raw: aioredis.Redis) -> None:
    """200 concurrent checks cost a few round trips of the store's batcher, with the
    rules applied as one by one (the 51st of a streak is refused); after SCRIPT FLUSH
    the flood script is loaded again."""
    flood = store.flood_state()
    rules = FloodRules(flood_limit=50, duplicate_window=0.0)
    before = store.round_trips

    async def check(i: int) -> int:
        return await flood.check_and_record(
            account="acme", source="src", destination="79001", now=1000.0 + i * 0.001,
            text_digest=text_digest(f"text {i}"), rules=rules)

    results = await asyncio.gather(*(check(i) for i in range(200)))
    assert store.round_trips - before < 20
    assert results.count(CommandStatus.ESME_ROK) == 50
    await raw.script_flush()
    assert await check(1000) == rules.flood_status


async def test_single_accepts_of_one_turn_are_one_script_call(store: RedisStore) -> None:
    """The SMPP path accepts one message per call: 50 calls made in one turn of the
    event loop are merged into one ``accept`` call, each answered on its own (an id
    stored already fails alone)."""
    await store.accept(sample_message(7))
    before = store._batch.operations
    outcomes = await asyncio.gather(*(store.accept(sample_message(i)) for i in range(1, 51)),
                                    return_exceptions=True)
    assert store._batch.operations - before == 1
    assert [i + 1 for i, o in enumerate(outcomes) if o is not None] == [7]
    assert isinstance(outcomes[6], MessageExists)
    assert await store.count(DeliveryState.QUEUED) == 50


async def test_a_replay_restores_the_grouped_writes_of_a_call_that_failed_part_way(
        store: RedisStore, raw: aioredis.Redis) -> None:
    """A call that stored a message's hash but failed before its grouped writes (its
    indexes, its schedule) is re-sent entry by entry with the same tokens: the replay
    does those writes again. It never puts back in the schedule a message that
    reached the work stream meanwhile."""
    later = replace(sample_message(1), schedule_at=1500.0)
    now = sample_message(2)
    entries = [store._accept_entry(later), store._accept_entry(now)]
    assert await store._batch.script("accept", json_array(entries), 60) == [1, 1]
    p = store.prefix
    # what a call failing before its flush() leaves: hashes and stream entry, no indexes
    await raw.zrem(p + "ix:t", "1-0", "2-0")
    await raw.zrem(p + "sched", "1-0")
    assert await store._batch.script("accept", json_array(entries), 60) == [0, 0]
    assert await raw.zscore(p + "ix:t", "1-0") == 1001.0
    assert await raw.zscore(p + "ix:t", "2-0") == 1002.0
    assert await raw.zscore(p + "sched", "1-0") == 1500.0
    assert await raw.zscore(p + "sched", "2-0") is None  # it is in the stream
    due = await store.due(1600.0, 10)
    assert sorted(d.message.message_id for d in due) == ["1-0", "2-0"]
    assert await store._batch.script("accept", json_array(entries), 60) == [0, 0]
    assert await raw.zcard(p + "sched") == 0
