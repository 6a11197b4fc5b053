"""Flood rules in Redis, shared by nodes: the MemoryFloodState rules, held across two
RedisFloodState instances on one Redis, with an injected clock (docs/content.md, docs/cluster.md).

Redis is expected at 127.0.0.1:6379 (``SMPPBRIDGE_TEST_REDIS`` overrides the URL); CI
starts one, and without it these tests fail rather than skip. Each test uses its own
random key prefix in DB 14 and deletes its keys afterwards.
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from smppbridge.core.accounts import FloodRules
from smppbridge.core.errors import StoreUnavailable
from smppbridge.core.ports import FloodState
from smppbridge.ingest.flood import MemoryFloodState, text_digest
from smppbridge.smpp.constants import CommandStatus
from smppbridge.store.redis.flood import RedisFloodState

REDIS_URL = os.environ.get("SMPPBRIDGE_TEST_REDIS_FLOOD", "redis://127.0.0.1:6379/14")
OK = CommandStatus.ESME_ROK
DUP = CommandStatus.VENDOR_DUPLICATE
FLOOD = CommandStatus.VENDOR_SUBSCRIBER_FLOOD
RULES = FloodRules()


@pytest.fixture
async def client() -> AsyncIterator[aioredis.Redis]:
    """A client on the test database; fails loudly when Redis is not there."""
    c = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        await c.ping()
    except RedisError as exc:
        await c.aclose()
        pytest.fail(f"Redis is not reachable at {REDIS_URL} ({exc}). These tests need a "
                    "real Redis: CI starts one; locally run `redis-server` or point "
                    "SMPPBRIDGE_TEST_REDIS_FLOOD at one.", pytrace=False)
    yield c
    await c.aclose()


@pytest.fixture
async def prefix(client: aioredis.Redis) -> AsyncIterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    p = f"test:{uuid.uuid4().hex}:"
    yield p
    keys = [k async for k in client.scan_iter(match=p + "*", count=1000)]
    if keys:
        await client.delete(*keys)


@pytest.fixture
async def nodes(prefix: str) -> AsyncIterator[tuple[RedisFloodState, RedisFloodState]]:
    """Two nodes: separate clients (connection pools) sharing one Redis and prefix."""
    a = RedisFloodState.from_url(REDIS_URL, prefix=prefix)
    b = RedisFloodState.from_url(REDIS_URL, prefix=prefix)
    yield a, b
    await a.aclose()
    await b.aclose()


async def check(state: FloodState, now: float, text: str = "hi", *,
                account: str = "acct", source: str = "src", destination: str = "380501234567",
                rules: FloodRules = RULES) -> int:
    return await state.check_and_record(account=account, source=source,
                                        destination=destination,
                                        text_digest=text_digest(text), now=now, rules=rules)


async def test_duplicate_on_another_node_is_refused(nodes: tuple[RedisFloodState, ...]) -> None:
    """A copy reaching node b within 60 s of the first on node a is a duplicate; 60 s
    after the first copy it is accepted again, and refused copies do not extend the
    window."""
    a, b = nodes
    assert await check(a, 0.0) == OK
    assert await check(b, 30.0) == DUP
    assert await check(a, 59.9) == DUP
    assert await check(b, 60.0) == OK
    assert await check(a, 61.0) == DUP  # the copy accepted at 60 opened a new window


async def test_fifty_accepted_across_nodes_fifty_first_refused(
        nodes: tuple[RedisFloodState, ...]) -> None:
    """50 messages to one destination spread over two nodes, each < 30 s after the
    previous: all accepted; the 51st is refused whichever node takes it."""
    a, b = nodes
    for i in range(50):
        assert await check((a, b)[i % 2], i * 29.0, f"m{i}") == OK, i
    assert await check(a, 50 * 29.0, "m50") == FLOOD
    assert await check(b, 50 * 29.0 + 1, "m51") == FLOOD


async def test_pause_of_thirty_seconds_resets_the_streak(
        nodes: tuple[RedisFloodState, ...]) -> None:
    """Only a pause of 30 s or more (after the last attempt, on any node) ends it."""
    a, b = nodes
    for i in range(50):
        assert await check((a, b)[i % 2], float(i), f"m{i}") == OK
    assert await check(a, 50.0, "x") == FLOOD
    assert await check(b, 79.9, "y") == FLOOD  # 29.9 s: not a pause
    assert await check(b, 109.9, "z") == OK  # exactly 30 s after the previous attempt


async def test_refused_attempts_keep_the_streak_alive(
        nodes: tuple[RedisFloodState, ...]) -> None:
    """Every refused attempt moves 'previous' forward: hammering stays blocked."""
    a, b = nodes
    now = 0.0
    for i in range(50):
        assert await check(a, now, f"m{i}") == OK
        now += 1.0
    for i in range(5):
        assert await check(b, now, f"r{i}") == FLOOD
        now += 29.0
    assert await check(a, now, "still") == FLOOD
    assert await check(b, now + 30.0, "after pause") == OK


async def test_refused_duplicates_count_toward_the_streak(
        nodes: tuple[RedisFloodState, ...]) -> None:
    """A client looping on one text floods too: its refused duplicates count."""
    a, b = nodes
    assert await check(a, 0.0) == OK
    for i in range(1, 50):
        assert await check((a, b)[i % 2], float(i)) == DUP
    assert await check(a, 50.0, "new") == FLOOD
    assert await check(b, 61.0) == FLOOD


async def test_flood_refusal_is_not_recorded_as_a_duplicate(
        nodes: tuple[RedisFloodState, ...]) -> None:
    """A message refused as flood can be re-sent after the pause."""
    a, b = nodes
    for i in range(50):
        await check(a, float(i), f"m{i}")
    assert await check(a, 50.0, "late") == FLOOD
    assert await check(b, 80.0, "late") == OK


async def test_release_forgets_only_its_own_record(nodes: tuple[RedisFloodState, ...]) -> None:
    """release() on any node drops the duplicate record made at ``recorded_at`` and
    leaves a newer one."""
    a, b = nodes
    digest = text_digest("hi")
    assert await check(a, 5.0) == OK
    await b.release(account="acct", source="src", destination="380501234567",
                    text_digest=digest, recorded_at=5.0)
    assert await check(a, 6.0) == OK
    await b.release(account="acct", source="src", destination="380501234567",
                    text_digest=digest, recorded_at=5.0)  # the record of 6.0 stays
    assert await check(b, 7.0) == DUP


async def test_simultaneous_copies_on_two_nodes_accept_one(
        nodes: tuple[RedisFloodState, ...]) -> None:
    """The same message reaching both nodes at once is accepted exactly once."""
    a, b = nodes
    for t in range(20):
        results = await asyncio.gather(check(a, t * 100.0, f"m{t}"),
                                       check(b, t * 100.0, f"m{t}"))
        assert sorted(results) == [OK, DUP], t


async def test_keys_are_per_tuple_and_expire(nodes: tuple[RedisFloodState, ...],
                                            client: aioredis.Redis, prefix: str) -> None:
    """Separators inside fields cannot merge two tuples, and every key carries a TTL a
    little longer than its window (garbage collection only)."""
    a, _ = nodes
    assert await check(a, 0.0, source="a:b", destination="c") == OK
    assert await check(a, 0.1, source="a", destination="b:c") == OK
    keys = [k async for k in client.scan_iter(match=prefix + "*")]
    assert len(keys) == 4
    for key in keys:
        ttl = await client.pttl(key)
        window = 60_000 if ":flood:d:" in key else 30_000
        assert window < ttl <= window + 1000, key


async def test_custom_and_disabled_rules(nodes: tuple[RedisFloodState, ...]) -> None:
    """Windows, limit and statuses come from the account's FloodRules; enabled=False
    and zero windows/limits turn rules off."""
    a, b = nodes
    rules = FloodRules(duplicate_window=5.0, flood_gap=2.0, flood_limit=2,
                       duplicate_status=0x4AA, flood_status=0x4BB)
    assert await check(a, 0.0, "a", rules=rules) == OK
    assert await check(b, 1.0, "a", rules=rules) == 0x4AA
    assert await check(a, 1.5, "b", rules=rules) == 0x4BB
    assert await check(b, 4.0, "b", rules=rules) == OK
    assert await check(a, 6.0, "a", rules=rules) == OK
    off = FloodRules(enabled=False)
    for i in range(60):
        assert await check(b, float(i), account="off", rules=off) == OK
    no_dup = FloodRules(duplicate_window=0)
    assert await check(a, 0.0, "z", rules=no_dup, account="n") == OK
    assert await check(b, 0.1, "z", rules=no_dup, account="n") == OK
    no_flood = FloodRules(flood_limit=0)
    for i in range(60):
        assert await check(a, float(i), f"m{i}", rules=no_flood, account="f") == OK


async def test_same_verdicts_as_the_memory_state(nodes: tuple[RedisFloodState, ...]) -> None:
    """On a random stream of attempts (few texts, destinations and sources, irregular
    gaps, some releases) two Redis nodes answer exactly as one MemoryFloodState."""
    a, b = nodes
    memory = MemoryFloodState()
    rng = random.Random(20240611)
    rules = FloodRules(duplicate_window=10.0, flood_gap=3.0, flood_limit=4)
    now = 0.0
    accepted: list[tuple[str, str, str, float]] = []
    for step in range(600):
        now += rng.choice([0.0, 0.5, 1.0, 2.9, 3.0, 4.0, 9.9, 10.0])
        if accepted and rng.random() < 0.05:
            src, dst, text, at = accepted.pop(rng.randrange(len(accepted)))
            for state in (memory, (a, b)[step % 2]):
                await state.release(account="acct", source=src, destination=dst,
                                    text_digest=text_digest(text), recorded_at=at)
            continue
        src, dst, text = rng.choice("st"), rng.choice("xyz"), rng.choice("abc")
        want = await check(memory, now, text, source=src, destination=dst, rules=rules)
        got = await check((a, b)[step % 2], now, text, source=src, destination=dst,
                          rules=rules)
        assert got == want, (step, now, src, dst, text)
        if got == OK:
            accepted.append((src, dst, text, now))


async def test_unreachable_redis_raises_store_unavailable() -> None:
    """A node that cannot reach Redis raises StoreUnavailable (answered ESME_RMSGQFUL)."""
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    state = RedisFloodState.from_url(f"redis://127.0.0.1:{port}/14")
    try:
        with pytest.raises(StoreUnavailable):
            await check(state, 0.0)
    finally:
        await state.aclose()
