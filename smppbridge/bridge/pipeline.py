"""The message pipeline after the content stage: store → route → provider → status →
receipt outbox.

:class:`Pipeline` is the :class:`~smppbridge.bridge.content.MessageSink` of the content
stage: ``accept`` returns ESME_ROK only once the message is durably stored. A sender
task takes due messages from the store and hands them to the router (batching and
failover live there); outcomes and statuses (polled or by webhook) update the store in
the same transaction as the receipts they produce. On start, everything not final
resumes where it stopped: queued messages are sent again with the same client-side id
(mysmpp ``client_id_sms``), so a crash between the provider's answer and our write does
not send twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Protocol

import structlog

from smppbridge.bridge.providers.base import SendResult
from smppbridge.seam import QueryResult, SessionContext
from smppbridge.smpp.constants import (
    INTERMEDIATE_BIT,
    RECEIPT_MASK,
    CommandStatus,
    MessageState,
    RegisteredDelivery,
)
from smppbridge.smpp.receipts import STATES
from smppbridge.store.base import MessageState as StoreState
from smppbridge.store.base import PartRecord, ReceiptRecord, StoredMessage, StoreUnavailable

if TYPE_CHECKING:
    from smppbridge.bridge.content import FailedMessage
    from smppbridge.bridge.providers.base import SendOutcome, StatusUpdate
    from smppbridge.bridge.router import Router
    from smppbridge.bridge.status import StatusPoller
    from smppbridge.message import OutboundMessage
    from smppbridge.store.base import Store

__all__ = ["IdAllocator", "Pipeline", "ReceiptBasis", "make_receipts", "receipt_basis",
           "status_err", "wants_receipt"]

_S = CommandStatus
_log = structlog.get_logger("smppbridge.pipeline")


class ReceiptOutbox(Protocol):
    """Takes receipts the store leased to this process (the receipt dispatcher)."""

    def accepting(self) -> bool: ...

    def offer(self, items: Sequence[tuple[int, ReceiptRecord]]) -> None: ...


#: Default lifetime of an undelivered receipt (DESIGN.md §4: 72 h).
DEFAULT_RECEIPT_TTL = 72 * 3600.0
#: A message that cannot reach any provider is retried for this long before it expires
#: (used when the ESME gave no validity_period).
DEFAULT_VALIDITY = 48 * 3600.0
_INTERMEDIATE = ("ENROUTE", "ACCEPTD")


class IdAllocator:
    """Message ids from blocks reserved in the store: unique across restarts (and nodes,
    when the store is shared), with no store round trip per message.

    Decimal by default, hex per account; a v3.3 bind gets at most 8 characters (SMPP 3.4
    §3.4), so its ids repeat after 10^8 (decimal) or 16^8 (hex) messages.
    """

    def __init__(self, store: Store, block: int = 10_000) -> None:
        self.store = store
        self.block = block
        self._next = 0
        self._end = 0
        self._lock = asyncio.Lock()

    async def _number(self) -> int:
        if self._next >= self._end:
            async with self._lock:
                if self._next >= self._end:
                    self._next = await self.store.reserve_ids(self.block)
                    self._end = self._next + self.block
        n = self._next
        self._next += 1
        return n

    def take(self, ctx: SessionContext) -> str | Awaitable[str]:
        """The next id: at once while the reserved block lasts (no coroutine per
        message), else an awaitable that reserves the next block first."""
        if self._next < self._end:
            n = self._next
            self._next += 1
            return self._format(n, ctx)
        return self._take_reserving(ctx)

    async def _take_reserving(self, ctx: SessionContext) -> str:
        return self._format(await self._number(), ctx)

    @staticmethod
    def _format(n: int, ctx: SessionContext) -> str:
        hexa = ctx.account.message_id_format == "hex"
        if ctx.short_ids:
            return f"{n % 16**8:x}" if hexa else str(n % 10**8)
        return f"{n:x}" if hexa else str(n)


def wants_receipt(registered_delivery: int, stat: str) -> bool:
    """Does registered_delivery ask for a receipt with this stat (SMPP 3.4 §5.2.17)?"""
    if stat in _INTERMEDIATE:
        return bool(registered_delivery & INTERMEDIATE_BIT)
    choice = registered_delivery & RECEIPT_MASK
    if choice == RegisteredDelivery.FINAL:
        return True
    return choice == RegisteredDelivery.FAILURE_ONLY and stat != "DELIVRD"


#: What a message's receipts are made of, kept for every message sent until its final
#: status: ``(message_id, account, part_ids, registered_delivery,
#: part_registered_delivery, submitted_at, text, source_addr, source_ton, source_npi,
#: dest_addr, dest_ton, dest_npi)`` — the receipt's source is the message's destination
#: and the other way round; ``part_registered_delivery`` is a long message's per-part
#: values ("1,0,1") or "".
#:
#: An exact tuple of plain values, which the garbage collector drops from its lists after
#: one look. The OutboundMessage it replaces is four tracked objects (message, two
#: addresses, content), and with ~5,000 messages a second waiting a second or more for
#: their status, every young collection walked them (README, *Performance*).
ReceiptBasis = tuple[str, str, tuple[str, ...], int, str, float, str, str, int, int, str,
                     int, int]


def receipt_basis(m: OutboundMessage) -> ReceiptBasis:
    d, s = m.destination, m.source
    return (m.message_id, m.account, m.part_ids, m.registered_delivery,
            m.extra.get("part_registered_delivery", ""), m.submitted_at, m.content.text,
            d.addr, d.ton, d.npi, s.addr, s.ton, s.npi)


def make_receipts(message: OutboundMessage | ReceiptBasis, stat: str, err: int,
                  done_at: float, *, ttl: float = DEFAULT_RECEIPT_TTL, hlr_fields: str = "",
                  part_ids: Sequence[str] | None = None) -> list[ReceiptRecord]:
    """One receipt per part id whose submit_sm asked for one with this stat."""
    (_, account, all_ids, registered_delivery, per_part, submitted_at, text,
     source_addr, source_ton, source_npi, dest_addr, dest_ton, dest_npi) = (
        message if isinstance(message, tuple) else receipt_basis(message))
    ids = all_ids if part_ids is None else part_ids
    asked = dict(zip(all_ids, (int(v) for v in per_part.split(",")), strict=False)) \
        if per_part else {}
    ids = [pid for pid in ids if wants_receipt(asked.get(pid, registered_delivery), stat)]
    return [ReceiptRecord(
        account=account, message_id=pid, stat=stat, err=err,
        submit_date=submitted_at, done_date=done_at, text=text,
        source_addr=source_addr, source_ton=source_ton, source_npi=source_npi,
        dest_addr=dest_addr, dest_ton=dest_ton, dest_npi=dest_npi,
        expire_at=done_at + ttl, intermediate=stat in _INTERMEDIATE, hlr_fields=hlr_fields)
        for pid in ids]


_VENDOR_BASE = 0x400


def status_err(status: int) -> int:
    """The 3-digit receipt ``err:`` for a message refused with ``status`` after some of
    its parts were acked: the status itself (decimal) for SMPP statuses, 4xx for our
    vendor statuses 0x4xx (0x400 duplicate → 400, 0x401 flood → 401)."""
    if status >= _VENDOR_BASE:
        return 400 + (status - _VENDOR_BASE) % 100
    return status % 1000


def _smpp_time(ts: float) -> str:
    """Absolute SMPP time YYMMDDhhmmsstnnp in UTC (SMPP 3.4 §7.1.1)."""
    return time.strftime("%y%m%d%H%M%S", time.gmtime(ts)) + "000+"


class Pipeline:
    """Store, send, follow statuses, produce receipts. See the module docstring."""

    def __init__(self, store: Store, router: Router | None = None, *,
                 poller: StatusPoller | None = None,
                 receipts_added: Callable[[], None] | None = None,
                 outbox: ReceiptOutbox | None = None,
                 receipt_ttl: float = DEFAULT_RECEIPT_TTL,
                 concurrency: int = 1000, batch: int = 500,
                 retry_backoff: float = 1.0, retry_max: float = 300.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.router = router
        self.poller = poller
        self.receipts_added = receipts_added or (lambda: None)
        #: the dispatcher, when the store can lease receipts to it (SqliteStore):
        #: receipts written by the send and status paths are handed over in memory
        self.outbox = outbox if hasattr(store, "release_receipts") else None
        self.receipt_ttl = receipt_ttl
        self.batch = batch
        self.retry_backoff = retry_backoff
        self.retry_max = retry_max
        self.clock = clock
        self._slots = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self._in_flight: set[str] = set()
        #: messages accepted by a provider and not final yet, by id (bounded)
        self._sent: OrderedDict[str, ReceiptBasis] = OrderedDict()
        self.sent_cache_size = 200_000
        self._tasks: set[asyncio.Task[None]] = set()
        #: Messages stored already claimed for this process's sender and handed over
        #: here, oldest first, so the sender need not read back (and decode) what was
        #: just written: the ``due`` query was ~7 % of a node's CPU at 2,000 msg/s.
        #: Bounded: past ``fresh_cap`` new messages are stored unclaimed for ``due``.
        self._fresh: OrderedDict[str, StoredMessage] = OrderedDict()
        self.fresh_cap = 20_000
        #: the store can insert a batch (and claim it): SqliteStore.accept_many
        self._accept_many = getattr(store, "accept_many", None)
        self._due_at = 0.0

    # --- MessageSink -----------------------------------------------------------------

    async def accept(self, message: OutboundMessage) -> int:
        if self.router is not None:
            from smppbridge.bridge.router import NoRoute

            try:
                self.router.check(message)
            except NoRoute as exc:
                return int(exc.status)
        try:
            await self.store.accept(message)
        except StoreUnavailable:
            # Temporary (SMPP-FACTS §4: peers retry RMSGQFUL like RTHROTTLED).
            _log.debug("submit.store_unavailable", message_id=message.message_id)
            return _S.ESME_RMSGQFUL
        self._wake.set()
        return _S.ESME_ROK

    async def accept_many(self, messages: Sequence[OutboundMessage]) -> list[int]:
        """:meth:`accept` for a batch: one store operation for all the routable ones."""
        statuses = [int(_S.ESME_ROK)] * len(messages)
        keep: list[int] = []
        if self.router is not None:
            from smppbridge.bridge.router import NoRoute

            for i, message in enumerate(messages):
                try:
                    self.router.check(message)
                except NoRoute as exc:
                    statuses[i] = int(exc.status)
                    continue
                keep.append(i)
        else:
            keep = list(range(len(messages)))
        if not keep:
            return statuses
        batch = [messages[i] for i in keep]
        if self._accept_many is None:
            # A store without batch inserts (Redis): one accept each, concurrently; each
            # message gets its own verdict.
            outcomes = await asyncio.gather(*(self.store.accept(m) for m in batch),
                                            return_exceptions=True)
            for i, outcome in zip(keep, outcomes, strict=True):
                if isinstance(outcome, StoreUnavailable):
                    statuses[i] = _S.ESME_RMSGQFUL
                elif isinstance(outcome, Exception):
                    # This message alone: the others of the batch are stored.
                    _log.error("submit.store_failed", message_id=messages[i].message_id,
                               exc_info=outcome)
                    statuses[i] = _S.ESME_RSYSERR
                elif isinstance(outcome, BaseException):
                    raise outcome  # cancelled
        else:
            now = self.clock()
            claim = self.router is not None and len(self._fresh) < self.fresh_cap and all(
                not m.schedule_at or m.schedule_at <= now for m in batch)
            try:
                await self._accept_many(batch, claim=claim)
            except StoreUnavailable:
                _log.debug("submit.store_unavailable", messages=len(batch))
                for i in keep:
                    statuses[i] = _S.ESME_RMSGQFUL
                return statuses
            if claim:
                for m in batch:
                    self._fresh[m.message_id] = StoredMessage(m, StoreState.QUEUED)
        self._wake.set()
        return statuses

    async def failed(self, failure: FailedMessage) -> None:
        receipts = [ReceiptRecord(
            account=failure.account, message_id=p.message_id, stat="REJECTD",
            err=failure.status & 0xFFF if failure.status < 1000 else 0,
            submit_date=p.submitted_at, done_date=self.clock(), text=failure.text,
            source_addr=failure.destination.addr, source_ton=failure.destination.ton,
            source_npi=failure.destination.npi, dest_addr=failure.source.addr,
            dest_ton=failure.source.ton, dest_npi=failure.source.npi,
            expire_at=self.clock() + self.receipt_ttl)
            for p in failure.parts if wants_receipt(p.registered_delivery, "REJECTD")]
        await self.store.fail_parts(failure.part_ids, receipts)
        if receipts:
            self.receipts_added()

    async def query(self, ctx: SessionContext, message_id: str, source_addr: str
                    ) -> QueryResult:
        stored = await self.store.find(message_id)
        if stored is None or stored.message.account != ctx.system_id:
            return QueryResult(_S.ESME_RQUERYFAIL)
        if stored.state is StoreState.FINAL:
            state = STATES.get(stored.stat, MessageState.UNKNOWN)
            done = _smpp_time(stored.done_at) if stored.done_at else ""
            return QueryResult(_S.ESME_ROK, done, int(state), min(stored.err, 255))
        state = MessageState.ENROUTE
        return QueryResult(_S.ESME_ROK, "", int(state), 0)

    async def cancel(self, ctx: SessionContext, message_id: str, source_addr: str) -> int:
        stored = await self.store.find(message_id)
        if (stored is None or stored.message.account != ctx.system_id
                or stored.state is not StoreState.QUEUED
                or stored.message.message_id in self._in_flight):
            return _S.ESME_RCANCELFAIL
        self._fresh.pop(stored.message.message_id, None)
        now = self.clock()
        await self.store.mark_final(stored.message.message_id, "DELETED", 0, now,
                                    make_receipts(stored.message, "DELETED", 0, now,
                                                  ttl=self.receipt_ttl))
        self.receipts_added()
        return _S.ESME_ROK

    async def ready(self) -> bool:
        return await self.store.ready()

    async def hold_part(self, part: PartRecord) -> None:
        await self.store.save_part(part)

    # --- sending ---------------------------------------------------------------------

    async def resume(self) -> None:
        """Follow statuses of messages sent before a restart."""
        if self.poller is None:
            return
        for stored in await self.store.in_flight():
            self.poller.track(stored.provider, stored.provider_id, stored.message.message_id,
                              expire_at=stored.message.expire_at)

    async def run(self) -> None:
        """Send due messages until cancelled."""
        await self.resume()
        outage = 0
        while True:
            self._wake.clear()
            now = self.clock()
            due = self._take_fresh()
            # Messages handed over in memory come first; the store is asked for the rest
            # (retries, restarts, another process's work) when nothing was handed over,
            # and at least once a second.
            if len(due) < self.batch and (not due or now - self._due_at >= 1.0):
                self._due_at = now
                try:
                    found = await self.store.due(now, self.batch - len(due))
                except StoreUnavailable as exc:
                    # Keep the loop alive through a store outage; back off up to 5 s.
                    outage += 1
                    _log.warning("send.store_unavailable", error=str(exc), attempt=outage)
                    await self._start_sends(due)
                    await asyncio.sleep(min(5.0, 0.1 * 2 ** min(outage, 6)))
                    continue
                if outage:
                    _log.info("send.store_back", after_attempts=outage)
                    outage = 0
                due += [m for m in found if m.message.message_id not in self._in_flight]
            await self._start_sends(due)
            if len(due) >= self.batch or self._fresh:
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._wake.wait()

    def _take_fresh(self) -> list[StoredMessage]:
        fresh = self._fresh
        if len(fresh) <= self.batch:
            taken = list(fresh.values())
            fresh.clear()
            return taken
        return [fresh.popitem(last=False)[1] for _ in range(self.batch)]

    async def _start_sends(self, due: Sequence[StoredMessage]) -> None:
        """One task sends the whole batch (no task per message: ~8 % of a node's CPU
        went to per-message send tasks and futures); a slot per message bounds what
        is in flight."""
        # Taken: from now on cancel_sm refuses them (they may reach a provider).
        for stored in due:
            self._in_flight.add(stored.message.message_id)
        batch: list[StoredMessage] = []
        for stored in due:
            if self._slots.locked() and batch:
                # Out of slots: what holds one goes now, so that slots come back.
                self._spawn_send(batch)
                batch = []
            await self._slots.acquire()
            batch.append(stored)
        if batch:
            self._spawn_send(batch)

    def _spawn_send(self, batch: list[StoredMessage]) -> None:
        task = asyncio.get_running_loop().create_task(self._send_many(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for sends in progress (graceful shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _send_many(self, batch: list[StoredMessage]) -> None:
        try:
            if self.router is None:
                return
            try:
                outcomes = await self.router.send_many([s.message for s in batch])
                # The providers have the messages now: their outcomes must reach the
                # store even through a store outage, or they would stay claimed here.
                accepted = [(s, o) for s, o in zip(batch, outcomes, strict=True)
                            if o.result is SendResult.ACCEPTED]
                if accepted:
                    await self._until_stored(partial(self._mark_sent, accepted))
                for stored, outcome in zip(batch, outcomes, strict=True):
                    if outcome.result is not SendResult.ACCEPTED:
                        await self._until_stored(partial(self._apply_outcome, stored,
                                                         outcome))
            except Exception:
                _log.exception("send.crashed", messages=len(batch))
                for stored in batch:
                    with contextlib.suppress(StoreUnavailable):
                        await self._retry(stored)
        finally:
            for stored in batch:
                self._in_flight.discard(stored.message.message_id)
                self._slots.release()

    async def _until_stored(self, write: Callable[[], Awaitable[None]]) -> None:
        delay = 0.1
        while True:
            try:
                await write()
                return
            except StoreUnavailable as exc:
                _log.warning("send.outcome_waiting_for_store", error=str(exc))
                await asyncio.sleep(delay)
                delay = min(5.0, delay * 2)

    async def _mark_sent(self, accepted: Sequence[tuple[StoredMessage, SendOutcome]]) -> None:
        """Messages providers accepted: sent (ENROUTE), followed from now on."""
        now = self.clock()
        entries = [(s.message.message_id, o.provider, o.provider_id, "ENROUTE", now,
                    make_receipts(s.message, "ENROUTE", 0, now, ttl=self.receipt_ttl))
                   for s, o in accepted]
        mark_many = getattr(self.store, "mark_sent_many", None)
        leased: Sequence[tuple[int, ReceiptRecord]] = ()
        if mark_many is not None:
            leased = await mark_many(entries, lease=self._lease())
        else:
            for entry in entries:
                await self.store.mark_sent(*entry)
        self._hand_over(leased, any(e[5] for e in entries))
        poller = self.poller
        for stored, outcome in accepted:
            message = stored.message
            self._sent[message.message_id] = receipt_basis(message)
            if poller is not None and outcome.provider in poller.settings:
                poller.track(outcome.provider, outcome.provider_id, message.message_id,
                             sent_at=now, expire_at=message.expire_at)
        while len(self._sent) > self.sent_cache_size:
            self._sent.popitem(last=False)  # its status will be looked up instead

    async def _apply_outcome(self, stored: StoredMessage, outcome: SendOutcome) -> None:
        message = stored.message
        now = self.clock()
        if outcome.result is SendResult.ACCEPTED:
            await self._mark_sent([(stored, outcome)])
            return
        if outcome.result is SendResult.REJECTED:
            await self._final(message, outcome.stat.value, int(outcome.err), now,
                              provider=outcome.provider)
            _log.debug("send.rejected", message_id=message.message_id, err=int(outcome.err))
            return
        # FAILED (every provider of the route) or RETRY: try again later, until validity
        await self._retry(stored, outcome)

    async def _retry(self, stored: StoredMessage, outcome: SendOutcome | None = None) -> None:
        message = stored.message
        now = self.clock()
        expire_at = message.expire_at or message.submitted_at + DEFAULT_VALIDITY
        attempts = stored.attempts + 1
        delay = min(self.retry_max, self.retry_backoff * 2 ** min(attempts, 20))
        delay *= 0.5 + random.random() / 2  # jitter: spread a recovering provider's load
        if now + delay >= expire_at:
            stat = "EXPIRED" if message.expire_at else (
                outcome.stat.value if outcome is not None else "UNDELIV")
            err = int(outcome.err) if outcome is not None else 0
            await self._final(message, stat, err, now)
            return
        await self.store.mark_retry(message.message_id, now + delay, attempts)

    async def _final(self, message: OutboundMessage | ReceiptBasis, stat: str, err: int,
                     now: float, *, hlr_fields: str = "", provider: str = "",
                     provider_id: str = "") -> None:
        message_id = message[0] if isinstance(message, tuple) else message.message_id
        receipts = make_receipts(message, stat, err, now, ttl=self.receipt_ttl,
                                 hlr_fields=hlr_fields)
        await self.store.mark_final(message_id, stat, err, now, receipts,
                                    provider=provider, provider_id=provider_id)
        if receipts:
            self.receipts_added()

    def _lease(self) -> bool:
        return self.outbox is not None and self.outbox.accepting()

    def _hand_over(self, leased: Sequence[tuple[int, ReceiptRecord]], added: bool) -> None:
        if leased:
            assert self.outbox is not None
            self.outbox.offer(leased)
        elif added:
            self.receipts_added()

    # --- statuses --------------------------------------------------------------------

    async def on_statuses(self, provider: str, updates: Sequence[StatusUpdate]) -> None:
        """Several statuses of one poll answer: final statuses of messages this node
        sent are written in one store operation when the store can (SqliteStore
        .mark_final_many); everything else goes through :meth:`on_status`."""
        mark_many = getattr(self.store, "mark_final_many", None)
        finals: list[tuple[str, str, int, float, list[ReceiptRecord]]] = []
        others: list[StatusUpdate] = []
        popped: dict[str, ReceiptBasis] = {}
        for update in updates:
            message = (self._sent.pop(update.message_id, None)
                       if mark_many is not None and update.final and update.message_id
                       else None)
            if message is None:
                others.append(update)
                continue
            popped[update.message_id] = message
            now = update.done_at or self.clock()
            stat, err = update.stat.value, int(update.err)
            hlr = update.hlr.receipt_fields() if update.hlr is not None else ""
            finals.append((update.message_id, stat, err, now,
                           make_receipts(message, stat, err, now, ttl=self.receipt_ttl,
                                         hlr_fields=hlr)))
        if finals:
            assert mark_many is not None
            lease = self._lease()
            try:
                leased = await mark_many(finals, lease=lease)
            except StoreUnavailable:
                # Not written: the messages stay known as sent, as with on_status.
                for update in updates:
                    if update.message_id in popped:
                        self._sent[update.message_id] = popped[update.message_id]
                raise
            self._hand_over(leased, any(f[4] for f in finals))
        if others:
            await asyncio.gather(*(self.on_status(provider, u) for u in others))

    async def on_status(self, provider: str, update: StatusUpdate) -> None:
        """A status from polling or a webhook."""
        # Messages this node handed to a provider are kept in memory until final, so a
        # status needs no store read (a read and its decoding cost as much as the final
        # write). Anything else — another node's message, a restart — is looked up.
        message = self._sent.get(update.message_id) if update.message_id else None
        if message is None:
            stored = None
            if update.message_id:
                stored = await self.store.find(update.message_id)
            if stored is None:
                stored = await self.store.find_by_provider(provider, update.provider_id)
            if stored is None or stored.state is StoreState.FINAL:
                return
            message = receipt_basis(stored.message)
        now = update.done_at or self.clock()
        hlr = update.hlr.receipt_fields() if update.hlr is not None else ""
        if update.final:
            self._sent.pop(message[0], None)
            # mark_final ignores a message already final (a duplicate or late status).
            await self._final(message, update.stat.value, int(update.err), now,
                              hlr_fields=hlr)
            return
        receipts = make_receipts(message, update.stat.value, int(update.err), now,
                                 ttl=self.receipt_ttl)
        if receipts:
            await self.store.add_receipts(receipts)
            self.receipts_added()


