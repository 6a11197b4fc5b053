"""Jasmin's /send and Kannel's /cgi-bin/sendsms against a real node (uvicorn on
127.0.0.1:0, httpx, a SQLite file): every parameter docs/http-compat.md lists, their
answers, and what each leaves on the stored message for the callback dispatcher."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from smppbridge.config import parse_config
from smppbridge.core.message import Extra
from smppbridge.core.records import StoredMessage
from smppbridge.node.node import Node


def _config(tmp_path: Path) -> str:
    return f"""
[smpp]
listen = "127.0.0.1:0"
shutdown_grace = 1.0
[http]
listen = "127.0.0.1:0"
admin_tokens = ["an-admin-token-of-some-length"]
[store]
url = "sqlite:///{tmp_path}/compat.db"
[[accounts]]
system_id = "acme"
password = "pw"
providers = ["sim"]
[[accounts]]
system_id = "slow"
password = "pw"
providers = ["sim"]
throughput = 0.001
burst = 1
[[accounts]]
system_id = "viber"
password = "pw"
providers = ["viberonly"]
[[providers]]
name = "sim"
type = "simulator"
[[providers]]
name = "viberonly"
type = "simulator"
kinds = ["viber"]
"""


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    n = Node(parse_config(_config(tmp_path), env={}))
    await n.start()
    try:
        yield n
    finally:
        await n.stop()


_JASMIN = {"username": "acme", "password": "pw", "to": "79001112233", "from": "Shop",
           "content": "hello jasmin"}
_KANNEL = {"username": "acme", "password": "pw", "to": "79001112233", "from": "Shop",
           "text": "hello kannel"}


async def _stored(node: Node, message_id: str) -> StoredMessage:
    stored = await node.store.find(message_id)
    assert stored is not None
    return stored


def _jasmin_id(r: httpx.Response) -> str:
    assert r.status_code == 200, r.text
    assert r.text.startswith('Success "'), r.text
    return r.text.strip()[len('Success "'):-1]


# --- Jasmin ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_jasmin_send_answers_success_with_the_message_id(
        node: Node, http: httpx.AsyncClient, method: str) -> None:
    """GET with a query, POST with a form: 200 ``Success "<id>"``; the message is
    stored with origin and callback format jasmin, and no callback without dlr=yes."""
    if method == "GET":
        r = await http.get("/send", params=_JASMIN)
    else:
        r = await http.post("/send", data=_JASMIN)
    stored = await _stored(node, _jasmin_id(r))
    m = stored.message
    assert (m.destination.addr, m.source.addr, m.content.text) == (
        "79001112233", "Shop", "hello jasmin")
    assert m.extra[Extra.ORIGIN] == "jasmin"
    assert m.extra[Extra.CALLBACK_FORMAT] == "jasmin"
    assert Extra.CALLBACK_URL not in m.extra


async def test_an_unescaped_plus_in_the_query_is_taken(
        node: Node, http: httpx.AsyncClient) -> None:
    """``to=+7900…`` written raw in a query reads as a space first (as in both
    gateways); the number is taken all the same, for Jasmin and for Kannel."""
    r = await http.get("/send?username=acme&password=pw&to=+79001112250&from=+12345"
                       "&content=plus")
    m = (await _stored(node, _jasmin_id(r))).message
    assert (m.destination.addr, m.source.addr) == ("79001112250", "12345")
    await _accepted(await http.get("/cgi-bin/sendsms?username=acme&password=pw"
                                   "&to=+79001112251&from=+12345&text=plus"))


async def test_jasmin_dlr_parameters_are_kept_for_the_callback(
        node: Node, http: httpx.AsyncClient) -> None:
    """dlr=yes with dlr-url, dlr-level 3 and dlr-method POST: kept on the message;
    dlr-level defaults to 1 and dlr-method to GET."""
    r = await http.get("/send", params={**_JASMIN, "dlr": "yes",
                                        "dlr-url": "https://example.com/dlr?x=1",
                                        "dlr-level": "3", "dlr-method": "POST"})
    extra = (await _stored(node, _jasmin_id(r))).message.extra
    assert (extra[Extra.CALLBACK_URL], extra[Extra.CALLBACK_LEVEL],
            extra[Extra.CALLBACK_METHOD]) == ("https://example.com/dlr?x=1", "3", "POST")
    r = await http.get("/send", params={**_JASMIN, "to": "79001112234", "dlr": "yes",
                                        "dlr-url": "https://example.com/dlr"})
    extra = (await _stored(node, _jasmin_id(r))).message.extra
    assert (extra[Extra.CALLBACK_LEVEL], extra[Extra.CALLBACK_METHOD]) == ("1", "GET")


@pytest.mark.parametrize(("coding", "content", "data_coding"), [
    ("0", "plain", 0), ("3", "café", 3), ("8", "привет", 8)])
async def test_jasmin_coding_sets_the_data_coding(
        node: Node, http: httpx.AsyncClient, coding: str, content: str,
        data_coding: int) -> None:
    """coding 0 (GSM 03.38), 3 (Latin-1), 8 (UCS2) are taken as given."""
    r = await http.get("/send", params={**_JASMIN, "coding": coding, "content": content})
    m = (await _stored(node, _jasmin_id(r))).message
    assert (m.data_coding, m.content.text) == (data_coding, content)


async def test_jasmin_hex_content_is_read_in_its_coding(
        node: Node, http: httpx.AsyncClient) -> None:
    """hex-content with coding 8 is UTF-16BE octets; with content too it is 400."""
    params = {k: v for k, v in _JASMIN.items() if k != "content"}
    r = await http.get("/send", params={**params, "coding": "8",
                                        "hex-content": "043f04400438"})
    assert (await _stored(node, _jasmin_id(r))).message.content.text == "при"
    r = await http.get("/send", params={**_JASMIN, "hex-content": "41"})
    assert r.status_code == 400
    assert "hex-content" in r.text


async def test_jasmin_validity_priority_and_sdt(node: Node, http: httpx.AsyncClient) -> None:
    """validity-period in minutes, priority 0-3 (taken, not used), sdt an SMPP time
    (relative here: 1 hour from now)."""
    r = await http.get("/send", params={**_JASMIN, "validity-period": "10", "priority": "2",
                                        "sdt": "000000010000000R"})
    m = (await _stored(node, _jasmin_id(r))).message
    assert m.expire_at is not None
    assert 590 < m.expire_at - m.submitted_at <= 601
    assert m.schedule_at is not None
    assert 3590 < m.schedule_at - m.submitted_at <= 3601


@pytest.mark.parametrize(("params", "status", "text"), [
    ({"password": "wrong"}, 403, 'Error "Authentication failure for username:acme"'),
    ({"username": "nobody"}, 403, 'Error "Authentication failure for username:nobody"'),
    ({"to": None}, 400, 'Error "Mandatory argument [to] is not found."'),
    ({"content": None}, 400, 'Error "Mandatory argument [content] is not found."'),
    ({"from": None}, 400, 'Error "Mandatory argument [from] is not found."'),
    ({"coding": "5"}, 400, 'Error "Argument [coding] has an invalid value: [5]."'),
    ({"coding": "0", "content": "привет"}, 400, "Error \"Cannot send submit_sm: encoding"),
    ({"dlr": "yes"}, 400, 'Error "Mandatory argument [dlr-url] is not found."'),
    ({"dlr": "maybe"}, 400, 'Error "Argument [dlr] has an invalid value: [maybe]."'),
    ({"dlr": "yes", "dlr-url": "http://10.1.2.3/dlr"}, 400,
     'Error "Argument [dlr-url] has an invalid value: [http://10.1.2.3/dlr]."'),
    ({"dlr": "yes", "dlr-url": "https://example.com/", "dlr-level": "4"}, 400,
     'Error "Argument [dlr-level] has an invalid value: [4]."'),
    ({"dlr": "yes", "dlr-url": "https://example.com/", "dlr-method": "PUT"}, 400,
     'Error "Argument [dlr-method] has an invalid value: [PUT]."'),
    ({"priority": "7"}, 400, 'Error "Argument [priority] has an invalid value: [7]."'),
    ({"validity-period": "soon"}, 400,
     'Error "Argument [validity-period] has an invalid value: [soon]."'),
    ({"sdt": "tomorrow"}, 400, 'Error "Argument [sdt] has an invalid value: [tomorrow]."'),
    ({"to": "not-a-number"}, 400, 'Error "Argument [to] has an invalid value'),
    ({"content": "x" * 1531}, 400, 'Error "Cannot send submit_sm: sms text: 1531'),
    ({"username": "viber"}, 412, 'Error "No route found"'),
])
async def test_jasmin_refusals_answer_in_jasmin_words(
        node: Node, http: httpx.AsyncClient, params: dict[str, str | None], status: int,
        text: str) -> None:
    """Each refusal: Jasmin's status and its ``Error "..."`` line; nothing stored."""
    query = {k: v for k, v in {**_JASMIN, **params}.items() if v is not None}
    r = await http.get("/send", params=query)
    assert r.status_code == status, r.text
    assert r.text.startswith(text), r.text
    page = await http.get("/api/v1/messages",
                          headers={"authorization": "Bearer an-admin-token-of-some-length"})
    assert page.json()["items"] == []


