"""The store interface: what the pipeline needs to keep durably.

Every method is a coroutine; an implementation returns from a write only once it is
durable (SQLite: committed with the configured ``synchronous`` level; Redis: acknowledged
by the server, whose AOF settings decide durability). Implementations group many
concurrent writes into one transaction.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from smppbridge.message import Content, Kind, OutboundMessage

__all__ = ["MessageState", "PartRecord", "ReceiptRecord", "Store", "StoreUnavailable",
           "StoredMessage", "content_from_json", "content_to_json", "receipt_body", "settle"]


class StoreUnavailable(Exception):
    """The store cannot be reached right now (e.g. Redis down); temporary. A submit
    that meets it is answered ESME_RMSGQFUL so the ESME retries later."""


class MessageState(StrEnum):
    """Where a message is in the pipeline."""

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
# object.__setattr__, and these are made for every message (see README, Performance).
@dataclass(slots=True)
class StoredMessage:
    message: OutboundMessage
    state: MessageState
    stat: str = ""
    err: int = 0
    provider: str = ""
    provider_id: str = ""
    attempts: int = 0
    next_at: float = 0.0
    done_at: float | None = None


# Not frozen, to be treated as immutable: a frozen dataclass sets every field through
# object.__setattr__, and these are made for every message (see README, Performance).
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


class Store(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ready(self) -> bool: ...

    async def reserve_ids(self, count: int) -> int:
        """Reserve ``count`` consecutive message numbers; return the first.
        Never returns the same number twice, across restarts (and nodes)."""
        ...

    async def save_part(self, part: PartRecord) -> None: ...

    async def load_parts(self) -> list[PartRecord]: ...

    async def accept(self, message: OutboundMessage, receipts: Sequence[ReceiptRecord] = (),
                     *, final_stat: str = "", final_err: int = 0) -> None:
        """Store a whole message (dropping its parts); with ``final_stat`` it is stored
        already final (refused after a partial ack) with its receipts."""
        ...

    async def fail_parts(self, part_ids: Sequence[str],
                         receipts: Sequence[ReceiptRecord]) -> None:
        """Drop parts of a message that will never be whole, adding their receipts."""
        ...

    async def due(self, now: float, limit: int) -> list[StoredMessage]:
        """Queued messages whose send time has come, oldest first."""
        ...

    async def in_flight(self) -> list[StoredMessage]:
        """Sent messages still waiting for a final status (resume polling on start)."""
        ...

    async def mark_sent(self, message_id: str, provider: str, provider_id: str,
                        stat: str, now: float,
                        receipts: Sequence[ReceiptRecord] = ()) -> None: ...

    async def mark_retry(self, message_id: str, next_at: float, attempts: int) -> None: ...

    async def mark_final(self, message_id: str, stat: str, err: int, now: float,
                         receipts: Sequence[ReceiptRecord] = (), provider: str = "",
                         provider_id: str = "") -> None: ...

    async def find(self, message_id: str) -> StoredMessage | None: ...

    async def find_by_provider(self, provider: str, provider_id: str
                               ) -> StoredMessage | None: ...

    async def add_receipts(self, receipts: Sequence[ReceiptRecord]) -> None: ...

    async def receipts_for(self, account: str, now: float, limit: int
                           ) -> list[ReceiptRecord]:
        """Receipts of ``account`` due for (re)delivery, in creation order."""
        ...

    async def receipt_done(self, seqs: Sequence[int]) -> None: ...

    async def receipt_retry(self, seq: int, next_at: float, attempts: int) -> None: ...

    async def expire_receipts(self, now: float) -> int:
        """Drop receipts past their TTL; return how many."""
        ...

    async def accounts_with_receipts(self, now: float) -> list[str]: ...


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


def settle(fut: asyncio.Future[Any], value: Any, err: BaseException | None) -> None:
    """Resolve ``fut`` with ``value`` or ``err`` unless it is done (cancelled) already."""
    if fut.done():
        return
    if err is not None:
        fut.set_exception(err)
    else:
        fut.set_result(value)
