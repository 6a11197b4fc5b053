"""Receipt text both ways and the receipt deliver_sm (SMPP 3.4 Appendix B, §5.3.2)."""

from __future__ import annotations

import calendar

from smppbridge.smpp.constants import Tag
from smppbridge.smpp.receipts import Receipt, format_receipt, parse_receipt, receipt_deliver_sm

T = calendar.timegm((2026, 11, 23, 20, 5, 0, 0, 0, 0))


def test_format_matches_the_contract() -> None:
    """id sub dlvrd submit date done date stat err text, in that order, text cut to 20."""
    r = Receipt("12345", "DELIVRD", 0, T, T + 60, "Hello world, this is long")
    assert format_receipt(r) == ("id:12345 sub:001 dlvrd:001 submit date:2611232005 "
                                 "done date:2611232006 stat:DELIVRD err:000 "
                                 "text:Hello world, this is")


def test_undelivered_counts_zero_delivered_and_masks_non_ascii() -> None:
    """dlvrd:000 unless DELIVRD; non-ASCII text characters become '?'."""
    r = Receipt("7", "UNDELIV", 1, T, T, "Привет")
    text = format_receipt(r)
    assert "dlvrd:000" in text
    assert "err:001" in text
    assert text.endswith("text:??????")


def test_hlr_format() -> None:
    """An HLR receipt: id stat err then the HLR fields (SMS Center format)."""
    r = Receipt("855469", "DELIVRD", 0, hlr_fields="imsi:250 msc:79 mcc:250 mnc:02 "
                "cn:Russian+Federation net:X rcn: rnet:")
    assert format_receipt(r) == ("id:855469 stat:DELIVRD err:000 imsi:250 msc:79 mcc:250 "
                                 "mnc:02 cn:Russian+Federation net:X rcn: rnet:")


def test_parse_round_trip_and_case_insensitive_labels() -> None:
    """parse_receipt reads what format_receipt writes, and peers' 'Text:' spelling."""
    text = format_receipt(Receipt("abc", "EXPIRED", 2, T, T, "hi there"))
    fields = parse_receipt(text)
    assert fields["id"] == "abc"
    assert fields["stat"] == "EXPIRED"
    assert fields["err"] == "002"
    assert fields["submit date"] == "2611232005"
    assert fields["text"] == "hi there"
    assert parse_receipt("id:1 sub:001 dlvrd:001 submit date:2611232005 done "
                         "date:2611232005 stat:DELIVRD err:000 Text:x y")["text"] == "x y"


def test_deliver_sm_for_a_34_bind() -> None:
    """esm_class 0x04 and the TLVs receipted_message_id, message_state, network_error_code."""
    pdu = receipt_deliver_sm(Receipt("42", "UNDELIV", 5), source_addr="7900", source_ton=1,
                             source_npi=1, dest_addr="src", dest_ton=5, dest_npi=0)
    assert pdu.esm_class == 0x04
    assert pdu.tlv(Tag.RECEIPTED_MESSAGE_ID) == b"42\x00"
    assert pdu.tlv(Tag.MESSAGE_STATE) == bytes([5])
    assert pdu.tlv(Tag.NETWORK_ERROR_CODE) == b"\x03\x00\x05"
    assert pdu.short_message.startswith(b"id:42 ")


def test_intermediate_and_v33() -> None:
    """Intermediate notifications use esm_class 0x20; a v3.3 bind gets no TLVs."""
    pdu = receipt_deliver_sm(Receipt("1", "ENROUTE"), source_addr="a", source_ton=0,
                             source_npi=0, dest_addr="b", dest_ton=0, dest_npi=0,
                             tlvs=False, intermediate=True)
    assert pdu.esm_class == 0x20
    assert pdu.tlvs == ()
