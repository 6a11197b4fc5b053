"""Every contract between the layers, in one place.

Theory of operation
-------------------
The services (:mod:`smppbridge.ingest`, :mod:`smppbridge.delivery`) and the adapters
(:mod:`smppbridge.server`, :mod:`smppbridge.store`, :mod:`smppbridge.providers`) never
import each other: each side sees the other only through a protocol declared here, and
:mod:`smppbridge.node` wires the real objects together.

::

    server --SubmitHandler--> ingest --MessageSink--> delivery --Provider--> providers
                                  \\--FloodState--/      |  \\--Store--> store
    server <--ReceiverBind-- delivery (receipts) <--ReceiptOutbox-- delivery (pipeline)

Every operation a caller uses is declared, batch operations included, so mypy checks
each call and no caller probes an implementation for what it can do. Where a store can
do less (the Redis store leases no receipts to a process and claims nothing on
accept), the contract says how that is answered: an empty lease, ``claims_on_accept =
False``, ``flood_state() is None`` for "keep the flood windows in this process".

Size: just over 500 lines because every contract between the layers is here, as the
architecture wants (one place to read them all); the Store alone, with its batch,
history, receipt and status callback operations, is half of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from smppbridge.core.history import ReceiptState

if TYPE_CHECKING:
    from smppbridge.core.accounts import FloodRules
    from smppbridge.core.callbacks import CallbackEvent, CallbackOutcome
    from smppbridge.core.cluster import NodeReport, Second
    from smppbridge.core.history import MessagePage, MessageQuery, ReceiptView, TimelineEntry
    from smppbridge.core.idempotency import IdempotentAnswer
    from smppbridge.core.message import OutboundMessage
    from smppbridge.core.outcomes import Balance, SendOutcome, StatusUpdate
    from smppbridge.core.records import (
        DeliveryState,
        FailedMessage,
        PartRecord,
        ReceiptRecord,
        StoredMessage,
    )
    from smppbridge.core.session import QueryResult, SessionContext, SubmitResult
    from smppbridge.http.request import HttpRequest
    from smppbridge.smpp import pdu as P
    from smppbridge.smpp.pdu import SubmitSm
    from smppbridge.text.content import Kind

__all__ = [
    "FinalEntry",
    "FloodState",
    "Leased",
    "MessageSink",
    "NodeRegistry",
    "Provider",
    "ReceiptOutbox",
    "ReceiverBind",
    "SentEntry",
    "Store",
    "SubmitHandler",
]

#: (message_id, provider, provider_id, stat, now, receipts) of one message a provider took
SentEntry = tuple[str, str, str, str, float, "Sequence[ReceiptRecord]"]
#: (message_id, stat, err, done_at, receipts, detail) of one message that reached its
#: final status; ``detail`` says where from (``status from poll``, ``... webhook``)
FinalEntry = tuple[str, str, int, float, "Sequence[ReceiptRecord]", str]
#: receipts just written and leased to this process's dispatcher: (seq, receipt)
Leased = list[tuple[int, "ReceiptRecord"]]


# --- the SMPP server and the submit path ----------------------------------------------


class SubmitHandler(Protocol):
    """What the server calls for every message-carrying request that passed the session.

    Implementations must be safe to call concurrently (many binds, a window per bind)
    and must only return ``ESME_ROK`` once the message is stored as durably as the
    implementation promises. A handler that has no batch path of its own may subclass
    this protocol and inherit :meth:`submit_many`, which answers one by one.
    """

    async def submit(self, ctx: SessionContext, pdu: SubmitSm) -> SubmitResult:
        """Accept or refuse one submit_sm (data_sm and each submit_multi destination too)."""
        ...

    async def submit_many(self, ctx: SessionContext, pdus: Sequence[SubmitSm]
                          ) -> list[SubmitResult | Exception]:
        """Every submit_sm of one read from one bind, answered in order; where
        :meth:`submit` would have raised, the entry is the exception (the server maps
        it to a status). By default, :meth:`submit` for each, concurrently."""
        results = await asyncio.gather(*(self.submit(ctx, p) for p in pdus),
                                       return_exceptions=True)
        out: list[SubmitResult | Exception] = []
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, Exception):
                raise r  # cancelled
            out.append(r)
        return out

    async def query(self, ctx: SessionContext, message_id: str, source_addr: str
                    ) -> QueryResult:
        """query_sm."""
        ...

    async def cancel(self, ctx: SessionContext, message_id: str, source_addr: str) -> int:
        """cancel_sm; returns the command_status."""
        ...

    async def ready(self) -> bool:
        """True when the store behind the handler is reachable (``/readyz``)."""
        ...


class MessageSink(Protocol):
    """Where the submit path hands whole, checked messages: the pipeline's durable
    intake in production, memory in tests."""

    async def accept(self, message: OutboundMessage) -> int:
        """Store ``message`` durably; the command_status answers its final part."""
        ...

    async def accept_many(self, messages: Sequence[OutboundMessage]) -> list[int]:
        """:meth:`accept` for several messages at once (one store transaction); the
        command_status of each, in order."""
        ...

    async def failed(self, failure: FailedMessage) -> None:
        """Parts acked earlier whose message failed: send them REJECTD receipts."""
        ...

    async def query(self, ctx: SessionContext, message_id: str, source_addr: str
                    ) -> QueryResult:
        """query_sm for an id the submit path handed out."""
        ...

    async def cancel(self, ctx: SessionContext, message_id: str, source_addr: str) -> int:
        """cancel_sm; returns the command_status."""
        ...

    async def ready(self) -> bool:
        """True when the store is reachable."""
        ...

    async def hold_part(self, part: PartRecord) -> None:
        """Keep a non-final part durably before it is acked (restart replays it)."""
        ...


class FloodState(Protocol):
    """Where the flood windows live; shared by all nodes in a cluster.

    Implementations make :meth:`check_and_record` atomic per key: two nodes getting the
    same message at once must not both accept it.
    """

    #: check_and_record answers without suspending (in process): callers may check a
    #: batch in order without a task each. False for a shared state (a round trip).
    immediate: bool

    async def check_and_record(
        self,
        *,
        account: str,
        source: str,
        destination: str,
        text_digest: bytes,
        now: float,
        rules: FloodRules,
    ) -> int:
        """Apply both rules to one attempt and record it; returns the command_status."""
        ...

    async def release(
        self, *, account: str, source: str, destination: str, text_digest: bytes,
        recorded_at: float,
    ) -> None:
        """Forget the duplicate record made at ``recorded_at`` (a later stage refused it)."""
        ...


# --- the store -----------------------------------------------------------------------


class Store(Protocol):
    """What the node keeps durably: messages and their history, parts of long messages,
    the receipt outbox, the message-id counter.

    Every method is a coroutine; an implementation returns from a write only once it is
    durable (SQLite: committed with the configured ``synchronous`` level; Redis:
    acknowledged by the server, whose AOF settings decide durability), and groups many
    concurrent writes into one transaction. Every failure to reach the store or to write
    to it is raised as :class:`~smppbridge.core.errors.StoreUnavailable`.
    """

    #: ``accept_many(claim=True)`` claims the messages for this process's sender (handed
    #: over in memory, not returned by :meth:`due`). False: ``claim`` is ignored and the
    #: messages come back through :meth:`due`.
    claims_on_accept: bool

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ready(self) -> bool:
        """True when the store takes a write now (a probe write: a full disk or a Redis
        out of memory makes it False)."""
        ...

    def trouble(self) -> str | None:
        """Why the store refuses operations now (kind and reason of the episode under
        way, e.g. ``disk_full: database or disk is full``), or None (``/readyz``)."""
        ...

    def flood_state(self) -> FloodState | None:
        """The flood windows kept with this store and shared with every node using it;
        None: the store shares nothing, keep them in this process."""
        ...

    def registry(self) -> NodeRegistry | None:
        """The nodes sharing this store; None: this node is alone (SQLite)."""
        ...

    async def reserve_ids(self, count: int) -> int:
        """Reserve ``count`` consecutive message numbers; return the first.
        Never returns the same number twice, across restarts (and nodes)."""
        ...

    # messages

    async def save_part(self, part: PartRecord) -> None: ...

    async def load_parts(self) -> list[PartRecord]: ...

    async def accept(self, message: OutboundMessage, receipts: Sequence[ReceiptRecord] = (),
                     *, final_stat: str = "", final_err: int = 0) -> None:
        """Store a whole message (dropping its parts); with ``final_stat`` it is stored
        already final (refused after a partial ack) with its receipts."""
        ...

    async def accept_mo(self, message: OutboundMessage, receipts: Sequence[ReceiptRecord],
                        callbacks: Sequence[CallbackEvent], *, stat: str,
                        held: Sequence[str] = ()) -> None:
        """Store a mobile-originated message (core.mo), final at once with ``stat``,
        with its deliver_sm in the receipt outbox and its events in the callback outbox,
        in one operation: once it returns the MO may be acknowledged upstream. ``held``:
        parts (save_part) it replaces, dropped in the same operation; a joined MO's
        other ``part_ids`` find it, as a long submit_sm's do."""
        ...

    async def accept_many(self, messages: Sequence[OutboundMessage], *,
                          claim: bool = False) -> list[Exception | None]:
        """Store queued messages; one entry per message, in order: None when it is
        stored, else the error that kept it out (the others are stored). Raises
        StoreUnavailable when none could be stored. ``claim``: see
        :attr:`claims_on_accept`."""
        ...

    async def fail_parts(self, part_ids: Sequence[str],
                         receipts: Sequence[ReceiptRecord]) -> None:
        """Drop parts of a message that will never be whole, adding their receipts."""
        ...

    async def due(self, now: float, limit: int) -> list[StoredMessage]:
        """Claim queued messages whose send time has come, oldest first."""
        ...

    async def in_flight(self) -> list[StoredMessage]:
        """Sent messages still waiting for a final status (resume polling on start)."""
        ...

    async def mark_sent(self, message_id: str, provider: str, provider_id: str,
                        stat: str, now: float,
                        receipts: Sequence[ReceiptRecord] = ()) -> None: ...

    async def mark_sent_many(self, sent: Sequence[SentEntry], *,
                             lease: bool = False,
                             callbacks: Sequence[CallbackEvent] = ()) -> Leased:
        """:meth:`mark_sent` for several messages in one operation. ``lease``: the
        receipts added are leased to this process's dispatcher (see
        :meth:`mark_final_many`). ``callbacks``: status callback events (``sent``) of
        these messages, added in the same operation for each message marked sent (none
        for a message final meanwhile)."""
        ...

    async def mark_retry(self, message_id: str, next_at: float, attempts: int,
                         detail: str = "") -> None:
        """Queue a message again for ``next_at`` (``detail``: why, for its timeline)."""
        ...

    async def record_status(self, message_id: str, stat: str, err: int, now: float,
                            detail: str, receipts: Sequence[ReceiptRecord] = ()) -> None:
        """An intermediate status seen for a sent message (ENROUTE, ACCEPTD), with the
        receipts it produced: a timeline entry; the message stays sent."""
        ...

    async def mark_final(self, message_id: str, stat: str, err: int, now: float,
                         receipts: Sequence[ReceiptRecord] = (), provider: str = "",
                         provider_id: str = "", detail: str = "",
                         callbacks: Sequence[CallbackEvent] = ()) -> None:
        """End a message; one already final keeps its first final status (and its
        receipts and ``callbacks`` are not added). ``detail``: where the final status
        came from."""
        ...

    async def mark_final_many(self, finals: Sequence[FinalEntry], *,
                              lease: bool = False,
                              callbacks: Sequence[CallbackEvent] = ()) -> Leased:
        """:meth:`mark_final` for several messages in one operation; a message already
        final keeps its first final status, and its receipts and its events of
        ``callbacks`` are not added.

        ``lease``: the receipts added are leased to this process's dispatcher, which is
        handed them in memory; :meth:`receipts_for` skips them until released
        (:meth:`release_receipts`, :meth:`receipt_retry`, or the next open). Returns
        (seq, receipt) of each receipt leased: empty without ``lease``, and always
        empty from a store that leases nothing."""
        ...

    async def find(self, message_id: str) -> StoredMessage | None: ...

    async def find_by_provider(self, provider: str, provider_id: str
                               ) -> StoredMessage | None: ...

    async def timeline(self, message_id: str) -> list[TimelineEntry]:
        """Every change of a message (found by its id or any part id), oldest first;
        empty for a message not stored (or purged)."""
        ...

    async def receipts_of(self, message_id: str) -> list[ReceiptView]:
        """The receipts of every part of a message: pending, delivered, dropped or
        expired, in creation order."""
        ...

    async def search(self, query: MessageQuery) -> MessagePage:
        """Messages matching ``query``, newest first (by submitted_at, then id), at most
        ``query.limit``, starting after ``query.after``. Every filter uses an index
        (SQLite) or a per-account time index (Redis): no query scans every message."""
        ...

    async def purge(self, ended_before: float, limit: int) -> int:
        """Delete up to ``limit`` messages that ended (final) before ``ended_before``,
        with their timelines and receipts; return how many (retention, in small
        batches that never hold the writer long)."""
        ...

    async def count(self, state: DeliveryState) -> int:
        """Messages in ``state`` (a gauge read at scrape time)."""
        ...

    async def oldest_queued(self) -> float | None:
        """submitted_at of the oldest message waiting to be sent, or None when none
        waits (``smppbridge_queue_oldest_age_seconds``, read at scrape time)."""
        ...

    async def count_submitted(self, account: str, since: float) -> int:
        """Messages of ``account`` submitted at ``since`` or later (still in the
        history): the operator API's "messages today"."""
        ...

    # idempotency keys (the HTTP submit API)

    async def claim_idempotency(self, account: str, key: str, request_hash: str,
                                now: float, ttl: float) -> IdempotentAnswer | None:
        """Claim ``key`` of ``account`` for a request about to be answered (an
        in-flight record kept until ``now + ttl``, steady time): None when it is
        claimed now (no record, or only an expired one); else the record there, which
        is in flight while another request with that key is being answered. Atomic:
        of two concurrent claims one gets None."""
        ...

    async def save_idempotency(self, account: str, key: str, answer: IdempotentAnswer,
                               now: float, ttl: float) -> None:
        """Keep the answer of a claimed key until ``now + ttl``."""
        ...

    async def release_idempotency(self, account: str, key: str) -> None:
        """Forget a claimed key whose request got a temporary answer (throttled, store
        unavailable): the client's retry with that key is answered afresh."""
        ...

    # receipts

    async def add_receipts(self, receipts: Sequence[ReceiptRecord]) -> None: ...

    async def receipts_for(self, account: str, now: float, limit: int
                           ) -> list[ReceiptRecord]:
        """Receipts of ``account`` due for (re)delivery, in creation order."""
        ...

    async def receipt_done(self, seqs: Sequence[int], now: float,
                           state: ReceiptState = ReceiptState.DELIVERED) -> None:
        """Receipts finished with: delivered, or dropped (the ESME refused them for
        good). They leave the outbox and stay in the history as ``state``."""
        ...

    async def receipt_retry(self, seq: int, next_at: float, attempts: int) -> None: ...

    async def release_receipts(self, seqs: Sequence[int]) -> None:
        """Leased receipts the dispatcher gives back: due now for :meth:`receipts_for`."""
        ...

    async def expire_receipts(self, now: float) -> int:
        """Take receipts past their TTL out of the outbox (kept in the history as
        expired); return how many."""
        ...

    async def accounts_with_receipts(self, now: float) -> list[str]: ...

    async def count_receipts(self, account: str | None = None) -> int:
        """Receipts waiting in the outbox, of ``account`` or of all (a gauge read at
        scrape time; the operator API's "receipts pending")."""
        ...

    # status callbacks (docs/http.md, Status callbacks)

    async def add_callbacks(self, events: Sequence[CallbackEvent]) -> None:
        """Add events to the callback outbox on their own (not with a status)."""
        ...

    async def callbacks_due(self, now: float, limit: int) -> list[CallbackEvent]:
        """Lease up to ``limit`` events due at ``now`` (steady time) to this process:
        of each message only its oldest event in the outbox (a message's events go in
        order). A lease ends with :meth:`callback_done`, :meth:`callback_retry`, the
        process (SQLite: at the next open) or its time (Redis: ``callback_lease``,
        when another node takes the event over)."""
        ...

    async def callback_done(self, event: CallbackEvent, at: float,
                            outcome: CallbackOutcome = ..., detail: str = "") -> None:
        """The event leaves the outbox; failed or expired, it is an entry (``detail``)
        in its message's timeline at the wall date ``at``."""
        ...

    async def callback_retry(self, seq: int, next_at: float, attempts: int) -> None:
        """Back to the outbox, due at ``next_at`` (steady), lease ended."""
        ...

    async def count_callbacks(self) -> int:
        """Events in the callback outbox (a gauge read at scrape time)."""
        ...


