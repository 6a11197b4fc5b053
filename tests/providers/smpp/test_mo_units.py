"""An upstream's MO deliver_sm read (read_mo) and an MO outbox record written back as
a deliver_sm (mo_deliver_sm), with no network."""

from __future__ import annotations

import pytest

from smppbridge.core.mo import MO_RECORD
from smppbridge.core.records import ReceiptRecord
from smppbridge.delivery.receipts import mo_deliver_sm
from smppbridge.providers.smpp.provider import read_mo
from smppbridge.smpp import pdu as P
from smppbridge.smpp.constants import Tag
from smppbridge.text.encoding import ContentError


def _pdu(data: bytes, **kw: object) -> P.DeliverSm:
    return P.DeliverSm(source_addr="79001112233", source_addr_ton=1, source_addr_npi=1,
                       destination_addr="1234", short_message=data, **kw)  # type: ignore[arg-type]


def test_read_mo_keeps_the_octets_and_decodes_the_text() -> None:
    mo = read_mo("up", _pdu("привет".encode("utf-16-be"), data_coding=8), 10.0)
    assert (mo.text, mo.encoding, mo.data_coding, mo.concat) == ("привет", "ucs2", 8, None)
    assert mo.payload == "привет".encode("utf-16-be")
    assert (mo.source.addr, mo.source.ton, mo.destination.addr) == ("79001112233", 1, "1234")


def test_read_mo_strips_the_udh_and_reads_the_part() -> None:
    mo = read_mo("up", _pdu(bytes((5, 0, 3, 9, 3, 2)) + b"abc", esm_class=0x40), 0.0)
    assert (mo.payload, mo.concat) == (b"abc", (9, 3, 2))


def test_read_mo_of_undecodable_octets_keeps_them_with_no_text() -> None:
    mo = read_mo("up", _pdu(b"\xd8\x00", data_coding=8), 0.0)  # a lone surrogate
    assert (mo.text, mo.encoding, mo.payload) == ("", "unknown", b"\xd8\x00")


def test_read_mo_refuses_a_malformed_udh() -> None:
    with pytest.raises(ContentError):
        read_mo("up", _pdu(bytes((9, 0, 3)), esm_class=0x40), 0.0)


def _record(**extra: str) -> ReceiptRecord:
    return ReceiptRecord(account="shop", message_id="7", stat="", err=0, submit_date=0.0,
                         done_date=0.0, text="", source_addr="79001112233", source_ton=1,
                         source_npi=1, dest_addr="1234", dest_ton=0, dest_npi=0,
                         expire_at=1.0, extra=extra)


def test_mo_deliver_sm_is_no_receipt_and_keeps_coding_and_octets() -> None:
    pdu = mo_deliver_sm(_record(**{MO_RECORD: "8", "mo_payload": "0041"}))
    assert (pdu.esm_class, pdu.data_coding, pdu.short_message) == (0, 8, b"\x00A")
    assert (pdu.source_addr, pdu.destination_addr) == ("79001112233", "1234")


def test_mo_deliver_sm_of_a_part_has_a_concat_udh_and_long_payloads_a_tlv() -> None:
    part = mo_deliver_sm(_record(**{MO_RECORD: "0", "mo_payload": "6869", "mo_ref": "300",
                                    "mo_total": "2", "mo_seq": "1"}))
    assert (part.esm_class, part.short_message) == (0x40, bytes((6, 8, 4, 1, 44, 2, 1))
                                                    + b"hi")  # 300: a 16-bit reference
    long = mo_deliver_sm(_record(**{MO_RECORD: "4", "mo_payload": "00" * 300}))
    assert long.short_message == b""
    assert long.tlv(Tag.MESSAGE_PAYLOAD) == bytes(300)
