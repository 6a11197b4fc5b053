"""The message pipeline after the content stage: store → route → provider → status →
receipt outbox.

:class:`Pipeline` is the :class:`~smppbridge.core.ports.MessageSink` of the content
stage: ``accept`` returns ESME_ROK only once the message is durably stored. A sender
task takes due messages from the store and hands them to the router (batching and
failover live there); outcomes and statuses (polled or by webhook) update the store in
the same transaction as the receipts they produce. On start, everything not final
resumes where it stopped: queued messages are sent again with the same client-side id
(mysmpp ``client_id_sms``), so a crash between the provider's answer and our write does
not send twice.

Times: dates (sent, done, the receipts' dates) are wall time; retries, schedule and
validity ends and receipt TTLs are steady time (core.clock), so a step of the wall
clock moves no timer.

Size: one class over 500 lines, because accept, send, retry, status and final share the
in-memory hand-over state (messages claimed on accept, messages sent and not final,
messages in flight); split, that state would be a second object every part reaches into.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from logging import DEBUG
from typing import TYPE_CHECKING

import structlog

from smppbridge.core.accounts import DEFAULT_CALLBACK_TTL
from smppbridge.core.callbacks import CallbackEvent, EventKind, events_wanted, new_event
from smppbridge.core.clock import steady_of, timer_for
from smppbridge.core.errors import NoRoute, StoreUnavailable
from smppbridge.core.outcomes import SendResult
from smppbridge.core.ports import FinalEntry, ReceiptOutbox
from smppbridge.core.receipts import (
    DEFAULT_RECEIPT_TTL,
    ReceiptBasis,
    make_receipts,
    receipt_basis,
    refused_receipts,
)
from smppbridge.core.records import DeliveryState, PartRecord, ReceiptRecord, StoredMessage
from smppbridge.core.session import QueryResult, SessionContext
from smppbridge.delivery.outage import until_stored
from smppbridge.observability.metrics import METRICS
from smppbridge.smpp.constants import (
    CommandStatus,
    MessageState,
)
from smppbridge.smpp.receipts import STATES, Stat

if TYPE_CHECKING:
    from smppbridge.core.accounts import Account
    from smppbridge.core.message import OutboundMessage
    from smppbridge.core.outcomes import SendOutcome, StatusUpdate
    from smppbridge.core.ports import Store
    from smppbridge.core.records import FailedMessage
    from smppbridge.delivery.poller import OnUpdate, OnUpdates, StatusPoller
    from smppbridge.delivery.router import Router

__all__ = ["Pipeline"]

_S = CommandStatus
_log = structlog.get_logger("smppbridge.pipeline")
#: final outcomes by stat (a closed set: the Stat words), children bound once
_FINALS = {stat.value: METRICS.finals.labels(stat.value) for stat in Stat}


#: A message that cannot reach any provider is retried for this long before it expires
#: (used when the ESME gave no validity_period).
DEFAULT_VALIDITY = 48 * 3600.0


def _smpp_time(ts: float) -> str:
    """Absolute SMPP time YYMMDDhhmmsstnnp in UTC (SMPP 3.4 §7.1.1)."""
    return time.strftime("%y%m%d%H%M%S", time.gmtime(ts)) + "000+"


class Pipeline:
    """Store, send, follow statuses, produce receipts. See the module docstring."""

    def __init__(self, store: Store, router: Router | None = None, *,
                 poller: Callable[[OnUpdate, OnUpdates], StatusPoller] | None = None,
                 receipts_added: Callable[[], None] | None = None,
                 outbox: ReceiptOutbox | None = None,
                 accounts: Callable[[str], Account | None] | None = None,
                 callbacks_added: Callable[[], None] | None = None,
                 receipt_ttl: float = DEFAULT_RECEIPT_TTL,
                 concurrency: int = 1000, batch: int = 500,
                 retry_backoff: float = 1.0, retry_max: float = 300.0,
                 clock: Callable[[], float] = time.time,
                 timer: Callable[[], float] | None = None) -> None:
        self.store = store
        self.router = router
        #: follows the statuses of messages sent, reporting to this pipeline; ``poller``
        #: makes it from the pipeline's two status entry points
        self.poller = (poller(self.on_status, self.on_statuses) if poller is not None
                       else None)
        self.receipts_added = receipts_added or (lambda: None)
        #: the dispatcher: receipts the store leases to it as the send and status paths
        #: write them are handed over in memory (a store that leases none hands none)
        self.outbox = outbox
        self.receipt_ttl = receipt_ttl
        #: the account of a name (receipts = smpp|http|both, receipt_url, callback_ttl);
        #: None: every account is "smpp" and only a message's own callback_url calls back
        self.accounts = accounts or (lambda _name: None)
        #: status callback events were stored (wakes the callback dispatcher)
        self.callbacks_added = callbacks_added or (lambda: None)
        self.batch = batch
        self.retry_backoff = retry_backoff
        self.retry_max = retry_max
        #: dates (wall time); ``timer``: retries, schedule and validity ends, receipt
        #: TTLs (steady time, core.clock)
        self.clock = clock
        self.timer = timer_for(clock, timer)
        self._slots = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self._in_flight: set[str] = set()
        #: statuses of messages whose send is still in progress (a provider that pushes
        #: receipts — the smpp type — can be faster than our write of its answer):
        #: applied once the send's outcome is written, and their callers wait till then
        self._early: dict[str, list[tuple[str, StatusUpdate, asyncio.Future[None]]]] = {}
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
        self._due_at = 0.0

    # --- MessageSink -----------------------------------------------------------------

    async def accept(self, message: OutboundMessage) -> int:
        if self.router is not None:
            try:
                self.router.check(message)
            except NoRoute as exc:
                return int(exc.status)
        try:
            await self.store.accept(message)
        except StoreUnavailable:
            # Temporary: peers retry RMSGQFUL as they retry RTHROTTLED (docs/smpp.md).
            _log.debug("submit.store_unavailable", message_id=message.message_id)
            return _S.ESME_RMSGQFUL
        if _log.is_enabled_for(DEBUG):
            _trace("message.accepted", message, parts=len(message.part_ids))
        self._wake.set()
        return _S.ESME_ROK

    async def accept_many(self, messages: Sequence[OutboundMessage]) -> list[int]:
        """:meth:`accept` for a batch: one store operation for all the routable ones."""
        statuses = [int(_S.ESME_ROK)] * len(messages)
        keep: list[int] = []
        if self.router is not None:
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
        now = self.timer()
        claim = (self.store.claims_on_accept and self.router is not None
                 and len(self._fresh) < self.fresh_cap
                 and all(not m.schedule_at or m.schedule_at <= now for m in batch))
        try:
            errors = await self.store.accept_many(batch, claim=claim)
        except StoreUnavailable as exc:
            _log.debug("submit.store_unavailable", messages=len(batch))
            for i in keep:
                statuses[i] = exc.status
            return statuses
        trace = _log.is_enabled_for(DEBUG)
        for i, m, error in zip(keep, batch, errors, strict=True):
            if error is None:
                if trace:
                    _trace("message.accepted", m, parts=len(m.part_ids))
                if claim:
                    self._fresh[m.message_id] = StoredMessage(m, DeliveryState.QUEUED)
            elif isinstance(error, StoreUnavailable):
                statuses[i] = error.status
            else:
                # This message alone: the others of the batch are stored.
                _log.error("submit.store_failed", message_id=m.message_id, exc_info=error)
                statuses[i] = _S.ESME_RSYSERR
        self._wake.set()
        return statuses

    async def failed(self, failure: FailedMessage) -> None:
        receipts = refused_receipts(failure, self.clock(), ttl=self.receipt_ttl,
                                    since=self.timer()) if self._smpp(failure.account) else []
        await self.store.fail_parts(failure.part_ids, receipts)
        if receipts:
            self.receipts_added()

    async def query(self, ctx: SessionContext, message_id: str, source_addr: str
                    ) -> QueryResult:
        stored = await self.store.find(message_id)
        if stored is None or stored.message.account != ctx.system_id:
            return QueryResult(_S.ESME_RQUERYFAIL)
        if stored.state is DeliveryState.FINAL:
            state = STATES.get(stored.stat, MessageState.UNKNOWN)
            done = _smpp_time(stored.done_at) if stored.done_at else ""
            return QueryResult(_S.ESME_ROK, done, int(state), min(stored.err, 255))
        state = MessageState.ENROUTE
        return QueryResult(_S.ESME_ROK, "", int(state), 0)

    async def cancel(self, ctx: SessionContext, message_id: str, source_addr: str) -> int:
        stored = await self.store.find(message_id)
        if (stored is None or stored.message.account != ctx.system_id
                or stored.state is not DeliveryState.QUEUED
                or stored.message.message_id in self._in_flight):
            return _S.ESME_RCANCELFAIL
        self._fresh.pop(stored.message.message_id, None)
        now = self.clock()
        basis = receipt_basis(stored.message)
        events = self._events(basis, EventKind.NACK, "DELETED", 0, now)
        await self.store.mark_final(stored.message.message_id, "DELETED", 0, now,
                                    self._receipts(basis, "DELETED", 0, now),
                                    detail="cancelled (cancel_sm)", callbacks=events)
        self.receipts_added()
        if events:
            self.callbacks_added()
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
        gone: dict[str, int] = {}
        for stored in await self.store.in_flight():
            if stored.provider not in self.poller.providers:
                gone[stored.provider] = gone.get(stored.provider, 0) + 1
            self.poller.track(stored.provider, stored.provider_id, stored.message.message_id,
                              expire_at=stored.message.expire_at)
        for provider, count in sorted(gone.items()):
            # Followed without polls until their deadline (poller module docstring).
            _log.warning("status.provider_gone", provider=provider, messages=count,
                         note="sent to a provider no longer configured: no status "
                              "polls; final UNKNOWN/EXPIRED (err 003) at the deadline")

    async def run(self) -> None:
        """Send due messages until cancelled."""
        await self.resume()
        outage = 0
        while True:
            self._wake.clear()
            now = self.timer()
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
                    # The store logs the episode once; here, debug only.
                    _log.debug("send.store_unavailable", error=str(exc), attempt=outage)
                    await self._start_sends(due)
                    await asyncio.sleep(min(5.0, 0.1 * 2 ** min(outage, 6)))
                    continue
                if outage:
                    _log.debug("send.store_back", after_attempts=outage)
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
            if self._early:
                self._release_early(batch)

    def _release_early(self, batch: Sequence[StoredMessage]) -> None:
        """Statuses that waited for these messages' send outcomes, applied now (in one
        store operation per provider, as the messages are known as sent)."""
        waiting = [item for stored in batch
                   for item in self._early.pop(stored.message.message_id, ())]
        by_provider: dict[str, list[tuple[StatusUpdate, asyncio.Future[None]]]] = {}
        for provider, update, future in waiting:
            by_provider.setdefault(provider, []).append((update, future))
        for provider, items in by_provider.items():
            task = asyncio.get_running_loop().create_task(
                self._apply_early(provider, items))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _apply_early(self, provider: str,
                           items: Sequence[tuple[StatusUpdate, asyncio.Future[None]]]) -> None:
        try:
            await self.on_statuses(provider, [u for u, _ in items])
        except Exception as exc:
            for _, future in items:
                if not future.done():
                    future.set_exception(exc)
            return
        for _, future in items:
            if not future.done():
                future.set_result(None)

    async def _until_stored(self, write: Callable[[], Awaitable[None]]) -> None:
        await until_stored(write, "send.outcome_waiting_for_store")

    async def _mark_sent(self, accepted: Sequence[tuple[StoredMessage, SendOutcome]]) -> None:
        """Messages providers accepted: sent (ENROUTE), followed from now on."""
        now, since = self.clock(), self.timer()
        bases = [receipt_basis(s.message) for s, _ in accepted]
        entries = [(b[0], o.provider, o.provider_id, "ENROUTE", now,
                    self._receipts(b, "ENROUTE", 0, now, since=since))
                   for b, (_, o) in zip(bases, accepted, strict=True)]
        events = [e for b in bases for e in self._events(b, EventKind.SENT, "ENROUTE", 0, now)]
        leased = await self.store.mark_sent_many(entries, lease=self._lease(),
                                                 callbacks=events)
        if events:
            self.callbacks_added()
        by_provider: dict[str, int] = {}
        for _, outcome in accepted:
            by_provider[outcome.provider] = by_provider.get(outcome.provider, 0) + 1
        for provider, n in by_provider.items():
            METRICS.sent.labels(provider).inc(n)
        self._hand_over(leased, any(e[5] for e in entries))
        poller = self.poller
        trace = _log.is_enabled_for(DEBUG)
        for i, (stored, outcome) in enumerate(accepted):
            message = stored.message
            if trace:
                _trace("message.sent", message, provider=outcome.provider,
                       provider_id=outcome.provider_id)
            self._sent[message.message_id] = bases[i]
            if poller is not None and outcome.provider in poller.settings:
                poller.track(outcome.provider, outcome.provider_id, message.message_id,
                             sent_at=since, expire_at=message.expire_at)
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
                              provider=outcome.provider, kind=EventKind.NACK,
                              detail=_words("rejected by", outcome.provider, outcome.detail))
            _log.debug("send.rejected", message_id=message.message_id, err=int(outcome.err))
            return
        # FAILED (every provider of the route) or RETRY: try again later, until validity
        await self._retry(stored, outcome)

    async def _retry(self, stored: StoredMessage, outcome: SendOutcome | None = None) -> None:
        message = stored.message
        now, tick = self.clock(), self.timer()
        # A validity end is on steady time; without one, 48 h from the submit date.
        expire_at = message.expire_at or (
            steady_of(message.submitted_at, now, tick) + DEFAULT_VALIDITY)
        attempts = stored.attempts + 1
        delay = min(self.retry_max, self.retry_backoff * 2 ** min(attempts, 20))
        delay *= 0.5 + random.random() / 2  # jitter: spread a recovering provider's load
        if tick + delay >= expire_at:
            stat = "EXPIRED" if message.expire_at else (
                outcome.stat.value if outcome is not None else "UNDELIV")
            err = int(outcome.err) if outcome is not None else 0
            await self._final(message, stat, err, now, kind=EventKind.NACK,
                              detail=_words("gave up:", "validity ends before the next try",
                                            outcome.detail if outcome else ""))
            return
        await self.store.mark_retry(message.message_id, tick + delay, attempts,
                                    _words(f"retry {attempts}:",
                                           outcome.detail if outcome else "send failed"))

    async def _final(self, message: OutboundMessage | ReceiptBasis, stat: str, err: int,
                     now: float, *, hlr_fields: str = "", provider: str = "",
                     provider_id: str = "", detail: str = "",
                     kind: EventKind = EventKind.FINAL) -> None:
        basis = message if isinstance(message, tuple) else receipt_basis(message)
        message_id = basis[0]
        receipts = self._receipts(basis, stat, err, now, hlr_fields=hlr_fields)
        events = self._events(basis, kind, stat, err, now, hlr_fields)
        await self.store.mark_final(message_id, stat, err, now, receipts,
                                    provider=provider, provider_id=provider_id,
                                    detail=detail, callbacks=events)
        if events:
            self.callbacks_added()
        _count_final(stat)
        if _log.is_enabled_for(DEBUG):
            _trace_final(message, stat, err, detail)
        if receipts:
            self.receipts_added()

    def _smpp(self, account_name: str) -> bool:
        """Does the account take SMPP receipts (``receipts`` smpp or both)?"""
        account = self.accounts(account_name)
        return account is None or account.receipts != "http"

    def _receipts(self, basis: ReceiptBasis, stat: str, err: int, now: float, *,
                  hlr_fields: str = "", since: float | None = None) -> list[ReceiptRecord]:
        """The SMPP receipts of a status: none for an account with receipts = http."""
        if not self._smpp(basis[1]):
            return []
        return make_receipts(basis, stat, err, now, ttl=self.receipt_ttl,
                             hlr_fields=hlr_fields,
                             since=self.timer() if since is None else since)

    def _events(self, basis: ReceiptBasis, kind: EventKind, stat: str, err: int,
                now: float, hlr_fields: str = "") -> list[CallbackEvent]:
        """The status callback this status makes, if any: to the message's own
        callback_url, else to the account's receipt_url when its ``receipts`` is http or
        both; only events the format and level ask for (core.callbacks)."""
        account = self.accounts(basis[1])
        url = basis[13]
        if not url and account is not None and account.receipts != "smpp":
            url = account.receipt_url
        if not url or not events_wanted(basis[14] or "json", basis[15], kind, stat):
            return []
        ttl = account.callback_ttl if account is not None else DEFAULT_CALLBACK_TTL
        return [new_event(kind, message_id=basis[0], account=basis[1], url=url, stat=stat,
                          err=err, at=now, since=self.timer(), ttl=ttl,
                          hlr_fields=hlr_fields)]

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
        sent are written in one store operation; everything else goes through
        :meth:`on_status`."""
        finals: list[FinalEntry] = []
        events: list[CallbackEvent] = []
        others: list[StatusUpdate] = []
        popped: dict[str, ReceiptBasis] = {}
        since = self.timer()
        waits: list[asyncio.Future[None]] = []
        for update in updates:
            mid = update.message_id
            if mid and mid in self._in_flight and mid not in self._sent:
                future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._early.setdefault(mid, []).append((provider, update, future))
                waits.append(future)
                continue
            message = (self._sent.pop(update.message_id, None)
                       if update.final and update.message_id else None)
            if message is None:
                others.append(update)
                continue
            popped[update.message_id] = message
            now = update.done_at or self.clock()
            stat, err = update.stat.value, int(update.err)
            hlr = update.hlr.receipt_fields() if update.hlr is not None else ""
            finals.append((update.message_id, stat, err, now,
                           self._receipts(message, stat, err, now, hlr_fields=hlr,
                                          since=since),
                           status_detail(update)))
            events += self._events(message, EventKind.FINAL, stat, err, now, hlr)
        if finals:
            try:
                leased = await self.store.mark_final_many(finals, lease=self._lease(),
                                                          callbacks=events)
            except StoreUnavailable:
                # Not written: the messages stay known as sent, as with on_status.
                for update in updates:
                    if update.message_id in popped:
                        self._sent[update.message_id] = popped[update.message_id]
                raise
            trace = _log.is_enabled_for(DEBUG)
            for final in finals:
                _count_final(final[1])
                if trace:
                    _trace_final(popped[final[0]], final[1], final[2], final[5])
            self._hand_over(leased, any(f[4] for f in finals))
            if events:
                self.callbacks_added()
        if others:
            await asyncio.gather(*(self.on_status(provider, u) for u in others))
        if waits:
            await asyncio.gather(*waits)

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
            if stored is None or stored.state is DeliveryState.FINAL:
                return
            message = receipt_basis(stored.message)
        now = update.done_at or self.clock()
        hlr = update.hlr.receipt_fields() if update.hlr is not None else ""
        if update.final:
            self._sent.pop(message[0], None)
            # mark_final ignores a message already final (a duplicate or late status).
            await self._final(message, update.stat.value, int(update.err), now,
                              hlr_fields=hlr, detail=status_detail(update))
            return
        receipts = self._receipts(message, update.stat.value, int(update.err), now)
        await self.store.record_status(message[0], update.stat.value, int(update.err), now,
                                       status_detail(update), receipts)
        if _log.is_enabled_for(DEBUG):
            _log.debug("message.status", message_id=message[0], account=message[1],
                       destination=message[7], stat=update.stat.value, err=int(update.err),
                       detail=status_detail(update))
        if receipts:
            self.receipts_added()


