"""Cluster mode on a Redis Cluster: bridge processes whose ``[store] url`` is
``redis-cluster://`` (three local masters, the default 16 partitions) behave as on one Redis — the
flood rules across nodes, a receipt delivered to the receiver bound on another node,
and a killed node's pending work claimed and sent by another. The test bodies are
test_cluster.py's, collected again here with this module's ``cluster`` fixture."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.test_cluster import (  # noqa: F401
    Cluster,
    running_cluster,
    test_flood_rules_hold_across_nodes,
    test_kill9_of_a_node_with_pending_work,
    test_receipt_reaches_the_receiver_on_another_node,
)
from tests.store.redis.cluster.support import LocalCluster


@dataclass
class _Seeds:
    """The bridges' view of the Redis Cluster: its URL (test_cluster.py appends the
    query)."""

    local: LocalCluster

    @property
    def url(self) -> str:
        return self.local.url + "/"  # the default 16 partitions

    def stop(self) -> None:
        self.local.stop()


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    local = LocalCluster(tmp_path / "redis-cluster", replicas=0)
    await local.start()
    async with running_cluster(tmp_path, _Seeds(local)) as c:  # type: ignore[arg-type]
        yield c
