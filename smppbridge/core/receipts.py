"""Receipt rules: which parts of a message get a receipt for which ``stat`` (their
registered_delivery, SMPP 3.4 §5.2.17), what a receipt is made of, and the ``err:`` of a
message refused after some of its parts were acked.

The receipt's wire form is :mod:`smppbridge.smpp.receipts`; the outbox that delivers
receipts is :class:`smppbridge.delivery.receipts.ReceiptDispatcher`.
"""

from __future__ import annotations

from collections.abc import Sequence

from smppbridge.core.message import Extra, OutboundMessage
from smppbridge.core.records import FailedMessage, ReceiptRecord
from smppbridge.smpp.constants import INTERMEDIATE_BIT, RECEIPT_MASK, RegisteredDelivery
from smppbridge.smpp.receipts import INTERMEDIATE_STATS

__all__ = ["DEFAULT_RECEIPT_TTL", "ReceiptBasis", "make_receipts", "receipt_basis",
           "refused_receipts", "status_err", "wants_receipt"]

#: Default lifetime of an undelivered receipt (docs/store.md: 72 h).
DEFAULT_RECEIPT_TTL = 72 * 3600.0


def wants_receipt(registered_delivery: int, stat: str) -> bool:
    """Does registered_delivery ask for a receipt with this stat (SMPP 3.4 §5.2.17)?"""
    if stat in INTERMEDIATE_STATS:
        return bool(registered_delivery & INTERMEDIATE_BIT)
    choice = registered_delivery & RECEIPT_MASK
    if choice == RegisteredDelivery.FINAL:
        return True
    return choice == RegisteredDelivery.FAILURE_ONLY and stat != "DELIVRD"


#: What a message's receipts are made of, kept for every message sent until its final
#: status: ``(message_id, account, part_ids, registered_delivery,
#: part_registered_delivery, submitted_at, text, source_addr, source_ton, source_npi,
#: dest_addr, dest_ton, dest_npi, callback_url, callback_format, callback_level)`` — the
#: receipt's source is the message's destination and the other way round;
#: ``part_registered_delivery`` is a long message's per-part values ("1,0,1") or "";
#: the last three are the message's status callback extras (core.message.Extra) or "".
#:
#: An exact tuple of plain values, which the garbage collector drops from its lists after
#: one look. The OutboundMessage it replaces is four tracked objects (message, two
#: addresses, content), and with ~5,000 messages a second waiting a second or more for
#: their status, every young collection walked them (docs/performance.md).
ReceiptBasis = tuple[str, str, tuple[str, ...], int, str, float, str, str, int, int, str,
                     int, int, str, str, str]


def receipt_basis(m: OutboundMessage) -> ReceiptBasis:
    d, s, x = m.destination, m.source, m.extra
    return (m.message_id, m.account, m.part_ids, m.registered_delivery,
            x.get("part_registered_delivery", ""), m.submitted_at, m.content.text,
            d.addr, d.ton, d.npi, s.addr, s.ton, s.npi, x.get(Extra.CALLBACK_URL, ""),
            x.get(Extra.CALLBACK_FORMAT, ""), x.get(Extra.CALLBACK_LEVEL, ""))


def make_receipts(message: OutboundMessage | ReceiptBasis, stat: str, err: int,
                  done_at: float, *, ttl: float = DEFAULT_RECEIPT_TTL, hlr_fields: str = "",
                  part_ids: Sequence[str] | None = None,
                  since: float | None = None) -> list[ReceiptRecord]:
    """One receipt per part id whose submit_sm asked for one with this stat.

    ``done_at`` is the wall date of the text's ``done date``; the TTL counts from
    ``since``, the steady instant now (core.clock; default ``done_at``)."""
    (_, account, all_ids, registered_delivery, per_part, submitted_at, text,
     source_addr, source_ton, source_npi, dest_addr, dest_ton, dest_npi) = (
        message if isinstance(message, tuple) else receipt_basis(message))[:13]
    ids = all_ids if part_ids is None else part_ids
    asked = dict(zip(all_ids, (int(v) for v in per_part.split(",")), strict=False)) \
        if per_part else {}
    ids = [pid for pid in ids if wants_receipt(asked.get(pid, registered_delivery), stat)]
    return [ReceiptRecord(
        account=account, message_id=pid, stat=stat, err=err,
        submit_date=submitted_at, done_date=done_at, text=text,
        source_addr=source_addr, source_ton=source_ton, source_npi=source_npi,
        dest_addr=dest_addr, dest_ton=dest_ton, dest_npi=dest_npi,
        expire_at=(done_at if since is None else since) + ttl,
        intermediate=stat in INTERMEDIATE_STATS, hlr_fields=hlr_fields)
        for pid in ids]


_VENDOR_BASE = 0x400


def status_err(status: int) -> int:
    """The 3-digit receipt ``err:`` for a message refused with ``status`` after some of
    its parts were acked: the status itself (decimal) for SMPP statuses, 4xx for our
    vendor statuses 0x4xx (0x400 duplicate → 400, 0x401 flood → 401)."""
    if status >= _VENDOR_BASE:
        return 400 + (status - _VENDOR_BASE) % 100
    return status % 1000


def refused_receipts(failure: FailedMessage, now: float, *,
                     ttl: float = DEFAULT_RECEIPT_TTL,
                     since: float | None = None) -> list[ReceiptRecord]:
    """``REJECTD`` receipts for the parts of ``failure`` that were acked and asked for
    one; ``err:`` is :func:`status_err` of the status that refused the message."""
    err = status_err(failure.status)
    return [ReceiptRecord(
        account=failure.account, message_id=p.message_id, stat="REJECTD", err=err,
        submit_date=p.submitted_at, done_date=now, text=failure.text,
        source_addr=failure.destination.addr, source_ton=failure.destination.ton,
        source_npi=failure.destination.npi, dest_addr=failure.source.addr,
        dest_ton=failure.source.ton, dest_npi=failure.source.npi,
        expire_at=(now if since is None else since) + ttl)
        for p in failure.parts if wants_receipt(p.registered_delivery, "REJECTD")]
