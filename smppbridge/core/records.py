"""The records the store keeps: a message with where it is (:class:`StoredMessage`,
:class:`DeliveryState`), a part of a long message waiting for the rest
(:class:`PartRecord`), a receipt waiting for a receiver bind (:class:`ReceiptRecord`), and
the parts of a message that failed after some were acked (:class:`FailedMessage`).

The contract of the stores that keep them is :class:`smppbridge.core.ports.Store`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from smppbridge.core.message import Address, OutboundMessage
from smppbridge.text.content import Content, Kind

__all__ = ["DeliveryState", "FailedMessage", "FailedPart", "FailureReason", "PartRecord",
           "ReceiptRecord", "StoredMessage", "content_from_json", "content_to_json",
           "receipt_body"]


class DeliveryState(StrEnum):
    """Where a message is in the pipeline (not SMPP's message_state: that is
    :class:`smppbridge.smpp.constants.MessageState`)."""

    #: stored, waiting for (another) send attempt at ``next_at``
    QUEUED = "queued"
    #: accepted by a provider; waiting for its final status
    SENT = "sent"
    #: ended (delivered, undeliverable, rejected, expired ...): see ``stat``/``err``
    FINAL = "final"


@dataclass(frozen=True, slots=True)
class PartRecord:
    """A non-final part of a long message, kept until its message is whole or expires.

    ``pdu`` is the encoded submit_sm exactly as received, so a restart can replay it
    into the reassembler with its original arrival time.
    """

    part_id: str
    account: str
    key: str
    pdu: bytes
    arrived_at: float
    system_type: str = ""
    interface_version: int = 0x34


# Not frozen, to be treated as immutable: a frozen dataclass sets every field through
# object.__setattr__, and these are made for every message (docs/performance.md).
@dataclass(slots=True)
class StoredMessage:
    message: OutboundMessage
    state: DeliveryState
    stat: str = ""
    err: int = 0
    provider: str = ""
    provider_id: str = ""
    attempts: int = 0
    next_at: float = 0.0
    done_at: float | None = None


# Not frozen, to be treated as immutable: a frozen dataclass sets every field through
# object.__setattr__, and these are made for every message (docs/performance.md).
@dataclass(slots=True)
class ReceiptRecord:
    """A receipt waiting for a receiver bind of ``account``.

    The deliver_sm is built when it is sent, because its TLVs depend on the bind that
    takes it (none for v3.3).
    """

    account: str
    message_id: str
    stat: str
    err: int
    submit_date: float
    done_date: float
    text: str
    #: receipt comes from the original destination to the original source
    source_addr: str
    source_ton: int
    source_npi: int
    dest_addr: str
    dest_ton: int
    dest_npi: int
    expire_at: float
    intermediate: bool = False
    hlr_fields: str = ""
    seq: int = 0
    attempts: int = 0
    next_at: float = 0.0
    extra: dict[str, str] = field(default_factory=dict)


class FailureReason(StrEnum):
    INCOMPLETE = "incomplete"  # the window closed before every part arrived
    REPLACED = "replaced"  # a new message reused the reference (different total)
    REFUSED = "refused"  # the whole message was refused at its final part


@dataclass(frozen=True, slots=True)
class FailedPart:
    """A part that was acked ``ESME_ROK`` and is now owed a ``REJECTD`` receipt."""

    message_id: str
    seq: int
    registered_delivery: int
    submitted_at: float


@dataclass(frozen=True, slots=True)
class FailedMessage:
    """Parts of a message that will never be sent, for the receipts stage."""

    account: str
    source: Address
    destination: Address
    parts: tuple[FailedPart, ...]
    #: the command_status that refused the message; for INCOMPLETE / REPLACED,
    #: ESME_RSUBMITFAIL (no SMPP status names "parts missing")
    status: int
    reason: FailureReason
    #: the decoded text as far as it decodes ("" when it does not), for ``text:``
    text: str = ""

    @property
    def part_ids(self) -> tuple[str, ...]:
        return tuple(p.message_id for p in self.parts)


_CONTENT_FIELDS = tuple(Content.__dataclass_fields__)


def content_to_json(c: Content) -> str:
    """A message's content as compact JSON (what every store keeps)."""
    # A direct field walk: dataclasses.asdict deep-copies and cost ~4 % of a submit.
    d: dict[str, Any] = {}
    for name in _CONTENT_FIELDS:
        value = getattr(c, name)
        if value is not None and value is not False:
            d[name] = value
    d["kind"] = c.kind.value
    return json.dumps(d)


def content_from_json(text: str) -> Content:
    d = json.loads(text)
    d["kind"] = Kind(d["kind"])
    return Content(**d)


#: What a store keeps of a receipt; seq, attempts and next_at are the store's own.
_RECEIPT_BODY_FIELDS = tuple(f for f in ReceiptRecord.__dataclass_fields__
                             if f not in ("seq", "attempts", "next_at"))


def receipt_body(rec: ReceiptRecord) -> dict[str, Any]:
    """The fields of ``rec`` a store serialises (``ReceiptRecord(**body)`` restores it).

    A direct field walk: dataclasses.asdict recursed into every value and was 7.6 % of
    a node's CPU with receipts flowing (py-spy, 2,000 receipts/s).
    """
    return {name: getattr(rec, name) for name in _RECEIPT_BODY_FIELDS}


