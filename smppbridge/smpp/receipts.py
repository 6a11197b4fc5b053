"""Delivery receipt text, both directions (SMPP 3.4 Appendix B), and the receipt
deliver_sm (§4.6.1, §5.3.2).

Format we emit (lower-case ``text:``, as Kannel and cloudhopper do)::

    id:<id> sub:001 dlvrd:001 submit date:YYMMDDhhmm done date:YYMMDDhhmm
    stat:<STAT> err:<NNN> text:<first 20 chars>          (one line)

and for HLR lookups (the SMS Center format, docs/store.md, HLR receipts)::

    id:<id> stat:<stat> err:<err> imsi:<imsi> msc:<msc> mcc:<mcc> mnc:<mnc>
    cn:<cn> net:<net> rcn:<rcn> rnet:<rnet>              (one line)
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from enum import StrEnum

from smppbridge.smpp import pdu as P
from smppbridge.smpp.constants import EsmClass, MessageState, Tag

__all__ = ["INTERMEDIATE_STATS", "STATES", "Receipt", "Stat", "format_receipt", "parse_receipt",
           "receipt_deliver_sm"]


class Stat(StrEnum):
    """The receipt ``stat:`` word (SMPP 3.4 Appendix B, Table B-2; ENROUTE from §5.2.28)
    and its message_state. The one vocabulary of receipt statuses: providers map their
    own words to it, the store keeps it, receipts carry it."""

    ENROUTE = "ENROUTE"
    DELIVRD = "DELIVRD"
    EXPIRED = "EXPIRED"
    DELETED = "DELETED"
    UNDELIV = "UNDELIV"
    ACCEPTD = "ACCEPTD"
    UNKNOWN = "UNKNOWN"
    REJECTD = "REJECTD"

    @property
    def message_state(self) -> MessageState:
        """SMPP 3.4 §5.2.28 message_state for this stat."""
        return STATES[self]

    @property
    def final(self) -> bool:
        """ENROUTE and ACCEPTD are intermediate; every other stat ends the message."""
        return self is not Stat.ENROUTE and self is not Stat.ACCEPTD


#: stat word → message_state (SMPP 3.4 §5.2.28). Keyed by the words themselves too:
#: a StrEnum member hashes and compares as its string.
STATES: dict[str, MessageState] = {
    Stat.ENROUTE: MessageState.ENROUTE,
    Stat.DELIVRD: MessageState.DELIVERED,
    Stat.EXPIRED: MessageState.EXPIRED,
    Stat.DELETED: MessageState.DELETED,
    Stat.UNDELIV: MessageState.UNDELIVERABLE,
    Stat.ACCEPTD: MessageState.ACCEPTED,
    Stat.UNKNOWN: MessageState.UNKNOWN,
    Stat.REJECTD: MessageState.REJECTED,
}
#: the stats that are not final (intermediate notifications, registered_delivery bit 4)
INTERMEDIATE_STATS = frozenset(s for s in Stat if not s.final)
#: Characters of the original text quoted in ``text:`` (Appendix B: 20).
TEXT_CHARS = 20
#: network_error_code network type: 3 = GSM (§5.3.2.31).
_GSM_NETWORK = 3
_RECEIPT = int(EsmClass.DELIVERY_RECEIPT)
_INTERMEDIATE = int(EsmClass.INTERMEDIATE_NOTIFICATION)


def _date(ts: float) -> str:
    minute = int(ts // 60)
    text = _DATES.get(minute)
    if text is None:
        # A receipt stream repeats the same few minutes: formatted once each.
        if len(_DATES) > 1024:
            _DATES.clear()
        text = _DATES[minute] = time.strftime("%y%m%d%H%M", time.gmtime(minute * 60))
    return text


_DATES: dict[int, str] = {}
#: printable ASCII stays, everything else becomes '?'
_NOT_PRINTABLE = re.compile(r"[^ -~]")


def _ascii_text(text: str) -> str:
    # Receipts travel as data_coding 0 and are parsed as ASCII by every client we know
    # (Kannel, cloudhopper, smpplib); characters outside printable ASCII become '?'.
    head = text[:TEXT_CHARS]
    if head.isascii() and head.isprintable():
        return head
    return _NOT_PRINTABLE.sub("?", head)


# Not frozen, to be treated as immutable: a frozen dataclass sets every field through
# object.__setattr__, and these are made for every message (docs/performance.md).
@dataclass(slots=True)
class Receipt:
    """The fields of one receipt."""

    message_id: str
    stat: str
    err: int = 0
    submit_date: float = 0.0
    done_date: float = 0.0
    text: str = ""
    sub: int = 1
    dlvrd: int | None = None
    #: ``imsi:... rnet:...`` for an HLR receipt, else ""
    hlr_fields: str = ""

    @property
    def final(self) -> bool:
        return self.stat not in INTERMEDIATE_STATS

    @property
    def message_state(self) -> MessageState:
        return STATES.get(self.stat, MessageState.UNKNOWN)


def format_receipt(r: Receipt) -> str:
    """The receipt's short_message text."""
    if r.hlr_fields:
        return f"id:{r.message_id} stat:{r.stat} err:{r.err:03d} {r.hlr_fields}"
    dlvrd = r.dlvrd if r.dlvrd is not None else (r.sub if r.stat == "DELIVRD" else 0)
    return (f"id:{r.message_id} sub:{r.sub:03d} dlvrd:{dlvrd:03d} "
            f"submit date:{_date(r.submit_date)} done date:{_date(r.done_date)} "
            f"stat:{r.stat} err:{r.err:03d} text:{_ascii_text(r.text)}")


_FIELD = re.compile(
    r"(id|sub|dlvrd|submit date|done date|stat|err|text):", re.IGNORECASE)


def parse_receipt(text: str) -> dict[str, str]:
    """Fields of a receipt text, keys lower-case (labels matched case-insensitively).

    ``text`` runs to the end of the string; every other value ends at the next space.
    """
    out: dict[str, str] = {}
    matches = list(_FIELD.finditer(text))
    for i, m in enumerate(matches):
        key = m.group(1).lower()
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        value = text[m.end():end]
        out[key] = value if key == "text" else value.strip()
    return out


def receipt_deliver_sm(r: Receipt, *, source_addr: str, source_ton: int, source_npi: int,
                       dest_addr: str, dest_ton: int, dest_npi: int,
                       tlvs: bool = True, intermediate: bool = False) -> P.DeliverSm:
    """The deliver_sm that carries receipt ``r`` back to the ESME.

    Addresses are swapped by the caller's choice of arguments: the receipt comes *from*
    the original destination *to* the original source. TLVs receipted_message_id,
    message_state and network_error_code are added for 3.4 binds (``tlvs``).
    """
    extra: tuple[P.Tlv, ...] = ()
    if tlvs:
        extra = (
            P.Tlv(Tag.RECEIPTED_MESSAGE_ID, r.message_id.encode("ascii") + b"\0"),
            P.Tlv(Tag.MESSAGE_STATE, bytes([r.message_state])),
        )
        if r.err:
            extra += (P.Tlv(Tag.NETWORK_ERROR_CODE,
                            bytes([_GSM_NETWORK]) + (r.err & 0xFFFF).to_bytes(2, "big")),)
    return P.DeliverSm(
        source_addr_ton=source_ton, source_addr_npi=source_npi, source_addr=source_addr,
        dest_addr_ton=dest_ton, dest_addr_npi=dest_npi, destination_addr=dest_addr,
        esm_class=_INTERMEDIATE if intermediate else _RECEIPT,
        data_coding=0, short_message=format_receipt(r).encode("ascii"), tlvs=extra)
