"""The Redis store keeps Idempotency-Key answers: a key per (account, key) under the
store's prefix with the TTL, SET NX for the claim (one winner across nodes)."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from smppbridge.core.idempotency import IdempotentAnswer
from tests.store.redis.support import StoreFactory


async def test_claim_save_replay_and_release(make_store: StoreFactory,
                                             raw: aioredis.Redis, prefix: str) -> None:
    """The first claim wins; the second sees it in flight, then the saved answer; the
    key lives under the prefix with a TTL of about a day; a released key is claimed
    afresh; another account's same key is its own."""
    store = await make_store()
    assert await store.claim_idempotency("acme", "k:1", "h", 0.0, 86_400.0) is None
    seen = await store.claim_idempotency("acme", "k:1", "h", 0.0, 86_400.0)
    assert seen is not None
    assert seen.in_flight
    await store.save_idempotency("acme", "k:1", IdempotentAnswer("h", 202, '{"id":"7"}'),
                                 0.0, 86_400.0)
    assert await store.claim_idempotency("acme", "k:1", "h", 0.0, 86_400.0) == \
        IdempotentAnswer("h", 202, '{"id":"7"}')
    ttl = await raw.pttl(f"{prefix}idem:acme:k%3A1")
    assert 86_000_000 < ttl <= 86_400_000
    assert await store.claim_idempotency("other", "k:1", "h", 0.0, 86_400.0) is None
    await store.release_idempotency("acme", "k:1")
    assert await store.claim_idempotency("acme", "k:1", "h", 0.0, 86_400.0) is None


async def test_concurrent_claims_on_two_nodes_have_one_winner(
        make_store: StoreFactory) -> None:
    """Ten claims of one key from two stores (nodes) at once: exactly one wins."""
    a, b = await make_store(), await make_store()
    got = await asyncio.gather(*(s.claim_idempotency("acme", "race", "h", 0.0, 60.0)
                                 for s in (a, b) * 5))
    assert sum(1 for g in got if g is None) == 1
