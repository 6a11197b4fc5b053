"""Fixtures of the Redis store's tests: a plain client on the test database (failing
loudly when Redis is not there), a key prefix of each test's own whose keys are deleted
afterwards, and stores (nodes) opened on that prefix. test_flood.py has its own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from smppbridge.store.redis.store import RedisStore
from tests.store.redis.support import REDIS_URL, StoreFactory


@pytest.fixture
async def raw() -> AsyncIterator[aioredis.Redis]:
    """A plain client on the test database; fails loudly when Redis is not there."""
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        await client.ping()
    except RedisError as exc:
        await client.aclose()
        pytest.fail(f"Redis is not reachable at {REDIS_URL} ({exc}). These tests need a "
                    "real Redis: CI starts one; locally run `redis-server` or point "
                    "SMPPBRIDGE_TEST_REDIS at one.", pytrace=False)
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(raw: aioredis.Redis) -> AsyncIterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    p = f"test:{uuid.uuid4().hex}:"
    yield p
    keys = [k async for k in raw.scan_iter(match=p + "*", count=1000)]
    if keys:
        await raw.delete(*keys)


@pytest.fixture
async def make_store(prefix: str) -> AsyncIterator[StoreFactory]:
    """Open stores (nodes) sharing the test's prefix; all closed at the end."""
    opened: list[RedisStore] = []

    async def make(**kwargs: Any) -> RedisStore:
        kwargs.setdefault("prefix", prefix)
        kwargs.setdefault("node_id", f"node-{len(opened)}")
        s = RedisStore(kwargs.pop("url", REDIS_URL), **kwargs)
        await s.open()
        opened.append(s)
        return s

    yield make
    for s in opened:
        await s.close()


@pytest.fixture
async def store(make_store: StoreFactory) -> RedisStore:
    return await make_store(receipt_lease=30.0)
