"""Mobile-originated messages end to end: an upstream SMSC (the scripted fake) sends
deliver_sm that are not receipts; ``[[mo_routes]]`` give them to accounts; a real
smpplib receiver gets one as a deliver_sm, a real HTTP receiver (checking signatures)
gets another at the account's ``mo_url``; an unroutable one is kept and counted."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from smppbridge.config import parse_config
from smppbridge.core.errors import StoreUnavailable
from smppbridge.node.node import Node
from smppbridge.observability.metrics import METRICS
from smppbridge.providers.simulator.settings import SimConfig
from smppbridge.providers.smpp.provider import SmppProvider
from smppbridge.simulator.app import Simulator
from smppbridge.smpp import pdu as P
from smppbridge.smpp.constants import CommandStatus, Tag
from smppbridge.text.encoding import gsm_encode
from tests.integration.callback_receiver import CallbackReceiver
from tests.integration.esme import Esme
from tests.integration.upstream_fake import FakeSmsc, Upstream

pytestmark = pytest.mark.integration
SECRET = "mo-k3y"
WAIT = 10.0


def _config(db: str, upstream_port: int, receiver: CallbackReceiver) -> str:
    return f"""
[smpp]
listen = "127.0.0.1:0"
shutdown_grace = 1.0
[http]
listen = "127.0.0.1:0"
callback_allow_networks = ["127.0.0.0/8"]
[store]
url = "{db}"

[[accounts]]
system_id = "shop"
password = "pw"
providers = ["up"]
mo_parts = "parts"

[[accounts]]
system_id = "long"
password = "pw"
providers = ["up"]
mo = "both"
mo_url = "{receiver.url("long")}"
callback_secret = "{SECRET}"

[[accounts]]
system_id = "web"
password = "pw"
providers = ["up"]
mo_url = "{receiver.url("mo")}"
callback_secret = "{SECRET}"

[[mo_routes]]
prefix = "1234"
keyword = "shop"
account = "shop"

[[mo_routes]]
to = "5555"
account = "web"

[[mo_routes]]
to = "7777"
account = "long"

[[providers]]
name = "up"
type = "smpp"
host = "127.0.0.1"
port = {upstream_port}
system_id = "bridge"
password = "pw"
reconnect_backoff = 0.05
reconnect_backoff_max = 0.2

[[providers]]
name = "hj"
type = "http-json"
url = "http://127.0.0.1:9/send"
webhook_secret = "hook-s3cret"
worker = false

