"""The ``smpp`` provider: :class:`~smppbridge.core.ports.Provider` over ``binds``
sessions to one upstream SMSC (docs/providers.md, The smpp provider).

Sending: every part's submit_sm joins one queue; links with room in their window take
from it, paced by ``throughput`` (a token bucket over all sessions). An answer resolves
the part: ESME_ROK registers the upstream id with the correlator; 0x58 (throttled) and
0x14 (queue full) pause every session for a backoff that doubles while they last, and
send the part again (``throttle_retries`` times, then the runner gets it back as
RETRY); any other status refuses the message for good with the status as its ``err:``.
A session lost with submits in its window puts them back at the head of the queue: the
upstream may have taken them (SMPP gives no way to ask), so they may arrive twice —
never not at all.

Receipts: a deliver_sm with the receipt esm_class is read
(:func:`~smppbridge.smpp.receipts.read_receipt`), matched by the correlator, and its
status handed to the pipeline's ``on_statuses`` in small batches; the deliver_sm is
answered only once that call returned (the status is in the store), with
ESME_RX_T_APPN when the store could not take it, so the upstream sends it again. A
receipt for an id not known yet waits ``early_receipt_ttl`` for its submit_sm_resp,
then goes to the store lookup by provider id (a message sent before a restart).
Other deliver_sm are mobile-originated (MO): read (:func:`read_mo`: the user data
without UDH in its data_coding, a long MO's concat part) and handed to ``on_mo`` (the
MO intake, delivery/mo.py), and answered once that returned — the MO is stored —
with ESME_RX_T_APPN when the store could not take it, so the upstream sends it again.
One that cannot be read (a malformed UDH) is answered ESME_RX_P_APPN, logged once a
sweep. Without ``on_mo`` they are counted and answered ESME_ROK.

Size: over 500 lines because sending (queue, window, throttling), receipts (correlation,
batched status writes answered after the store) and MO (stored, then answered) share
the sessions and the answer-after-the-write rule; the wire details live in link.py,
correlate.py and outbound.py already.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from smppbridge.core.clock import steady
from smppbridge.core.errors import ProviderUnavailable, StoreUnavailable
from smppbridge.core.message import Address
from smppbridge.core.mo import InboundMo
from smppbridge.core.outcomes import SendOutcome, SendResult, StatusUpdate
from smppbridge.core.receipts import status_err
from smppbridge.observability.metrics import METRICS, status_name
from smppbridge.providers.smpp.correlate import Correlator, Tracked
from smppbridge.providers.smpp.link import Link
from smppbridge.providers.smpp.outbound import submit_pdus
from smppbridge.smpp import client as CL
from smppbridge.smpp.constants import CommandStatus
from smppbridge.smpp.receipts import is_receipt, normalise_id, read_receipt
from smppbridge.text.concat import read_segment
from smppbridge.text.encoding import ContentError, decode

if TYPE_CHECKING:
    from smppbridge.core.message import OutboundMessage
    from smppbridge.core.outcomes import Balance
    from smppbridge.core.provider_settings import ProviderSettings, UpstreamSettings
    from smppbridge.http.request import HttpRequest
    from smppbridge.smpp import pdu as P

__all__ = ["OnMo", "OnStatuses", "SmppProvider", "read_mo"]

_log = structlog.get_logger("smppbridge.upstream")
_S = CommandStatus
OnStatuses = Callable[[str, Sequence[StatusUpdate]], Awaitable[None]]
#: the MO intake: stores one MO (raises StoreUnavailable when it could not)
OnMo = Callable[[InboundMo], Awaitable[object]]

#: answers that mean "later": pause, then send the part again
_THROTTLED = frozenset({int(_S.ESME_RTHROTTLED), int(_S.ESME_RMSGQFUL)})
#: a part's answer that was no answer (pseudo statuses, never on the wire)
_TIMEOUT = -1
_UNAVAILABLE = -2
#: statuses handed to the pipeline per call, and how long the first waits for others
_STATUS_BATCH = 500
_STATUS_LINGER = 0.01
_THROTTLE_PAUSE = 0.05
#: the pause doubles while the answers last, up to this (well under ``timeout``, the
#: longest a part may wait for a session)
_THROTTLE_PAUSE_MAX = 1.0
_SWEEP = 0.25


@dataclass(slots=True)
class _Job:
    """One part on its way: its PDU, who waits for the answer, tries so far."""

    pdu: P.SubmitSm
    future: asyncio.Future[tuple[int, str]]
    deadline: float
    tracked: Tracked
    part: int
    attempts: int = 0


@dataclass(slots=True)
class _Acks:
    """deliver_sm to answer once a status is written: (link, pdu) each."""

    items: list[tuple[Link, P.DeliverSm]] = field(default_factory=list)


class SmppProvider:
    """See the module docstring."""

    supports_schedule = False
    poll_interval = 0.0

    def __init__(self, settings: ProviderSettings) -> None:
        assert settings.upstream is not None
        self.settings = settings
        self.up: UpstreamSettings = settings.upstream
        self.name = settings.name
        self.kinds = settings.kinds
        self.correlator = Correlator(early_ttl=self.up.early_receipt_ttl,
                                     early_max=self.up.early_receipts)
        self.links: list[Link] = []
        for number in range(self.up.binds):
            kinds = ([CL.BindKind.TRANSCEIVER] if self.up.bind == "transceiver"
                     else [CL.BindKind.TRANSMITTER, CL.BindKind.RECEIVER])
            for kind in kinds:
                self.links.append(Link(self, self.name, self.up, settings.password,
                                       session=number, kind=kind,
                                       response_timeout=settings.timeout,
                                       connect_timeout=settings.connect_timeout))
        self._queue: deque[_Job] = deque()
        self._inflight: dict[int, _Job] = {}
        self._on_statuses: OnStatuses | None = None
        self._on_mo: OnMo | None = None
        self._mo_tasks: set[asyncio.Task[None]] = set()
        #: MO that could not be read since the last sweep, and one reason
        self._mo_unreadable = 0
        self._mo_unreadable_sample = ""
        self._started = False
        self._bound = asyncio.Event()
        self._rr = 0
        # throughput: a token bucket (tokens, last refill); pause after throttling
        self._tokens = 1.0
        self._refilled = time.monotonic()
        self._pause_until = 0.0
        self._throttle_delay = _THROTTLE_PAUSE
        self._kick_handle: asyncio.TimerHandle | None = None
        self._sweeper: asyncio.Task[None] | None = None
        # statuses on their way to the pipeline, with the deliver_sm they answer
        self._statuses: list[tuple[StatusUpdate | None, _Acks]] = []
        self._status_handle: asyncio.TimerHandle | None = None
        self._status_tasks: set[asyncio.Task[None]] = set()
        # receipts held by the correlator: their deliver_sm, by normalised id
        self._held: dict[str, _Acks] = {}
        # statuses of messages whose send() has not returned yet
        self._sending: dict[str, list[tuple[StatusUpdate | None, _Acks]]] = {}
        self._reference = 0
        #: receipts that named no id or status since the last sweep, and one of them
        self._invalid = 0
        self._invalid_sample = ""
        self._metric_receipts = {r: METRICS.upstream_receipts.labels(self.name, r)
                                 for r in ("matched", "early", "unmatched", "invalid")}
        self._metric_mo = METRICS.upstream_deliveries.labels(self.name)
        self._metric_lost = [METRICS.upstream_submits.labels(self.name, link.label, "lost")
                             for link in self.links]

    # --- lifecycle -------------------------------------------------------------------

    def start(self, on_statuses: OnStatuses, on_mo: OnMo | None = None) -> None:
        """Open the sessions; statuses from receipts go to ``on_statuses``, MO to
        ``on_mo``."""
        self._on_statuses = on_statuses
        self._on_mo = on_mo
        self._started = True
        for link in self.links:
            link.start()
        self._sweeper = asyncio.get_running_loop().create_task(
            self._sweep(), name=f"upstream {self.name} sweep")

    async def aclose(self) -> None:
        self._started = False
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self._flush_statuses_now()
        if self._status_tasks:
            await asyncio.gather(*self._status_tasks, return_exceptions=True)
        if self._mo_tasks:
            await asyncio.gather(*self._mo_tasks, return_exceptions=True)
        await asyncio.gather(*(link.stop() for link in self.links), return_exceptions=True)
        for job in [*self._queue, *self._inflight.values()]:
            if not job.future.done():
                job.future.set_result((_UNAVAILABLE, "provider closed"))
        self._queue.clear()
        self._inflight.clear()

    # --- Provider -------------------------------------------------------------------

    async def send(self, messages: Sequence[OutboundMessage]) -> list[SendOutcome]:
        if not self._started:
            raise ProviderUnavailable(f"{self.name}: not started")
        if not any(link.bound for link in self._senders()):
            try:
                async with asyncio.timeout(self.settings.connect_timeout):
                    await self._bound.wait()
            except TimeoutError:
                errors = "; ".join(sorted({lk.last_error for lk in self.links
                                           if lk.last_error})) or "not bound"
                raise ProviderUnavailable(f"{self.name}: no upstream session bound "
                                          f"({errors})") from None
        for m in messages:
            self._sending[m.message_id] = []
        try:
            # Every part of every message joins the queue at once; one future each and
            # no task per message (the answers resolve them in the links' callbacks).
            plans: list[tuple[OutboundMessage, Tracked | SendOutcome,
                              list[asyncio.Future[tuple[int, str]]]]] = []
            for m in messages:
                self._reference = (self._reference + 1) & 0xFFFF
                try:
                    pdus = submit_pdus(m, self.up, self._reference, steady())
                except ContentError as exc:
                    plans.append((m, SendOutcome.rejected(
                        m.message_id, status_err(exc.status or 0x45),
                        f"cannot encode for the upstream: {exc}"), []))
                    continue
                tracked = self.correlator.track(m.message_id, len(pdus))
                plans.append((m, tracked, [self._submit(pdu, tracked, i)
                                           for i, pdu in enumerate(pdus)]))
            self._kick()
            await asyncio.gather(*(f for _, _, fs in plans for f in fs))
            outcomes = [self._outcome(m, t, fs) for m, t, fs in plans]
        finally:
            for m in messages:
                parked = self._sending.pop(m.message_id, [])
                for item in parked:
                    self._queue_status(*item)
        if outcomes and all(o.result is SendResult.RETRY for o in outcomes):
            raise ProviderUnavailable(f"{self.name}: {outcomes[0].detail}")
        return outcomes

    def _outcome(self, m: OutboundMessage, t: Tracked | SendOutcome,
                 futures: list[asyncio.Future[tuple[int, str]]]) -> SendOutcome:
        if isinstance(t, SendOutcome):
            return t
        answers = [f.result() for f in futures]
        for part, (status, text) in enumerate(answers):
            if status == _S.ESME_ROK:
                continue
            self.correlator.abandon(t)
            if status in (_TIMEOUT, _UNAVAILABLE) or status in _THROTTLED:
                return SendOutcome.retry(m.message_id, f"upstream: {text}")
            return SendOutcome.rejected(
                m.message_id, status_err(status),
                f"upstream answered 0x{status:08X} {status_name(status)}"
                + (f" (part {part + 1} of {len(answers)})" if len(answers) > 1 else ""))
        ids = [text for _, text in answers]
        detail = f"upstream id {ids[0]}" if len(ids) == 1 else f"upstream ids {','.join(ids)}"
        return SendOutcome.accepted(m.message_id, t.provider_id, parts=len(ids),
                                    detail=detail)

    async def poll(self, provider_ids: Sequence[str]) -> list[StatusUpdate]:
        return []  # statuses come as receipts

    def parse_webhook(self, request: HttpRequest) -> list[StatusUpdate]:
        raise ValueError("the smpp provider takes no webhooks (statuses come as receipts)")

    async def ready(self) -> bool:
        return any(link.bound for link in self._senders())

    async def balance(self) -> Balance | None:
        return None

    def sessions(self) -> list[dict[str, Any]]:
        """Each upstream connection, for the operator API."""
        return [{"session": link.label, "bind": link.kind.value,
                 "state": "bound" if link.bound else "connecting",
                 "since": link.bound_at if link.bound else None,
                 "window_in_use": link.window_in_use, "window": self.up.window,
                 "reconnects": link.reconnects, "last_error": link.last_error}
                for link in self.links]

    # --- sending ---------------------------------------------------------------------

    def _senders(self) -> list[Link]:
        return [lk for lk in self.links if lk.kind is not CL.BindKind.RECEIVER]

    def _submit(self, pdu: P.SubmitSm, tracked: Tracked, part: int
                ) -> asyncio.Future[tuple[int, str]]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[int, str]] = loop.create_future()
        self._queue.append(_Job(pdu, future, time.monotonic() + self.settings.timeout,
                                tracked, part))
        return future

    def _kick(self) -> None:
        """Hand queued parts to links with room, as fast as throughput allows."""
        if self._kick_handle is not None:
            return
        queue = self._queue
        if not queue:
            return
        now = time.monotonic()
        if now < self._pause_until:
            self._later(self._pause_until - now)
            return
        rate = self.up.throughput
        if rate:
            burst = max(1.0, rate / 20)
            self._tokens = min(burst, self._tokens + (now - self._refilled) * rate)
            self._refilled = now
        links = [lk for lk in self._senders() if lk.can_submit]
        touched: set[int] = set()
        while queue and links:
            if rate and self._tokens < 1.0:
                self._later((1.0 - self._tokens) / rate)
                break
            self._rr = (self._rr + 1) % len(links)
            link = links[self._rr]
            job = queue.popleft()
            if job.future.done():
                continue
            job.attempts += 1
            link.submit(job.pdu)
            self._inflight[id(job.pdu)] = job
            touched.add(id(link))
            if rate:
                self._tokens -= 1.0
            if not link.can_submit:
                links.remove(link)
        for lk in self.links:
            if id(lk) in touched:
                lk.flush()

    def _later(self, delay: float) -> None:
        def fire() -> None:
            self._kick_handle = None
            self._kick()
        self._kick_handle = asyncio.get_running_loop().call_later(max(delay, 0.001), fire)

    # --- LinkOwner -------------------------------------------------------------------

    def link_bound(self, link: Link) -> None:
        if any(lk.bound for lk in self._senders()):
            self._bound.set()
        self._kick()

    def link_answer(self, link: Link, event: CL.SubmitAnswered | CL.SubmitTimedOut
                    | CL.SubmitUnreadable) -> None:
        job = self._inflight.pop(id(event.request), None)
        if job is None or job.future.done():
            return
        if isinstance(event, CL.SubmitTimedOut):
            job.future.set_result((_TIMEOUT, "no submit_sm_resp in time"))
        elif isinstance(event, CL.SubmitUnreadable):
            job.future.set_result((_TIMEOUT, f"unreadable submit_sm_resp: {event.reason}"))
        elif event.status in _THROTTLED:
            if job.attempts > self.up.throttle_retries:
                job.future.set_result((event.status, f"{status_name(event.status)} "
                                       f"after {job.attempts} tries"))
            else:
                now = time.monotonic()
                self._pause_until = max(self._pause_until, now + self._throttle_delay)
                self._throttle_delay = min(_THROTTLE_PAUSE_MAX, self._throttle_delay * 2)
                self._queue.appendleft(job)
        else:
            if event.status == _S.ESME_ROK:
                self._throttle_delay = _THROTTLE_PAUSE
                t = job.tracked
                for update, key in self.correlator.sent(t, job.part, event.message_id,
                                                        time.monotonic()):
                    self._metric_receipts["early"].inc()
                    self._status(update, self._held.pop(key, _Acks()), t.message_id)
            job.future.set_result((event.status, event.message_id))

    def link_read(self, link: Link) -> None:
        self._kick()

    def link_closed(self, link: Link, unanswered: tuple[P.SubmitSm, ...]) -> None:
        if self._bound.is_set() and not any(lk.bound for lk in self._senders()):
            self._bound.clear()
        lost = self._metric_lost[self.links.index(link)]
        for pdu in reversed(unanswered):
            job = self._inflight.pop(id(pdu), None)
            if job is not None and not job.future.done():
                lost.inc()
                self._queue.appendleft(job)  # may reach the upstream twice
        self._kick()

    def link_deliver(self, link: Link, pdu: P.DeliverSm) -> None:
        if not is_receipt(pdu):
            self._metric_mo.inc()
            if self._on_mo is None:
                link.answer(pdu)
                return
            try:
                mo = read_mo(self.name, pdu, time.time())
            except ContentError as exc:
                if not self._mo_unreadable:
                    self._mo_unreadable_sample = str(exc)
                self._mo_unreadable += 1
                link.answer(pdu, int(_S.ESME_RX_P_APPN))
                return
            task = asyncio.get_running_loop().create_task(self._take_mo(link, pdu, mo))
            self._mo_tasks.add(task)
            task.add_done_callback(self._mo_tasks.discard)
            return
        receipt = read_receipt(pdu)
        if receipt is None:
            # Logged once a sweep with the count and one sample, never per receipt.
            self._metric_receipts["invalid"].inc()
            if not self._invalid:
                self._invalid_sample = pdu.short_message[:80].decode("latin-1")
            self._invalid += 1
            link.answer(pdu)
            return
        update = self.correlator.receipt(receipt, time.monotonic())
        acks = _Acks([(link, pdu)])
        if update is None and self._held_now(receipt.message_id):
            key = normalise_id(receipt.message_id)
            self._held.setdefault(key, _Acks()).items.append((link, pdu))
            return
        self._metric_receipts["matched"].inc()
        self._status(update, acks, update.message_id if update is not None else "")

    async def _take_mo(self, link: Link, pdu: P.DeliverSm, mo: InboundMo) -> None:
        """Store the MO, then answer its deliver_sm."""
        assert self._on_mo is not None
        status = int(_S.ESME_ROK)
        try:
            await self._on_mo(mo)
        except StoreUnavailable as exc:
            status = int(_S.ESME_RX_T_APPN)  # the upstream sends it again
            # The store logs the outage once (store.failing); one line per MO would
            # flood the log for as long as it lasts.
            _log.debug("upstream.mo_not_stored", provider=self.name, error=str(exc))
        except Exception:
            status = int(_S.ESME_RX_T_APPN)
            _log.exception("upstream.mo_failed", provider=self.name)
        link.answer(pdu, status)

    def _held_now(self, message_id: str) -> bool:
        return self.correlator.holding > 0 and self.correlator.is_held(message_id)

    # --- statuses to the pipeline -------------------------------------------------------

    def _status(self, update: StatusUpdate | None, acks: _Acks, message_id: str) -> None:
        parked = self._sending.get(message_id) if message_id else None
        if parked is not None:
            parked.append((update, acks))  # after send() returned
            return
        self._queue_status(update, acks)

    def _queue_status(self, update: StatusUpdate | None, acks: _Acks) -> None:
        self._statuses.append((update, acks))
        if len(self._statuses) >= _STATUS_BATCH:
            self._spawn_flush()
        elif self._status_handle is None:
            self._status_handle = asyncio.get_running_loop().call_later(
                _STATUS_LINGER, self._spawn_flush)

    def _spawn_flush(self) -> None:
        if self._status_handle is not None:
            self._status_handle.cancel()
            self._status_handle = None
        if not self._statuses:
            return
        batch, self._statuses = self._statuses, []
        task = asyncio.get_running_loop().create_task(self._write_statuses(batch))
        self._status_tasks.add(task)
        task.add_done_callback(self._status_tasks.discard)

    async def _flush_statuses_now(self) -> None:
        if self._status_handle is not None:
            self._status_handle.cancel()
            self._status_handle = None
        batch, self._statuses = self._statuses, []
        if batch:
            await self._write_statuses(batch)

    async def _write_statuses(self, batch: list[tuple[StatusUpdate | None, _Acks]]) -> None:
        updates = [u for u, _ in batch if u is not None]
        status = int(_S.ESME_ROK)
        if updates and self._on_statuses is not None:
            try:
                await self._on_statuses(self.name, updates)
            except StoreUnavailable as exc:
                status = int(_S.ESME_RX_T_APPN)  # the upstream sends them again
                # debug: the store logs the outage once (store.failing)
                _log.debug("upstream.receipts_not_stored", provider=self.name,
                             receipts=len(updates), error=str(exc))
            except Exception:
                status = int(_S.ESME_RX_T_APPN)
                _log.exception("upstream.receipts_failed", provider=self.name)
        touched: dict[int, Link] = {}
        for _, acks in batch:
            for link, pdu in acks.items:
                link.answer(pdu, status, flush=False)
                touched[id(link)] = link
        for link in touched.values():
            link.flush()

    async def _sweep(self) -> None:
        """Held receipts past their time go to the store lookup; queued parts past
        ``timeout`` come back as RETRY."""
        while True:
            await asyncio.sleep(_SWEEP)
            now = time.monotonic()
            if self._mo_unreadable:
                _log.warning("upstream.mo_unreadable", provider=self.name,
                             count=self._mo_unreadable, sample=self._mo_unreadable_sample,
                             action="answered ESME_RX_P_APPN")
                self._mo_unreadable = 0
            if self._invalid:
                _log.warning("upstream.receipts_invalid", provider=self.name,
                             count=self._invalid, sample=self._invalid_sample,
                             action="answered ESME_ROK, no status read")
                self._invalid = 0
            expired = self.correlator.expire(now)
            if expired:
                self._metric_receipts["unmatched"].inc(len(expired))
                _log.warning("upstream.receipts_unmatched", provider=self.name,
                             count=len(expired), first=expired[0].message_id,
                             action="looked up in the store by provider id")
                for r in expired:
                    acks = self._held.pop(normalise_id(r.message_id), _Acks())
                    self._queue_status(StatusUpdate(
                        normalise_id(r.message_id), r.stat, r.err,
                        "upstream receipt (matched in the store)", source="receipt"), acks)
            while self._queue and self._queue[0].deadline <= now:
                job = self._queue.popleft()
                if not job.future.done():
                    job.future.set_result((_UNAVAILABLE, "no upstream session took it "
                                           f"within {self.settings.timeout:g}s"))
            for job in list(self._queue):
                if job.deadline <= now and not job.future.done():
                    job.future.set_result((_UNAVAILABLE, "queued too long"))



def read_mo(provider: str, pdu: P.DeliverSm, now: float) -> InboundMo:
    """An MO deliver_sm as an :class:`InboundMo`: its user data (short_message or
    message_payload) without UDH, decoded for the history and the JSON callback (octets
    a data_coding cannot decode are kept as they are, with an empty text), and a long
    MO's part (UDH concat IE or SAR TLVs). Raises ContentError for a malformed UDH."""
    seg = read_segment(pdu.esm_class, pdu.short_message, pdu.tlv)
    try:
        decoded = decode(seg.payload, pdu.data_coding, binary=seg.port_addressed)
        text, encoding = decoded.text or "", decoded.coding.alphabet.value
        if decoded.binary is not None:
            encoding = "binary"
    except ContentError:
        text, encoding = "", "unknown"
    concat = None
    if seg.concat is not None and seg.concat.total > 1:
        concat = (seg.concat.reference, seg.concat.total, seg.concat.seq)
    return InboundMo(provider=provider,
                     source=Address(pdu.source_addr, pdu.source_addr_ton,
                                    pdu.source_addr_npi),
                     destination=Address(pdu.destination_addr, pdu.dest_addr_ton,
                                         pdu.dest_addr_npi),
                     data_coding=pdu.data_coding, payload=seg.payload, text=text,
                     received_at=now, concat=concat, encoding=encoding)
