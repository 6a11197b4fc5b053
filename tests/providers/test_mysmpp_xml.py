"""mysmpp-xml adapter: the documents it writes, and send/status against the simulator."""

from __future__ import annotations

import zoneinfo

import httpx
import pytest

from smppbridge.core.errors import ProviderRejected, ProviderTimeout, ProviderUnavailable
from smppbridge.core.outcomes import Err, SendResult
from smppbridge.http.request import HttpRequest
from smppbridge.providers.mysmpp_xml import MysmppXmlProvider, build_send, build_state
from smppbridge.providers.simulator.settings import Rule, SimConfig
from smppbridge.smpp.receipts import Stat
from smppbridge.text.content import Kind
from tests.providers.helpers import T0, FakeClock, message, running_simulator, settings

MOSCOW = zoneinfo.ZoneInfo("Europe/Moscow")

GOLDEN_SEND = """\
<?xml version="1.0" encoding="utf-8" ?>
<request>
 <message type_send_1="viber" type_send_2="sms">
 <sender_viber>Sender 1</sender_viber>
 <text_viber>Message text</text_viber>
 <button_viber>Button text</button_viber>
 <action_viber>https://example.org</action_viber>
 <image_viber>https://example.org/i.png</image_viber>
 <sender>Sender 1</sender>
 <text>Message text 1</text>
 <abonent phone="79033256699" number_sms="1" client_id_sms="101" \
time_send="2023-11-15 01:13" validity_period="2023-11-15 04:13:20" \
validity_period_viber="2023-11-15 04:13:20" />
 </message>
 <message type_send_1="sms">
 <sender>Sender 2</sender>
 <text>Message Text 2</text>
 <abonent phone="79033256698" number_sms="2" client_id_sms="111" />
 <abonent phone="79033256697" number_sms="3" client_id_sms="112" />
 </message>
 <message type_send_1="sms" type="flashsms">
 <sender>Sender 2</sender>
 <text>Flash &lt;&amp;&gt;</text>
 <abonent phone="79033256696" number_sms="4" client_id_sms="113" />
 </message>
 <security>
  <login value="login" />
  <password value="password" />
 </security>
</request>"""


def test_send_document_matches_the_spec_layout() -> None:
    """The send document follows the mysmpp XML send API: Viber fields with SMS
    fallback (type_send_2), equal messages sharing one <message> with many abonents,
    number_sms counting through the document, client_id_sms = our id, time_send and
    validity_period in Moscow time, flash as type="flashsms", security at the end."""
    msgs = [
        message("101", "79033256699", "Message text", kind=Kind.VIBER, source="Sender 1",
                button_caption="Button text", button_url="https://example.org",
                image_url="https://example.org/i.png", fallback_text="Message text 1",
                schedule_at=T0, expire_at=T0 + 3 * 3600),
        message("111", "79033256698", "Message Text 2", source="Sender 2"),
        message("112", "+79033256697", "Message Text 2", source="Sender 2"),
        message("113", "79033256696", "Flash <&>", source="Sender 2", flash=True),
    ]
    body, numbers = build_send(msgs, settings("mysmpp-xml"), MOSCOW)
    assert body.decode() == GOLDEN_SEND
    assert numbers == {"1": 0, "2": 1, "3": 2, "4": 3}


def test_ping_is_type_silence_and_token_replaces_login() -> None:
    """A ping is type="silence"; a configured token is sent instead of login/password."""
    s = settings("mysmpp-xml", token="secret")
    body, _ = build_send([message("7", kind=Kind.PING, text="")], s, MOSCOW)
    text = body.decode()
    assert '<message type_send_1="sms" type="silence">' in text
    assert '<token value="secret" />' in text
    assert "<login" not in text


def test_viber_only_has_no_sms_fields() -> None:
    """A Viber message without fallback has type_send_1="viber" only and no SMS sender/text."""
    body, _ = build_send([message("8", kind=Kind.VIBER, text="hi", expire_at=T0)],
                         settings("mysmpp-xml"), MOSCOW)
    text = body.decode()
    assert '<message type_send_1="viber">' in text
    assert "<sender>" not in text
    assert "validity_period_viber=" in text
    assert " validity_period=" not in text


def test_state_document_lists_many_ids() -> None:
    """state.php asks for many id_sms in one get_state."""
    body = build_state(["5", "6"], settings("mysmpp-xml")).decode()
    assert "<get_state>\n  <id_sms>5</id_sms>\n  <id_sms>6</id_sms>\n </get_state>" in body
    assert body.startswith('<?xml version="1.0" encoding="utf-8" ?>\n<request>\n <security>')