[[providers]]
name = "sim"
type = "simulator"
"""


@pytest.fixture
async def fake() -> AsyncIterator[FakeSmsc]:
    smsc = FakeSmsc()
    await smsc.start()
    yield smsc
    await smsc.close()


@pytest.fixture
async def receiver() -> AsyncIterator[CallbackReceiver]:
    r = CallbackReceiver(SECRET)
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


@pytest.fixture
async def node(tmp_path: Path, fake: FakeSmsc, receiver: CallbackReceiver
               ) -> AsyncIterator[Node]:
    port = fake._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    n = Node(parse_config(_config(f"sqlite:///{tmp_path / 'mo.db'}", port, receiver),
                          env={}))
    await n.start()
    provider = n.providers["up"]
    assert isinstance(provider, SmppProvider)
    async with asyncio.timeout(5):
        await provider._bound.wait()
    try:
        yield n
    finally:
        await n.stop()


def _upstream(fake: FakeSmsc) -> Upstream:
    return fake.connections[-1]


_SEQ = iter(range(5_000_000, 6_000_000))


def mo(fake: FakeSmsc, source: str, dest: str, data: bytes, *, data_coding: int = 0,
       esm_class: int = 0, tlvs: tuple[P.Tlv, ...] = ()) -> None:
    """The upstream sends one MO deliver_sm."""
    _upstream(fake).send(P.DeliverSm(
        sequence_number=next(_SEQ), source_addr=source, source_addr_ton=1,
        source_addr_npi=1, destination_addr=dest, esm_class=esm_class,
        data_coding=data_coding, short_message=data, tlvs=tlvs))


async def answers(fake: FakeSmsc, count: int) -> list[int]:
    await fake.until(lambda: len(fake.receipt_answers) >= count, WAIT)
    return fake.receipt_answers


async def bind(node: Node, system_id: str) -> Esme:
    esme = await asyncio.to_thread(Esme, node.smpp.addresses["smpp"][1], system_id, "pw")
    esme.thread.start()
    return esme


async def delivered(esme: Esme, count: int) -> list[object]:
    assert await asyncio.to_thread(esme.wait, lambda e: len(e.delivered) >= count, WAIT)
    return list(esme.delivered)


def mo_count(outcome: str) -> float:
    return METRICS.mo.labels("up", outcome)._value.get()


async def api_messages(node: Node, **params: str) -> list[dict[str, object]]:
    assert node.http_address is not None
    host, port = node.http_address
    async with httpx.AsyncClient() as client:
        r = await client.get(f"http://{host}:{port}/api/v1/messages", params=params)
    assert r.status_code == 200, r.text
    items: list[dict[str, object]] = r.json()["items"]
    return items


async def test_mo_routed_by_prefix_and_keyword_reaches_the_bound_receiver(
        node: Node, fake: FakeSmsc) -> None:
    """An MO to 12345 starting "shop" (any case) is the shop account's: its bound
    receiver gets a deliver_sm with esm_class 0, the UCS2 octets and data_coding as
    they came, from the subscriber to the short code; the upstream was answered ROK."""
    esme = await bind(node, "shop")
    try:
        text = "Shop заказ 42"
        mo(fake, "79001112233", "12345", text.encode("utf-16-be"), data_coding=8)
        assert await answers(fake, 1) == [CommandStatus.ESME_ROK]
        pdu = (await delivered(esme, 1))[0]
        assert pdu.esm_class == 0  # type: ignore[attr-defined]
        assert pdu.data_coding == 8  # type: ignore[attr-defined]
        assert pdu.short_message == text.encode("utf-16-be")  # type: ignore[attr-defined]
        assert pdu.source_addr == b"79001112233"  # type: ignore[attr-defined]
        assert pdu.destination_addr == b"12345"  # type: ignore[attr-defined]
        items = await api_messages(node, account="shop")
        assert [(i["direction"], i["text"], i["stat"]) for i in items] == [
            ("mo", text, "ACCEPTD")]
    finally:
        await asyncio.to_thread(esme.close)


async def test_mo_to_an_http_account_is_posted_signed_to_its_mo_url(
        node: Node, fake: FakeSmsc, receiver: CallbackReceiver) -> None:
    """An MO to 5555 goes to web's mo_url as signed JSON with the text, its encoding and
    addresses; nothing waits in the receipt outbox for web."""
    mo(fake, "79004445566", "+5555", gsm_encode("Hello @ bridge"))  # @ is GSM 0x00
    assert await answers(fake, 1) == [CommandStatus.ESME_ROK]
    assert await receiver.wait(lambda r: bool(r.delivered()), WAIT)
    call = receiver.delivered()[0]
    assert call.path == "/mo"
    assert call.signed is True
    f = call.fields
    assert (f["type"], f["account"], f["from"], f["to"], f["text"], f["encoding"],
            f["provider"]) == ("mo", "web", "79004445566", "+5555", "Hello @ bridge",
                               "gsm7", "up")
    assert f["mo_id"]
    assert f["event_id"]
    assert f["part"] is None
    assert await node.store.count_receipts("web") == 0


async def test_mo_kept_while_unbound_is_delivered_when_the_account_binds(
        node: Node, fake: FakeSmsc) -> None:
    """With no receiver of shop bound the MO is stored and acknowledged; the receiver
    that binds later gets it."""
    mo(fake, "79001112233", "1234", b"SHOP later")
    assert await answers(fake, 1) == [CommandStatus.ESME_ROK]
    assert await node.store.count_receipts("shop") == 1
    esme = await bind(node, "shop")
    try:
        pdu = (await delivered(esme, 1))[0]
        assert pdu.short_message == b"SHOP later"  # type: ignore[attr-defined]
    finally:
        await asyncio.to_thread(esme.close)


async def test_unroutable_mo_is_kept_visible_in_history_and_counted(
        node: Node, fake: FakeSmsc) -> None:
    """An MO no route takes (a keyword route's number without the keyword, and an
    unknown number) is acknowledged, kept as REJECTD with no account, and counted."""
    before = mo_count("unroutable")
    mo(fake, "79007778899", "12345", b"hello there")
    mo(fake, "79007778899", "9999", b"SHOP but wrong number")
    assert await answers(fake, 2) == [CommandStatus.ESME_ROK] * 2
    assert mo_count("unroutable") == before + 2
    items = await api_messages(node, stat="REJECTD")
    assert sorted((i["direction"], i["account"], i["to"]) for i in items) == [
        ("mo", "", "12345"), ("mo", "", "9999")]


async def test_long_mo_in_three_ucs2_parts_out_of_order_is_joined_into_one_mo(
        node: Node, fake: FakeSmsc, receiver: CallbackReceiver) -> None:
    """mo_parts = "join" (the default), mo = "both": a 3-part UCS2 MO sent 3, 1, 2 is
    answered ROK part by part; the bound receiver gets ONE deliver_sm with the whole
    text's octets in message_payload (over 254), data_coding 8, no UDH; the mo_url gets
    ONE callback with the whole text and parts 3; the history has one MO."""
    text = "Длинное сообщение, часть за частью. " * 4  # 144 UCS2 chars, 288 octets
    octets = text.encode("utf-16-be")
    chunks = [octets[i:i + 134] for i in range(0, len(octets), 134)]
    assert len(chunks) == 3
    esme = await bind(node, "long")
    try:
        for k, n in enumerate((3, 1, 2), 1):
            mo(fake, "79001112233", "7777", bytes((5, 0, 3, 42, 3, n)) + chunks[n - 1],
               esm_class=0x40, data_coding=8)
            # each part is answered once it is held, before the set is whole
            assert await answers(fake, k) == [CommandStatus.ESME_ROK] * k
        [pdu] = await delivered(esme, 1)
        assert pdu.esm_class == 0  # type: ignore[attr-defined]
        assert pdu.data_coding == 8  # type: ignore[attr-defined]
        assert pdu.message_payload == octets  # type: ignore[attr-defined]
        assert await receiver.wait(lambda r: bool(r.delivered()), WAIT)
        [call] = receiver.delivered()
        assert call.path == "/long"
        assert (call.fields["text"], call.fields["parts"], call.fields["part"]) == (
            text, 3, None)
        items = await api_messages(node, account="long")
        assert [(i["direction"], i["text"]) for i in items] == [("mo", text)]
        assert await node.store.load_parts() == []
        assert len(esme.delivered) == 1
    finally:
        await asyncio.to_thread(esme.close)


async def test_long_mo_parts_pass_to_the_receiver_with_their_concat_udh(
        node: Node, fake: FakeSmsc) -> None:
    """mo_parts = "parts": a long MO in two parts (the first by UDH, the second by SAR TLVs, same
    reference): each part is stored and passed on as it comes, with an 8-bit concat
    UDH for the ESME to join; the second part, without the keyword, follows the route
    its first part took."""
    esme = await bind(node, "shop")
    try:
        mo(fake, "79001112233", "1234", bytes((5, 0, 3, 7, 2, 1)) + b"SHOP part one ",
           esm_class=0x40)
        assert await answers(fake, 1) == [CommandStatus.ESME_ROK]
        mo(fake, "79001112233", "1234", b"part two", tlvs=(
            P.Tlv(Tag.SAR_MSG_REF_NUM, (7).to_bytes(2, "big")),
            P.Tlv(Tag.SAR_TOTAL_SEGMENTS, b"\x02"), P.Tlv(Tag.SAR_SEGMENT_SEQNUM, b"\x02")))
        assert await answers(fake, 2) == [CommandStatus.ESME_ROK] * 2
        pdus = await delivered(esme, 2)
        got = sorted((p.esm_class, p.short_message) for p in pdus)  # type: ignore[attr-defined]
        assert got == [(0x40, bytes((5, 0, 3, 7, 2, 1)) + b"SHOP part one "),
                       (0x40, bytes((5, 0, 3, 7, 2, 2)) + b"part two")]
    finally:
        await asyncio.to_thread(esme.close)


async def test_mo_not_stored_is_answered_retry_so_the_upstream_sends_it_again(
        node: Node, fake: FakeSmsc, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store error: the deliver_sm is answered ESME_RX_T_APPN, not ROK."""
    async def broken(*_: object, **__: object) -> None:
        raise StoreUnavailable("disk full")

    monkeypatch.setattr(node.store, "accept_mo", broken)
    mo(fake, "79001112233", "5555", b"lost?")
    assert await answers(fake, 1) == [CommandStatus.ESME_RX_T_APPN]



