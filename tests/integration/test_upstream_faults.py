"""The smpp provider against a scripted upstream (tests/integration/upstream_fake.py):
receipts before submit_sm_resp, 0x58/0x14 retried, other errors final with err:,
receipts for unknown ids, garbage, and a drop with a full window."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from smppbridge.config import load_config
from smppbridge.node.node import Node
from smppbridge.observability.metrics import METRICS
from smppbridge.providers.smpp.provider import SmppProvider
from smppbridge.smpp import pdu as P
from smppbridge.smpp.constants import CommandStatus
from smppbridge.smpp.receipts import Stat
from tests.integration.conftest import (
    OpenPeer,
    Peer,
    StartNode,
    answer_unasked,
    build_config,
    config_toml,
)
from tests.integration.test_upstream_smpp import forwarding_provider
from tests.integration.upstream_fake import FakeSmsc, Upstream, deliver

pytestmark = pytest.mark.integration
WAIT = 15.0


@pytest.fixture
async def fake() -> AsyncIterator[FakeSmsc]:
    smsc = FakeSmsc()
    await smsc.start()
    yield smsc
    await smsc.close()


async def node_to(start_node: StartNode, smsc: FakeSmsc, **keys: object) -> Node:
    port = smsc._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    node = await start_node(config=build_config(
        accounts=[{"system_id": "demo", "password": "demo", "providers": ["up"]}],
        extra=forwarding_provider(port, **keys)), content_pipeline=True)
    provider = node.providers["up"]
    assert isinstance(provider, SmppProvider)
    async with asyncio.timeout(5):
        await provider._bound.wait()
    return node


async def send(peer: Peer, count: int, prefix: str = "m") -> list[str]:
    ids = []
    for i in range(count):
        resp = await peer.request(P.SubmitSm(source_addr="Shop", destination_addr=f"7900{i:07d}",
                                             short_message=f"{prefix} {i}".encode(),
                                             registered_delivery=1))
        assert resp.command_status == CommandStatus.ESME_ROK
        assert isinstance(resp, P.SubmitSmResp)
        ids.append(resp.message_id)
    return ids


async def receipts_for(peer: Peer, ids: list[str]) -> dict[str, dict[str, str]]:
    got: list[dict[str, str]] = []
    async with asyncio.timeout(WAIT):
        while not set(ids) <= {r["id"] for r in got}:
            answer_unasked(peer, await peer.read(timeout=WAIT), got)
    return {r["id"]: r for r in got}


async def bound_peer(node: Node, open_peer: OpenPeer) -> Peer:
    peer = await open_peer(node.smpp.addresses["smpp"])
    assert (await peer.bind()).command_status == CommandStatus.ESME_ROK
    return peer


def counter(name: str, **labels: str) -> float:
    value = METRICS.registry.get_sample_value(name, labels)
    return value or 0.0


async def test_a_receipt_before_its_submit_sm_resp_is_kept_and_matched(
        start_node: StartNode, open_peer: OpenPeer, fake: FakeSmsc) -> None:
    def early(up: Upstream, submit: P.SubmitSm) -> None:
        mid = up.smsc.next_id()
        up.receipt(submit, mid)  # the receipt first, as some upstreams do
        up.answer(submit, 0, mid)
    fake.behaviour = early
    before = counter("smppbridge_upstream_receipts_total", provider="up", result="early")
    node = await node_to(start_node, fake)
    peer = await bound_peer(node, open_peer)
    ids = await send(peer, 3)
    got = await receipts_for(peer, ids)
    assert {got[i]["stat"] for i in ids} == {"DELIVRD"}
    assert counter("smppbridge_upstream_receipts_total", provider="up",
                   result="early") - before == 3
    await fake.until(lambda: len(fake.receipt_answers) >= 3)
    assert set(fake.receipt_answers) == {0}


async def test_throttled_and_queue_full_answers_back_off_and_are_sent_again(
        start_node: StartNode, open_peer: OpenPeer, fake: FakeSmsc) -> None:
    refusals = [CommandStatus.ESME_RTHROTTLED, CommandStatus.ESME_RMSGQFUL]

    def busy(up: Upstream, submit: P.SubmitSm) -> None:
        if refusals:
            up.answer(submit, refusals.pop(0))
            return
        deliver(up, submit)
    fake.behaviour = busy
    node = await node_to(start_node, fake)
    peer = await bound_peer(node, open_peer)
    ids = await send(peer, 1)
    got = await receipts_for(peer, ids)
    assert got[ids[0]]["stat"] == "DELIVRD"
    assert len(fake.submits) == 3  # throttled, queue full, then taken


async def test_other_upstream_errors_are_final_with_their_status_in_err(
        start_node: StartNode, open_peer: OpenPeer, fake: FakeSmsc) -> None:
    fake.behaviour = lambda up, submit: up.answer(submit, CommandStatus.ESME_RINVDSTADR)
    node = await node_to(start_node, fake)
    peer = await bound_peer(node, open_peer)
    ids = await send(peer, 1)
    got = await receipts_for(peer, ids)
    assert got[ids[0]]["stat"] == "REJECTD"
    assert got[ids[0]]["err"] == "011"  # ESME_RINVDSTADR 0x0B
    assert len(fake.submits) == 1  # not retried


async def test_a_receipt_for_an_unknown_id_is_counted_and_the_session_carries_on(
        start_node: StartNode, open_peer: OpenPeer, fake: FakeSmsc) -> None:
    node = await node_to(start_node, fake, early_receipt_ttl=0.2)
    before = counter("smppbridge_upstream_receipts_total", provider="up", result="unmatched")
    up = fake.connections[-1]
    stray = P.SubmitSm(source_addr="x", destination_addr="y", short_message=b"stray")
    up.receipt(stray, "DEADBEEF", Stat.UNDELIV, 1)
    await fake.until(lambda: len(fake.receipt_answers) >= 1)
    assert fake.receipt_answers == [0]  # answered, after the store lookup found nothing
    assert counter("smppbridge_upstream_receipts_total", provider="up",
                   result="unmatched") - before == 1
    peer = await bound_peer(node, open_peer)
    ids = await send(peer, 2)
    got = await receipts_for(peer, ids)
    assert {got[i]["stat"] for i in ids} == {"DELIVRD"}
    assert fake.binds == 1  # the same session throughout


async def test_garbage_from_the_upstream_drops_the_session_which_comes_back(
        start_node: StartNode, open_peer: OpenPeer, fake: FakeSmsc) -> None:
    sent_garbage = False

    def garbage_once(up: Upstream, submit: P.SubmitSm) -> None:
        nonlocal sent_garbage
        if not sent_garbage:
            sent_garbage = True
            up.writer.write(struct.pack(">IIII", 7, 0x80000004, 0, submit.sequence_number))
            return
        deliver(up, submit)
    fake.behaviour = garbage_once
    before = counter("smppbridge_upstream_session_errors_total", provider="up",
                     reason="garbage")
    node = await node_to(start_node, fake)
    peer = await bound_peer(node, open_peer)
    ids = await send(peer, 2)
    got = await receipts_for(peer, ids)
    assert {got[i]["stat"] for i in ids} == {"DELIVRD"}
    assert fake.binds >= 2
    assert counter("smppbridge_upstream_session_errors_total", provider="up",
                   reason="garbage") - before == 1


async def test_an_unreadable_submit_sm_resp_leaves_the_message_to_be_sent_again(
        start_node: StartNode, open_peer: OpenPeer, fake: FakeSmsc) -> None:
    garbled = False

    def garble_once(up: Upstream, submit: P.SubmitSm) -> None:
        nonlocal garbled
        if not garbled:
            garbled = True
            # a message_id without its NUL: the body cannot be read
            up.writer.write(struct.pack(">IIII", 18, 0x80000004, 0,
                                        submit.sequence_number) + b"ab")
            return
        deliver(up, submit)
    fake.behaviour = garble_once
    node = await node_to(start_node, fake, backoff=0.05)
    peer = await bound_peer(node, open_peer)
    ids = await send(peer, 1)
    got = await receipts_for(peer, ids)
    assert got[ids[0]]["stat"] == "DELIVRD"
    assert [s.short_message for s in fake.submits] == [b"m 0", b"m 0"]
    assert fake.binds == 1  # the session survived it


async def test_an_upstream_drop_with_a_full_window_loses_nothing(
        start_node: StartNode, open_peer: OpenPeer, fake: FakeSmsc) -> None:
    window = 5
    held: list[P.SubmitSm] = []
    first = True

    def hold_then_drop(up: Upstream, submit: P.SubmitSm) -> None:
        nonlocal first
        if first:
            held.append(submit)
            if len(held) == window:
                first = False
                up.drop()  # the window is full and nothing was answered
            return
        deliver(up, submit)
    fake.behaviour = hold_then_drop
    node = await node_to(start_node, fake, window=window)
    peer = await bound_peer(node, open_peer)
    ids = await send(peer, window + 3)
    got = await receipts_for(peer, ids)
    assert {got[i]["stat"] for i in ids} == {"DELIVRD"}
    texts = {s.short_message for s in fake.submits}
    assert texts == {f"m {i}".encode() for i in range(window + 3)}
    assert counter("smppbridge_upstream_submits_total", provider="up", session="0",
                   status="lost") >= window


async def test_the_operator_api_and_metrics_show_each_upstream_session(
        start_node: StartNode, fake: FakeSmsc) -> None:
    port = fake._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    toml = config_toml(accounts=[{"system_id": "demo", "password": "demo",
                                  "providers": ["up"]}],
                       extra=forwarding_provider(port, binds=2, window=7))
    toml = toml.replace('[http]\nlisten = ""', '[http]\nlisten = "127.0.0.1:0"\n'
                        'admin_tokens = ["t0ken-for-the-tests-only"]')
    from smppbridge.config import parse_config
    node = await start_node(config=parse_config(toml, source="<test>", env={}),
                            content_pipeline=True)
    await fake.until(lambda: fake.binds == 2)
    assert node.http_address is not None
    host, http_port = node.http_address
    async with httpx.AsyncClient(base_url=f"http://{host}:{http_port}", timeout=5) as client:
        async def sessions() -> list[dict[str, object]]:
            r = await client.get("/api/v1/providers",
                                 headers={"authorization": "Bearer t0ken-for-the-tests-only"})
            assert r.status_code == 200
            (item,) = r.json()
            assert item["type"] == "smpp"
            return list(item["upstream_sessions"])
        async with asyncio.timeout(5):
            while [s["state"] for s in await sessions()] != ["bound", "bound"]:
                await asyncio.sleep(0.05)
        got = await sessions()
    assert [(s["session"], s["bind"], s["window"]) for s in got] == [
        ("0", "transceiver", 7), ("1", "transceiver", 7)]
    assert counter("smppbridge_upstream_binds_up", provider="up", session="1") == 1


async def test_a_reload_that_changes_an_smpp_provider_binds_the_new_one_and_unbinds_the_old(
        tmp_path: Path, open_peer: OpenPeer, fake: FakeSmsc) -> None:
    port = fake._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    path = tmp_path / "node.toml"

    def write(window: int) -> None:
        path.write_text(config_toml(
            accounts=[{"system_id": "demo", "password": "demo", "providers": ["up"]}],
            extra=forwarding_provider(port, window=window)))
    write(5)
    node = Node(load_config(str(path), env={}), str(path))
    await node.start()
    try:
        old = node.providers["up"]
        assert isinstance(old, SmppProvider)
        async with asyncio.timeout(5):
            await old._bound.wait()
        write(6)
        assert node.reload()
        new = node.providers["up"]
        assert isinstance(new, SmppProvider)
        assert new is not old
        async with asyncio.timeout(5):
            await new._bound.wait()
            while await old.ready():  # the retired one unbinds
                await asyncio.sleep(0.01)
        assert new.up.window == 6
        peer = await bound_peer(node, open_peer)
        ids = await send(peer, 1)
        got = await receipts_for(peer, ids)
        assert got[ids[0]]["stat"] == "DELIVRD"
    finally:
        await node.stop()


async def test_throughput_paces_submit_sm_over_all_sessions(
        start_node: StartNode, open_peer: OpenPeer, fake: FakeSmsc) -> None:
    """throughput = 40 over 2 sessions: 20 messages reach the upstream over at least
    (20 - burst) / 40 s, the burst being a twentieth of a second's worth (2)."""
    arrivals: list[float] = []

    def timed(up: Upstream, submit: P.SubmitSm) -> None:
        arrivals.append(asyncio.get_running_loop().time())
        deliver(up, submit)
    fake.behaviour = timed
    node = await node_to(start_node, fake, binds=2, throughput=40.0)
    peer = await bound_peer(node, open_peer)
    ids = await send(peer, 20)
    await receipts_for(peer, ids)
    assert len(arrivals) == 20
    assert arrivals[-1] - arrivals[0] >= (20 - 2 - 1) / 40


