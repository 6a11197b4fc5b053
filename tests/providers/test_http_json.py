"""http-json adapter: its documented body, send/poll against the simulator, and the
webhook path end to end (simulator → our HTTP server → update)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from smppbridge.core.errors import ProviderRejected
from smppbridge.core.outcomes import Err, SendResult, StatusUpdate
from smppbridge.core.ports import Provider
from smppbridge.delivery.webhooks import webhook_handler
from smppbridge.http.request import HttpRequest, HttpResponse
from smppbridge.http.serve import serve_app
from smppbridge.providers.http_json import HttpJsonProvider, build_message, parse_status
from smppbridge.providers.simulator.settings import Rule, SimConfig
from smppbridge.smpp.receipts import Stat
from smppbridge.text.content import Kind
from tests.providers.helpers import T0, FakeClock, message, running_simulator, settings


def test_message_body_carries_every_content_field() -> None:
    """Optional keys appear only when set; times are ISO 8601 UTC; callback is webhook_url."""
    s = settings("http-json", "http://x", webhook_url="http://me/webhooks/p")
    m = message("5", "+79030000000", "Hello", kind=Kind.CALL, voice="w2", param="p=1",
                schedule_at=T0, expire_at=T0 + 60)
    assert build_message(m, s) == {
        "id": "5", "kind": "call", "from": "Sender", "to": "79030000000", "text": "Hello",
        "voice": "w2", "param": "p=1", "send_at": "2023-11-14T22:13:20Z",
        "expire_at": "2023-11-14T22:14:20Z", "callback": "http://me/webhooks/p"}
    mail = build_message(message("6", kind=Kind.MAIL, text="t", subject="S"), s)
    assert mail["subject"] == "S"
    assert "voice" not in mail


def test_status_words_and_err_names() -> None:
    """Status words and STAT words both parse; err may be a number or a name; HLR fields
    become HlrResult."""
    u = parse_status({"provider_id": "H1", "id": "9", "status": "undeliverable"})
    assert (u.stat, u.err, u.message_id) == (Stat.UNDELIV, Err.UNDELIVERABLE, "9")
    assert parse_status({"provider_id": "H1", "status": "REJECTD", "err": "stop_list"}).err \
        is Err.STOP_LIST
    assert parse_status({"provider_id": "H1", "status": "expired", "err": "002"}).err \
        is Err.EXPIRED
    with pytest.raises(ValueError, match="unknown status"):
        parse_status({"provider_id": "H1", "status": "bogus"})


async def test_send_and_poll_hlr_against_the_simulator() -> None:
    """Mail and HLR go out in one request; the HLR status carries imsi/mcc/mnc/... and
    renders as the SMS Center receipt fields, urlencoded."""
    clock = FakeClock()
    config = SimConfig(rules=(Rule.make("7666*", "stop_list"),), deliver_after=2)
    async with running_simulator(config, clock) as (sim, url):
        p = HttpJsonProvider(settings("http-json", url))
        try:
            out = await p.send([message("1", "79031234567", "", kind=Kind.HLR),
                                message("2", "76660000000", "hi", kind=Kind.MAIL,
                                        subject="s")])
            assert [o.result for o in out] == [SendResult.ACCEPTED, SendResult.REJECTED]
            assert out[1].err is Err.STOP_LIST
            clock.advance(2)
            [u] = await p.poll([out[0].provider_id])
        finally:
            await p.aclose()
    assert (u.stat, u.message_id) == (Stat.DELIVRD, "1")
    assert u.hlr is not None
    assert u.hlr.receipt_fields() == (
        "imsi:250029031234567 msc:79000000001 mcc:250 mnc:02 cn:Russian+Federation "
        "net:MegaFon rcn: rnet:")
    assert sim.engine.counters["requests"] == 2


async def test_bearer_token_is_required_when_set() -> None:
    """A wrong token is 401 → ProviderRejected (credentials)."""
    async with running_simulator(SimConfig(token="t")) as (_, url):
        p = HttpJsonProvider(settings("http-json", url, token="bad"))
        good = HttpJsonProvider(settings("http-json", url, token="t"))
        try:
            with pytest.raises(ProviderRejected):
                await p.send([message(kind=Kind.SOC)])
            [o] = await good.send([message(kind=Kind.SOC)])
            assert o.result is SendResult.ACCEPTED
        finally:
            await p.aclose()
            await good.aclose()


def webhook_receiver(handler: Callable[[HttpRequest], Awaitable[HttpResponse]]) -> Starlette:
    """A stand-in for our HTTP side: ``POST /webhooks/<name>`` handed to ``handler``."""

    async def receive(request: Request) -> Response:
        client = request.client
        answer = await handler(HttpRequest(
            method=request.method, path=request.url.path, query={},
            headers=dict(request.headers), body=await request.body(),
            client=(client.host, client.port) if client else ("", 0)))
        return Response(answer.body, answer.status, media_type=answer.content_type)

    return Starlette(routes=[Route("/webhooks/{name:path}", receive, methods=["POST"])])


async def test_webhook_end_to_end() -> None:
    """The simulator posts the final status to the callback; our server's
    /webhooks/<name> parses it with the provider and reports the update."""
    clock = FakeClock()
    got: list[tuple[str, StatusUpdate]] = []

    async def on_update(name: str, update: StatusUpdate) -> None:
        got.append((name, update))

    providers: dict[str, Provider] = {}
    ours = await serve_app(webhook_receiver(webhook_handler(providers, on_update)),
                           "127.0.0.1", 0, name="webhook-receiver")
    host, port = ours.address
    async with running_simulator(SimConfig(rules=(Rule.make("7999*", "undeliverable"),),
                                           deliver_after=3), clock) as (sim, url):
        p = HttpJsonProvider(settings("http-json", url, name="hj",
                                      webhook_url=f"http://{host}:{port}/webhooks/hj"))
        providers["hj"] = p
        try:
            out = await p.send([message("77", "79990000000", kind=Kind.MAIL)])
            assert await sim.deliver_webhooks() == 0  # nothing due yet
            clock.advance(3)
            assert await sim.deliver_webhooks() == 1
        finally:
            await p.aclose()
            await ours.close()
    [(name, update)] = got
    assert name == "hj"
    assert (update.provider_id, update.message_id) == (out[0].provider_id, "77")
    assert (update.stat, update.err) == (Stat.UNDELIV, Err.UNDELIVERABLE)


async def test_webhook_handler_answers_404_and_400() -> None:
    """Unknown provider names are 404; a body the provider cannot read is 400."""
    async def on_update(name: str, update: StatusUpdate) -> None:
        raise AssertionError("not called")

    p = HttpJsonProvider(settings("http-json", "http://x"))
    handler = webhook_handler({"hj": p}, on_update)
    try:
        r = await handler(HttpRequest("POST", "/webhooks/zz", {}, {}, b"{}", ("", 0)))
        assert r.status == 404
        r = await handler(HttpRequest("POST", "/webhooks/hj", {}, {}, b"[1]", ("", 0)))
        assert r.status == 400
    finally:
        await p.aclose()
