"""The Redis store's callback outbox (tests/store/callback_cases.py), its leases across
nodes, and its keys bounded by their TTL."""

from __future__ import annotations

import redis.asyncio as aioredis

from smppbridge.store.redis.store import RedisStore
from tests.store import callback_cases as cases
from tests.store.redis.support import StoreFactory
from tests.store.samples import sample_message


async def test_sent_then_final_in_order(store: RedisStore) -> None:
    await cases.sent_then_final_in_order(store)


async def test_a_message_final_already_adds_no_event(store: RedisStore) -> None:
    await cases.a_message_final_already_adds_no_event(store)


async def test_retry_waits_until_due(store: RedisStore) -> None:
    await cases.retry_waits_until_due(store)


async def test_failed_and_expired_are_in_the_timeline(store: RedisStore) -> None:
    await cases.failed_and_expired_are_in_the_timeline(store)


async def test_delivered_leaves_no_timeline_entry(store: RedisStore) -> None:
    await cases.delivered_leaves_no_timeline_entry(store)


async def test_a_dead_nodes_lease_is_taken_over_and_a_live_one_is_not(
        make_store: StoreFactory) -> None:
    a = await make_store(callback_lease=30.0)
    b = await make_store(callback_lease=30.0)
    m = sample_message(8)
    await a.accept(m)
    ev = cases.event(m.message_id)
    await a.mark_final(m.message_id, "DELIVRD", 0, cases.T0, callbacks=[ev])
    assert [e.event_id for e in await a.callbacks_due(cases.T0, 10)] == [ev.event_id]
    assert await b.callbacks_due(cases.T0 + 29, 10) == []  # a's lease holds
    taken = await b.callbacks_due(cases.T0 + 31, 10)  # a died: its lease ran out
    assert [e.event_id for e in taken] == [ev.event_id]


async def test_event_keys_expire_with_their_ttl(store: RedisStore, raw: aioredis.Redis,
                                                prefix: str) -> None:
    m = sample_message(9)
    await store.accept(m)
    await store.mark_final(m.message_id, "DELIVRD", 0, cases.T0,
                           callbacks=[cases.event(m.message_id, ttl=100.0)])
    [seq] = await raw.zrange(prefix + "cb:due", 0, -1)
    ttl = await raw.ttl(f"{prefix}cb:e:{seq}")
    assert 100 < ttl <= 100 + 3600
    assert 0 < await raw.ttl(f"{prefix}cb:m:{m.message_id}") <= 100 + 3600


async def test_an_event_whose_keys_expired_leaves_the_outbox(
        store: RedisStore, raw: aioredis.Redis, prefix: str) -> None:
    """Keys that outlived their TTL (no node ran for an hour past it) are gone: the
    event leaves the due set and the count instead of failing every sweep."""
    m = sample_message(10)
    await store.accept(m)
    await store.mark_final(m.message_id, "DELIVRD", 0, cases.T0,
                           callbacks=[cases.event(m.message_id)])
    [seq] = await raw.zrange(prefix + "cb:due", 0, -1)
    await raw.delete(f"{prefix}cb:e:{seq}")  # as its TTL would
    assert await store.callbacks_due(cases.T0, 10) == []
    assert await raw.zcard(prefix + "cb:due") == 0
    assert await store.count_callbacks() == 0


async def test_an_mo_is_stored_final_with_its_deliver_sm_and_event(store: RedisStore) -> None:
    await cases.an_mo_is_stored_final_with_its_deliver_sm_and_event(store)