async def test_a_receipt_that_names_no_id_is_counted_answered_and_harmless(
        start_node: StartNode, open_peer: OpenPeer, fake: FakeSmsc) -> None:
    node = await node_to(start_node, fake)
    before = counter("smppbridge_upstream_receipts_total", provider="up", result="invalid")
    up = fake.connections[-1]
    up.send(P.DeliverSm(sequence_number=4242, esm_class=4, short_message=b"\xff garbage"))
    await fake.until(lambda: len(fake.receipt_answers) >= 1)
    assert fake.receipt_answers == [0]
    assert counter("smppbridge_upstream_receipts_total", provider="up",
                   result="invalid") - before == 1
    peer = await bound_peer(node, open_peer)
    ids = await send(peer, 1)
    assert (await receipts_for(peer, ids))[ids[0]]["stat"] == "DELIVRD"
    assert fake.binds == 1


async def test_a_deliver_sm_that_is_not_a_receipt_is_counted_and_acknowledged(
        start_node: StartNode, fake: FakeSmsc) -> None:
    """Mobile-originated deliver_sm are not routed yet (issue 19 part 2): acknowledged
    so the upstream does not resend them forever, and counted."""
    await node_to(start_node, fake)
    before = counter("smppbridge_upstream_deliver_sm_total", provider="up")
    up = fake.connections[-1]
    up.send(P.DeliverSm(sequence_number=4343, source_addr="79001234567",
                        destination_addr="1234", short_message=b"STOP"))
    await fake.until(lambda: len(fake.receipt_answers) >= 1)
    assert fake.receipt_answers == [0]
    assert counter("smppbridge_upstream_deliver_sm_total", provider="up") - before == 1


