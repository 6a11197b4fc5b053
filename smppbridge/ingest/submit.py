"""The content stage: submit_sm parts in, whole checked messages out to a sink.

Size: over 500 lines because the steps of the content stage (read, reassemble, check,
hand over, undo) share the handler's reassembler and flood bookkeeping; the rules
themselves live in smppbridge.text and ingest/flood.py.

Theory of operation
-------------------
:class:`ContentHandler` is a :class:`~smppbridge.core.ports.SubmitHandler`. For each submit_sm
(and each data_sm / submit_multi destination the server turns into one) it:

1. reads the user data (:func:`~smppbridge.text.concat.read_segment`) and checks the
   data_coding value, so a malformed part is refused on its own submit_sm_resp;
2. gives the part its own message id (every part gets an id and, later, a receipt);
3. for a part of a long message, feeds the :class:`~smppbridge.text.concat.Reassembler`
   and answers ``ESME_ROK`` with the part's id until the message is whole;
4. for a whole message: joins the parts' octets and decodes them once (a surrogate pair
   or GSM escape may straddle two parts), applies macros and the comment rule, the
   flood rules, and hands an :class:`~smppbridge.core.message.OutboundMessage` to the
   :class:`MessageSink` (the durable store), whose status answers the final part.

When a long message fails at its final part (bad text, macro, flood, refused by the
sink) the final part's submit_sm_resp carries the error, and the parts already acked
are reported to :meth:`MessageSink.failed` so each can get its ``REJECTD`` receipt.
:meth:`ContentHandler.expire` does the same for messages whose parts stopped coming.

:meth:`ContentHandler.submit_texts` takes messages that arrive as text (the HTTP doors,
``ingest/texts.py``) into step 4: ids for their parts, then the same macros, limits,
flood rules and hand-over as a whole submit_sm.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from smppbridge.core.accounts import Account
from smppbridge.core.clock import steady_of, timer_for
from smppbridge.core.message import Address, OutboundMessage
from smppbridge.core.ports import FloodState, MessageSink
from smppbridge.core.records import FailedMessage, FailedPart, FailureReason, PartRecord
from smppbridge.core.session import QueryResult, SessionContext, SubmitResult
from smppbridge.ingest.flood import MemoryFloodState, flood_error, text_digest
from smppbridge.ingest.texts import TextMessage, TextResult, count_parts, data_coding_of
from smppbridge.observability.metrics import METRICS
from smppbridge.smpp.codec import decode as decode_pdu
from smppbridge.smpp.codec import encode as encode_pdu
from smppbridge.smpp.constants import CommandStatus, EsmClass, MessageState
from smppbridge.smpp.errors import LocalProtocolError
from smppbridge.smpp.pdu import SubmitSm
from smppbridge.smpp.times import parse_smpp_time
from smppbridge.text.concat import (
    IncompleteMessage,
    Part,
    PartKey,
    Reassembler,
    ReassemblyConfig,
    Segment,
    read_segment,
)
from smppbridge.text.content import Content
from smppbridge.text.encoding import ContentError, InvalidDataCoding, decode, parse_data_coding
from smppbridge.text.macros import parse_content

__all__ = ["ISO_SYSTEM_TYPE", "BinaryNotSupported", "ContentHandler"]

_log = structlog.get_logger("smppbridge.ingest")
_FLOOD_REFUSED = {"DuplicateMessage": METRICS.flood_refusals.labels("duplicate"),
                  "SubscriberFlood": METRICS.flood_refusals.labels("subscriber_flood")}
_OK = CommandStatus.ESME_ROK
#: a plain int: ``&`` with the IntFlag member runs Flag.__and__ in Python
_UDHI = int(EsmClass.UDHI)

#: bind system_type that asks for ISO-8859-1 instead of GSM 03.38 for data_coding 0
#: (SMS Center API: 'system-type = "ISO"'); compared case-insensitively.
ISO_SYSTEM_TYPE = "ISO"


class BinaryNotSupported(InvalidDataCoding):
    """An 8-bit message for an application port: our HTTP providers carry text only."""


@dataclass(frozen=True, slots=True)
class _Envelope:
    """Who a message is from and to."""

    account: str
    source: Address
    destination: Address

    @classmethod
    def of(cls, account: str, pdu: SubmitSm) -> _Envelope:
        return cls(account, Address(pdu.source_addr, pdu.source_addr_ton, pdu.source_addr_npi),
                   Address(pdu.destination_addr, pdu.dest_addr_ton, pdu.dest_addr_npi))


@dataclass(frozen=True, slots=True)
class _PartInfo:
    """What the handler keeps of each part until its message is whole."""

    pdu: SubmitSm
    iso: bool
    port_addressed: bool
    #: wall date the part arrived (the message's submitted_at, its receipts' submit
    #: date); the reassembly window and relative times run on steady time instead
    arrived_at: float


class ContentHandler:
    """:class:`~smppbridge.core.ports.SubmitHandler` that decodes, reassembles and checks."""

    def __init__(
        self,
        sink: MessageSink,
        *,
        new_id: Callable[[SessionContext], str | Awaitable[str]],
        flood: FloodState | None = None,
        reassembly: ReassemblyConfig | None = None,
        clock: Callable[[], float] = time.time,
        timer: Callable[[], float] | None = None,
    ) -> None:
        self.sink = sink
        self.new_id = new_id
        self.flood: FloodState = flood if flood is not None else MemoryFloodState()
        self.reassembler: Reassembler[_PartInfo] = Reassembler(reassembly)
        #: dates (wall time); ``timer``: windows and deadlines (steady time, core.clock)
        self.clock = clock
        self.timer = timer_for(clock, timer)
        #: flood records to forget that could not be forgotten yet (store outage)
        self._pending_releases: list[dict[str, Any]] = []
        self._release_lock = asyncio.Lock()

    # --- SubmitHandler -------------------------------------------------------------------

    async def submit(self, ctx: SessionContext, pdu: SubmitSm) -> SubmitResult:
        now, tick = self.clock(), self.timer()
        settings = ctx.account
        checked = self._read(ctx, settings, pdu, now)
        if isinstance(checked, SubmitResult):
            return checked
        segment, info = checked
        message_id = await self._take_id(ctx)
        return await self._add(ctx, settings, pdu, segment, info, message_id, tick)

    async def submit_many(self, ctx: SessionContext, pdus: Sequence[SubmitSm]
                          ) -> list[SubmitResult | Exception]:
        """Every submit_sm of one read from one bind, answered in order.

        Same verdicts as :meth:`submit` one by one; where :meth:`submit` would have
        raised, the entry is the exception (the server maps it to a status).
        Single-part messages — the bulk of real traffic — share one
        :meth:`MessageSink.accept_many` call (one store transaction, one future) instead
        of a coroutine chain and a store call each (with the in-memory hand-over to the
        sender, W=100 acks went 2,020 -> 2,740/s in one profiling run). Parts of long
        messages go through :meth:`submit` concurrently, as before.
        """
        now, tick = self.clock(), self.timer()
        settings = ctx.account
        results: list[SubmitResult | Exception | None] = [None] * len(pdus)
        slow: list[int] = []
        #: (index, message, envelope, digest) of messages waiting for the sink
        ready: list[tuple[int, OutboundMessage, _Envelope, bytes]] = []
        #: (source, destination, digest) of those: a second equal message waits until
        #: the sink has answered the first, whose refusal releases its flood record
        pending: set[tuple[str, str, bytes]] = set()
        # A memory flood state answers without suspending: checked in order. A shared
        # one (Redis) costs a round trip: those go through submit() concurrently.
        batchable = self.flood.immediate
        for i, pdu in enumerate(pdus):
            if not batchable or pdu.tlvs or pdu.esm_class & _UDHI:
                slow.append(i)
                continue
            checked = self._read(ctx, settings, pdu, now)
            if isinstance(checked, SubmitResult):
                results[i] = checked
                continue
            segment, info = checked
            message_id = await self._take_id(ctx)
            parts = (Part(1, message_id, segment.payload, tick, info),)
            env = _Envelope.of(ctx.system_id, pdu)
            text = ""
            try:
                text, content, digest = self._checked(settings, parts)
                key = (env.source.addr, env.destination.addr, digest)
                if key in pending:
                    await self._hand_over(ready, results, tick)
                    pending.clear()
                await self._flood_check(env, digest, tick, settings)
            except ContentError as exc:
                results[i] = await self._refused(env, (), exc, text, 1)
                continue
            pending.add(key)
            ready.append((i, self._message(env, content, parts, (), message_id), env, digest))
        slow_results = self._submit_each(ctx, [pdus[i] for i in slow]) if slow else None
        await self._hand_over(ready, results, tick)
        if slow_results is not None:
            for i, result in zip(slow, await slow_results, strict=True):
                if isinstance(result, BaseException) and not isinstance(result, Exception):
                    raise result  # cancelled
                results[i] = result
        return [r if r is not None else SubmitResult(CommandStatus.ESME_RSYSERR)
                for r in results]

    async def submit_texts(self, ctx: SessionContext, items: Sequence[TextMessage]
                           ) -> list[TextResult]:
        """Messages given as text (the HTTP doors, ingest/texts.py), answered in order.

        The steps of a whole submit_sm after its decoding: a message id per part, the
        macros and the comment rule with the account's limits, the flood rules, and one
        :meth:`MessageSink.accept_many` for the batch (durable before it returns).
        """
        now, tick = self.clock(), self.timer()
        settings = ctx.account
        results: list[TextResult | None] = [None] * len(items)
        verdicts: list[SubmitResult | Exception | None] = [None] * len(items)
        parts_of = [0] * len(items)
        kinds = [""] * len(items)
        ready: list[tuple[int, OutboundMessage, _Envelope, bytes]] = []
        pending: set[tuple[str, str, bytes]] = set()
        max_parts = self.reassembler.config.max_parts
        for i, item in enumerate(items):
            env = _Envelope(ctx.system_id, item.source, item.destination)
            field = "text"
            try:
                data_coding = data_coding_of(item)
                parts = count_parts(item, data_coding, max_parts)
                content = parse_content(item.text, flash=item.flash, limits=settings.limits)
                digest = text_digest(item.text)
                key = (env.source.addr, env.destination.addr, digest)
                if key in pending:
                    await self._hand_over(ready, verdicts, tick)
                    pending.clear()
                field = "to"
                await self._flood_check(env, digest, tick, settings)
            except ContentError as exc:
                _log.debug("submit.refused", reason=str(exc), status=exc.status)
                results[i] = TextResult(exc.status, field=getattr(exc, "field", field),
                                        reason=str(exc))
                continue
            ids = tuple([await self._take_id(ctx) for _ in range(parts)])
            parts_of[i] = parts
            kinds[i] = content.kind.value
            pending.add(key)
            ready.append((i, _text_message(env, item, content, ids, data_coding, now, tick),
                          env, digest))
        await self._hand_over(ready, verdicts, tick)
        for i, verdict in enumerate(verdicts):
            if results[i] is not None or verdict is None:
                continue
            if isinstance(verdict, Exception):
                status = getattr(verdict, "status", CommandStatus.ESME_RSYSERR)
                results[i] = TextResult(int(status), reason=str(verdict))
            elif verdict.ok:
                results[i] = TextResult(_OK, verdict.message_id, parts_of[i])
            elif verdict.status == CommandStatus.VENDOR_NO_ROUTE:
                results[i] = TextResult(verdict.status, field="to", reason=(
                    f"no provider can carry {kinds[i]} for account {ctx.system_id!r}"))
            else:
                results[i] = TextResult(verdict.status)
        return [r if r is not None else TextResult(CommandStatus.ESME_RSYSERR)
                for r in results]

    async def _hand_over(self, ready: list[tuple[int, OutboundMessage, _Envelope, bytes]],
                         results: list[SubmitResult | Exception | None], now: float) -> None:
        """Give the checked messages of a batch to the sink in one call; their verdicts
        go to ``results``; ``ready`` is emptied."""
        if not ready:
            return
        batch = list(ready)
        ready.clear()
        try:
            statuses = await self.sink.accept_many([m for _, m, _, _ in batch])
        except Exception as exc:
            for i, _, env, digest in batch:
                await self._undo(env, (), "", CommandStatus.ESME_RSYSERR,
                                 digest=digest, now=now)
                results[i] = exc
            return
        for (i, message, env, digest), status in zip(batch, statuses, strict=True):
            if status != _OK:
                await self._undo(env, (), "", status, digest=digest, now=now)
                results[i] = SubmitResult(status)
            else:
                results[i] = SubmitResult(_OK, message.message_id)

    def _submit_each(self, ctx: SessionContext, pdus: Sequence[SubmitSm]
                     ) -> asyncio.Future[list[SubmitResult | BaseException]]:
        return asyncio.gather(*(self.submit(ctx, pdu) for pdu in pdus),
                              return_exceptions=True)

    def _read(self, ctx: SessionContext, settings: Account, pdu: SubmitSm,
              now: float) -> tuple[Segment, _PartInfo] | SubmitResult:
        """The part's user data and what is kept of it, or the refusal of a bad part."""
        try:
            if pdu.tlvs or pdu.esm_class & _UDHI:
                segment = read_segment(pdu.esm_class, pdu.short_message, pdu.tlv)
            else:
                # The common case: one plain short_message. Same result as
                # read_segment, without probing for SAR and payload TLVs that are absent.
                segment = Segment(pdu.short_message)
            parse_data_coding(pdu.data_coding)
        except ContentError as exc:
            _log.debug("submit.refused", reason=str(exc), status=exc.status)
            return SubmitResult(exc.status)
        try:
            parse_smpp_time(pdu.schedule_delivery_time, now)
        except ValueError:
            return SubmitResult(CommandStatus.ESME_RINVSCHED)
        try:
            parse_smpp_time(pdu.validity_period, now)
        except ValueError:
            return SubmitResult(CommandStatus.ESME_RINVEXPIRY)
        iso = settings.iso_default or ctx.system_type.strip().upper() == ISO_SYSTEM_TYPE
        return segment, _PartInfo(pdu, iso, segment.port_addressed, now)

    async def _take_id(self, ctx: SessionContext) -> str:
        got = self.new_id(ctx)
        if isinstance(got, str):
            return got
        return await got

    async def _add(self, ctx: SessionContext, settings: Account, pdu: SubmitSm,
                   segment: Segment, info: _PartInfo, message_id: str, now: float,
                   *, replay: bool = False) -> SubmitResult:
        # ``now`` is steady time (windows, flood records); dates come from ``info``.
        if segment.concat is None:
            part = Part(1, message_id, segment.payload, now, info)
            return await self._whole(ctx, settings, (part,), (), message_id=message_id, now=now)
        key = PartKey(ctx.system_id, pdu.source_addr, pdu.destination_addr,
                      segment.concat.reference)
        wire = b""
        if not replay:
            try:
                wire = encode_pdu(pdu)
            except LocalProtocolError as exc:
                # The decoder keeps a non-ASCII octet of a C-octet string (as Latin-1);
                # such a part cannot be kept for replay, so refuse it with the field's
                # status rather than fail the whole submit with ESME_RSYSERR.
                _log.debug("submit.refused", reason=str(exc), status=exc.status)
                return SubmitResult(exc.status)
        try:
            added = self.reassembler.add(key, segment.concat, segment.payload,
                                         message_id=message_id, now=now, meta=info)
        except ContentError as exc:
            _log.debug("submit.refused", reason=str(exc), status=exc.status)
            return SubmitResult(exc.status)
        for old in added.evicted:
            await self._fail_incomplete(old, FailureReason.REPLACED)
        done = added.completed
        if done is None:
            if not replay:
                # Acked only once durable: a restart replays it into the reassembler.
                await self.sink.hold_part(PartRecord(
                    part_id=message_id, account=ctx.system_id, key=repr(key),
                    pdu=wire, arrived_at=info.arrived_at, system_type=ctx.system_type,
                    interface_version=ctx.interface_version))
            return SubmitResult(_OK, message_id)
        return await self._whole(ctx, settings, done.parts, done.repeats,
                                 message_id=message_id, now=now)

    async def restore(self, parts: Sequence[PartRecord],
                      context: Callable[[PartRecord], SessionContext | None]) -> int:
        """Replay parts kept durably before a restart into the reassembler, with their
        original ids and arrival times; returns how many were replayed. ``context``
        gives the session context of a part's account (None: account gone, dropped)."""
        replayed = 0
        wall_now, steady_now = self.clock(), self.timer()
        for record in parts:
            ctx = context(record)
            if ctx is None:
                continue
            pdu = decode_pdu(record.pdu)
            assert isinstance(pdu, SubmitSm)
            settings = ctx.account
            segment = read_segment(pdu.esm_class, pdu.short_message, pdu.tlv)
            iso = settings.iso_default or ctx.system_type.strip().upper() == ISO_SYSTEM_TYPE
            info = _PartInfo(pdu, iso, segment.port_addressed, record.arrived_at)
            await self._add(ctx, settings, pdu, segment, info, record.part_id,
                            steady_of(record.arrived_at, wall_now, steady_now), replay=True)
            replayed += 1
        return replayed

    async def query(self, ctx: SessionContext, message_id: str, source_addr: str) -> QueryResult:
        if self.reassembler.holds(message_id):
            # A part waiting for the rest of its message is on its way (§5.2.28 ENROUTE).
            return QueryResult(_OK, message_state=MessageState.ENROUTE)
        return await self.sink.query(ctx, message_id, source_addr)

    async def cancel(self, ctx: SessionContext, message_id: str, source_addr: str) -> int:
        return await self.sink.cancel(ctx, message_id, source_addr)

    async def ready(self) -> bool:
        return await self.sink.ready()

    # --- timers --------------------------------------------------------------------------

    async def expire(self, now: float | None = None) -> int:
        """Fail every long message whose window closed; returns how many. Call it
        periodically (:meth:`next_deadline` says when it next has work)."""
        late = self.reassembler.expire(self.timer() if now is None else now)
        for old in late:
            await self._fail_incomplete(old, FailureReason.INCOMPLETE)
        return len(late)

    def next_deadline(self) -> float | None:
        return self.reassembler.next_deadline()

    # --- internals -----------------------------------------------------------------------

    async def _whole(
        self,
        ctx: SessionContext,
        settings: Account,
        parts: Sequence[Part[_PartInfo]],
        repeats: Sequence[Part[_PartInfo]],
        *,
        message_id: str,
        now: float,
    ) -> SubmitResult:
        """Decode, parse, check and hand over a whole message; ``message_id`` is the id
        of the part that completed it, whose submit_sm_resp carries the verdict."""
        first = parts[0].meta.pdu
        env = _Envelope.of(ctx.system_id, first)
        earlier = [p for p in _in_order(parts, repeats) if p.message_id != message_id]
        text = ""
        try:
            text, content, digest = self._checked(settings, parts)
            await self._flood_check(env, digest, now, settings)
        except ContentError as exc:
            return await self._refused(env, earlier, exc, text, len(parts))
        message = self._message(env, content, parts, repeats, message_id)
        try:
            status = await self.sink.accept(message)
        except Exception:
            await self._undo(env, earlier, text, CommandStatus.ESME_RSYSERR,
                             digest=digest, now=now)
            raise
        if status != _OK:
            await self._undo(env, earlier, text, status, digest=digest, now=now)
            return SubmitResult(status)
        return SubmitResult(_OK, message_id)

    def _checked(self, settings: Account, parts: Sequence[Part[_PartInfo]]
                 ) -> tuple[str, Content, bytes]:
        """Text, parsed content and flood digest of a whole message (ContentError if
        its text, data_coding or macros are refused)."""
        text = self._decode(parts)
        content = parse_content(text, flash=parse_data_coding(parts[0].meta.pdu.data_coding)
                                .flash, limits=settings.limits)
        return text, content, text_digest(text)

    async def _flood_check(self, env: _Envelope, digest: bytes, now: float,
                           settings: Account) -> None:
        """Apply and record the flood rules (raises the refusal as ContentError)."""
        if self._pending_releases or self._release_lock.locked():
            await self._retry_releases()
        try:
            status = await self.flood.check_and_record(
                account=env.account, source=env.source.addr,
                destination=env.destination.addr, text_digest=digest, now=now,
                rules=settings.flood)
        except Exception:
            # The check may have been recorded before its answer was lost (Redis
            # going down): forget it once the flood state answers again. A release
            # removes only a record made at exactly ``now``, so this is safe when
            # nothing was recorded.
            self._pending_releases.append({
                "account": env.account, "source": env.source.addr,
                "destination": env.destination.addr, "text_digest": digest,
                "recorded_at": now})
            raise
        error = flood_error(status, settings.flood)
        if error is not None:
            _FLOOD_REFUSED[type(error).__name__].inc()
            raise error

    async def _refused(self, env: _Envelope, earlier: Sequence[Part[_PartInfo]],
                       exc: ContentError, text: str, parts: int) -> SubmitResult:
        _log.debug("submit.refused", reason=str(exc), status=exc.status, parts=parts)
        await self._fail_parts(env, earlier, exc.status, FailureReason.REFUSED, text)
        return SubmitResult(exc.status)

    @staticmethod
    def _message(env: _Envelope, content: Content, parts: Sequence[Part[_PartInfo]],
                 repeats: Sequence[Part[_PartInfo]], message_id: str) -> OutboundMessage:
        first = parts[0].meta.pdu
        # The first part's arrival: a wall date, and the same instant on steady time
        # (the part's received_at), where schedule and validity ends are kept.
        arrived, received = parts[0].meta.arrived_at, parts[0].received_at
        single = len(parts) == 1 and not repeats
        return OutboundMessage(
            message_id=message_id,
            part_ids=(parts[0].message_id,) if single
            else tuple(p.message_id for p in _in_order(parts, repeats)),
            account=env.account,
            source=env.source,
            destination=env.destination,
            content=content,
            registered_delivery=first.registered_delivery if single else next(
                (p.meta.pdu.registered_delivery for p in parts if p.meta.pdu.registered_delivery),
                0),
            submitted_at=arrived,
            schedule_at=_time_or_none(first.schedule_delivery_time, arrived, received),
            expire_at=_time_or_none(first.validity_period, arrived, received),
            service_type=first.service_type,
            data_coding=first.data_coding,
            extra=_extra(parts, repeats),
        )

    def _decode(self, parts: Sequence[Part[_PartInfo]]) -> str:
        info = parts[0].meta
        if len(parts) == 1:
            decoded = decode(parts[0].payload, info.pdu.data_coding, iso=info.iso,
                             binary=info.port_addressed)
        else:
            codings = {p.meta.pdu.data_coding for p in parts}
            if len(codings) > 1:
                msg = ("parts of one message use different data_coding values "
                       f"{sorted(codings)}")
                raise InvalidDataCoding(msg)
            decoded = decode(b"".join(p.payload for p in parts), info.pdu.data_coding,
                             iso=info.iso, binary=any(p.meta.port_addressed for p in parts))
        if decoded.text is None:
            msg = "binary (port-addressed 8-bit) messages are not supported"
            raise BinaryNotSupported(msg)
        return decoded.text

    async def _undo(
        self,
        env: _Envelope,
        earlier: Sequence[Part[_PartInfo]],
        text: str,
        status: int,
        *,
        digest: bytes,
        now: float,
    ) -> None:
        """The sink refused a message the flood rules accepted: forget its duplicate
        record (a retry is not a duplicate of a message never sent), fail earlier parts."""
        _log.debug("submit.refused", reason="sink", status=status)
        release: dict[str, Any] = {"account": env.account, "source": env.source.addr,
                                   "destination": env.destination.addr,
                                   "text_digest": digest, "recorded_at": now}
        try:
            await self.flood.release(**release)
        except Exception:
            # The flood state is down with the store (Redis): remember to forget the
            # record before the next check, or the ESME's retry of a message that was
            # never stored would be refused as a duplicate and lost.
            self._pending_releases.append(release)
        await self._fail_parts(env, earlier, status, FailureReason.REFUSED, text)

    async def _retry_releases(self) -> None:
        # Under a lock, and a record leaves the list only once released: a check that
        # runs meanwhile waits, so a retry never meets its own stale record.
        async with self._release_lock:
            while self._pending_releases:
                await self.flood.release(**self._pending_releases[0])
                self._pending_releases.pop(0)

    async def _fail_incomplete(
        self, message: IncompleteMessage[_PartInfo], reason: FailureReason
    ) -> None:
        text = ""
        # Missing parts may cut a character in two; the receipt's text is optional.
        with contextlib.suppress(ContentError):
            text = self._decode(message.parts)
        _log.debug("submit.incomplete", reason=reason.value, total=message.total,
                  received=len(message.parts))
        account = message.key.account if isinstance(message.key, PartKey) else ""
        env = _Envelope.of(account, message.parts[0].meta.pdu)
        await self._fail_parts(env, _in_order(message.parts, message.repeats),
                               CommandStatus.ESME_RSUBMITFAIL, reason, text)

    async def _fail_parts(
        self,
        env: _Envelope,
        parts: Sequence[Part[_PartInfo]],
        status: int,
        reason: FailureReason,
        text: str,
    ) -> None:
        if not parts:
            return
        failed = tuple(FailedPart(p.message_id, p.seq, p.meta.pdu.registered_delivery,
                                  p.meta.arrived_at) for p in parts)
        await self.sink.failed(FailedMessage(env.account, env.source, env.destination, failed,
                                             status, reason, text))


