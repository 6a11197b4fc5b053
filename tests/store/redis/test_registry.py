"""The cluster's node registry on Redis: heartbeats with binds, each node's seconds of
traffic, unbind requests between nodes, and nodes whose heartbeat stopped."""

from __future__ import annotations

import asyncio

from smppbridge.core.cluster import BindInfo, NodeReport, Second
from tests.store.redis.support import StoreFactory


def _bind(node: str, number: int) -> BindInfo:
    return BindInfo(node=node, number=number, system_id="acme", bind_type="transceiver",
                    peer="127.0.0.1:5000", tls=False, since=1.0, window_in_use=0,
                    window=100, submit_rate=0.0)


async def test_every_live_node_sees_every_other(make_store: StoreFactory) -> None:
    """Two nodes' heartbeats: either node lists both, with their binds."""
    a, b = await make_store(node_id="a"), await make_store(node_id="b")
    await a.registry().publish(NodeReport("a", 1.0, (_bind("a", 1),)), None, 10)
    await b.registry().publish(NodeReport("b", 2.0, (_bind("b", 7), _bind("b", 8))), None,
                               10)
    for store in (a, b):
        reports = await store.registry().reports()
        assert [(r.node_id, [x.id for x in r.binds]) for r in reports] == [
            ("a", ["a:1"]), ("b", ["b:7", "b:8"])]


async def test_a_node_whose_heartbeat_stopped_is_gone(make_store: StoreFactory) -> None:
    """A heartbeat lives ttl seconds: a node that stops beating drops out of the list."""
    a = await make_store(node_id="a")
    await a.registry().publish(NodeReport("a", 1.0), None, 0.05)
    assert [r.node_id for r in await a.registry().reports()] == ["a"]
    await asyncio.sleep(0.1)  # the heartbeat's own lifetime is what is under test
    assert await a.registry().reports() == []


async def test_seconds_are_kept_per_node(make_store: StoreFactory) -> None:
    """Each heartbeat's second is kept, oldest first, per node."""
    a = await make_store(node_id="a")
    for i in range(5):
        await a.registry().publish(NodeReport("a", float(i)),
                                   Second(at=100 + i, submitted=i, refused={"x": i}), 10)
    got = await a.registry().seconds("a", 3)
    assert [(s.at, s.submitted, s.refused) for s in got] == [
        (102, 2, {"x": 2}), (103, 3, {"x": 3}), (104, 4, {"x": 4})]
    assert await a.registry().seconds("nobody", 3) == []


async def test_unbind_requests_reach_the_node_once(make_store: StoreFactory) -> None:
    """An unbind asked of node b is handed to b at its next heartbeat, and only once."""
    a, b = await make_store(node_id="a"), await make_store(node_id="b")
    await a.registry().request_unbind("b", 7)
    assert await a.registry().publish(NodeReport("a", 1.0), None, 10) == []
    assert await b.registry().publish(NodeReport("b", 1.0), None, 10) == [7]
    assert await b.registry().publish(NodeReport("b", 2.0), None, 10) == []
