"""POST /api/v1/messages against a real node (uvicorn on 127.0.0.1:0, httpx), on a SQLite
file and on Redis: the message goes down the submit_sm path to the simulator provider
and shows in the history; batches, Idempotency-Key (across a restart), throttling and
the bad inputs of docs/http.md."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from smppbridge.config import parse_config
from smppbridge.core.errors import StoreUnavailable
from smppbridge.core.message import Extra
from smppbridge.node.node import Node
from tests.store.redis.support import REDIS_URL

API_KEY = "acme-api-key-0123456789"
ADMIN = "an-admin-token-of-some-length"

NodeFactory = Callable[..., Awaitable[Node]]


def _config(store_url: str, *, throughput: float = 0.0, burst: int = 0,
            flood: bool = True) -> str:
    return f"""
[smpp]
listen = "127.0.0.1:0"
shutdown_grace = 1.0
[http]
listen = "127.0.0.1:0"
admin_tokens = ["{ADMIN}"]
[store]
url = "{store_url}"
[[accounts]]
system_id = "acme"
password = "pw"
providers = ["sim"]
api_keys = ["{API_KEY}"]
throughput = {throughput}
burst = {burst}
[accounts.flood]
enabled = {"true" if flood else "false"}
[[accounts]]
system_id = "nosim"
password = "pw2"
providers = ["viberonly"]
[[providers]]
name = "sim"
type = "simulator"
poll_interval = 0.1
simulator = {{ deliver_after = 0.1 }}
[[providers]]
name = "viberonly"
type = "simulator"
kinds = ["viber"]
"""


@pytest.fixture(params=["sqlite", "redis"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A SQLite file, or Redis under a key prefix of this test's own (deleted after)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/submit.db"
        return
    prefix = f"test:{uuid.uuid4().hex}:"
    yield f"{REDIS_URL}?prefix={prefix}"
    raw = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in raw.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await raw.delete(*keys)
    finally:
        await raw.aclose()


@pytest.fixture
async def make_node(store_url: str) -> AsyncIterator[NodeFactory]:
    nodes: list[Node] = []

    async def make(**kwargs: Any) -> Node:
        node = Node(parse_config(_config(store_url, **kwargs), env={}))
        await node.start()
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        if node.http is not None:
            await node.stop()


def _client(node: Node) -> httpx.AsyncClient:
    assert node.http_address is not None
    host, port = node.http_address
    return httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=10)


def _basic(user: str = "acme", password: str = "pw") -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode())
            .decode()}


_KEY = {"authorization": f"Bearer {API_KEY}"}


async def _until(probe: Callable[[], Awaitable[Any]], what: str, timeout: float = 10.0
                 ) -> Any:
    """Poll ``probe`` until it returns a true value (bounded by a deadline)."""
    async with asyncio.timeout(timeout):
        while not (got := await probe()):
            await asyncio.sleep(0.05)
        return got
    pytest.fail(f"timed out waiting for {what}")  # pragma: no cover


async def test_a_message_over_http_reaches_the_provider_and_shows_in_history(
        make_node: NodeFactory) -> None:
    """One message with HTTP Basic: 202 {"id", "parts": 1} once stored; the simulator
    gets it under that id, the history lists it (as SMPP ones are) until DELIVRD, and
    its extras carry the client_ref and the door; /metrics counts it by door and
    outcome."""
    node = await make_node()
    async with _client(node) as http:
        r = await http.post("/api/v1/messages", headers=_basic(), json={
            "to": "+79001112233", "from": "Shop", "text": "hello over http",
            "client_ref": "order-7", "callback_url": "https://example.com/cb"})
        assert r.status_code == 202, r.text
        body = r.json()
        assert body["parts"] == 1
        assert set(body) == {"id", "parts"}
        stored = await node.store.find(body["id"])
        assert stored is not None
        assert stored.message.extra[Extra.CLIENT_REF] == "order-7"
        assert stored.message.extra[Extra.CALLBACK_URL] == "https://example.com/cb"
        assert stored.message.extra[Extra.ORIGIN] == "http"
        assert stored.message.extra[Extra.CALLBACK_FORMAT] == "json"
        sim = node.providers["sim"].engine  # type: ignore[attr-defined]

        async def at_provider() -> bool:
            return any(m.our_id == body["id"] for m in sim.messages.values())

        await _until(at_provider, "the message at the simulator")

        async def delivered() -> dict[str, Any] | None:
            page = await http.get("/api/v1/messages", headers=_basic(),
                                  params={"to": "79001112233"})
            items = page.json()["items"]
            return items[0] if items and items[0]["stat"] == "DELIVRD" else None

        item = await _until(delivered, "DELIVRD in the history")
        assert (item["id"], item["from"], item["text"], item["encoding"]) == (
            body["id"], "Shop", "hello over http", "gsm7")
        metrics = (await http.get("/metrics")).text
        assert 'smppbridge_http_submits_total{account="acme",door="http",outcome="accepted"}' \
            in metrics


async def test_an_api_key_authenticates_and_a_long_text_gets_one_id_per_part(
        make_node: NodeFactory) -> None:
    """Bearer with an api key; 300 GSM characters are 2 parts (153 each) and 100
    Cyrillic characters 2 UCS2 parts (67 each), each part with its own id, the message
    named by the last; a comment and a macro are applied as over SMPP."""
    node = await make_node()
    async with _client(node) as http:
        r = await http.post("/api/v1/messages", headers=_KEY, json={
            "to": "79001112234", "from": "Shop", "text": "a" * 300})
        assert r.status_code == 202, r.text
        assert r.json()["parts"] == 2
        stored = await node.store.find(r.json()["id"])
        assert stored is not None
        assert len(stored.message.part_ids) == 2
        assert stored.message.part_ids[-1] == r.json()["id"]
        r = await http.post("/api/v1/messages", headers=_KEY, json={
            "to": "79001112235", "from": "Shop", "text": "ж" * 100 + "\n~~~\nnote"})
        assert r.status_code == 202, r.text
        assert r.json()["parts"] == 2
        stored = await node.store.find(r.json()["id"])
        assert stored is not None
        assert (stored.message.data_coding, stored.message.content.comment) == (8, "note")
        r = await http.post("/api/v1/messages", headers=_KEY, json={
            "to": "79001112236", "from": "Shop", "text": "__HLR__"})
        assert r.status_code == 202, r.text
        stored = await node.store.find(r.json()["id"])
        assert stored is not None
        assert stored.message.content.kind.value == "hlr"


async def test_encoding_flash_validity_and_schedule_are_kept(make_node: NodeFactory) -> None:
    """encoding ucs2 for a GSM text, flash (data_coding 0x18), validity in seconds and
    schedule_at in ISO 8601 end up on the stored message."""
    node = await make_node()
    async with _client(node) as http:
        r = await http.post("/api/v1/messages", headers=_KEY, json={
            "to": "79001112237", "from": "12345", "text": "hi", "encoding": "ucs2",
            "flash": True, "validity": 600, "schedule_at": "2099-01-01T00:00:00Z"})
        assert r.status_code == 202, r.text
        stored = await node.store.find(r.json()["id"])
        assert stored is not None
        m = stored.message
        assert (m.data_coding, m.content.flash) == (0x18, True)
        assert m.expire_at is not None
        assert 590 < m.expire_at - m.submitted_at <= 601
        assert m.schedule_at is not None
        assert m.schedule_at > 4e9
        r = await http.post("/api/v1/messages", headers=_KEY, json={
            "to": "79001112238", "from": "Shop", "text": "ж", "encoding": "latin1"})
        assert r.status_code == 422
        assert r.json()["error"]["parameter"] == "encoding"
        assert r.json()["error"]["smpp_status"] == "0x00000402"


async def test_a_batch_answers_each_message_in_order(make_node: NodeFactory) -> None:
    """A batch of 3: two stored, the one with text over the limit refused in its item
    (text_too_long, 0x00000405, naming text); 202 for the batch."""
    node = await make_node()
    async with _client(node) as http:
        r = await http.post("/api/v1/messages", headers=_KEY, json={"messages": [
            {"to": "79001110001", "from": "Shop", "text": "one"},
            {"to": "79001110002", "from": "Shop", "text": "x" * 1531},
            {"to": "79001110003", "from": "Shop", "text": "three"}]})
        assert r.status_code == 202, r.text
        items = r.json()["items"]
        assert [("id" in i) for i in items] == [True, False, True]
        assert items[1]["error"]["code"] == "text_too_long"
        assert items[1]["error"]["smpp_status"] == "0x00000405"
        assert items[1]["error"]["parameter"] == "text"
        for i in (0, 2):
            assert await node.store.find(items[i]["id"]) is not None


async def test_refusals_carry_the_smpp_status_and_store_nothing(
        make_node: NodeFactory) -> None:
    """No route (the account's provider takes only Viber) is 422 no_route 0x00000404
    naming to; a duplicate within the window 409 duplicate 0x00000400; an operator's
    token 403; wrong credentials 401."""
    node = await make_node()
    async with _client(node) as http:
        r = await http.post("/api/v1/messages", headers=_basic("nosim", "pw2"), json={
            "to": "79001110004", "from": "Shop", "text": "no route"})
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "no_route"
        assert r.json()["error"]["smpp_status"] == "0x00000404"
        assert r.json()["error"]["parameter"] == "to"
        msg = {"to": "79001110005", "from": "Shop", "text": "twice"}
        assert (await http.post("/api/v1/messages", headers=_KEY, json=msg)).status_code \
            == 202
        r = await http.post("/api/v1/messages", headers=_KEY, json=msg)
        assert r.status_code == 409, r.text
        assert r.json()["error"]["smpp_status"] == "0x00000400"
        r = await http.post("/api/v1/messages", headers={"authorization": f"Bearer {ADMIN}"},
                            json=msg)
        assert r.status_code == 403
        r = await http.post("/api/v1/messages", headers=_basic("acme", "wrong"), json=msg)
        assert r.status_code == 401
        assert "www-authenticate" in r.headers
        page = await http.get("/api/v1/messages", headers={"authorization": f"Bearer {ADMIN}"})
        assert len(page.json()["items"]) == 1


@pytest.mark.parametrize(("body", "status", "parameter"), [
    ({"from": "Shop", "text": "x"}, 422, "to"),
    ({"to": "7900", "from": "Shop", "text": 5}, 422, "text"),
    ({"to": 79001, "from": "Shop", "text": "x"}, 422, "to"),
    ({"to": "79001", "from": "Shop", "text": "x", "flash": "yes"}, 422, "flash"),
    ({"to": "79001", "from": "Shop", "text": "x", "colour": "red"}, 422, "colour"),
    ({"to": "abc", "from": "Shop", "text": "x"}, 422, "to"),
    ({"to": "79001", "from": "Shop", "text": "x", "validity": 0}, 422, "validity"),
    ({"to": "79001", "from": "Shop", "text": "x", "schedule_at": "soon"}, 422,
     "schedule_at"),
    ({"to": "79001", "from": "Shop", "text": "x",
      "callback_url": "http://10.0.0.1/cb"}, 422, "callback_url"),
    ({"to": "79001", "from": "Shop", "text": "x",
      "callback_url": "http://127.0.0.1:9/cb"}, 422, "callback_url"),
    ({"to": "79001", "from": "Shop", "text": "x" * 1531}, 422, "text"),
    ({"messages": [{"to": "79001", "from": "Shop", "text": "x"}] * 1001}, 422, "messages"),
    ({"messages": [{"to": "79001", "from": "Shop", "text": "x"},
                   {"to": "79002", "from": "Shop"}]}, 422, "messages.1.text"),
    ({"messages": [{"to": "79001", "from": "Shop", "text": "x",
                    "callback_url": "http://192.168.1.1/"}]}, 422,
     "messages.0.callback_url"),
    ({"messages": []}, 422, "messages"),
    ([1, 2], 400, "body"),
])
async def test_bad_input_is_refused_naming_the_field_and_nothing_is_stored(
        make_node: NodeFactory, body: Any, status: int, parameter: str) -> None:
    """Each bad request: its status, a JSON error whose parameter (and message) names
    the field, and no message stored."""
    node = await make_node()
    async with _client(node) as http:
        r = await http.post("/api/v1/messages", headers=_KEY, json=body)
        assert r.status_code == status, r.text
        error = r.json()["error"]
        assert error["parameter"] == parameter, error
        assert error["message"].startswith(parameter), error
        page = await http.get("/api/v1/messages", headers={"authorization": f"Bearer {ADMIN}"})
        assert page.json()["items"] == []


async def test_bad_json_and_a_10_mb_body_are_refused(make_node: NodeFactory) -> None:
    """Not declared JSON: 415 (a cross-site form cannot submit); not JSON: 400
    invalid_json naming the body; 10 MB: 413 body_too_large (the
    [http] max_body middleware) — nothing stored either way."""
    node = await make_node()
    async with _client(node) as http:
        r = await http.post("/api/v1/messages", headers={**_KEY, "content-type":
                            "text/plain"}, content=b'{"to": "79001", "from": "S", "text": "x"}')
        assert r.status_code == 415, r.text
        assert r.json()["error"]["parameter"] == "Content-Type"
        r = await http.post("/api/v1/messages", headers={**_KEY, "content-type":
                            "application/json"}, content=b'{"to": "7900", ')
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "invalid_json"
    # 10 MB declared: answered before the body is sent (a client still sending would
    # see the connection closed under it), so the request is written by hand.
    assert node.http_address is not None
    reader, writer = await asyncio.open_connection(*node.http_address)
    try:
        writer.write(b"POST /api/v1/messages HTTP/1.1\r\nHost: x\r\n"
                     b"Authorization: Bearer " + API_KEY.encode() + b"\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n"
                     b'{"to": "79001", "from": "Shop", "text": "' + b"x" * 65536)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(65536), 5)
    finally:
        writer.close()
        await writer.wait_closed()
    assert answer.startswith(b"HTTP/1.1 413")
    assert b"body_too_large" in answer
    async with _client(node) as http:
        page = await http.get("/api/v1/messages", headers={"authorization": f"Bearer {ADMIN}"})
        assert page.json()["items"] == []


async def test_over_the_account_throughput_is_429_with_retry_after(
        make_node: NodeFactory) -> None:
    """throughput 0.001/s, burst 3: two messages pass, the third is 429 throttled
    (0x00000058) with Retry-After; a batch whose messages all lack a token is 429, one
    where some pass is 202 with the others' items throttled."""
    node = await make_node(throughput=0.001, burst=3)
    async with _client(node) as http:
        for i in range(2):
            r = await http.post("/api/v1/messages", headers=_KEY, json={
                "to": f"7900111000{i}", "from": "Shop", "text": f"t{i}"})
            assert r.status_code == 202, r.text
        r = await http.post("/api/v1/messages", headers=_KEY, json={"messages": [
            {"to": "79001110010", "from": "Shop", "text": "a"},
            {"to": "79001110011", "from": "Shop", "text": "b"}]})
        assert r.status_code == 202, r.text
        items = r.json()["items"]
        assert "id" in items[0]
        assert items[1]["error"]["code"] == "throttled"
        assert int(r.headers["retry-after"]) >= 1
        r = await http.post("/api/v1/messages", headers=_KEY, json={
            "to": "79001110012", "from": "Shop", "text": "c"})
        assert r.status_code == 429, r.text
        assert r.json()["error"]["smpp_status"] == "0x00000058"
        assert int(r.headers["retry-after"]) >= 1


async def test_an_idempotency_key_answers_the_first_answer_even_after_a_restart(
        make_node: NodeFactory) -> None:
    """The same key twice: the same status and body, one message (also with the keys
    in another order); another body with that key is 422; after a restart on the same
    store the key still answers the first answer; another account's same key is its
    own."""
    node = await make_node()
    msg = {"to": "79001110020", "from": "Shop", "text": "once"}
    headers = {**_KEY, "idempotency-key": "k-1"}
    async with _client(node) as http:
        first = await http.post("/api/v1/messages", headers=headers, json=msg)
        again = await http.post("/api/v1/messages", headers=headers, json=msg)
        assert first.status_code == again.status_code == 202
        assert first.content == again.content
        assert again.headers["idempotent-replayed"] == "true"
        reordered = await http.post(
            "/api/v1/messages", headers={**headers, "content-type": "application/json"},
            content=b'{"text": "once",  "from": "Shop", "to": "79001110020"}')
        assert (reordered.status_code, reordered.content) == (202, first.content)
        other = await http.post("/api/v1/messages", headers=headers,
                                json={**msg, "text": "another"})
        assert other.status_code == 422
        assert other.json()["error"]["code"] == "idempotency_key_reused"
    await node.stop()
    node = await make_node()
    async with _client(node) as http:
        after = await http.post("/api/v1/messages", headers=headers, json=msg)
        assert (after.status_code, after.content) == (202, first.content)
        theirs = await http.post("/api/v1/messages",
                                 headers={**_basic("nosim", "pw2"), "idempotency-key": "k-1"},
                                 json=msg)
        assert theirs.status_code == 422  # nosim has no route: its own, fresh answer
        assert theirs.json()["error"]["code"] == "no_route"
        page = await http.get("/api/v1/messages", headers={"authorization": f"Bearer {ADMIN}"})
        assert [i["id"] for i in page.json()["items"]] == [first.json()["id"]]


async def test_concurrent_requests_with_one_key_make_one_message(
        make_node: NodeFactory) -> None:
    """Ten concurrent requests with one key: one message; every answer is the first
    answer or 409 idempotency_key_in_use (the flood rules are off, so a second message
    would be accepted)."""
    node = await make_node(flood=False)
    msg = {"to": "79001110030", "from": "Shop", "text": "race"}
    headers = {**_KEY, "idempotency-key": "race-1"}
    async with _client(node) as http:
        answers = await asyncio.gather(*(http.post("/api/v1/messages", headers=headers,
                                                   json=msg) for _ in range(10)))
        ok = [a for a in answers if a.status_code == 202]
        busy = [a for a in answers if a.status_code == 409]
        assert len(ok) + len(busy) == 10
        assert ok
        assert len({a.json()["id"] for a in ok}) == 1
        assert all(b.json()["error"]["code"] == "idempotency_key_in_use" for b in busy)
        page = await http.get("/api/v1/messages", headers={"authorization": f"Bearer {ADMIN}"})
        assert len(page.json()["items"]) == 1


async def test_the_openapi_document_describes_the_submit(make_node: NodeFactory) -> None:
    """POST /api/v1/messages is in /api/v1/openapi.json with its typed request (one
    message or a batch) and its answers."""
    node = await make_node()
    async with _client(node) as http:
        doc = (await http.get("/api/v1/openapi.json")).json()
    op = doc["paths"]["/api/v1/messages"]["post"]
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    assert {r["$ref"].rsplit("/", 1)[1] for r in schema["oneOf"]} == {
        "SubmitMessage", "SubmitBatch"}
    assert {"202", "400", "401", "409", "413", "415", "422", "429", "503"} <= set(
        op["responses"])
    fields = doc["components"]["schemas"]["SubmitMessage"]["properties"]
    assert {"to", "from", "text", "client_ref", "callback_url", "encoding", "validity",
            "schedule_at", "flash"} == set(fields)
    assert "get" in doc["paths"]["/api/v1/messages"]


async def test_a_store_that_refuses_writes_is_503_and_the_key_is_released(
        make_node: NodeFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store refusing writes (as a full disk or a Redis out of memory does): 503
    store_unavailable, smpp_status 0x00000014, Retry-After; the Idempotency-Key is not
    kept, so the retry once the store is back is stored and answered 202."""
    node = await make_node()

    async def refuse(*_: Any, **__: Any) -> list[Exception | None]:
        raise StoreUnavailable("disk full")

    healthy = node.store.accept_many
    monkeypatch.setattr(node.store, "accept_many", refuse)
    msg = {"to": "79001110040", "from": "Shop", "text": "when the store is back"}
    headers = {**_KEY, "idempotency-key": "k-store"}
    async with _client(node) as http:
        r = await http.post("/api/v1/messages", headers=headers, json=msg)
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "store_unavailable"
        assert r.json()["error"]["smpp_status"] == "0x00000014"
        assert r.headers["retry-after"] == "5"
        monkeypatch.setattr(node.store, "accept_many", healthy)
        r = await http.post("/api/v1/messages", headers=headers, json=msg)
        assert r.status_code == 202, r.text
        assert "idempotent-replayed" not in r.headers


async def test_basic_failures_lock_the_account_out_as_binds_do(
        make_node: NodeFactory) -> None:
    """Wrong passwords over HTTP Basic count towards the bind lockout: once locked out,
    even the right password is 401 (one counter for binds and HTTP)."""
    node = await make_node()
    async with _client(node) as http:
        for _ in range(node.config.smpp.bind_max_failures):
            r = await http.post("/api/v1/messages", headers=_basic("acme", "wrong"),
                                json={"to": "79001", "from": "Shop", "text": "x"})
            assert r.status_code == 401
        r = await http.post("/api/v1/messages", headers=_basic(),
                            json={"to": "79001", "from": "Shop", "text": "x"})
        assert r.status_code == 401


async def test_a_long_message_takes_a_token_per_part(make_node: NodeFactory) -> None:
    """throughput 0.001/s, burst 3: a 2-part message takes 2 tokens, so a second
    2-part message is throttled; a 4-part message on a fresh node takes the whole
    depth and passes."""
    node = await make_node(throughput=0.001, burst=3)
    async with _client(node) as http:
        first = await http.post("/api/v1/messages", headers=_KEY, json={
            "to": "79001110050", "from": "Shop", "text": "a" * 200})
        assert first.status_code == 202, first.text
        second = await http.post("/api/v1/messages", headers=_KEY, json={
            "to": "79001110051", "from": "Shop", "text": "b" * 200})
        assert second.status_code == 429, second.text
    await node.stop()
    node = await make_node(throughput=0.001, burst=3)
    async with _client(node) as http:
        long = await http.post("/api/v1/messages", headers=_KEY, json={
            "to": "79001110052", "from": "Shop", "text": "c" * 600})
        assert long.status_code == 202, long.text
        assert long.json()["parts"] == 4
