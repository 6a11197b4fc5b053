"""The operator API against a real node: smpplib submits over SMPP, httpx reads over HTTP
(message history, timeline, receipts, CSV, binds, providers, accounts, stats), with the
access rules of docs/http.md."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import h11
import httpx
import pytest

from smppbridge.config import parse_config
from smppbridge.core.message import Address, OutboundMessage
from smppbridge.core.passwords import hash_password
from smppbridge.node.node import Node
from smppbridge.text.content import Content, Kind
from smppbridge.text.encoding import gsm_encode
from tests.integration.esme import Esme
from tests.netutil import connect_small_buffers

ADMIN = "an-admin-token-of-some-length"


def _config(tmp_path: Path, *, admin_tokens: list[str] | None = None,
            http_listen: str = "127.0.0.1:0", deliver_after: float = 0.2) -> str:
    tokens = "" if admin_tokens is None else "admin_tokens = [" + ", ".join(
        f'"{t}"' for t in admin_tokens) + "]"
    return f"""
[smpp]
listen = "127.0.0.1:0"
shutdown_grace = 2.0
[http]
listen = "{http_listen}"
{tokens}
[store]
url = "sqlite:///{tmp_path}/api.db"
[[accounts]]
system_id = "acme"
password = "pw"
providers = ["sim"]
[[accounts]]
system_id = "other"
password = "{hash_password("secret", log2_n=10)}"
providers = ["sim"]
[[providers]]
name = "sim"
type = "simulator"
poll_interval = 0.1
simulator = {{ deliver_after = {deliver_after} }}
"""


async def _node(tmp_path: Path, **kwargs: Any) -> Node:
    node = Node(parse_config(_config(tmp_path, **kwargs), env={}))
    await node.start()
    return node


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    n = await _node(tmp_path, admin_tokens=[ADMIN])
    try:
        yield n
    finally:
        await n.stop()


def _admin() -> dict[str, str]:
    return {"authorization": f"Bearer {ADMIN}"}


def _basic(user: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"authorization": f"Basic {raw}"}


async def _submit(node: Node, text: str, to: str, *, system_id: str = "acme",
                  password: str = "pw", receipt: bool = True) -> tuple[str, Esme]:
    """One submit_sm through smpplib; its message_id (the ESME stays bound)."""
    esme = await asyncio.to_thread(Esme, node.smpp.addresses["smpp"][1], system_id, password)
    esme.thread.start()
    await asyncio.to_thread(
        esme.client.send_message, source_addr_ton=5, source_addr="Shop", dest_addr_ton=1,
        dest_addr_npi=1, destination_addr=to, short_message=gsm_encode(text),
        registered_delivery=1 if receipt else 0)
    assert await asyncio.to_thread(esme.wait, lambda e: len(e.resps) == 1, 5)
    return esme.resps[0].message_id.decode(), esme


async def _until(probe: Any, what: str, timeout: float = 10.0) -> Any:
    """Poll ``probe`` (an async callable) until it returns a true value, with a
    deadline."""
    deadline = time.monotonic() + timeout
    while True:
        got = await probe()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_a_submitted_message_is_found_at_once_and_its_story_once_final(
        node: Node, http: httpx.AsyncClient) -> None:
    """A message submitted by smpplib is found by id, by destination and by time within
    a second of its submit_sm_resp; once its receipt is out, its timeline has every
    change (accepted, sent to the provider under its id, the final status and where it
    came from) and its receipt shows as delivered to the account."""
    started = time.time()
    message_id, esme = await _submit(node, "hello api\n~~~\norder 42", "79001112233")
    try:
        acked = time.monotonic()
        by_id = await http.get(f"/api/v1/messages/{message_id}", headers=_admin())
        by_to = await http.get("/api/v1/messages", params={"to": "79001112233"},
                               headers=_admin())
        by_time = await http.get("/api/v1/messages",
                                 params={"since": started - 1, "until": time.time() + 1},
                                 headers=_admin())
        assert time.monotonic() - acked < 1.0
        assert by_id.status_code == 200, by_id.text
        item = by_id.json()
        assert (item["id"], item["account"], item["to"], item["from"]) == (
            message_id, "acme", "79001112233", "Shop")
        assert (item["text"], item["comment"], item["kind"], item["parts"]) == (
            "hello api", "order 42", "sms", 1)
        assert [m["id"] for m in by_to.json()["items"]] == [message_id]
        assert message_id in [m["id"] for m in by_time.json()["items"]]

        assert await asyncio.to_thread(esme.wait, lambda e: len(e.receipts) == 1, 10)

        async def delivered() -> Any:
            r = (await http.get(f"/api/v1/messages/{message_id}", headers=_admin())).json()
            return r if r["receipts"] and r["receipts"][0]["state"] == "delivered" else None

        detail = await _until(delivered, "the receipt to be delivered")
        assert (detail["state"], detail["stat"]) == ("final", "DELIVRD")
        assert detail["provider"] == "sim"
        assert detail["provider_id"]
        assert detail["done_at"] is not None
        states = [e["state"] for e in detail["timeline"]]
        assert states[0] == "queued"
        assert "sent" in states
        assert states[-1] == "final"
        sent = next(e for e in detail["timeline"] if e["state"] == "sent")
        assert detail["provider_id"] in sent["detail"]
        assert "poll" in detail["timeline"][-1]["detail"]
        assert detail["receipts"][0]["system_id"] == "acme"
        assert detail["receipts"][0]["stat"] == "DELIVRD"
        assert detail["part_ids"] == [message_id]
    finally:
        await asyncio.to_thread(esme.close)


async def test_an_account_sees_only_its_own(node: Node, http: httpx.AsyncClient) -> None:
    """Account A cannot find B's message by id (404, as if it did not exist), by filter
    (B's account as a filter is 404) or in the CSV; it sees its own row of /accounts
    only and none of the operator endpoints (403)."""
    mine, e1 = await _submit(node, "mine", "79002220001")
    theirs, e2 = await _submit(node, "theirs", "79002220002", system_id="other",
                               password="secret")
    try:
        acme = _basic("acme", "pw")
        assert (await http.get(f"/api/v1/messages/{theirs}", headers=acme)).status_code \
            == 404
        assert (await http.get(f"/api/v1/messages/{mine}", headers=acme)).status_code == 200
        listed = (await http.get("/api/v1/messages", headers=acme)).json()["items"]
        assert {m["id"] for m in listed} == {mine}
        assert (await http.get("/api/v1/messages", params={"account": "other"},
                               headers=acme)).status_code == 404
        assert (await http.get("/api/v1/messages", params={"to": "79002220002"},
                               headers=acme)).json()["items"] == []
        exported = (await http.get("/api/v1/messages.csv", headers=acme)).text
        ids = [row["id"] for row in csv.DictReader(io.StringIO(exported))]
        assert ids == [mine]
        accounts = (await http.get("/api/v1/accounts", headers=acme)).json()
        assert [a["system_id"] for a in accounts] == ["acme"]
        assert "password" not in accounts[0]
        for path in ("/api/v1/binds", "/api/v1/providers", "/api/v1/stats"):
            assert (await http.get(path, headers=acme)).status_code == 403, path
        # the operator sees both
        both = (await http.get("/api/v1/messages", headers=_admin())).json()["items"]
        assert {m["id"] for m in both} >= {mine, theirs}
    finally:
        await asyncio.to_thread(e1.close)
        await asyncio.to_thread(e2.close)


async def test_credentials_are_checked(node: Node, http: httpx.AsyncClient) -> None:
    """No credentials, a wrong token, a wrong password: 401 with a challenge; a hashed
    account password works as it does for binds."""
    assert (await http.get("/api/v1/messages")).status_code == 401
    r = await http.get("/api/v1/messages", headers={"authorization": "Bearer nope"})
    assert r.status_code == 401
    assert "Basic" in r.headers["www-authenticate"]
    assert r.json()["error"]["code"] == "unauthorized"
    assert (await http.get("/api/v1/messages", headers=_basic("acme", "bad"))).status_code \
        == 401
    assert (await http.get("/api/v1/messages",
                           headers=_basic("other", "secret"))).status_code == 200


@pytest.mark.parametrize(("params", "parameter"), [
    ({"limit": 1001}, "limit"), ({"limit": 0}, "limit"), ({"limit": "x"}, "limit"),
    ({"since": "yesterday"}, "since"), ({"until": "2026-13-45"}, "until"),
    ({"state": "lost"}, "state"), ({"stat": "DELIVERED"}, "stat"),
    ({"cursor": "not-a-cursor"}, "cursor"), ({"cursor": base64.b64encode(b"[1]").decode()},
                                             "cursor"),
    ({"since": 100, "until": 50}, "until"),
])
async def test_bad_parameters_are_422_naming_them(http: httpx.AsyncClient,
                                                  params: dict[str, Any],
                                                  parameter: str) -> None:
    """A bad time, state, stat, limit (over 1,000) or cursor → 422 JSON naming it."""
    r = await http.get("/api/v1/messages", params=params, headers=_admin())
    assert r.status_code == 422, r.text
    assert r.json()["error"]["parameter"] == parameter


async def test_filters_are_plain_data(node: Node, http: httpx.AsyncClient) -> None:
    """Quotes, wildcards and SQL fragments in filters match nothing, and break nothing."""
    _, esme = await _submit(node, "x", "79003330001")
    try:
        for value in ("%", "*", "' OR 1=1 --", '"; DROP TABLE messages; --', "7900%"):
            r = await http.get("/api/v1/messages", params={"to": value}, headers=_admin())
            assert r.status_code == 200
            assert r.json()["items"] == []
        assert len((await http.get("/api/v1/messages", headers=_admin())).json()["items"]) \
            == 1
    finally:
        await asyncio.to_thread(esme.close)


async def test_pages_follow_the_cursor(node: Node, http: httpx.AsyncClient) -> None:
    """limit and next_cursor page through every message once, newest first."""
    esme = await asyncio.to_thread(Esme, node.smpp.addresses["smpp"][1])
    esme.thread.start()
    try:
        for i in range(7):
            await asyncio.to_thread(esme.client.send_message, source_addr="s",
                                    destination_addr=f"7900444000{i}",
                                    short_message=f"page {i}".encode())
        assert await asyncio.to_thread(esme.wait, lambda e: len(e.resps) == 7, 5)
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 3}
            if cursor:
                params["cursor"] = cursor
            body = (await http.get("/api/v1/messages", params=params,
                                   headers=_admin())).json()
            seen += [m["to"] for m in body["items"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert seen == [f"7900444000{i}" for i in reversed(range(7))]
    finally:
        await asyncio.to_thread(esme.close)


async def test_binds_are_listed_and_one_is_disconnected(node: Node,
                                                        http: httpx.AsyncClient) -> None:
    """/binds lists the open bind with its account, type and peer; DELETE sends unbind
    and the ESME's session ends."""
    esme = await asyncio.to_thread(Esme, node.smpp.addresses["smpp"][1])
    esme.thread.start()
    try:
        binds = (await http.get("/api/v1/binds", headers=_admin())).json()
        assert [(b["system_id"], b["bind_type"]) for b in binds] == [("acme", "transceiver")]
        assert binds[0]["node"] == node.node_id
        r = await http.delete(f"/api/v1/binds/{binds[0]['id']}", headers=_admin())
        assert r.status_code == 202

        async def gone() -> bool:
            return not (await http.get("/api/v1/binds", headers=_admin())).json()

        await _until(gone, "the bind to close")
        assert (await http.delete(f"/api/v1/binds/{binds[0]['id']}",
                                  headers=_admin())).status_code == 404
    finally:
        await asyncio.to_thread(esme.close)


async def test_providers_accounts_and_stats(node: Node, http: httpx.AsyncClient) -> None:
    """/providers shows each provider's breaker and traffic; /accounts the accounts
    without secrets with today's count; /stats per-second counts that include the
    message just submitted."""
    _, esme = await _submit(node, "counted", "79005550001")
    try:
        async def counted() -> Any:
            body = (await http.get("/api/v1/stats", params={"minutes": 1},
                                   headers=_admin())).json()
            seconds = body["nodes"][0]["seconds"]
            return body if sum(s["submitted"] for s in seconds) >= 1 else None

        stats = await _until(counted, "the submit to show in /stats")
        assert stats["nodes"][0]["node"] == node.node_id
        providers = (await http.get("/api/v1/providers", headers=_admin())).json()
        assert [(p["name"], p["type"], p["breaker"]) for p in providers] == [
            ("sim", "simulator", "closed")]
        accounts = {a["system_id"]: a for a in
                    (await http.get("/api/v1/accounts", headers=_admin())).json()}
        assert accounts["acme"]["messages_today"] == 1
        assert accounts["acme"]["binds_now"] == 1
        assert accounts["other"]["messages_today"] == 0
        assert all("password" not in a for a in accounts.values())
        assert (await http.get("/api/v1/stats", params={"minutes": 61},
                               headers=_admin())).json()["error"]["parameter"] == "minutes"
    finally:
        await asyncio.to_thread(esme.close)


async def test_openapi_and_docs_are_served_from_the_package(http: httpx.AsyncClient) -> None:
    """/api/v1/openapi.json describes every operation; /api/v1/docs and its assets come
    from the node itself (no CDN in the page)."""
    spec = (await http.get("/api/v1/openapi.json")).json()
    assert {"/api/v1/messages", "/api/v1/messages/{message_id}", "/api/v1/messages.csv",
            "/api/v1/binds", "/api/v1/binds/{bind_id}", "/api/v1/providers",
            "/api/v1/accounts", "/api/v1/stats"} <= set(spec["paths"])
    page = (await http.get("/api/v1/docs")).text
    assert "cdn" not in page.lower()
    assert "/api/v1/static/swagger-ui/swagger-ui-bundle.js" in page
    js = await http.get("/api/v1/static/swagger-ui/swagger-ui-bundle.js")
    assert js.status_code == 200
    assert len(js.content) > 100_000


async def test_admin_side_is_open_on_loopback_without_tokens(tmp_path: Path) -> None:
    """With no admin_tokens, the operator API answers without credentials when the HTTP
    listener is on a loopback address (the demo)."""
    node = await _node(tmp_path)
    try:
        assert node.http_address is not None
        host, port = node.http_address
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as client:
            assert (await client.get("/api/v1/binds")).status_code == 200
    finally:
        await node.stop()


def test_admin_side_is_closed_elsewhere_without_tokens() -> None:
    """With no admin_tokens and a non-loopback listener, the operator side is closed and
    the node says so (the message the start-up log prints)."""
    from smppbridge.node.auth import ApiAuth, is_loopback

    assert not is_loopback("0.0.0.0")
    assert not is_loopback("10.1.2.3")
    assert is_loopback("127.0.0.1")
    assert is_loopback("::1")
    auth = ApiAuth(lambda: (), None, open_without_tokens=False)  # type: ignore[arg-type]
    assert "closed" in auth.describe()


async def test_csv_streams_every_page(node: Node, http: httpx.AsyncClient,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The CSV export pages through the store (here 2 messages a page) and streams each
    page as it is read: every message is in it, with a header row."""
    monkeypatch.setattr("smppbridge.node.api.CSV_PAGE", 2)
    esme = await asyncio.to_thread(Esme, node.smpp.addresses["smpp"][1])
    esme.thread.start()
    try:
        for i in range(5):
            await asyncio.to_thread(esme.client.send_message, source_addr="s",
                                    destination_addr=f"7900666000{i}",
                                    short_message=b"csv")
        assert await asyncio.to_thread(esme.wait, lambda e: len(e.resps) == 5, 5)
        chunks = []
        async with http.stream("GET", "/api/v1/messages.csv", headers=_admin()) as r:
            assert r.headers["content-type"].startswith("text/csv")
            chunks = [chunk async for chunk in r.aiter_text()]
        rows = list(csv.DictReader(io.StringIO("".join(chunks))))
        assert sorted(row["to"] for row in rows) == [f"7900666000{i}" for i in range(5)]
    finally:
        await asyncio.to_thread(esme.close)


async def test_an_hlr_lookup_shows_its_result_fields(node: Node,
                                                     http: httpx.AsyncClient) -> None:
    """An `__HLR__` message's detail has ``hlr`` with the lookup's seed fields (imsi,
    msc, mcc, mnc, cn, net, rcn, rnet) once its final status is in."""
    message_id, esme = await _submit(node, "__HLR__", "79007770001")
    try:
        async def final() -> Any:
            r = (await http.get(f"/api/v1/messages/{message_id}", headers=_admin())).json()
            return r if r["state"] == "final" else None

        detail = await _until(final, "the HLR lookup to end")
        assert detail["kind"] == "hlr"
        assert detail["hlr"] is not None
        assert set(detail["hlr"]) == {"imsi", "msc", "mcc", "mnc", "cn", "net", "rcn",
                                      "rnet"}
        assert detail["hlr"]["imsi"]
    finally:
        await asyncio.to_thread(esme.close)


async def test_a_slow_csv_reader_holds_one_page_and_stalls_nothing(
        node: Node, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """A client that asks for the CSV of 3,000 fat messages (12 MB, far more than the
    kernel's socket buffers hold) and reads nothing: the export stops reading the store
    once those buffers are full (memory bounded by TCP flow control, not by the
    export's size), while /healthz, the API and SMPP submits go on answering; once the
    client reads, every row arrives."""
    monkeypatch.setattr("smppbridge.node.api.CSV_PAGE", 50)
    total = 3000
    text = "a long text that makes the rows of the export fat " * 80  # ~4 KB a row
    await node.store.accept_many([
        OutboundMessage(message_id=f"csv{i}", part_ids=(f"csv{i}",), account="acme",
                        source=Address("s"), destination=Address(f"7908{i:07d}"),
                        content=Content(Kind.SMS, text), submitted_at=1e9 + i)
        for i in range(total)])
    pages: list[int] = []
    search = node.store.search

    async def counting(query: Any) -> Any:
        page = await search(query)
        pages.append(len(page.items))
        return page

    monkeypatch.setattr(node.store, "search", counting)
    assert node.http_address is not None
    reader, writer = await asyncio.open_connection(
        sock=await connect_small_buffers(node.http_address, 5))
    writer.write(f"GET /api/v1/messages.csv HTTP/1.1\r\nHost: x\r\n"
                 f"Authorization: Bearer {ADMIN}\r\n\r\n".encode())
    await writer.drain()

    async def stalled() -> bool:
        before = len(pages)
        for _ in range(20):
            await asyncio.sleep(0.05)
        return len(pages) == before and len(pages) > 0

    assert await _until(stalled, "the export to wait for the reader")
    assert sum(pages) < total // 2  # it did not read (and hold) the history meanwhile
    assert (await http.get("/healthz")).status_code == 200
    assert (await http.get("/api/v1/messages", params={"limit": 1},
                           headers=_admin())).status_code == 200
    message_id, esme = await _submit(node, "still answered", "79089999999")
    await asyncio.to_thread(esme.close)
    body = await _read_response(reader)
    writer.close()
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    # every row of the history as it was when the export began (the message submitted
    # meanwhile is newer than its first page)
    assert len(rows) == total
    assert {row["id"] for row in rows} == {f"csv{i}" for i in range(total)}
    assert message_id not in {row["id"] for row in rows}


async def _read_response(reader: asyncio.StreamReader) -> bytes:
    """The body of the one HTTP/1.1 response ``reader`` carries (h11 parses it)."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
    body = b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            chunk = await asyncio.wait_for(reader.read(65536), 10)
            assert chunk, "the server closed the export early"
            conn.receive_data(chunk)
        elif isinstance(event, h11.Data):
            body += bytes(event.data)
        elif isinstance(event, h11.EndOfMessage):
            return body
