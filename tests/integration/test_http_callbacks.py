"""Issue 18's "done when", end to end on real sockets: a message submitted over HTTP
(the JSON API, Jasmin's /send, Kannel's /cgi-bin/sendsms) reaches the provider, and its
status callback reaches a real receiver in the door's own shape — the JSON one signed
with the account's secret, Jasmin's with its DLR field names, Kannel's as a GET of the
dlr-url with its %-escapes filled in."""

from __future__ import annotations

import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from smppbridge.config import parse_config
from smppbridge.core.records import DeliveryState
from smppbridge.node.node import Node
from tests.integration.callback_receiver import CallbackReceiver

SECRET = "an-http-secret"


def _config(tmp_path: Path, receiver: CallbackReceiver) -> str:
    return f"""
[smpp]
listen = "127.0.0.1:0"
shutdown_grace = 1.0
[http]
listen = "127.0.0.1:0"
callback_allow_networks = ["127.0.0.0/8"]
[store]
url = "sqlite:///{tmp_path}/http-callbacks.db"
[[accounts]]
system_id = "web"
password = "pw"
providers = ["sim"]
receipts = "http"
receipt_url = "{receiver.url("account")}"
callback_secret = "{SECRET}"
api_keys = ["web-api-key-0123456789"]
[[providers]]
name = "sim"
type = "simulator"
poll_interval = 0.1
simulator = {{ deliver_after = 0.2 }}
"""


@pytest.fixture
async def node(tmp_path: Path, receiver: CallbackReceiver) -> AsyncIterator[Node]:
    n = Node(parse_config(_config(tmp_path, receiver), env={}))
    await n.start()
    try:
        yield n
    finally:
        await n.stop()


async def test_a_json_api_message_gets_its_signed_callback(
        node: Node, http: httpx.AsyncClient, receiver: CallbackReceiver) -> None:
    """POST /api/v1/messages with a Bearer api key and its own callback_url: the message
    is sent by the provider and delivered, and one signed JSON callback with the
    message's client_ref arrives at that URL (not at the account's receipt_url)."""
    r = await http.post("/api/v1/messages", headers={
        "Authorization": "Bearer web-api-key-0123456789"}, json={
        "to": "79005550001", "from": "Shop", "text": "hello over http",
        "client_ref": "order-17", "callback_url": receiver.url("own")})
    assert r.status_code == 202, r.text
    message_id = r.json()["id"]
    assert await receiver.wait(lambda rc: len(rc.delivered()) == 1, 15)
    [cb] = receiver.delivered()
    assert cb.path == "/own"
    assert cb.signed is True
    assert (cb.fields["message_id"], cb.fields["client_ref"], cb.fields["status"],
            cb.fields["stat"], cb.fields["err"], cb.fields["account"], cb.fields["to"],
            cb.fields["provider"]) == (message_id, "order-17", "delivered", "DELIVRD",
                                       "000", "web", "79005550001", "sim")
    stored = await node.store.find(message_id)
    assert stored is not None
    assert (stored.state, stored.stat, stored.provider) == (DeliveryState.FINAL, "DELIVRD",
                                                           "sim")


async def test_a_jasmin_send_gets_a_jasmin_dlr(
        http: httpx.AsyncClient, receiver: CallbackReceiver) -> None:
    """Jasmin's /send with dlr=yes, dlr-level=2, dlr-method=POST: answered `Success
    "<id>"`, and the receipt reaches dlr-url as a form with Jasmin's field names."""
    r = await http.post("/send", data={
        "username": "web", "password": "pw", "to": "79005550002", "from": "Shop",
        "content": "hello jasmin", "dlr": "yes", "dlr-url": receiver.url("jasmin"),
        "dlr-level": "2", "dlr-method": "POST"})
    assert r.status_code == 200, r.text
    assert r.text.startswith('Success "')
    message_id = r.text.split('"')[1]
    assert await receiver.wait(lambda rc: len(rc.delivered()) == 1, 15)
    [cb] = receiver.delivered()
    assert (cb.path, cb.method) == ("/jasmin", "POST")
    assert (cb.fields["id"], cb.fields["message_status"], cb.fields["level"]) == (
        message_id, "DELIVRD", "2")
    assert {"id_smsc", "sub", "dlvrd", "subdate", "donedate", "err", "text"} <= set(cb.fields)


async def test_a_kannel_sendsms_gets_its_dlr_url_with_the_escapes_filled(
        http: httpx.AsyncClient, receiver: CallbackReceiver) -> None:
    """Kannel's /cgi-bin/sendsms with dlr-mask=3 and a dlr-url holding %d, %p and %I:
    answered `0: Accepted for delivery`, then a GET of that URL with the delivered
    report's value (1), the destination and the message id filled in."""
    dlr_url = receiver.url("kannel") + "?type=%d&to=%p&id=%I"
    r = await http.get("/cgi-bin/sendsms", params={
        "username": "web", "password": "pw", "to": "79005550003", "from": "Shop",
        "text": "hello kannel", "dlr-mask": "3", "dlr-url": dlr_url})
    assert r.status_code == 202, r.text
    assert r.text.startswith("0: Accepted for delivery")
    assert await receiver.wait(lambda rc: len(rc.delivered()) == 1, 15)
    [cb] = receiver.delivered()
    assert (cb.path, cb.method) == ("/kannel", "GET")
    assert cb.fields["type"] == "1"
    assert urllib.parse.unquote(cb.fields["to"]).lstrip("+") == "79005550003"
    assert cb.fields["id"]