async def test_http_json_mo_webhook_stores_then_answers_and_routes_to_the_receiver(
        node: Node, receiver: CallbackReceiver) -> None:
    """POST /webhooks/hj/mo with the provider's webhook secret: 401 without it; with it
    the MO is stored before the 200 and reaches shop's receiver in UCS2 (the text does
    not fit GSM 7-bit), and another one web's mo_url; a body without from/to is 400."""
    assert node.http_address is not None
    host, port = node.http_address
    url = f"http://{host}:{port}/webhooks/hj/mo"
    esme = await bind(node, "shop")
    try:
        async with httpx.AsyncClient() as client:
            body = {"messages": [{"from": "79001112233", "to": "1234", "text": "shop ёлка"},
                                 {"from": "79004445566", "to": "5555", "text": "hi"}]}
            assert (await client.post(url, json=body)).status_code == 401
            r = await client.post(url, json=body, headers={"X-Webhook-Secret": "hook-s3cret"})
            assert r.status_code == 200, r.text
            bad = await client.post(url, json={"to": "1"},
                                    headers={"X-Webhook-Secret": "hook-s3cret"})
            assert bad.status_code == 400
        pdu = (await delivered(esme, 1))[0]
        assert pdu.data_coding == 8  # type: ignore[attr-defined]
        assert pdu.short_message == "shop ёлка".encode("utf-16-be")  # type: ignore[attr-defined]
        assert await receiver.wait(lambda r: bool(r.delivered()), WAIT)
        f = receiver.delivered()[0].fields
        assert (f["provider"], f["text"], f["to"]) == ("hj", "hi", "5555")
    finally:
        await asyncio.to_thread(esme.close)