async def test_jasmin_over_the_throughput_is_user_throughput_exceeded(
        http: httpx.AsyncClient) -> None:
    """The account's token bucket (burst 1): the second message is Jasmin's 403
    ``User throughput exceeded``, with Retry-After."""
    params = {**_JASMIN, "username": "slow"}
    _jasmin_id(await http.get("/send", params=params))
    r = await http.get("/send", params={**params, "to": "79001112299"})
    assert r.status_code == 403
    assert r.text.strip() == 'Error "User throughput exceeded"'
    assert int(r.headers["retry-after"]) >= 1


# --- Kannel ------------------------------------------------------------------------------


async def _accepted(r: httpx.Response) -> None:
    assert r.status_code == 202, r.text
    assert r.text.strip() == "0: Accepted for delivery"


async def _last(node: Node, http: httpx.AsyncClient, count: int = 1) -> list[StoredMessage]:
    page = await http.get("/api/v1/messages",
                          headers={"authorization": "Bearer an-admin-token-of-some-length"})
    items = page.json()["items"]
    assert len(items) == count, items
    return [await _stored(node, i["id"]) for i in items]


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_kannel_sendsms_answers_accepted_for_delivery(
        node: Node, http: httpx.AsyncClient, method: str) -> None:
    """GET with a query, POST with a form: 202 ``0: Accepted for delivery``; the
    message is stored with origin and callback format kannel."""
    if method == "GET":
        r = await http.get("/cgi-bin/sendsms", params=_KANNEL)
    else:
        r = await http.post("/cgi-bin/sendsms", data=_KANNEL)
    await _accepted(r)
    (stored,) = await _last(node, http)
    m = stored.message
    assert (m.destination.addr, m.source.addr, m.content.text) == (
        "79001112233", "Shop", "hello kannel")
    assert (m.extra[Extra.ORIGIN], m.extra[Extra.CALLBACK_FORMAT]) == ("kannel", "kannel")


