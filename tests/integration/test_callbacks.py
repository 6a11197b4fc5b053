"""Status callbacks end to end on real sockets: SMPP-submitted messages of accounts
with each ``receipts`` setting (smpplib binds), the JSON, Jasmin and Kannel shapes at a
real HTTP receiver that checks every signature, a receiver outage of a few seconds,
and the Redis store (docs/http.md, Status callbacks)."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
import trustme

from smppbridge.config import parse_config
from smppbridge.core.callbacks import CallbackRequest
from smppbridge.core.message import Address, Extra, OutboundMessage
from smppbridge.delivery.callbacks import HttpCallbackSender
from smppbridge.node.node import Node
from smppbridge.smpp.receipts import parse_receipt
from smppbridge.text.content import Content, Kind
from tests.integration.callback_receiver import CallbackReceiver
from tests.integration.esme import Esme

SECRET = "k3y"
REDIS_URL = "redis://127.0.0.1:6379/15"


def _config(store_url: str, receiver: CallbackReceiver) -> str:
    accounts = ""
    for name, receipts in (("smpp1", "smpp"), ("http1", "http"), ("both1", "both")):
        url = f'receipt_url = "{receiver.url(name)}"' if receipts != "smpp" else ""
        accounts += f"""
[[accounts]]
system_id = "{name}"
password = "pw"
providers = ["sim"]
receipts = "{receipts}"
{url}
callback_secret = "{SECRET}"
"""
    return f"""
