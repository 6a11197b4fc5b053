"""The smpp provider against smppbridge itself as the upstream: an ESME binds to node A,
whose provider of type ``smpp`` binds as an ESME to node B (provider: the in-process
simulator, which delivers); B's receipts become A's statuses and so the ESME's
receipts (docs/providers.md, The smpp provider)."""

from __future__ import annotations

import asyncio

import pytest

from smppbridge.node.node import Node
from smppbridge.providers.smpp.provider import SmppProvider
from smppbridge.smpp import pdu as P
from smppbridge.smpp.constants import CommandStatus
from tests.integration.conftest import (
    OpenPeer,
    StartNode,
    answer_unasked,
    build_config,
)

pytestmark = pytest.mark.integration

RECEIPT_WAIT = 15.0


def upstream_node_config() -> str:
    return """
[[providers]]
name = "sim"
type = "simulator"
poll_interval = 0.1
[providers.simulator]
deliver_after = 0.05
"""


def forwarding_provider(port: int, **keys: object) -> str:
    lines = ["[[providers]]", 'name = "up"', 'type = "smpp"', 'host = "127.0.0.1"',
             f"port = {port}", 'system_id = "bridge"', 'password = "pw"',
             "reconnect_backoff = 0.05", "reconnect_backoff_max = 0.2", "timeout = 5.0"]
    for key, value in keys.items():
        lines.append(f"{key} = {value!r}".replace("'", '"'))
    return "\n".join(lines) + "\n"


async def two_nodes(start_node: StartNode, **keys: object) -> tuple[Node, Node]:
    b = await start_node(config=build_config(
        accounts=[{"system_id": "bridge", "password": "pw", "providers": ["sim"],
                   "window": 1000}],
        extra=upstream_node_config()), content_pipeline=True)
    port = b.smpp.addresses["smpp"][1]
    a = await start_node(config=build_config(
        accounts=[{"system_id": "demo", "password": "demo", "providers": ["up"]}],
        extra=forwarding_provider(port, **keys)), content_pipeline=True)
    provider = a.providers["up"]
    assert isinstance(provider, SmppProvider)
    async with asyncio.timeout(5):
        await provider._bound.wait()
    return a, b


async def submit_and_collect(peer: object, texts: list[bytes]) -> tuple[list[str],
                                                                        list[dict[str, str]]]:
    from tests.integration.conftest import Peer
    assert isinstance(peer, Peer)
    ids = []
    for text in texts:
        resp = await peer.request(P.SubmitSm(source_addr="Shop", destination_addr="79001234567",
                                             short_message=text, registered_delivery=1))
        assert resp.command_status == CommandStatus.ESME_ROK
        assert isinstance(resp, P.SubmitSmResp)
        ids.append(resp.message_id)
    receipts: list[dict[str, str]] = []
    async with asyncio.timeout(RECEIPT_WAIT):
        while not set(ids) <= {r["id"] for r in receipts}:
            answer_unasked(peer, await peer.read(timeout=RECEIPT_WAIT), receipts)
    return ids, receipts


async def test_messages_go_through_an_upstream_smppbridge_and_its_receipts_come_back(
        start_node: StartNode, open_peer: OpenPeer) -> None:
    a, _b = await two_nodes(start_node)
    peer = await open_peer(a.smpp.addresses["smpp"])
    assert (await peer.bind()).command_status == CommandStatus.ESME_ROK
    ids, receipts = await submit_and_collect(peer, [f"hello {i}".encode() for i in range(5)])
    assert {r["stat"] for r in receipts if r["id"] in ids} == {"DELIVRD"}
    stored = await a.store.find(ids[0])
    assert stored is not None
    assert stored.provider == "up"
    assert stored.provider_id
