"""smsfly adapter: the spec's example requests, and send/status/balance against the
simulator."""

from __future__ import annotations

import pytest

from smppbridge.core.errors import ProviderRejected, ProviderUnavailable
from smppbridge.core.outcomes import Err, SendResult
from smppbridge.http.request import HttpRequest
from smppbridge.providers.simulator.settings import Rule, SimConfig
from smppbridge.providers.smsfly import SmsflyProvider, build_send
from smppbridge.smpp.receipts import Stat
from smppbridge.text.content import Kind
from tests.providers.helpers import T0, FakeClock, message, running_simulator, settings

S = settings("smsfly", "http://x")


def test_sms_only_matches_the_spec_example() -> None:
    """"Example of sending only a sms message": channels ["sms"], source, ttl, text;
    ttl is the validity left in minutes."""
    m = message("1", "380631234567", "You message text", source="InfoCenter",
                expire_at=T0 + 300 * 60)
    assert build_send(m, S, T0) == {
        "auth": {"key": "specialsecretapikey"},
        "action": "SENDMESSAGE",
        "data": {"recipient": "380631234567", "channels": ["sms"],
                 "sms": {"source": "InfoCenter", "ttl": 300, "text": "You message text"}},
    }


def test_viber_only_matches_the_spec_example() -> None:
    """"Example of sending only a Viber message": text, button {caption, url}, image."""
    m = message("1", "380501234567", "You message text", kind=Kind.VIBER, source="Promo",
                button_caption="SuperButton", button_url="https://you.site/",
                image_url="https://you.site/img/image.png", expire_at=T0 + 3600)
    assert build_send(m, S, T0)["data"] == {
        "recipient": "380501234567", "channels": ["viber"],
        "viber": {"source": "Promo", "ttl": 60, "text": "You message text",
                  "button": {"caption": "SuperButton", "url": "https://you.site/"},
                  "image": "https://you.site/img/image.png"},
    }


def test_cascade_matches_the_spec_example() -> None:
    """Viber with SMS fallback is channels ["viber", "sms"] with both objects; the
    viber_sender setting names the Viber source."""
    s = settings("smsfly", "http://x", viber_sender="MyViberSource")
    m = message("1", "380501234567", "Viber text", kind=Kind.VIBER, source="MySMSSource",
                button_caption="Button Caption", button_url="https://example.org",
                image_url="https://example.org/image.png", fallback_text="SMS text",
                expire_at=T0 + 5 * 60)
    assert build_send(m, s, T0)["data"] == {
        "recipient": "380501234567", "channels": ["viber", "sms"],
        "viber": {"source": "MyViberSource", "ttl": 5, "text": "Viber text",
                  "button": {"caption": "Button Caption", "url": "https://example.org"},
                  "image": "https://example.org/image.png"},
        "sms": {"source": "MySMSSource", "ttl": 5, "text": "SMS text"},
    }


def test_flash_and_ttl_bounds() -> None:
    """Flash is sms.flash = 1; ttl is clamped to 1..1440 and defaults to default_ttl."""
    assert build_send(message(flash=True), S, T0)["data"]["sms"] == {
        "source": "Sender", "ttl": 1440, "flash": 1, "text": "hello"}
    assert build_send(message(expire_at=T0 - 5), S, T0)["data"]["sms"]["ttl"] == 1
    assert build_send(message(expire_at=T0 + 10**6), S, T0)["data"]["sms"]["ttl"] == 1440


async def test_send_status_and_balance_against_the_simulator() -> None:
    """SENDMESSAGE → messageID; GETMESSAGESTATUS → ACCEPTD, then DELIVRD (cascade:
    Viber failed, SMS delivered); GETBALANCE makes the provider ready."""
    clock = FakeClock()
    config = SimConfig(rules=(Rule.make("38099*", "fallback"),), deliver_after=6)
    async with running_simulator(config, clock) as (_, url):
        p = SmsflyProvider(settings("smsfly", url), clock=clock)
        try:
            assert await p.ready()
            out = await p.send([message("1", "380501111111"),
                                message("2", "380991111111", "v", kind=Kind.VIBER,
                                        fallback_text="sms")])
            assert [o.result for o in out] == [SendResult.ACCEPTED] * 2
            assert out[0].provider_id.startswith("FAPI")
            ids = [o.provider_id for o in out]
            assert [u.stat for u in await p.poll(ids)] == [Stat.ACCEPTD] * 2
            clock.advance(6)
            updates = await p.poll([*ids, "FAPIUNKNOWN"])
            assert [u.stat for u in updates] == [Stat.DELIVRD, Stat.DELIVRD]
            assert updates[1].detail == "viber:UNDELIV/sms:DELIVRD"
        finally:
            await p.aclose()


async def test_error_codes_and_http_statuses() -> None:
    """400 INVRECIPIENT → REJECTD err 105; INSUFFICIENTFUND at send → REJECTD 201; 403 →
    ProviderRejected 202; 500/502 → ProviderUnavailable; 422 → REJECTD 203."""
    config = SimConfig(rules=(Rule.make("3806*", "stop_list"),
                              Rule.make("3807*", "no_funds")))
    async with running_simulator(config) as (sim, url):
        p = SmsflyProvider(settings("smsfly", url))
        bad = SmsflyProvider(settings("smsfly", url, key="wrong"))
        try:
            out = await p.send([message("1", "380601111111"), message("2", "380701111111")])
            assert [(o.stat, o.err) for o in out] == [(Stat.REJECTD, Err.NUMBER_INVALID),
                                                      (Stat.REJECTD, Err.OUT_OF_FUNDS)]
            sim.engine.control({"key": "specialsecretapikey"})
            with pytest.raises(ProviderRejected) as info:
                await bad.send([message()])
            assert info.value.err is Err.ACCOUNT_BLOCKED
            assert not await bad.ready()
            sim.engine.control({"fail_next": 1, "fail_status": 502})
            with pytest.raises(ProviderUnavailable, match="502"):
                await p.send([message()])
            r = await p.client.post(p.settings.url, content=b"not json")
            assert r.status_code == 422
        finally:
            await p.aclose()
            await bad.aclose()


async def test_one_failed_request_in_a_batch_is_retried_alone() -> None:
    """In a batch of one-recipient requests, a 5xx on one message makes only that
    message RETRY; the others are accepted."""
    async with running_simulator() as (sim, url):
        p = SmsflyProvider(settings("smsfly", url))
        try:
            sim.engine.control({"fail_next": 1})
            out = await p.send([message("1"), message("2"), message("3")])
        finally:
            await p.aclose()
    assert sorted(o.result for o in out) == sorted(
        [SendResult.ACCEPTED, SendResult.ACCEPTED, SendResult.RETRY])


def test_webhook_accepts_the_status_shape() -> None:
    """parse_webhook reads the GETMESSAGESTATUS answer or {messageID, status}."""
    p = SmsflyProvider(S)
    body = (b'{"success":1,"data":{"messageID":"FAPI1","viber":{"status":"VIEWED",'
            b'"date":"2021-12-17 10:36:09"}}}')
    [u] = p.parse_webhook(HttpRequest("POST", "/", {}, {}, body, ("", 0)))
    assert (u.provider_id, u.stat) == ("FAPI1", Stat.DELIVRD)
    assert u.done_at == 1639730169.0  # 10:36:09 Kyiv (UTC+2)
    [v] = p.parse_webhook(HttpRequest("POST", "/", {}, {},
                                  b'{"messageID":"FAPI2","status":"STOPED"}', ("", 0)))
    assert (v.stat, v.err) == (Stat.REJECTD, Err.STOPPED)