def status_detail(update: StatusUpdate) -> str:
    """A status's timeline words: where it came from, what the provider said, and an
    HLR lookup's result fields (``hlr: imsi:... msc:...``, the receipt's form), which
    the operator API shows as the message's ``hlr``."""
    hlr = f"hlr: {update.hlr.receipt_fields()}" if update.hlr is not None else ""
    return _words(f"status from {update.source or 'provider'}", update.detail, hlr)


def _words(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def _count_final(stat: str) -> None:
    (_FINALS.get(stat) or _FINALS[Stat.UNKNOWN.value]).inc()


def _trace(event: str, m: OutboundMessage, **fields: object) -> None:
    """One step of a message's life at debug level, findable by grep (message_id,
    account, destination); callers check ``is_enabled_for(DEBUG)`` first, so at the
    default level the hot path builds nothing."""
    _log.debug(event, message_id=m.message_id, account=m.account,
               destination=m.destination.addr, **fields)


def _trace_final(message: OutboundMessage | ReceiptBasis, stat: str, err: int,
                 detail: str) -> None:
    if isinstance(message, tuple):
        message_id, account, destination = message[0], message[1], message[7]
    else:
        message_id, account = message.message_id, message.account
        destination = message.destination.addr
    _log.debug("message.final", message_id=message_id, account=account,
               destination=destination, stat=stat, err=err, detail=detail)
