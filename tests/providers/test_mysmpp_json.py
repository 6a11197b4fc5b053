"""mysmpp-json adapter: the spec's example body, and send/status against the simulator."""

from __future__ import annotations

import json

import pytest

from smppbridge.core.errors import ProviderRejected
from smppbridge.core.outcomes import Err, SendResult
from smppbridge.providers.mysmpp_json import MysmppJsonProvider, build_send
from smppbridge.providers.simulator.settings import Rule, SimConfig
from smppbridge.smpp.receipts import Stat
from smppbridge.text.content import Kind
from tests.providers.helpers import T0, FakeClock, message, running_simulator, settings

#: the mysmpp JSON send API's "Example of a sending request", less "token" (sent
#: instead of login/password only when configured) and with our own validity.
SPEC_EXAMPLE = {
    "login": "login",
    "password": "password",
    "message": [
        {"type_send_1": "sms", "sender": "sender 1", "text": "message text 1",
         "phones": [
             {"phone": "79612242243", "client_id_sms": "101",
              "validity_period": "2023-11-15 04:13:20"},
             {"phone": "79612242244", "client_id_sms": "102",
              "validity_period": "2023-11-15 04:13:20"}]},
        {"type_send_1": "sms", "sender": " sender 2", "text": "message text 2",
         "phones": [
             {"phone": "79612242245", "client_id_sms": "103",
              "validity_period": "2023-11-15 04:13:20"}]},
    ],
}


def test_body_matches_the_spec_example() -> None:
    """Messages with the same sender and text share one entry with several phones;
    client_id_sms is our id; validity_period is YYYY-MM-DD HH:MM:SS Moscow time."""
    exp = T0 + 3 * 3600
    p = MysmppJsonProvider(settings("mysmpp-json"))
    msgs = [message("101", "79612242243", "message text 1", source="sender 1", expire_at=exp),
            message("103", "79612242245", "message text 2", source=" sender 2", expire_at=exp),
            message("102", "79612242244", "message text 1", source="sender 1", expire_at=exp)]
    body, order = build_send(msgs, p)
    assert json.loads(body) == SPEC_EXAMPLE
    assert list(json.loads(body)) == ["login", "password", "message"]
    assert order == [0, 2, 1]


def test_viber_and_flash_use_the_xml_field_names() -> None:
    """Viber with fallback and flash use the XML API's names (type_send_2, sender_viber,
    text_viber, button_viber, action_viber, image_viber, type)."""
    p = MysmppJsonProvider(settings("mysmpp-json", token="tok"))
    body, _ = build_send([
        message("1", kind=Kind.VIBER, text="v", button_caption="B", button_url="https://u",
                image_url="https://i", fallback_text="f"),
        message("2", text="fl", flash=True)], p)
    doc = json.loads(body)
    assert doc["token"] == "tok"
    assert "login" not in doc
    assert doc["message"][0] == {
        "type_send_1": "viber", "type_send_2": "sms", "sender_viber": "Sender",
        "text_viber": "v", "button_viber": "B", "action_viber": "https://u",
        "image_viber": "https://i", "sender": "Sender", "text": "f",
        "phones": [{"phone": "79033256699", "client_id_sms": "1"}]}
    assert doc["message"][1]["type"] == "flashsms"


async def test_send_and_poll_against_the_simulator() -> None:
    """information entries answer phones in order (id_sms or error); statuses come
    from the XML state.php."""
    clock = FakeClock()
    config = SimConfig(rules=(Rule.make("7666*", "closed"),), deliver_after=4)
    async with running_simulator(config, clock) as (_sim, url):
        p = MysmppJsonProvider(settings("mysmpp-json", url))
        try:
            out = await p.send([message("1", "79031111111"), message("2", "76660000000"),
                                message("3", "79032222222", "other text")])
            assert [o.result for o in out] == [SendResult.ACCEPTED, SendResult.REJECTED,
                                               SendResult.ACCEPTED]
            assert out[1].err is Err.DESTINATION_CLOSED
            clock.advance(4)
            updates = await p.poll([out[0].provider_id, out[2].provider_id])
            assert {u.stat for u in updates} == {Stat.DELIVRD}
            again = await p.send([message("1", "79031111111")])
            assert again[0].provider_id == out[0].provider_id
        finally:
            await p.aclose()


async def test_all_rejected_is_http_400_with_information() -> None:
    """When every phone is refused the API answers 400 with the information list: still
    per-message rejections, not a provider failure."""
    config = SimConfig(rules=(Rule.make("*", "no_funds"),))
    async with running_simulator(config) as (_, url):
        p = MysmppJsonProvider(settings("mysmpp-json", url))
        try:
            [o] = await p.send([message()])
        finally:
            await p.aclose()
    assert (o.result, o.stat, o.err) == (SendResult.REJECTED, Stat.REJECTD, Err.OUT_OF_FUNDS)


async def test_request_level_error_is_a_refusal() -> None:
    """{"error": "Incorrect login or password"} alone → ProviderRejected err 202."""
    async with running_simulator(SimConfig(token="right")) as (_, url):
        p = MysmppJsonProvider(settings("mysmpp-json", url, token="wrong"))
        try:
            with pytest.raises(ProviderRejected) as info:
                await p.send([message()])
        finally:
            await p.aclose()
    assert info.value.err is Err.ACCOUNT_BLOCKED
