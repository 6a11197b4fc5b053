"""An SMPP load generator (ESME side) on raw asyncio.

Size: over 500 lines because the generator's hot loop, its pacing and its receipt
accounting share per-connection state that a split would pass around on every PDU.

Theory of operation
-------------------
Each of ``sessions`` connections binds (transceiver by default) and keeps up to
``window`` submit_sm outstanding: every submit_sm_resp frees a slot that is refilled in
the same turn of the event loop, and everything one ``data_received`` produces
(refills, deliver_sm_resp, enquire_link_resp) leaves in one ``transport.write``.
Messages come from a shared budget: ``messages`` in total, or as many as fit in
``duration`` seconds, optionally paced at ``rate`` submit_sm per second (a 1 ms
ticker adds credit). Every message gets its own destination (``79<session><index>``)
and text (``load <session> <index>``) because identical ones are rightly refused by
flood rules.

Latency is "submit written → submit_sm_resp read": the time is taken once per batch
just before the write and once per read, and the difference goes into a bounded
:class:`~smppbridge.bench.latency.LatencyHistogram`. Every deliver_sm is answered;
those with esm_class bit 0x04 count as receipts.

Every phase is bounded: binds by ``connect_timeout``, issuing by ``duration`` (or
``max_seconds``), acks by ``ack_timeout`` after that, receipts by ``receipt_timeout``,
unbind by ``unbind_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal, cast

from smppbridge.bench.latency import LatencyHistogram, LatencySummary
from smppbridge.bench.wire import (
    HEADER,
    RECEIPT_ESM,
    UCS2_CHARS_PER_PART,
    SubmitTemplate,
    esm_class_of_deliver,
    response_header,
    ucs2_parts,
)
from smppbridge.smpp import pdu as P
from smppbridge.smpp.codec import FrameReader, decode, encode
from smppbridge.smpp.constants import (
    MAX_SEQUENCE,
    RECEIPT_MASK,
    CommandId,
    CommandStatus,
    DataCoding,
    EsmClass,
    RegisteredDelivery,
)
from smppbridge.smpp.errors import RemoteProtocolError

__all__ = ["LoadConfig", "LoadError", "LoadGenerator", "LoadResult", "run_load"]

BindKind = Literal["transceiver", "transmitter"]

_C = CommandId
_SUBMIT_SM_RESP = int(_C.SUBMIT_SM_RESP)
_DELIVER_SM = int(_C.DELIVER_SM)
_ENQUIRE_LINK = int(_C.ENQUIRE_LINK)
_GENERIC_NACK = int(_C.GENERIC_NACK)
_UNBIND = int(_C.UNBIND)
_UNBIND_RESP = int(_C.UNBIND_RESP)
_DATA_SM = int(_C.DATA_SM)
_BIND_RESPS = frozenset({int(_C.BIND_TRANSCEIVER_RESP), int(_C.BIND_TRANSMITTER_RESP)})
_BIND_PDU: dict[str, type[P.BindTransceiver | P.BindTransmitter]] = {
    "transceiver": P.BindTransceiver, "transmitter": P.BindTransmitter}
#: deliver_sm_resp carries an empty message_id: one NUL octet (SMPP 3.4 §4.6.2).
_EMPTY_MESSAGE_ID = b"\0"
#: Filler for multi-part UCS2 texts (Cyrillic, so the text really needs UCS2).
_UCS2_FILLER = "Проверка нагрузки длинным сообщением в кодировке UCS2. " * 8
#: Pacing tick for ``rate``: small enough that 5,000/s leaves in batches of ~5.
_PACER_TICK = 0.001
#: Characters in the last part of a multi-part text.
_LAST_PART_CHARS = 40
#: Spreads the concatenation references of different sessions apart (a prime).
_REF_STRIDE = 7919
_TEXT_CODINGS = {int(DataCoding.DEFAULT), int(DataCoding.IA5), int(DataCoding.LATIN1)}


class LoadError(Exception):
    """The load could not start (connect or bind failed)."""


@dataclass(frozen=True, slots=True)
class LoadConfig:
    """What to send and how hard. Times are seconds."""

    host: str = "127.0.0.1"
    port: int = 2775
    system_id: str = "bench"
    password: str = "bench"  # noqa: S105 - the bench account of a throwaway test server
    bind: BindKind = "transceiver"
    #: sessions that carry load
    sessions: int = 1
    #: extra bound sessions that only stay open (and answer deliver_sm)
    idle_sessions: int = 0
    #: submit_sm outstanding per loaded session
    window: int = 10
    #: messages in total (a multi-part message counts once); None: until ``duration``
    messages: int | None = 1000
    #: stop issuing after this long; None: until ``messages`` are sent
    duration: float | None = None
    #: steady submit_sm per second over all sessions; None: as fast as windows allow
    rate: float | None = None
    registered_delivery: int = RegisteredDelivery.FINAL
    #: index of each session's first message: runs against the same server with
    #: different offsets send different messages (the flood rules refuse repeats)
    first_message: int = 0
    data_coding: int = DataCoding.DEFAULT
    #: > 1: UCS2 texts of this many parts behind a 16-bit-reference UDH (esm_class 0x40)
    parts: int = 1
    source_addr: str = "bench"
    connect_timeout: float = 10.0
    #: binds in flight at once while opening many sessions
    bind_concurrency: int = 100
    #: hard cap on issuing when only ``messages`` is given
    max_seconds: float = 300.0
    ack_timeout: float = 10.0
    #: after the acks, wait up to this long for a receipt per acked submit (0: no wait)
    receipt_timeout: float = 0.0
    unbind_timeout: float = 5.0

    def validate(self) -> None:
        if self.sessions < 1 or self.idle_sessions < 0:
            raise ValueError("sessions must be >= 1 and idle_sessions >= 0")
        if self.parts < 1 or self.window < self.parts:
            raise ValueError(f"window {self.window} must hold one message of {self.parts} "
                             "parts")
        if self.messages is None and self.duration is None:
            raise ValueError("give messages, duration or both")
        if self.rate is not None and self.rate <= 0:
            raise ValueError("rate must be positive")

    @property
    def wants_receipts(self) -> bool:
        return self.registered_delivery & RECEIPT_MASK == RegisteredDelivery.FINAL


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What one run measured. Rates are per second of the load phase."""

    sessions: int
    idle_sessions: int
    window: int
    parts: int
    rate_target: float | None
    #: submit_sm PDUs written / answered ESME_ROK / answered otherwise / never answered
    submitted: int
    acked: int
    errors: dict[str, int]
    unacked: int
    receipts: int
    expected_receipts: int
    other_deliver_sm: int
    bind_seconds: float
    #: first submit written → last submit_sm_resp read
    elapsed: float
    #: first submit written → first / last receipt read (0 when none)
    first_receipt_after: float
    last_receipt_after: float
    latency: LatencySummary
    sessions_lost: int
    loop: str = field(default="")

    @property
    def submits_per_second(self) -> float:
        return self.acked / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def messages_per_second(self) -> float:
        return self.submits_per_second / self.parts

    @property
    def receipts_per_second(self) -> float:
        """Receipts over first submit → last receipt (the whole path, end to end)."""
        span = self.last_receipt_after
        return self.receipts / span if span > 0 else 0.0

    @property
    def receipt_flow_per_second(self) -> float:
        """Receipts over first receipt → last receipt (the receipt stream alone)."""
        span = self.last_receipt_after - self.first_receipt_after
        return (self.receipts - 1) / span if span > 0 and self.receipts > 1 else 0.0


