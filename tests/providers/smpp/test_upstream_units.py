"""The smpp provider's pure parts: its settings keys, upstream ids (hex/decimal), reading
upstream receipts, the correlator (early receipts, multi-part, expiry) and the
submit_sm a message becomes (data_coding policy, UDH/SAR/payload, TON/NPI)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from smppbridge.core.message import Address, OutboundMessage
from smppbridge.core.provider_settings import UpstreamSettings
from smppbridge.providers.settings import parse_provider
from smppbridge.providers.smpp.correlate import Correlator
from smppbridge.providers.smpp.outbound import submit_pdus, upstream_data_coding
from smppbridge.smpp import pdu as P
from smppbridge.smpp.constants import Tag
from smppbridge.smpp.receipts import (
    Receipt,
    Stat,
    UpstreamReceipt,
    id_keys,
    normalise_id,
    read_receipt,
    receipt_deliver_sm,
)
from smppbridge.text.content import Content, Kind

BASE = {"name": "up", "type": "smpp", "host": "smsc.example", "port": 2775,
        "system_id": "me", "password": "pw"}


# --- settings -----------------------------------------------------------------------


def test_smpp_settings_defaults_and_keys() -> None:
    s = parse_provider({**BASE, "binds": 3, "window": 50, "throughput": 500,
                        "bind": "transmitter+receiver", "data_coding": "ucs2",
                        "long_messages": "sar", "source_ton": 5, "dest_npi": 1}, env={})
    up = s.upstream
    assert up is not None
    assert (up.host, up.port, up.binds, up.window, up.throughput) == (
        "smsc.example", 2775, 3, 50, 500.0)
    assert (up.bind, up.data_coding, up.long_messages) == ("transmitter+receiver", "ucs2",
                                                            "sar")
    assert (up.source_ton, up.source_npi, up.dest_npi) == (5, None, 1)
    assert s.worker is False
    assert s.poll_interval == 0.0
    assert "pw" not in repr(s)


@pytest.mark.parametrize(("change", "message"), [
    ({"host": None}, "providers[up].host: required"),
    ({"port": 0}, "providers[up].port: must be at least 1"),
    ({"bind": "receiver"}, "providers[up].bind: must be one of transceiver, "
                           "transmitter+receiver"),
    ({"data_coding": "utf8"}, "providers[up].data_coding: must be one of pass, gsm"),
    ({"long_messages": "cut"}, "providers[up].long_messages: must be one of"),
    ({"window": "100"}, "providers[up].window: expected an integer"),
    ({"tls_ca_file": "/nonexistent"}, "providers[up].tls_ca_file: only with tls = true"),
    ({"tls": True, "tls_ca_file": "/nonexistent"}, "providers[up].tls_ca_file: no such file"),
    ({"password": "muchtoolong"}, "providers[up].password: at most 8 characters"),
    ({"worker": True}, "providers[up].worker: the smpp type runs in the node"),
    ({"sytem_id": "x"}, "providers[up].sytem_id: unknown key (did you mean system_id?)"),
])
def test_smpp_settings_problems_are_named(change: dict[str, Any], message: str) -> None:
    raw = {**BASE, **change}
    raw = {k: v for k, v in raw.items() if v is not None}
    with pytest.raises(ValueError, match="providers") as caught:
        parse_provider(raw, env={})
    assert str(caught.value).startswith(message)


def test_smpp_keys_are_refused_on_other_types() -> None:
    with pytest.raises(ValueError, match="providers") as caught:
        parse_provider({"name": "s", "type": "simulator", "window": 5}, env={})
    assert str(caught.value) == 'providers[s].window: only for type = "smpp"'


# --- ids and receipts -----------------------------------------------------------------


def test_upstream_ids_are_normalised_and_read_in_both_bases() -> None:
    assert normalise_id(" 0000A1 ") == "a1"
    assert normalise_id("000") == "0"
    assert id_keys("0000A1") == ("a1", "161")
    assert id_keys("1000") == ("1000", "4096", "3e8")
    assert id_keys("msg-7") == ("msg-7",)


def receipt_pdu(message_id: str, stat: str = "DELIVRD", err: int = 0, *,
                tlvs: bool = True) -> P.DeliverSm:
    return receipt_deliver_sm(Receipt(message_id, stat, err), source_addr="1",
                              source_ton=0, source_npi=0, dest_addr="2", dest_ton=0,
                              dest_npi=0, tlvs=tlvs)


def test_a_receipt_is_read_from_its_tlvs_or_its_text() -> None:
    assert read_receipt(receipt_pdu("AB12")) == UpstreamReceipt("AB12", Stat.DELIVRD, 0)
    assert read_receipt(receipt_pdu("77", "UNDELIV", 11, tlvs=False)) == UpstreamReceipt(
        "77", Stat.UNDELIV, 11)
    garbage = P.DeliverSm(esm_class=4, short_message=b"hello")
    assert read_receipt(garbage) is None


# --- the correlator -----------------------------------------------------------------


def test_a_receipt_before_the_submit_sm_resp_is_held_then_matched() -> None:
    c = Correlator(early_ttl=5.0)
    t = c.track("m1", 1)
    assert c.receipt(UpstreamReceipt("3E8", Stat.DELIVRD), now=0.0) is None
    assert c.holding == 1
    ((update, key),) = c.sent(t, 0, "1000", now=0.1)  # decimal answer, hex receipt
    assert update is not None
    assert (update.message_id, update.stat, update.provider_id) == ("m1", Stat.DELIVRD,
                                                                    "1000")
    assert key == "3e8"
    assert c.holding == 0
    assert c.following == 0


def test_an_unknown_receipt_expires_after_its_ttl() -> None:
    c = Correlator(early_ttl=5.0)
    c.receipt(UpstreamReceipt("dead", Stat.UNDELIV, 1), now=0.0)
    assert c.expire(4.9) == []
    assert c.expire(5.0) == [UpstreamReceipt("dead", Stat.UNDELIV, 1)]


def test_held_receipts_are_bounded() -> None:
    c = Correlator(early_ttl=60.0, early_max=2)
    for i in range(3):
        c.receipt(UpstreamReceipt(f"x{i}", Stat.DELIVRD), now=0.0)
    assert [r.message_id for r in c.expire(0.0)] == ["x0"]


def test_a_long_message_is_final_when_every_part_is() -> None:
    c = Correlator()
    t = c.track("m", 2)
    c.sent(t, 0, "a", 0.0)
    c.sent(t, 1, "b", 0.0)
    assert c.receipt(UpstreamReceipt("b", Stat.UNDELIV, 1), 0.0) is None
    update = c.receipt(UpstreamReceipt("a", Stat.DELIVRD), 0.0)
    assert update is not None
    assert (update.stat, update.err, update.provider_id) == (Stat.UNDELIV, 1, "a")


def test_the_exact_id_wins_over_another_ids_alternative_reading() -> None:
    c = Correlator()
    ten = c.track("ten", 1)
    sixteen = c.track("sixteen", 1)
    c.sent(ten, 0, "10", 0.0)  # "10" read as hex is 16
    c.sent(sixteen, 0, "16", 0.0)
    update = c.receipt(UpstreamReceipt("16", Stat.DELIVRD), 0.0)
    assert update is not None
    assert update.message_id == "sixteen"


# --- the submit_sm -----------------------------------------------------------------


def message(text: str, data_coding: int = 0, flash: bool = False) -> OutboundMessage:
    return OutboundMessage("1", ("1",), "acc", Address("Shop", 5, 0), Address("7900", 1, 1),
                           Content(Kind.SMS, text, flash=flash), data_coding=data_coding)


UP = UpstreamSettings(host="h", port=1, system_id="s")


@pytest.mark.parametrize(("text", "dc", "policy", "want"), [
    ("hello", 0, "pass", 0),
    ("hello", 8, "pass", 8),
    ("привет", 3, "pass", 8),  # no longer fits Latin-1: UCS2
    ("hello", 8, "gsm", 0),
    ("привет", 0, "gsm", 8),
    ("café", 0, "latin1", 3),
    ("hello", 0, "ucs2", 8),
])
def test_the_data_coding_policy(text: str, dc: int, policy: str, want: int) -> None:
    assert upstream_data_coding(message(text, dc), policy) == want


def test_flash_keeps_message_class_0_when_re_encoded() -> None:
    assert upstream_data_coding(message("hi", flash=True), "ucs2") == 0x18


def test_long_messages_as_udh_sar_or_payload() -> None:
    text = "x" * 200
    udh = submit_pdus(message(text), UP, reference=7)
    assert len(udh) == 2
    assert all(p.esm_class & 0x40 for p in udh)
    assert udh[0].short_message[:6] == bytes([5, 0, 3, 7, 2, 1])
    sar = submit_pdus(message(text), dataclasses.replace(UP, long_messages="sar"), 7)
    assert [p.tlv(Tag.SAR_SEGMENT_SEQNUM) for p in sar] == [b"\x01", b"\x02"]
    assert sar[0].tlv(Tag.SAR_MSG_REF_NUM) == b"\x00\x07"
    (payload,) = submit_pdus(message(text), dataclasses.replace(UP, long_messages="payload"), 7)
    assert payload.short_message == b""
    assert payload.tlv(Tag.MESSAGE_PAYLOAD) == text.encode()


def test_ton_npi_overrides_and_a_receipt_is_always_asked_for() -> None:
    (pdu,) = submit_pdus(message("hi"), dataclasses.replace(UP, source_ton=1, dest_npi=9), 1)
    assert (pdu.source_addr_ton, pdu.source_addr_npi, pdu.dest_addr_ton,
            pdu.dest_addr_npi) == (1, 0, 1, 9)
    assert pdu.registered_delivery == 1


def test_what_is_left_of_the_validity_goes_upstream_and_a_ping_is_silent() -> None:
    m = message("hi")
    m.expire_at = 1000.0 + 2 * 86400 + 3600 + 61
    (pdu,) = submit_pdus(m, UP, 1, now=1000.0)
    assert pdu.validity_period == "000002010101000R"
    assert pdu.protocol_id == 0
    ping = message("")
    ping.content = Content(Kind.PING, "")
    (pdu,) = submit_pdus(ping, UP, 1, now=1000.0)
    assert pdu.protocol_id == 0x40
    assert pdu.validity_period == ""