async def test_send_and_poll_against_the_simulator() -> None:
    """Over HTTP: per-message results from <information> (id_sms, parts, errors mapped
    to err), then state.php polling as the simulator's clock moves on."""
    clock = FakeClock()
    config = SimConfig(rules=(Rule.make("7999*", "undeliverable"),
                              Rule.make("7666*", "stop_list")), deliver_after=10)
    async with running_simulator(config, clock) as (_sim, url):
        p = MysmppXmlProvider(settings("mysmpp-xml", url))
        try:
            out = await p.send([message("1", "79031111111", "x" * 200),
                                message("2", "79990000000"),
                                message("3", "76660000000")])
            assert [o.result for o in out] == [SendResult.ACCEPTED, SendResult.ACCEPTED,
                                               SendResult.REJECTED]
            assert out[0].parts == 2
            assert (out[2].stat, out[2].err) == (Stat.REJECTD, Err.STOP_LIST)
            assert out[2].detail == "Phone number is on the stop list"
            ids = [out[0].provider_id, out[1].provider_id]
            first = await p.poll(ids)
            assert [(u.stat, u.done_at) for u in first] == [(Stat.ENROUTE, None)] * 2
            clock.advance(10)
            final = {u.provider_id: u for u in await p.poll([*ids, "nope"])}
            assert final[ids[0]].stat is Stat.DELIVRD
            assert final[ids[0]].done_at == T0 + 10
            assert (final[ids[1]].stat, final[ids[1]].err) == (Stat.UNDELIV, Err.UNDELIVERABLE)
            assert "nope" not in final
        finally:
            await p.aclose()


async def test_resend_with_the_same_client_id_is_not_sent_twice() -> None:
    """client_id_sms = message id: a resent request gets the first id_sms back."""
    async with running_simulator() as (sim, url):
        p = MysmppXmlProvider(settings("mysmpp-xml", url))
        try:
            a = await p.send([message("42")])
            b = await p.send([message("42")])
        finally:
            await p.aclose()
    assert a[0].provider_id == b[0].provider_id
    assert sim.engine.counters["accepted"] == 1
    assert sim.engine.counters["duplicates"] == 1


async def test_wrong_credentials_are_a_provider_refusal() -> None:
    """400 <error>Incorrect login or password</error> → ProviderRejected err 202."""
    async with running_simulator(SimConfig(login="login", password="other")) as (_, url):
        p = MysmppXmlProvider(settings("mysmpp-xml", url))
        try:
            with pytest.raises(ProviderRejected) as info:
                await p.send([message()])
            assert not await p.ready()
        finally:
            await p.aclose()
    assert info.value.err is Err.ACCOUNT_BLOCKED


async def test_5xx_and_outage_and_timeout_map_to_provider_errors() -> None:
    """HTTP 500 → ProviderUnavailable; a dropped connection → ProviderUnavailable; no
    answer within `timeout` → ProviderTimeout (httpx errors never leak)."""
    async with running_simulator(SimConfig(fail_status=500)) as (sim, url):
        p = MysmppXmlProvider(settings("mysmpp-xml", url, timeout=0.2))
        try:
            sim.engine.control({"fail_next": 1})
            with pytest.raises(ProviderUnavailable, match="HTTP 500"):
                await p.send([message()])
            sim.engine.control({"down_for": 60})
            with pytest.raises(ProviderUnavailable):
                await p.send([message()])
            sim.engine.control({"up": True, "latency": 5.0})
            with pytest.raises(ProviderTimeout) as info:
                await p.send([message()])
            assert isinstance(info.value.__cause__, httpx.TimeoutException)
        finally:
            await p.aclose()


def _request(body: bytes, content_type: str = "") -> HttpRequest:
    headers = {"content-type": content_type} if content_type else {}
    return HttpRequest("POST", "/webhooks/p", {}, headers, body, ("127.0.0.1", 1))


def test_webhook_accepts_state_documents_json_and_forms() -> None:
    """parse_webhook reads the state.php document, JSON objects, and form fields."""
    p = MysmppXmlProvider(settings("mysmpp-xml"))
    xml = (b'<?xml version="1.0" encoding="utf-8" ?><response><state id_sms="9" '
           b'time="2011-01-01 12:57:46" sms="deliver">deliver</state></response>')
    [u] = p.parse_webhook(_request(xml))
    assert (u.provider_id, u.stat) == ("9", Stat.DELIVRD)
    assert u.done_at == 1293875866.0  # 2011-01-01 12:57:46 MSK = 09:57:46 UTC
    [j] = p.parse_webhook(_request(b'{"id_sms": "10", "state": "expired"}', "application/json"))
    assert (j.provider_id, j.stat, j.err) == ("10", Stat.EXPIRED, Err.EXPIRED)
    [f] = p.parse_webhook(_request(b"id_sms=11&state=not_deliver"))
    assert (f.provider_id, f.stat) == ("11", Stat.UNDELIV)
    with pytest.raises(ValueError, match="id_sms"):
        p.parse_webhook(_request(b'{"state": "deliver"}'))
    with pytest.raises(ValueError, match="DTD"):
        p.parse_webhook(_request(b'<!DOCTYPE x [<!ENTITY a "b">]><response/>'))


def test_cascade_state_without_text_combines_channels() -> None:
    """A state with empty text is read from its viber/sms attributes (delivered wins)."""
    p = MysmppXmlProvider(settings("mysmpp-xml"))
    xml = b'<response><state id_sms="1" time="" viber="not_deliver" sms="deliver"/></response>'
    [u] = p.parse_webhook(_request(xml))
    assert u.stat is Stat.DELIVRD