[smpp]
listen = "127.0.0.1:0"
shutdown_grace = 1.0
[http]
listen = ""
callback_allow_networks = ["127.0.0.0/8"]
[store]
url = "{store_url}"
{accounts}
[[providers]]
name = "sim"
type = "simulator"
poll_interval = 0.1
simulator = {{ deliver_after = 0.2 }}
"""


@pytest.fixture
async def node(tmp_path: Path, receiver: CallbackReceiver) -> AsyncIterator[Node]:
    n = Node(parse_config(_config(f"sqlite:///{tmp_path}/cb.db", receiver), env={}))
    n.callbacks.breaker_open = 1.0  # a test outage is seconds long
    await n.start()
    try:
        yield n
    finally:
        await n.stop()


async def _submit(port: int, account: str) -> tuple[Esme, str]:
    esme = await asyncio.to_thread(Esme, port, account, "pw")
    esme.thread.start()
    await asyncio.to_thread(esme.client.send_message, source_addr_ton=5,
                            source_addr="Shop", dest_addr_ton=1, dest_addr_npi=1,
                            destination_addr="79001234567", short_message=b"hello",
                            registered_delivery=1)
    assert await asyncio.to_thread(esme.wait, lambda e: len(e.resps) == 1, 5)
    assert esme.resps[0].status == 0
    return esme, esme.resps[0].message_id.decode()


async def _until(pred: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await pred():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.05)
    return False


async def test_each_receipts_setting_over_smpp(node: Node, receiver: CallbackReceiver) -> None:
    """smpp: a deliver_sm receipt and no callback; http: a signed callback and no
    receipt stored; both: both."""
    port = node.smpp.addresses["smpp"][1]
    sessions = {name: await _submit(port, name) for name in ("smpp1", "http1", "both1")}
    try:
        assert await receiver.wait(lambda r: len(r.delivered()) == 2, 15)
        for name in ("smpp1", "both1"):
            esme, mid = sessions[name]
            assert await asyncio.to_thread(esme.wait, lambda e: len(e.receipts) == 1, 10)
            assert parse_receipt(esme.receipts[0])["id"] == mid
        assert await _until(lambda: _empty(node), 10)
        by_path = {c.path: c for c in receiver.delivered()}
        assert set(by_path) == {"/http1", "/both1"}  # none for the smpp account
        for name in ("http1", "both1"):
            body = by_path[f"/{name}"].fields
            assert by_path[f"/{name}"].signed is True
            assert body["message_id"] == sessions[name][1]
            assert body["account"] == name
            assert body["status"] == "delivered"
            assert body["from"] == "Shop"
            assert body["to"] == "79001234567"
            assert body["provider"] == "sim"
            assert body["provider_message_id"]
            assert body["err"] == "000"
            assert body["attempt"] == 1
        assert await node.store.receipts_of(sessions["http1"][1]) == []
        assert sessions["http1"][0].receipts == []
    finally:
        for esme, _ in sessions.values():
            await asyncio.to_thread(esme.close)


async def _empty(node: Node) -> bool:
    return await node.store.count_callbacks() == 0


def _message(i: int, account: str, **extra: str) -> OutboundMessage:
    mid = f"cb{uuid.uuid4().hex[:8]}{i}"
    return OutboundMessage(message_id=mid, part_ids=(mid,), account=account,
                           source=Address("Shop", 5, 0), destination=Address("0079001112233"),
                           content=Content(Kind.SMS, f"hello {i}"), submitted_at=time.time(),
                           extra=dict(extra))


async def test_a_receiver_outage_is_lived_through_in_order(node: Node,
                                                           receiver: CallbackReceiver) -> None:
    """The receiver answers 503 until an event has been tried again: every event
    arrives once it is back, each message's ``sent`` before its final status, with one
    event_id each."""
    receiver.set_mode("fail")
    messages = [_message(i, "http1", **{Extra.CALLBACK_LEVEL: "3",
                                        Extra.CLIENT_REF: f"ref-{i}"}) for i in range(5)]
    assert await node.pipeline.accept_many(messages) == [0] * 5
    # The outage lasts until the dispatcher has tried an event again (a retry after the
    # first 503s), not for a fixed time.
    assert await receiver.wait(lambda r: r.arrivals > len(messages), 30)
    receiver.set_mode("ok")
    assert await receiver.wait(lambda r: len(r.delivered()) >= 10, 40)
    assert await _until(lambda: _empty(node), 10)
    for m in messages:
        mine = [c.fields for c in receiver.delivered(
            lambda c, mid=m.message_id: c.fields["message_id"] == mid)]
        assert [f["status"] for f in mine] == ["sent", "delivered"]
        assert mine[0]["client_ref"] == f"ref-{m.message_id[-1]}"
        assert len({f["event_id"] for f in mine}) == 2
    assert all(c.signed for c in receiver.calls)
    assert any(c.answered == 503 for c in receiver.calls)


async def test_jasmin_and_kannel_shapes(node: Node, receiver: CallbackReceiver) -> None:
    jasmin = _message(1, "smpp1", **{Extra.CALLBACK_URL: receiver.url("jasmin"),
                                     Extra.CALLBACK_FORMAT: "jasmin",
                                     Extra.CALLBACK_METHOD: "GET", Extra.CALLBACK_LEVEL: "3"})
    kannel = _message(2, "smpp1", **{
        Extra.CALLBACK_URL: receiver.url("kannel") + "?type=%d&to=%p&from=%P&id=%I&r=%A",
        Extra.CALLBACK_FORMAT: "kannel", Extra.CALLBACK_LEVEL: "9"})
    await node.pipeline.accept_many([jasmin, kannel])
    assert await receiver.wait(lambda r: len(r.delivered()) == 4, 15)
    j = [c for c in receiver.delivered() if c.path == "/jasmin"]
    assert [c.method for c in j] == ["GET", "GET"]
    assert [c.fields["level"] for c in j] == ["1", "2"]
    assert j[0].fields["message_status"] == "ESME_ROK"
    assert j[1].fields["message_status"] == "DELIVRD"
    assert j[1].fields["id"] == jasmin.message_id
    assert j[1].fields["dlvrd"] == "001"
    assert j[1].fields["connector"] == "sim"
    assert all(c.signed for c in j)  # smpp1 has a secret too: the query string is signed
    k = [c.fields for c in receiver.delivered() if c.path == "/kannel"]
    assert [f["type"] for f in k] == ["8", "1"]
    assert k[1]["to"] == "0079001112233"
    assert k[1]["from"] == "Shop"
    assert k[1]["id"] == kannel.message_id
    assert "stat:DELIVRD" in k[1]["r"]


async def test_refused_address_fails_at_once_into_the_timeline(
        node: Node, receiver: CallbackReceiver) -> None:
    """A URL on a private address not allowed fails without a request; the message's
    timeline says so."""
    m = _message(1, "smpp1", **{Extra.CALLBACK_URL: "http://10.255.255.1:9/cb"})
    await node.pipeline.accept_many([m])

    async def failed() -> bool:
        return any("callback failed" in e.detail for e in await node.store.timeline(
            m.message_id))
    assert await _until(failed, 10)
    last = (await node.store.timeline(m.message_id))[-1]
    assert "10.255.255.1 is a private address" in last.detail
    assert receiver.arrivals == 0


async def test_callbacks_with_the_redis_store(tmp_path: Path,
                                              receiver: CallbackReceiver) -> None:
    prefix = f"test:{uuid.uuid4().hex}:"
    raw = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    n = Node(parse_config(_config(f"{REDIS_URL}?prefix={prefix}", receiver), env={}))
    await n.start()
    try:
        port = n.smpp.addresses["smpp"][1]
        esme, mid = await _submit(port, "http1")
        try:
            assert await receiver.wait(lambda r: len(r.delivered()) == 1, 15)
            [call] = receiver.delivered()
            assert call.fields["message_id"] == mid
            assert call.signed is True
            assert await _until(lambda: _empty(n), 10)
        finally:
            await asyncio.to_thread(esme.close)
    finally:
        await n.stop()
        keys = [k async for k in raw.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await raw.delete(*keys)
        await raw.aclose()


# --- the sender against real servers ---------------------------------------------------


async def test_sender_connects_to_the_checked_address_keeping_the_name(
        receiver: CallbackReceiver) -> None:
    """A name that no DNS knows, resolved (once) by the injected resolver to 127.0.0.1:
    the request reaches the receiver, with the name in Host — no second lookup."""
    looked_up: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        looked_up.append(host)
        return ["127.0.0.1"]

    sender = HttpCallbackSender(lambda: (ipaddress.ip_network("127.0.0.0/8"),),
                                resolve=resolve)
    try:
        answer = await sender.send(CallbackRequest(
            "POST", f"http://callbacks.invalid:{receiver.port}/named",
            {"Content-Type": "application/json"}, b'{"x": 1}'))
    finally:
        await sender.aclose()
    assert answer.status == 200
    assert looked_up == ["callbacks.invalid"]
    [call] = receiver.calls
    assert call.path == "/named"
    assert call.host == f"callbacks.invalid:{receiver.port}"


async def test_sender_https_checks_the_certificate_of_the_name(tmp_path: Path) -> None:
    """https to the checked address: SNI and the certificate check use the URL's name
    (a certificate for another name fails the attempt)."""
    ca = trustme.CA()
    cert = ca.issue_cert("callbacks.test")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    r = CallbackReceiver()
    await r.start(ssl_certfile=str(cert_file), ssl_keyfile=str(key_file))
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)

    async def resolve(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    sender = HttpCallbackSender(lambda: (ipaddress.ip_network("127.0.0.0/8"),),
                                resolve=resolve, verify=ctx)
    try:
        good = await sender.send(CallbackRequest(
            "POST", f"https://callbacks.test:{r.port}/tls", {}, b"{}"))
        bad = await sender.send(CallbackRequest(
            "POST", f"https://other.test:{r.port}/tls", {}, b"{}"))
    finally:
        await sender.aclose()
        await r.stop()
    assert good.status == 200
    assert bad.status is None
    assert "certificate" in bad.error.lower() or "ssl" in bad.error.lower()
    assert len(r.calls) == 1


async def test_redirects_are_not_followed_and_big_answers_are_cut(
        node: Node, receiver: CallbackReceiver) -> None:
    """A 302 fails the callback (the Location is never asked); a 200 whose body never
    ends is delivered at once: at most 64 KB of an answer is read (reading it all, the
    attempt would time out after 15 s and be retried)."""
    receiver.routes["/redirect"] = (302, b"", {"Location": receiver.url("elsewhere")})
    receiver.routes["/big"] = (200, None, {})
    moved = _message(1, "smpp1", **{Extra.CALLBACK_URL: receiver.url("redirect")})
    big = _message(2, "smpp1", **{Extra.CALLBACK_URL: receiver.url("big")})
    await node.pipeline.accept_many([moved, big])

    async def settled() -> bool:
        return (await node.store.count_callbacks() == 0
                and len(receiver.calls) >= 2)
    assert await _until(settled, 10)
    assert [c.path for c in receiver.calls].count("/big") == 1
    assert {c.path for c in receiver.calls} == {"/redirect", "/big"}
    last = (await node.store.timeline(moved.message_id))[-1]
    assert last.detail.startswith("final callback failed: HTTP 302")
    assert not any("callback" in e.detail for e in await node.store.timeline(big.message_id))
    assert node.callbacks.sent >= 1


async def test_the_api_timeline_shows_a_failed_and_an_expired_callback(
        tmp_path: Path, receiver: CallbackReceiver) -> None:
    """GET /api/v1/messages/{id}: a callback refused (404) and one given up at its
    TTL are entries of the message's timeline, after its final status."""
    config = _config(f"sqlite:///{tmp_path}/api.db", receiver).replace(
        'listen = ""', 'listen = "127.0.0.1:0"', 1).replace(
        'receipt_url = "' + receiver.url("http1") + '"',
        'receipt_url = "' + receiver.url("http1") + '"\ncallback_ttl = 2')
    n = Node(parse_config(config, env={}))
    await n.start()
    receiver.routes["/gone"] = (404, b"no such hook", {})
    receiver.set_mode("fail")
    try:
        gone = _message(1, "smpp1", **{Extra.CALLBACK_URL: receiver.url("gone")})
        late = _message(2, "http1")
        await n.pipeline.accept_many([gone, late])
        assert n.http_address is not None
        host, port = n.http_address

        async def timelines() -> dict[str, list[str]]:
            async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as client:
                out = {}
                for m in (gone, late):
                    r = await client.get(f"/api/v1/messages/{m.message_id}")
                    assert r.status_code == 200
                    out[m.message_id] = [e["detail"] for e in r.json()["timeline"]]
                return out

        async def both_ended() -> bool:
            t = await timelines()
            return all(any("callback" in d for d in v) for v in t.values())

        # 503 at 0 s; the next attempt (5 s) is past the 2 s TTL: expired at once
        assert await _until(both_ended, 15)
        t = await timelines()
        assert t[gone.message_id][-1] == (
            f"final callback failed: HTTP 404 ({receiver.url('gone')})")
        assert t[late.message_id][-1] == (
            f"final callback expired after 1 attempt: HTTP 503 ({receiver.url('http1')})")
    finally:
        await n.stop()
