"""Receipt rules: which parts get a receipt for which stat, what it is made of, and the
err: of a message refused after some of its parts were acked (docs/store.md)."""

from __future__ import annotations

from smppbridge.core.message import Address, OutboundMessage
from smppbridge.core.receipts import make_receipts, refused_receipts, status_err, wants_receipt
from smppbridge.core.records import FailedMessage, FailedPart, FailureReason
from smppbridge.smpp.constants import CommandStatus
from smppbridge.text.content import Content, Kind


def _msg(mid: str = "1", rd: int = 1, parts: tuple[str, ...] | None = None) -> OutboundMessage:
    return OutboundMessage(
        message_id=mid, part_ids=parts or (mid,), account="acme",
        source=Address("src", 5, 0), destination=Address("79001", 1, 1),
        content=Content(Kind.SMS, "hello world"), registered_delivery=rd,
        submitted_at=1_000_000.0)


def test_registered_delivery_bits() -> None:
    """0 none; 1 every final; 2 failures only; 0x10 adds intermediate (SMPP 3.4 §5.2.17)."""
    assert not wants_receipt(0, "DELIVRD")
    assert wants_receipt(1, "DELIVRD")
    assert wants_receipt(1, "UNDELIV")
    assert not wants_receipt(2, "DELIVRD")
    assert wants_receipt(2, "REJECTD")
    assert not wants_receipt(1, "ENROUTE")
    assert wants_receipt(0x11, "ENROUTE")
    assert not wants_receipt(3, "DELIVRD")  # 11 is reserved


def test_one_receipt_per_part_with_swapped_addresses() -> None:
    """A 3-part message yields three receipts, from its destination to its source."""
    rs = make_receipts(_msg("c", parts=("a", "b", "c")), "DELIVRD", 0, 2_000_000.0)
    assert [r.message_id for r in rs] == ["a", "b", "c"]
    assert (rs[0].source_addr, rs[0].dest_addr) == ("79001", "src")
    assert rs[0].text == "hello world"


def test_status_err_for_refusals() -> None:
    """Vendor statuses map to 4xx, SMPP statuses to their decimal value."""
    assert status_err(CommandStatus.VENDOR_DUPLICATE) == 400
    assert status_err(CommandStatus.VENDOR_SUBSCRIBER_FLOOD) == 401
    assert status_err(CommandStatus.ESME_RSUBMITFAIL) == 69


def _failure(status: int) -> FailedMessage:
    return FailedMessage(account="acme", source=Address("src", 5, 0),
                         destination=Address("79001", 1, 1),
                         parts=(FailedPart("a", 1, 1, 10.0), FailedPart("b", 2, 0, 11.0),
                                FailedPart("c", 3, 2, 12.0)),
                         status=status, reason=FailureReason.REFUSED, text="partial")


def test_refused_parts_get_rejectd_with_the_refusing_status_as_err() -> None:
    """Parts acked before their message was refused get REJECTD receipts (only those that
    asked for one), from the destination to the source, err = status_err of the status:
    a vendor status 0x4xx reads 4xx, an SMPP status its decimal value."""
    flood = refused_receipts(_failure(CommandStatus.VENDOR_SUBSCRIBER_FLOOD), 100.0, ttl=60.0)
    assert [(r.message_id, r.stat, r.err) for r in flood] == [("a", "REJECTD", 401),
                                                                ("c", "REJECTD", 401)]
    assert (flood[0].source_addr, flood[0].dest_addr) == ("79001", "src")
    assert (flood[0].submit_date, flood[0].done_date, flood[0].expire_at) == (10.0, 100.0, 160.0)
    assert flood[0].text == "partial"
    incomplete = refused_receipts(_failure(CommandStatus.ESME_RSUBMITFAIL), 100.0)
    assert {r.err for r in incomplete} == {69}
