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

__all__ = ["INTERMEDIATE_STATS", "STATES", "Receipt", "Stat", "UpstreamReceipt",
           "format_receipt", "id_keys", "is_receipt", "normalise_id", "parse_receipt",
           "read_receipt", "receipt_deliver_sm"]


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


# --- receipts from an upstream SMSC (the ``smpp`` provider) --------------------------

_RECEIPT_BITS = _RECEIPT | _INTERMEDIATE
_STAT_OF_STATE = {int(state): Stat(stat) for stat, state in STATES.items()}
#: stat words upstreams write that are not in Table B-2 (seen in Kannel, Jasmin)
_STAT_ALIASES = {"DELIVERED": Stat.DELIVRD, "UNDELIVERABLE": Stat.UNDELIV,
                 "REJECTED": Stat.REJECTD, "ACCEPTED": Stat.ACCEPTD,
                 "ENROUTE": Stat.ENROUTE, "DELETED": Stat.DELETED,
                 "EXPIRED": Stat.EXPIRED, "UNKNOWN": Stat.UNKNOWN,
                 **{stat.value: stat for stat in Stat}}


@dataclass(slots=True)
class UpstreamReceipt:
    """What an upstream SMSC's receipt deliver_sm says: the upstream's message id (as
    written), the stat and the err (the text's ``err:`` digits, else the
    network_error_code's error, else 0)."""

    message_id: str
    stat: Stat
    err: int = 0


def is_receipt(pdu: P.DeliverSm) -> bool:
    """esm_class says SMSC delivery receipt or intermediate notification (§5.2.12)."""
    return bool(pdu.esm_class & _RECEIPT_BITS)


def read_receipt(pdu: P.DeliverSm) -> UpstreamReceipt | None:
    """The receipt a deliver_sm carries, or None when it names no id or no status.

    The TLVs win where present (receipted_message_id, message_state; §5.3.2.12,
    §5.3.2.35), the text (Appendix B) fills in the rest.
    """
    text: dict[str, str] = {}
    raw_id = pdu.tlv(Tag.RECEIPTED_MESSAGE_ID)
    message_id = raw_id.rstrip(b"\0").decode("ascii", "replace") if raw_id else ""
    state = pdu.tlv(Tag.MESSAGE_STATE)
    stat = _STAT_OF_STATE.get(state[0]) if state and len(state) == 1 else None
    if not message_id or stat is None:
        body = pdu.short_message or pdu.tlv(Tag.MESSAGE_PAYLOAD) or b""
        text = parse_receipt(body.decode("latin-1"))
        message_id = message_id or text.get("id", "")
        if stat is None:
            stat = _STAT_ALIASES.get(text.get("stat", "").upper())
    if not message_id or stat is None:
        return None
    err = 0
    if not text and stat is not Stat.DELIVRD:
        # The TLVs carry no err: read it from the text (a delivered one has none).
        body = pdu.short_message or b""
        text = parse_receipt(body.decode("latin-1")) if b"err:" in body.lower() else {}
    digits = text.get("err", "")
    if digits.isdigit():
        err = int(digits) % 1000
    else:
        nec = pdu.tlv(Tag.NETWORK_ERROR_CODE)
        if nec and len(nec) == 3:
            err = int.from_bytes(nec[1:], "big") % 1000
    return UpstreamReceipt(message_id, stat, err)


def normalise_id(message_id: str) -> str:
    """An upstream message id as we keep it: trimmed, lower case, leading zeros
    dropped (``"0000A1"`` → ``"a1"``; ``"000"`` → ``"0"``)."""
    return message_id.strip().lower().lstrip("0") or "0"


_HEX = frozenset("0123456789abcdef")
_MAX_ID_DIGITS = 40


def id_keys(message_id: str) -> tuple[str, ...]:
    """The keys under which a receipt for ``message_id`` may name it, the exact one
    first: the normalised id, then (for an id that reads as hex) its value in decimal,
    then (for a decimal id) its value in hex. Upstreams answer submit_sm_resp in one
    base and write the receipt in the other (docs/providers.md, the smpp provider)."""
    norm = normalise_id(message_id)
    keys = [norm]
    if len(norm) <= _MAX_ID_DIGITS and set(norm) <= _HEX:
        dec = str(int(norm, 16))
        if dec not in keys:
            keys.append(dec)
        if norm.isdigit():
            hx = format(int(norm), "x")
            if hx not in keys:
                keys.append(hx)
    return tuple(keys)