async def test_standalone_simulator_sends_an_mo_on_request_to_the_node(
        node: Node, receiver: CallbackReceiver) -> None:
    """The simulator's POST /mo sends one MO to its mo_url — the node's
    /webhooks/hj/mo, the secret in the query — and answers with the node's 200; the
    MO reaches web's mo_url. Without mo_url it is a 409."""
    assert node.http_address is not None
    host, port = node.http_address
    sim = Simulator(SimConfig(mo_to="5555", mo_text="sim says hi"))
    sim_host, sim_port = await sim.start(webhook_interval=None)
    try:
        async with httpx.AsyncClient() as client:
            r = await client.post(f"http://{sim_host}:{sim_port}/mo", json={})
            assert r.status_code == 409
            await client.post(f"http://{sim_host}:{sim_port}/control", json={
                "mo_url": f"http://{host}:{port}/webhooks/hj/mo?secret=hook-s3cret"})
            r = await client.post(f"http://{sim_host}:{sim_port}/mo",
                                  json={"from": "79009990000"})
            assert r.status_code == 200, r.text
            assert r.json()["status"] == 200
        assert await receiver.wait(lambda r: bool(r.delivered()), WAIT)
        f = receiver.delivered()[0].fields
        assert (f["from"], f["to"], f["text"], f["provider"]) == (
            "79009990000", "5555", "sim says hi", "hj")
    finally:
        await sim.aclose()


