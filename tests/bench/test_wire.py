"""Pre-encoded PDUs: byte-identical to the codec, and correct concatenation UDHs."""

from __future__ import annotations

import pytest

from smppbridge.bench.wire import (
    RECEIPT_ID_WIDTH,
    UCS2_CHARS_PER_PART,
    ReceiptTemplate,
    SubmitTemplate,
    concat_udh,
    esm_class_of_deliver,
    ucs2_parts,
)
from smppbridge.smpp import pdu as P
from smppbridge.smpp.codec import decode, encode
from smppbridge.smpp.constants import EsmClass, Tag
from smppbridge.smpp.receipts import Receipt, receipt_deliver_sm


@pytest.mark.parametrize(("template_args", "destination", "text"), [
    ({}, "79010000001", b"load 1 1"),
    ({"source_addr": "Shop", "registered_delivery": 0, "data_coding": 8,
      "esm_class": 0x40}, "380501234567", b"\x00l\x00o"),
    ({"tlvs": (P.Tlv(Tag.USER_MESSAGE_REFERENCE, b"\x00\x07"),)}, "1", b""),
])
def test_submit_template_matches_codec(template_args, destination, text):
    """SubmitTemplate.build yields exactly the bytes encode() gives for the same submit_sm."""
    template = SubmitTemplate(**template_args)
    wire = template.build(42, destination.encode(), text)
    fields = {"source_addr": "bench", "registered_delivery": 1, **template_args}
    expected = encode(P.SubmitSm(
        sequence_number=42, source_addr_ton=5, source_addr_npi=0, dest_addr_ton=1,
        dest_addr_npi=1, destination_addr=destination, short_message=text, **fields))
    assert wire == expected
    assert decode(wire) == decode(expected)


def test_receipt_template_matches_receipt_deliver_sm():
    """ReceiptTemplate.build equals encode(receipt_deliver_sm(...)) with a zero-padded id,
    addresses and TON/NPI filled in per receipt."""
    now = 1_790_000_000.0
    wire = ReceiptTemplate().build(7, 123, source=b"79010000001", source_ton=1, source_npi=1,
                                   dest=b"bench", dest_ton=5, dest_npi=0, now=now)
    message_id = "123".zfill(RECEIPT_ID_WIDTH)
    expected = receipt_deliver_sm(
        Receipt(message_id=message_id, stat="DELIVRD", submit_date=now, done_date=now),
        source_addr="79010000001", source_ton=1, source_npi=1, dest_addr="bench",
        dest_ton=5, dest_npi=0).with_(sequence_number=7)
    assert wire == encode(expected)
    receipt = decode(wire)
    assert isinstance(receipt, P.DeliverSm)
    assert receipt.tlv(Tag.RECEIPTED_MESSAGE_ID) == message_id.encode() + b"\0"


def test_receipt_template_follows_the_minute():
    """The template is rebuilt when the minute changes, so the dates stay current."""
    template = ReceiptTemplate()
    args = {"source": b"1", "source_ton": 0, "source_npi": 0, "dest": b"2", "dest_ton": 0,
            "dest_npi": 0}
    first = decode(template.build(1, 1, now=1_790_000_000.0, **args))
    later = decode(template.build(1, 1, now=1_790_000_000.0 + 3600, **args))
    assert isinstance(first, P.DeliverSm)
    assert isinstance(later, P.DeliverSm)
    assert first.short_message != later.short_message


def test_ucs2_three_parts_have_16bit_reference_udh():
    """A 3-part UCS2 text gets UDH 06 08 04 refHi refLo 03 seq on every part, at most
    66 UTF-16 code units each, and the parts rejoin to the text."""
    text = "Ж" * (2 * UCS2_CHARS_PER_PART) + "конец"
    parts = ucs2_parts(text, 0x1234)
    assert len(parts) == 3
    for seq, part in enumerate(parts, 1):
        assert part[:7] == bytes([0x06, 0x08, 0x04, 0x12, 0x34, 0x03, seq])
        assert len(part) - 7 <= 2 * UCS2_CHARS_PER_PART
        assert len(part) <= 140
    assert b"".join(p[7:] for p in parts).decode("utf-16-be") == text


def test_ucs2_parts_keep_surrogate_pairs_together():
    """An emoji (a surrogate pair) straddling a part boundary moves whole to the next part."""
    text = "a" * (UCS2_CHARS_PER_PART - 1) + "😀" + "b"
    parts = ucs2_parts(text, 1)
    assert [p[7:].decode("utf-16-be") for p in parts] == ["a" * 65, "😀b"]


def test_concat_udh_refuses_impossible_numbers():
    """Part numbers run 1..total and total is at most 255 (one octet each)."""
    assert concat_udh(0xABCD, 2, 2) == bytes([6, 8, 4, 0xAB, 0xCD, 2, 2])
    for seq, total in ((0, 3), (4, 3), (1, 256)):
        with pytest.raises(ValueError, match="parts are numbered"):
            concat_udh(1, total, seq)


def test_esm_class_of_deliver_reads_the_receipt_bit():
    """esm_class is found after service_type and both addresses of a deliver_sm."""
    wire = encode(P.DeliverSm(service_type="CMT", source_addr="123", destination_addr="45678",
                              esm_class=EsmClass.DELIVERY_RECEIPT, short_message=b"x"))
    assert esm_class_of_deliver(wire) == EsmClass.DELIVERY_RECEIPT