def _status_name(status: int) -> str:
    try:
        return CommandStatus(status).name
    except ValueError:
        return f"0x{status:08X}"


class _Run:
    """State shared by the sessions of one run (one event loop, so no locks)."""

    def __init__(self, config: LoadConfig) -> None:
        self.config = config
        self.hist = LatencyHistogram()
        self.errors: Counter[str] = Counter()
        self.remaining = config.messages
        self.credit = 0.0
        self.started = False
        self.issuing = False
        self.acks_complete = False
        self.submitted = 0
        self.responses = 0
        self.acked = 0
        self.outstanding = 0
        self.receipts = 0
        self.other_delivers = 0
        self.first_submit = 0.0
        self.last_ack = 0.0
        self.first_receipt = 0.0
        self.last_receipt = 0.0
        self.loaded_open = 0
        self.lost = 0
        self.acks_done = asyncio.Event()
        self.receipts_done = asyncio.Event()

    def take(self, want: int) -> int:
        """Up to ``want`` messages the budget allows now."""
        if not self.issuing:
            return 0
        n = want
        if self.config.rate is not None:
            n = min(n, int(self.credit))
        if self.remaining is not None:
            n = min(n, self.remaining)
            self.remaining -= n
            if self.remaining == 0:
                self.issuing = False
        if self.config.rate is not None:
            self.credit -= n
        return n

    def stop_issuing(self) -> None:
        self.issuing = False
        self.check()

    def check(self) -> None:
        if not self.started:
            return  # binding: nothing has been issued yet
        if not self.issuing and (self.outstanding == 0 or self.loaded_open == 0):
            self.acks_complete = True
            self.acks_done.set()
        if self.acks_complete and (self.receipts >= self.acked or self.loaded_open == 0):
            self.receipts_done.set()