async def test_in_process_simulator_takes_an_mo_on_request(
        node: Node, receiver: CallbackReceiver) -> None:
    """POST /webhooks/sim/mo (the in-process simulator's webhook, http-json's MO shape)
    stores the MO as the simulator's and routes it."""
    assert node.http_address is not None
    host, port = node.http_address
    async with httpx.AsyncClient() as client:
        r = await client.post(f"http://{host}:{port}/webhooks/sim/mo",
                              json={"from": "79001230000", "to": "5555", "text": "ping"})
    assert r.status_code == 200, r.text
    assert await receiver.wait(lambda r: bool(r.delivered()), WAIT)
    assert receiver.delivered()[0].fields["provider"] == "sim"


@contextlib.asynccontextmanager
async def _redis_node(fake: FakeSmsc, receiver: CallbackReceiver) -> AsyncIterator[Node]:
    """A node on the Redis store (a key prefix of its own, deleted after) bound to
    ``fake`` as its upstream."""
    prefix = f"test:{uuid.uuid4().hex}:"
    url = "redis://127.0.0.1:6379/15"
    raw = aioredis.Redis.from_url(url, decode_responses=True)
    port = fake._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    n = Node(parse_config(_config(f"{url}?prefix={prefix}", port, receiver), env={}))
    await n.start()
    try:
        provider = n.providers["up"]
        assert isinstance(provider, SmppProvider)
        async with asyncio.timeout(5):
            await provider._bound.wait()
        yield n
    finally:
        await n.stop()
        keys = [k async for k in raw.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await raw.delete(*keys)
        await raw.aclose()


async def test_mo_with_the_redis_store(fake: FakeSmsc, receiver: CallbackReceiver) -> None:
    """The same paths on the cluster store: an MO kept while shop is unbound reaches
    its receiver when it binds, one for web its mo_url, an unroutable one is in the
    history."""
    async with _redis_node(fake, receiver) as n:
        mo(fake, "79001112233", "1234", b"shop in redis")
        mo(fake, "79004445566", "5555", b"web in redis")
        mo(fake, "79004445566", "0000", b"nobody")
        assert await answers(fake, 3) == [CommandStatus.ESME_ROK] * 3
        esme = await bind(n, "shop")
        try:
            pdu = (await delivered(esme, 1))[0]
            assert pdu.short_message == b"shop in redis"  # type: ignore[attr-defined]
        finally:
            await asyncio.to_thread(esme.close)
        assert await receiver.wait(lambda r: bool(r.delivered()), WAIT)
        assert receiver.delivered()[0].fields["text"] == "web in redis"
        items = await api_messages(n, stat="REJECTD")
        assert [(i["direction"], i["to"]) for i in items] == [("mo", "0000")]


async def test_long_mo_joined_with_the_redis_store(fake: FakeSmsc,
                                                   receiver: CallbackReceiver) -> None:
    """Joining on the cluster store: a 2-part MO sent 2, 1 reaches long's mo_url as one
    callback with the whole text; no part is left held."""
    async with _redis_node(fake, receiver) as n:
        mo(fake, "79001112233", "7777", bytes((5, 0, 3, 9, 2, 2)) + b"in redis",
           esm_class=0x40)
        mo(fake, "79001112233", "7777", bytes((5, 0, 3, 9, 2, 1)) + b"joined ",
           esm_class=0x40)
        assert await answers(fake, 2) == [CommandStatus.ESME_ROK] * 2
        assert await receiver.wait(lambda r: bool(r.delivered()), WAIT)
        [call] = receiver.delivered()
        assert (call.fields["text"], call.fields["parts"]) == ("joined in redis", 2)
        assert await n.store.load_parts() == []
