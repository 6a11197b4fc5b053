"""Fixtures of the sharded store's tests: one real local Redis Cluster (three masters,
each with a replica) for the whole session, and the parent folder's ``store`` and
``make_store`` fixtures overridden to open the sharded store on it under the test's own
prefix (its keys deleted afterwards), so that the Redis store's contract tests collected
here run against a Redis Cluster unchanged."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from smppbridge.store.redis.sharded import ShardedRedisStore
from tests.store.redis.cluster.support import LocalCluster

#: partitions of the stores under test: two on each of the three masters
PARTITIONS = 6


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Three masters with a replica each, on free ports, for every test of the session
    (the failover test starts its own)."""
    c = LocalCluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        asyncio.run(c.start())
        yield c
    finally:
        c.stop()


@pytest.fixture
async def prefix(cluster: LocalCluster) -> AsyncIterator[str]:
    """A base prefix of this test's own; its keys are deleted from every master."""
    p = f"test:{uuid.uuid4().hex}:"
    yield p
    await cluster.delete_prefix(p)


@pytest.fixture
async def make_store(cluster: LocalCluster, prefix: str
                     ) -> AsyncIterator[Any]:
    """Open sharded stores (nodes) sharing the test's prefix; all closed at the end."""
    opened: list[ShardedRedisStore] = []

    async def make(**kwargs: Any) -> ShardedRedisStore:
        kwargs.setdefault("prefix", prefix)
        kwargs.setdefault("node_id", f"node-{len(opened)}")
        kwargs.pop("url", None)
        s = ShardedRedisStore(cluster.url_with(partitions=PARTITIONS), **kwargs)
        await s.open()
        opened.append(s)
        return s

    yield make
    for s in opened:
        await s.close()


@pytest.fixture
async def store(make_store: Any) -> ShardedRedisStore:
    s: ShardedRedisStore = await make_store(receipt_lease=30.0)
    return s