async def test_kannel_user_and_pass_aliases_and_several_receivers(
        node: Node, http: httpx.AsyncClient) -> None:
    """``user``/``pass`` as Kannel takes them; ``to`` with two numbers separated by a
    space makes two messages."""
    params = {k: v for k, v in _KANNEL.items() if k not in ("username", "password")}
    await _accepted(await http.get("/cgi-bin/sendsms", params={
        **params, "user": "acme", "pass": "pw", "to": "79001110001 79001110002"}))
    stored = await _last(node, http, 2)
    assert {s.message.destination.addr for s in stored} == {"79001110001", "79001110002"}


async def test_kannel_dlr_url_is_kept_verbatim_with_its_escapes(
        node: Node, http: httpx.AsyncClient) -> None:
    """dlr-mask 19 and a dlr-url with %d, %p, %A escapes: kept as given (the dispatcher
    substitutes them), method GET."""
    url = "https://example.com/dlr?type=%d&to=%p&answer=%A"
    await _accepted(await http.get("/cgi-bin/sendsms", params={
        **_KANNEL, "dlr-mask": "19", "dlr-url": url}))
    (stored,) = await _last(node, http)
    extra = stored.message.extra
    assert (extra[Extra.CALLBACK_URL], extra[Extra.CALLBACK_LEVEL],
            extra[Extra.CALLBACK_METHOD]) == (url, "19", "GET")