class _Session(asyncio.Protocol):
    """One ESME connection; the hot path is :meth:`data_received` and :meth:`_fill`."""

    def __init__(self, run: _Run, index: int, *, loaded: bool,
                 template: SubmitTemplate) -> None:
        self.run = run
        self.index = index
        self.loaded = loaded
        self.template = template
        self.window = run.config.window
        self.parts = run.config.parts
        self.reader = FrameReader()
        self.transport: asyncio.Transport | None = None
        self.seq = 1  # the bind's; submits start at 2
        self.sent_at: dict[int, float] = {}
        self.outstanding = 0
        self.next_message = run.config.first_message
        self.paused = False
        loop = asyncio.get_running_loop()
        self.bind_status: asyncio.Future[int] = loop.create_future()
        self.unbound: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self._make = self._single_part if run.config.parts == 1 else self._multi_part
        # Multi-part texts fill every part but the last, which gets a short tail.
        self._text_chars = (run.config.parts - 1) * UCS2_CHARS_PER_PART + _LAST_PART_CHARS

    # --- asyncio callbacks -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; same interface.
        self.transport = cast("asyncio.Transport", transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        run = self.run
        if not self.bind_status.done():
            self.bind_status.set_exception(LoadError(f"connection lost before bind: {exc}"))
        if not self.unbound.done():
            self.unbound.set_result(None)
        if not self.closed.done():
            self.closed.set_result(None)
            if self.loaded and self.bind_status.done() and not self.bind_status.exception():
                # Its unanswered submits will never be answered: stop waiting for them
                # (they still count as unacked: submitted - responses).
                run.outstanding -= self.outstanding
                self.outstanding = 0
                run.loaded_open -= 1
                if not run.acks_complete:
                    run.lost += 1
                run.check()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.kick()

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        run = self.run
        reader = self.reader
        out: list[bytes] = []
        reader.feed(data)
        acks = 0
        while True:
            try:
                frame = reader.next_frame()
            except RemoteProtocolError as exc:
                run.errors[f"framing: {exc}"] += 1
                if self.transport is not None:
                    self.transport.abort()
                return
            if frame is None:
                break
            _, cid, status, seq = HEADER.unpack_from(frame)
            if cid == _SUBMIT_SM_RESP or (cid == _GENERIC_NACK and seq in self.sent_at):
                sent = self.sent_at.pop(seq, None)
                if sent is None:
                    run.errors["stray submit_sm_resp"] += 1
                    continue
                run.hist.record(now - sent)
                acks += 1
                if status:
                    prefix = "generic_nack " if cid == _GENERIC_NACK else ""
                    run.errors[prefix + _status_name(status)] += 1
                else:
                    run.acked += 1
            elif cid == _DELIVER_SM:
                out.append(response_header(_C.DELIVER_SM_RESP, 0, seq, 1) + _EMPTY_MESSAGE_ID)
                try:
                    esm = esm_class_of_deliver(frame)
                except (ValueError, IndexError):
                    esm = 0
                if esm & RECEIPT_ESM:
                    run.receipts += 1
                    if not run.first_receipt:
                        run.first_receipt = now
                    run.last_receipt = now
                else:
                    run.other_delivers += 1
            else:
                self._other(frame, cid, status, seq, out)
        if acks:
            self.outstanding -= acks
            run.outstanding -= acks
            run.responses += acks
            run.last_ack = now
        if run.issuing and self.loaded and not self.paused:
            self._fill(out)
        if out and self.transport is not None:
            self.transport.write(b"".join(out))
        run.check()

    def _other(self, frame: bytes, cid: int, status: int, seq: int, out: list[bytes]) -> None:
        if cid in _BIND_RESPS:
            if not self.bind_status.done():
                self.bind_status.set_result(status)
        elif cid == _ENQUIRE_LINK:
            out.append(response_header(_C.ENQUIRE_LINK_RESP, 0, seq))
        elif cid == _UNBIND:
            out.append(response_header(_C.UNBIND_RESP, 0, seq))
            if self.transport is not None:
                self.transport.write(b"".join(out))
                out.clear()
                self.transport.close()
        elif cid == _UNBIND_RESP:
            if not self.unbound.done():
                self.unbound.set_result(None)
        elif cid == _DATA_SM:
            out.append(encode(P.DataSmResp(sequence_number=seq)))
        elif cid == _GENERIC_NACK:
            self.run.errors[f"generic_nack {_status_name(status)}"] += 1
        elif not cid & 0x80000000:  # a request we do not serve
            out.append(response_header(_C.GENERIC_NACK, CommandStatus.ESME_RINVCMDID, seq))
        else:
            with contextlib.suppress(RemoteProtocolError):
                decode(frame)  # an unexpected response: decoded only to vet it

    # --- sending ---------------------------------------------------------------------

    def kick(self) -> None:
        """Send what the window and budget allow now (pacer ticks, resume_writing)."""
        if self.transport is None or self.paused or not self.run.issuing:
            return
        out: list[bytes] = []
        self._fill(out)
        if out:
            self.transport.write(b"".join(out))

    def _fill(self, out: list[bytes]) -> None:
        room = (self.window - self.outstanding) // self.parts
        if room <= 0:
            return
        run = self.run
        n = run.take(room)
        if not n:
            return
        count = n * self.parts
        if self.seq + count >= MAX_SEQUENCE:
            self.seq = 1  # §5.1.2.4: sequence numbers stay within 1..0x7FFFFFFF
        first = seq = self.seq + 1
        make = self._make
        for _ in range(n):
            seq = make(out, seq)
        self.seq = seq - 1
        now = time.perf_counter()
        self.sent_at.update(dict.fromkeys(range(first, first + count), now))
        self.outstanding += count
        run.outstanding += count
        run.submitted += count
        if not run.first_submit:
            run.first_submit = now

    def _single_part(self, out: list[bytes], seq: int) -> int:
        i = self.next_message
        self.next_message = i + 1
        text = b"load %d %d" % (self.index, i)
        if self.run.config.data_coding not in _TEXT_CODINGS:
            text = text.decode().encode("utf-16-be")
        out.append(self.template.build(seq, b"79%02d%07d" % (self.index, i), text))
        return seq + 1

    def _multi_part(self, out: list[bytes], seq: int) -> int:
        i = self.next_message
        self.next_message = i + 1
        text = f"Нагрузка {self.index} {i}. {_UCS2_FILLER}"
        dest = b"79%02d%07d" % (self.index, i)
        # A distinct 16-bit reference per message of this session (wraps after 65,536).
        ref = (self.index * _REF_STRIDE + i) & 0xFFFF
        for part in ucs2_parts(text[:self._text_chars], ref):
            out.append(self.template.build(seq, dest, part))
            seq += 1
        return seq


class LoadGenerator:
    """Open sessions, run the load, close. :func:`run_load` does all three."""

    def __init__(self, config: LoadConfig) -> None:
        config.validate()
        self.config = config
        self._run: _Run | None = None
        self.sessions: list[_Session] = []
        self.bind_seconds = 0.0

    def _template(self) -> SubmitTemplate:
        cfg = self.config
        if cfg.parts > 1:
            return SubmitTemplate(source_addr=cfg.source_addr, esm_class=EsmClass.UDHI,
                                  registered_delivery=cfg.registered_delivery,
                                  data_coding=DataCoding.UCS2)
        return SubmitTemplate(source_addr=cfg.source_addr,
                              registered_delivery=cfg.registered_delivery,
                              data_coding=cfg.data_coding)

    async def open(self) -> None:
        """Connect and bind every session; raises LoadError if any fails."""
        cfg = self.config
        run = self._run = _Run(cfg)
        template = self._template()
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(cfg.bind_concurrency)
        bind_pdu = _BIND_PDU[cfg.bind]
        started = time.perf_counter()

        async def one(index: int) -> _Session:
            loaded = index < cfg.sessions
            async with gate:
                try:
                    async with asyncio.timeout(cfg.connect_timeout):
                        _, session = await loop.create_connection(
                            lambda: _Session(run, index, loaded=loaded, template=template),
                            cfg.host, cfg.port)
                        assert session.transport is not None
                        session.transport.write(encode(bind_pdu(
                            sequence_number=1, system_id=cfg.system_id,
                            password=cfg.password)))
                        status = await session.bind_status
                except (OSError, TimeoutError) as exc:
                    raise LoadError(f"session {index}: connect/bind to {cfg.host}:{cfg.port} "
                                    f"failed: {exc!r}") from exc
            if status:
                if session.transport is not None:
                    session.transport.close()
                raise LoadError(f"session {index}: bind refused with {_status_name(status)}")
            if loaded:
                run.loaded_open += 1
            return session

        tasks = [asyncio.create_task(one(i)) for i in range(cfg.sessions + cfg.idle_sessions)]
        try:
            self.sessions = list(await asyncio.gather(*tasks))
        except BaseException:
            for t in tasks:
                t.cancel()
            for t in tasks:
                if t.done() and not t.cancelled() and t.exception() is None:
                    s = t.result()
                    if s.transport is not None:
                        s.transport.close()
            raise
        self.bind_seconds = time.perf_counter() - started

    async def run(self) -> LoadResult:
        """Issue the load; wait (bounded) for the acks and, if asked, the receipts."""
        cfg = self.config
        run = self._run
        if run is None:
            raise LoadError("open() first")
        loop = asyncio.get_running_loop()
        loaded = [s for s in self.sessions if s.loaded]
        limit = cfg.duration if cfg.duration is not None else cfg.max_seconds
        run.started = run.issuing = True
        stopper = loop.call_later(limit, run.stop_issuing)
        pacer: asyncio.Handle | None = None
        if cfg.rate is not None:
            last = loop.time()
            # Credit is capped at what the windows hold, so a stall does not turn
            # into a burst above the target rate afterwards.
            cap = float(cfg.window * cfg.sessions)
            rate = cfg.rate
            turn = 0

            def tick() -> None:
                nonlocal last, pacer, turn
                now = loop.time()
                run.credit = min(cap, run.credit + rate * (now - last))
                last = now
                turn = (turn + 1) % len(loaded)
                for s in loaded[turn:] + loaded[:turn]:
                    s.kick()
                if run.issuing:
                    pacer = loop.call_later(_PACER_TICK, tick)

            pacer = loop.call_soon(tick)
        else:
            for s in loaded:
                s.kick()
        run.check()
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(limit + cfg.ack_timeout):
                    await run.acks_done.wait()
            run.issuing = False
            run.acks_complete = True
            run.check()
            if cfg.receipt_timeout > 0 and cfg.wants_receipts:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(cfg.receipt_timeout):
                        await run.receipts_done.wait()
        finally:
            stopper.cancel()
            if pacer is not None:
                pacer.cancel()
        return self._result(run, loop)

    def _result(self, run: _Run, loop: asyncio.AbstractEventLoop) -> LoadResult:
        cfg = self.config
        start = run.first_submit
        return LoadResult(
            sessions=cfg.sessions, idle_sessions=cfg.idle_sessions, window=cfg.window,
            parts=cfg.parts, rate_target=cfg.rate, submitted=run.submitted,
            acked=run.acked, errors=dict(run.errors),
            unacked=run.submitted - run.responses, receipts=run.receipts,
            expected_receipts=run.acked if cfg.wants_receipts else 0,
            other_deliver_sm=run.other_delivers, bind_seconds=self.bind_seconds,
            elapsed=max(0.0, run.last_ack - start) if run.responses else 0.0,
            first_receipt_after=run.first_receipt - start if run.receipts else 0.0,
            last_receipt_after=run.last_receipt - start if run.receipts else 0.0,
            latency=run.hist.summary(), sessions_lost=run.lost,
            loop=type(loop).__module__.split(".")[0])

    async def close(self) -> None:
        """Unbind every session (bounded by ``unbind_timeout``), then close them all."""
        open_sessions = [s for s in self.sessions if s.transport is not None]
        for s in open_sessions:
            assert s.transport is not None
            s.seq = s.seq + 1 if s.seq + 1 < MAX_SEQUENCE else 1
            s.transport.write(response_header(_C.UNBIND, 0, s.seq))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.config.unbind_timeout):
                await asyncio.gather(*(s.unbound for s in open_sessions))
        for s in self.sessions:
            if s.transport is not None:
                s.transport.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.config.unbind_timeout):
                await asyncio.gather(*(s.closed for s in self.sessions))


async def run_load(config: LoadConfig) -> LoadResult:
    """Open, run and close one load; see :class:`LoadConfig`."""
    gen = LoadGenerator(config)
    await gen.open()
    try:
        return await gen.run()
    finally:
        await gen.close()
