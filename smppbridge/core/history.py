"""Message history: how a message is looked for, and what its story is made of.

Every message, whichever door it came in by, is one record with one timeline; the
store keeps both for ``[store] history_days`` after the message ended, then purges
them (docs/store.md, *History and retention*). The operator API and the console read
them through :meth:`smppbridge.core.ports.Store.search`,
:meth:`~smppbridge.core.ports.Store.timeline` and
:meth:`~smppbridge.core.ports.Store.receipts_of`.

Pages are newest first, by ``(submitted_at, message_id)``; a :class:`Cursor` is the key
of the last item of a page, and the next page starts strictly after it (keyset
pagination: no OFFSET, so page 1,000 costs what page 1 costs).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from smppbridge.core.records import DeliveryState, StoredMessage

__all__ = [
    "DEFAULT_HISTORY_DAYS",
    "MAX_PAGE",
    "Cursor",
    "MessagePage",
    "MessageQuery",
    "ReceiptState",
    "ReceiptView",
    "TimelineEntry",
]

#: Days a message and its timeline stay findable after it ended (``[store] history_days``)
DEFAULT_HISTORY_DAYS = 7.0
#: Largest page a query may ask for (the API answers 422 above it).
MAX_PAGE = 1000


@dataclass(frozen=True, slots=True)
class Cursor:
    """The key of the last message of a page: (submitted_at, message_id)."""

    submitted_at: float
    message_id: str


@dataclass(frozen=True, slots=True)
class MessageQuery:
    """A search of the message history. Every field left at None matches everything;
    the fields given must all match. ``destination`` and ``source`` are exact addresses
    as stored (after the normalisation of the door the message came by); ``since`` and
    ``until`` bound ``submitted_at`` (since ≤ t < until)."""

    account: str | None = None
    destination: str | None = None
    source: str | None = None
    state: DeliveryState | None = None
    stat: str | None = None
    provider: str | None = None
    provider_id: str | None = None
    since: float | None = None
    until: float | None = None
    limit: int = 100
    after: Cursor | None = None


@dataclass(frozen=True, slots=True)
class MessagePage:
    """One page of a search, newest first; ``next`` is None on the last page."""

    items: list[StoredMessage]
    next: Cursor | None


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One change of a message, oldest first in a timeline.

    ``state`` is where the message is after the change (queued, sent, final);
    ``detail`` says what happened in words an operator reads: ``accepted``, ``sent to
    mysmpp as 100000001``, ``status from poll``, ``status from webhook``, ``retry 2:
    provider unavailable``, ``expired: no final status``, ``cancelled``.
    """

    at: float
    state: str
    stat: str
    err: int
    detail: str


class ReceiptState(StrEnum):
    PENDING = "pending"  # waiting for (another) deliver_sm to a receiver bind
    DELIVERED = "delivered"  # the ESME answered deliver_sm_resp ESME_ROK
    DROPPED = "dropped"  # the ESME refused it for good (ESME_RX_P_APPN / R_APPN)
    EXPIRED = "expired"  # no receiver took it within the receipt TTL


@dataclass(frozen=True, slots=True)
class ReceiptView:
    """A receipt of one part of a message, as the history shows it."""

    part_id: str
    #: the system_id the receipt goes to
    account: str
    stat: str
    err: int
    state: ReceiptState
    attempts: int
    #: when it was created (pending) or reached its state
    at: float