async def test_a_long_message_goes_up_in_parts_and_is_final_when_every_part_is(
        start_node: StartNode, open_peer: OpenPeer, fake: FakeSmsc) -> None:
    """Two UCS2 parts from the ESME (UDH), reassembled by the node, go upstream as two
    UDH parts in UCS2 (data_coding pass); each part's receipt comes back; the ESME gets
    a receipt for each of its parts once both are in."""
    node = await node_to(start_node, fake)
    peer = await bound_peer(node, open_peer)
    text = "привет мир " * 10  # 110 characters: two UCS2 parts
    payload = text.encode("utf-16-be")
    halves = [payload[:134], payload[134:]]
    ids = []
    for seq, half in enumerate(halves, 1):
        resp = await peer.request(P.SubmitSm(
            source_addr="Shop", destination_addr="79001234567", esm_class=0x40,
            data_coding=8, registered_delivery=1,
            short_message=bytes([5, 0, 3, 9, 2, seq]) + half))
        assert resp.command_status == CommandStatus.ESME_ROK
        assert isinstance(resp, P.SubmitSmResp)
        ids.append(resp.message_id)
    got = await receipts_for(peer, ids)
    assert {got[i]["stat"] for i in ids} == {"DELIVRD"}
    assert len(fake.submits) == 2
    assert all(s.data_coding == 8 and s.esm_class & 0x40 for s in fake.submits)
    assert b"".join(s.short_message[6:] for s in fake.submits).decode("utf-16-be") == text
