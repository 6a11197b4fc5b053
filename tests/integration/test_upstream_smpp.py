"""The smpp provider against smppbridge itself as the upstream: an ESME binds to node A,
whose provider of type ``smpp`` binds as an ESME to node B (provider: the in-process
simulator, which delivers); B's receipts become A's statuses and so the ESME's
receipts (docs/providers.md, The smpp provider)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
import trustme

from smppbridge.node.node import Node
from smppbridge.observability.metrics import METRICS
from smppbridge.providers.smpp.provider import SmppProvider
from smppbridge.smpp import pdu as P
from smppbridge.smpp.constants import CommandStatus
from tests.integration.conftest import (
    OpenPeer,
    StartNode,
    _toml_value,
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
        lines.append(f"{key} = {_toml_value(value)}")
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
    # final by receipt: the status poller no longer waits for their deadline
    async with asyncio.timeout(5):
        while any(key[0] == "up" for key in a.poller._items):
            await asyncio.sleep(0.01)
    assert stored.provider_id


async def test_tls_to_the_upstream_checks_its_certificate_against_the_ca_file(
        start_node: StartNode, open_peer: OpenPeer, tmp_path: Path) -> None:
    """tls = true with tls_ca_file: node A binds to node B's TLS listener when B's
    certificate comes from that CA, and stays unbound (connect errors counted) when it
    does not."""
    ca, other = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    cert, key = tmp_path / "b.pem", tmp_path / "b.key"
    cert.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    server.private_key_pem.write_to_path(str(key))
    good, bad = tmp_path / "ca.pem", tmp_path / "other.pem"
    ca.cert_pem.write_to_path(str(good))
    other.cert_pem.write_to_path(str(bad))
    b = await start_node(config=build_config(
        smpp={"tls_listen": "127.0.0.1:0", "tls_cert": str(cert), "tls_key": str(key)},
        accounts=[{"system_id": "bridge", "password": "pw", "providers": ["sim"]}],
        extra=upstream_node_config()), content_pipeline=True)
    port = b.smpp.addresses["smpp_tls"][1]
    a = await start_node(config=build_config(
        accounts=[{"system_id": "demo", "password": "demo", "providers": ["up"]}],
        extra=forwarding_provider(port, tls=True, tls_ca_file=str(good))),
        content_pipeline=True)
    provider = a.providers["up"]
    assert isinstance(provider, SmppProvider)
    async with asyncio.timeout(5):
        await provider._bound.wait()
    peer = await open_peer(a.smpp.addresses["smpp"])
    assert (await peer.bind()).command_status == CommandStatus.ESME_ROK
    _, receipts = await submit_and_collect(peer, [b"over tls"])
    assert receipts[0]["stat"] == "DELIVRD"

    before = METRICS.registry.get_sample_value(
        "smppbridge_upstream_session_errors_total", {"provider": "distrust",
                                                     "reason": "connect"}) or 0.0
    c = await start_node(config=build_config(
        accounts=[{"system_id": "demo", "password": "demo", "providers": ["distrust"]}],
        extra=forwarding_provider(port, tls=True, tls_ca_file=str(bad)).replace(
            'name = "up"', 'name = "distrust"')), content_pipeline=True)
    untrusting = c.providers["distrust"]
    assert isinstance(untrusting, SmppProvider)

    async def refused() -> None:
        while (METRICS.registry.get_sample_value(
                "smppbridge_upstream_session_errors_total",
                {"provider": "distrust", "reason": "connect"}) or 0.0) <= before:
            await asyncio.sleep(0.02)
    async with asyncio.timeout(5):
        await refused()
    assert not await untrusting.ready()
    assert "CERTIFICATE_VERIFY_FAILED" in untrusting.links[0].last_error


async def test_transmitter_plus_receiver_sends_on_one_and_takes_receipts_on_the_other(
        start_node: StartNode, open_peer: OpenPeer) -> None:
    """bind = "transmitter+receiver": each session is a transmitter (submits) and a
    receiver (receipts) at the upstream, which delivers the receipts to the receiver."""
    a, b = await two_nodes(start_node, bind="transmitter+receiver")
    provider = a.providers["up"]
    assert isinstance(provider, SmppProvider)
    async with asyncio.timeout(5):
        while not all(link.bound for link in provider.links):
            await asyncio.sleep(0.01)
    kinds = sorted(info.bind_type for info in b.local_binds())
    assert kinds == ["receiver", "transmitter"]
    peer = await open_peer(a.smpp.addresses["smpp"])
    assert (await peer.bind()).command_status == CommandStatus.ESME_ROK
    ids, receipts = await submit_and_collect(peer, [b"split binds 1", b"split binds 2"])
    assert {r["stat"] for r in receipts if r["id"] in ids} == {"DELIVRD"}
    assert [s["session"] for s in provider.sessions()] == ["0", "0rx"]


async def test_an_upstream_that_is_down_fails_over_to_the_next_provider(
        start_node: StartNode, open_peer: OpenPeer) -> None:
    """Routing, failover and the breaker apply as to any provider: with no session
    bound after connect_timeout the send fails as unavailable, the breaker counts it, and
    the route's next provider (the simulator) delivers."""
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    a = await start_node(config=build_config(
        accounts=[{"system_id": "demo", "password": "demo", "providers": ["up", "sim"]}],
        extra=forwarding_provider(dead, connect_timeout=0.2, retries=0,
                                  breaker_threshold=1) + upstream_node_config()),
        content_pipeline=True)
    peer = await open_peer(a.smpp.addresses["smpp"])
    assert (await peer.bind()).command_status == CommandStatus.ESME_ROK
    ids, receipts = await submit_and_collect(peer, [b"via the fallback"])
    assert {r["stat"] for r in receipts if r["id"] in ids} == {"DELIVRD"}
    stored = await a.store.find(ids[0])
    assert stored is not None
    assert stored.provider == "sim"
    assert not a.router.runners["up"].available  # the breaker opened