async def test_kannel_charset_coding_mclass_validity_deferred(
        node: Node, http: httpx.AsyncClient) -> None:
    """text in charset ISO-8859-1 (raw percent-escaped octets), coding 2 (UCS2),
    mclass 0 (flash), validity and deferred in minutes."""
    r = await http.get("/cgi-bin/sendsms?username=acme&password=pw&to=79001110003&from=Shop"
                       "&text=caf%E9&charset=ISO-8859-1&coding=2&mclass=0&validity=10"
                       "&deferred=60")
    await _accepted(r)
    (stored,) = await _last(node, http)
    m = stored.message
    assert (m.content.text, m.data_coding, m.content.flash) == ("café", 0x18, True)
    assert m.expire_at is not None
    assert 590 < m.expire_at - m.submitted_at <= 601
    assert m.schedule_at is not None
    assert 3590 < m.schedule_at - m.submitted_at <= 3601


async def test_kannel_coding_2_text_defaults_to_utf16be(
        node: Node, http: httpx.AsyncClient) -> None:
    """With coding 2 and no charset, text is UTF-16BE octets (Kannel's default)."""
    await _accepted(await http.get(
        "/cgi-bin/sendsms?username=acme&password=pw&to=79001110004&from=Shop"
        "&coding=2&text=%04%3F%04%40%048"))
    (stored,) = await _last(node, http)
    assert stored.message.content.text == "при"


@pytest.mark.parametrize(("params", "status", "text"), [
    ({"password": "wrong"}, 403, "Authorization failed for sendsms"),
    ({"username": None}, 403, "Authorization failed for sendsms"),
    ({"to": None}, 400, "Missing receiver number, rejected"),
    ({"from": None}, 400, "Sender missing and no global set, rejected"),
    ({"text": None}, 400, "Missing text, rejected"),
    ({"coding": "1"}, 400, "Invalid coding"),
    ({"udh": "%05%00%03%01%02%01"}, 400, "UDH is not supported, rejected"),
    ({"dlr-mask": "99", "dlr-url": "https://example.com/"}, 400, "Invalid dlr-mask"),
    ({"dlr-mask": "3", "dlr-url": "http://192.168.0.1/x?%d"}, 400, "Invalid dlr-url"),
    ({"validity": "x"}, 400, "Invalid validity"),
    ({"deferred": "-5"}, 400, "Invalid deferred"),
    ({"mclass": "9"}, 400, "Invalid mclass"),
    ({"to": "12ab"}, 400, "Invalid to"),
    ({"text": "x" * 1531}, 400, "sms text: 1531 characters"),
    ({"username": "viber"}, 400, "no provider can carry"),
])
async def test_kannel_refusals(node: Node, http: httpx.AsyncClient,
                               params: dict[str, str | None], status: int, text: str) -> None:
    """Each refusal: Kannel's status (403 for credentials, 400 for bad input) and a
    line saying what; nothing stored."""
    query = {k: v for k, v in {**_KANNEL, **params}.items() if v is not None}
    r = await http.get("/cgi-bin/sendsms", params=query)
    assert r.status_code == status, r.text
    assert r.text.startswith(text) or text in r.text, r.text
    await _last(node, http, 0)