# --- the cluster ----------------------------------------------------------------------


class NodeRegistry(Protocol):
    """The nodes sharing a store (the Redis store's; one node needs none): each node
    publishes a heartbeat with its binds and its traffic, and reads the others'."""

    async def publish(self, report: NodeReport, second: Second | None, ttl: float
                      ) -> list[int]:
        """This node's heartbeat, alive for ``ttl`` seconds, with the second of traffic
        just counted; returns the bind numbers other nodes asked this one to unbind."""
        ...

    async def reports(self) -> list[NodeReport]:
        """Every live node's last heartbeat (this node's included)."""
        ...

    async def seconds(self, node_id: str, count: int) -> list[Second]:
        """The last ``count`` seconds of a node's traffic, oldest first."""
        ...

    async def request_unbind(self, node_id: str, number: int) -> None:
        """Ask ``node_id`` to unbind its bind ``number`` (at its next heartbeat)."""
        ...


# --- providers ----------------------------------------------------------------------


@runtime_checkable
class Provider(Protocol):
    """One configured provider (one ``[[providers]]`` table): an adapter, or the
    worker that runs an adapter in a child process."""

    name: str
    kinds: frozenset[Kind]
    #: whether the API takes a send time (mysmpp ``time_send``); otherwise the
    #: pipeline holds a scheduled message until its time
    supports_schedule: bool
    #: seconds between status polls, 0 when statuses only come by webhook
    poll_interval: float

    async def send(self, messages: Sequence[OutboundMessage]) -> list[SendOutcome]:
        """Send a batch; one outcome per message, in order. Raises ProviderError."""
        ...

    async def poll(self, provider_ids: Sequence[str]) -> list[StatusUpdate]:
        """Ask for the status of these ids; ids the provider does not know are left out."""
        ...

    def parse_webhook(self, request: HttpRequest) -> list[StatusUpdate]:
        """Status updates pushed to ``/webhooks/<name>``; raises ValueError when the
        body is not understood."""
        ...

    async def ready(self) -> bool:
        """True when the provider answers and takes our credentials (``/readyz``)."""
        ...

    async def balance(self) -> Balance | None:
        """The account's balance where the API has one (polled every few minutes for
        the operator API and a gauge); None when it has none. Raises ProviderError when
        the provider cannot be asked."""
        ...

    async def aclose(self) -> None:
        """Close the HTTP client."""
        ...


# --- receipts -------------------------------------------------------------------------


class ReceiptOutbox(Protocol):
    """Takes receipts the store leased to this process (the receipt dispatcher)."""

    def accepting(self) -> bool:
        """May the pipeline lease more receipts to it?"""
        ...

    def offer(self, items: Sequence[tuple[int, ReceiptRecord]]) -> None:
        """Receipts just stored and leased to it, with their seq."""
        ...


class ReceiverBind(Protocol):
    """What the receipt dispatcher needs of a bound receiver (an SMPP connection)."""

    @property
    def interface_version(self) -> int: ...

    @property
    def window(self) -> int: ...

    def send_request(self, pdu: P.Pdu) -> asyncio.Future[P.Pdu]: ...