def _text_message(env: _Envelope, item: TextMessage, content: Content, ids: tuple[str, ...],
                  data_coding: int, now: float, tick: float) -> OutboundMessage:
    """The message of a text: the last part's id names it, as for a long submit_sm."""
    extra = dict(item.extra)
    if len(ids) > 1:
        extra["part_registered_delivery"] = ",".join([str(item.registered_delivery)] * len(ids))
    return OutboundMessage(
        message_id=ids[-1], part_ids=ids, account=env.account, source=env.source,
        destination=env.destination, content=content,
        registered_delivery=item.registered_delivery, submitted_at=now,
        schedule_at=None if item.schedule_at is None else steady_of(item.schedule_at, now,
                                                                    tick),
        expire_at=None if item.validity is None else tick + item.validity,
        data_coding=data_coding, extra=extra)


def _time_or_none(value: str, arrived_at: float, received_at: float) -> float | None:
    """An SMPP time (already validated when the part arrived) on steady time: absolute
    ones are wall dates, relative ones count from the arrival."""
    try:
        at = parse_smpp_time(value, arrived_at)
    except ValueError:
        return None
    return None if at is None else steady_of(at, arrived_at, received_at)


def _in_order(
    parts: Sequence[Part[_PartInfo]], repeats: Sequence[Part[_PartInfo]]
) -> list[Part[_PartInfo]]:
    """Parts in part order, each repeat right after its original."""
    out: list[Part[_PartInfo]] = []
    for p in parts:
        out.append(p)
        out.extend(r for r in repeats if r.seq == p.seq)
    return out


def _extra(parts: Sequence[Part[_PartInfo]], repeats: Sequence[Part[_PartInfo]]) -> dict[str, str]:
    """Per-part data OutboundMessage has no field for yet (raw SMPP times, receipts)."""
    first = parts[0].meta.pdu
    extra: dict[str, str] = {}
    if first.schedule_delivery_time:
        extra["schedule_delivery_time"] = first.schedule_delivery_time
    if first.validity_period:
        extra["validity_period"] = first.validity_period
    if len(parts) > 1 or repeats:
        extra["part_registered_delivery"] = ",".join(
            str(p.meta.pdu.registered_delivery) for p in _in_order(parts, repeats))
    return extra


