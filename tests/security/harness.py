"""Invariants shared by the hypothesis fuzz tests (``test_fuzz.py``) and the deep fuzzer
(``fuzz/fuzz_codec.py``), so that both hunt for exactly the same bugs.

Every checker takes untrusted bytes (or PDUs built from them) and fails with an
``AssertionError`` or an unexpected exception when an invariant breaks:

* **codec** (:func:`check_codec`): any byte stream, in any chunking, cuts into the same
  frames; each frame decodes or raises :class:`RemoteProtocolError` that carries a
  non-zero status and the header's command_id and sequence_number; a decoded PDU encodes
  back to the very same bytes (header-only for a failed response), or is refused with
  :class:`LocalProtocolError` only because a C-octet string held a non-ASCII octet.
* **session** (:class:`SessionDriver`): the session never raises; what it writes is a
  clean stream of well-formed PDUs with known statuses; every request it consumed gets
  exactly one answer; its window is never exceeded; it is CLOSED only for a reason that
  the input explains (a framing error, the peer's unbind, an expired timer).
* **content stage** (:func:`check_content`): ``read_segment`` returns or raises
  :class:`ContentError` with a status; ``ContentHandler.submit`` never raises and every
  refusal carries a non-zero status.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, TypeVar

from smppbridge.core.accounts import Account
from smppbridge.core.session import BindType, SessionContext
from smppbridge.ingest.submit import ContentHandler
from smppbridge.server.connection import _data_sm_as_submit, _multi_as_submit
from smppbridge.smpp import pdu as P
from smppbridge.smpp.codec import DEFAULT_MAX_COMMAND_LENGTH, FrameReader, decode, encode
from smppbridge.smpp.constants import HEADER_LENGTH, CommandId, CommandStatus, EsmClass
from smppbridge.smpp.errors import InvalidCommandLength, LocalProtocolError, RemoteProtocolError
from smppbridge.smpp.session import NEED_DATA, SessionConfig, SmscSession, State
from smppbridge.testing import MemorySink
from smppbridge.text.concat import read_segment
from smppbridge.text.encoding import ContentError

__all__ = [
    "FUZZ_MAX_COMMAND_LENGTH",
    "FramedStream",
    "SessionDriver",
    "as_submits",
    "check_codec",
    "check_content",
    "fuzz_one",
    "run_session",
    "split_frames",
]

#: A small command_length cap for fuzzing, so random lengths land on both sides of it.
FUZZ_MAX_COMMAND_LENGTH = 4096
_HEADER = struct.Struct(">IIII")
_S = CommandStatus
T = TypeVar("T")


# --- codec -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FramedStream:
    """What a FrameReader makes of a byte stream."""

    frames: tuple[bytes, ...]
    #: the framing error that ended the stream, if any
    fatal: InvalidCommandLength | None
    #: octets left over: the start of a frame that never completed
    leftover: int


def split_frames(data: bytes, cap: int = FUZZ_MAX_COMMAND_LENGTH,
                 chunks: Iterable[int] = ()) -> FramedStream:
    """Frame ``data`` fed in pieces of the sizes in ``chunks`` (cycled; whole if empty)."""
    reader = FrameReader(cap)
    frames: list[bytes] = []
    sizes = itertools.cycle(list(chunks) or [max(len(data), 1)])
    pos = 0
    while pos < len(data):
        step = max(1, next(sizes))
        reader.feed(data[pos:pos + step])
        pos += step
        try:
            while (frame := reader.next_frame()) is not None:
                frames.append(frame)
        except InvalidCommandLength as exc:
            return FramedStream(tuple(frames), exc, reader.buffered)
    return FramedStream(tuple(frames), None, reader.buffered)


def _strings(obj: Any) -> Iterator[str]:
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, str):
            yield value
        elif isinstance(value, tuple):
            for item in value:
                if is_dataclass(item):
                    yield from _strings(item)


def _check_error(exc: RemoteProtocolError, frame: bytes) -> None:
    _, command_id, _, seq = _HEADER.unpack_from(frame)
    assert isinstance(exc.status, CommandStatus), exc.status
    assert exc.status != _S.ESME_ROK, exc
    assert not exc.fatal, f"decode() of a whole frame called framing lost: {exc}"
    assert (exc.command_id, exc.sequence_number) == (command_id, seq), exc


def _check_reencode(pdu: P.Pdu, frame: bytes) -> None:
    try:
        wire = encode(pdu)
    except LocalProtocolError:
        # C-octet strings decode as Latin-1, so a non-ASCII octet is kept, and our
        # encoder refuses to write it back (SMPP 3.4 §3.1: they are ASCII).
        assert any(not s.isascii() for s in _strings(pdu)), pdu
        return
    if pdu.is_response and pdu.command_status:
        header = _HEADER.pack(HEADER_LENGTH, pdu.command_id, pdu.command_status,
                              pdu.sequence_number)
        assert wire == header, (pdu, frame.hex())
    else:
        assert wire == frame, (pdu, frame.hex(), wire.hex())


def check_codec(data: bytes, *, cap: int = FUZZ_MAX_COMMAND_LENGTH,
                chunks: Sequence[int] = ()) -> list[P.Pdu]:
    """Run every codec invariant over ``data``; returns the PDUs that decoded."""
    whole = split_frames(data, cap)
    if chunks:
        pieces = split_frames(data, cap, chunks)
        assert pieces.frames == whole.frames
        assert (pieces.fatal is None) == (whole.fatal is None)
        assert pieces.leftover == whole.leftover or pieces.fatal is not None
    if whole.fatal is not None:
        assert whole.fatal.fatal
        assert whole.fatal.status == _S.ESME_RINVCMDLEN
    pdus = []
    for frame in whole.frames:
        assert HEADER_LENGTH <= len(frame) <= cap
        try:
            pdu = decode(frame)
        except RemoteProtocolError as exc:
            _check_error(exc, frame)
            continue
        _check_reencode(pdu, frame)
        pdus.append(pdu)
    return pdus


# --- session -----------------------------------------------------------------------------


def _needs_answer(frame: bytes) -> bool:
    """Does the SMSC owe an answer to this frame (whatever its session state)?"""
    command_id = _HEADER.unpack_from(frame)[1]
    try:
        pdu = decode(frame)
    except RemoteProtocolError:
        # A malformed response is dropped; everything else gets its response/nack.
        cls = P.PDU_CLASSES.get(command_id)
        return not (cls is not None and cls.command_id.is_response)
    return not pdu.is_response and pdu.command_id is not CommandId.ALERT_NOTIFICATION


def _answer(pdu: P.Pdu, ok: bool) -> P.Pdu:
    """What a plausible application answers to a request the session handed over."""
    resp_cls = P.RESPONSE_CLASS[type(pdu)]
    seq = pdu.sequence_number
    if isinstance(pdu, P.BindTransmitter | P.BindReceiver | P.BindTransceiver):
        if not ok:
            return resp_cls(sequence_number=seq, command_status=_S.ESME_RINVPASWD)
        return resp_cls(sequence_number=seq, system_id="smppbridge")  # type: ignore[call-arg]
    if isinstance(pdu, P.SubmitSm | P.DataSm | P.SubmitMulti):
        if not ok:
            return resp_cls(sequence_number=seq, command_status=_S.ESME_RTHROTTLED)
        return resp_cls(sequence_number=seq, message_id="1")  # type: ignore[call-arg]
    if isinstance(pdu, P.QuerySm):
        return P.QuerySmResp(sequence_number=seq, command_status=_S.ESME_RQUERYFAIL)
    if isinstance(pdu, P.CancelSm):
        return P.CancelSmResp(sequence_number=seq, command_status=_S.ESME_RCANCELFAIL)
    return resp_cls(sequence_number=seq, command_status=_S.ESME_RREPLACEFAIL)


#: Reasons a session may close, and whether they need the clock to have moved.
_CLOSE_REASONS = {"invalid command_length": False, "unbound by peer": False,
                  "unbind completed": False, "no bind within": True,
                  "no enquire_link_resp": True, "no unbind_resp": True}


@dataclass
class SessionDriver:
    """An SmscSession with a scripted application around it, checking as it goes.

    ``feed`` passes bytes, ``answer`` answers the oldest requests the session handed
    over (as the server would, later), ``tick`` moves the clock and runs the timers,
    and ``finish`` answers the rest and checks the whole conversation.
    """

    window: int = 4
    cap: int = FUZZ_MAX_COMMAND_LENGTH
    timers: bool = False
    now: float = 0.0
    session: SmscSession = field(init=False)
    consumed: int = 0  # frames the session took in (observer "in" calls)
    written: int = 0  # PDUs the session wrote (observer "out" calls)
    held: list[P.Pdu] = field(default_factory=list)
    wire_in: bytearray = field(default_factory=bytearray)
    wire_out: bytearray = field(default_factory=bytearray)
    ticked: bool = False

    def __post_init__(self) -> None:
        timer = 10.0 if self.timers else 0.0
        config = SessionConfig(window=self.window, session_init_timeout=timer,
                               enquire_link_interval=timer, inactivity_timeout=3 * timer,
                               response_timeout=timer or 1.0, max_command_length=self.cap)
        self.session = SmscSession(config, self.now)
        self.session.observer = self._observe

    def _observe(self, direction: str, _command_id: int, _status: int) -> None:
        if direction == "in":
            self.consumed += 1
        else:
            self.written += 1

    def feed(self, chunk: bytes) -> None:
        self.wire_in += chunk
        self.session.receive_data(chunk, self.now)
        self._pump()

    def tick(self, seconds: float) -> None:
        self.now += seconds
        self.ticked = True
        self.session.handle_timer(self.now)
        self._pump()

    def answer(self, n: int, *, ok: bool = True) -> None:
        for pdu in self.held[:n]:
            if self.session.closed:
                break  # the server answers nothing on a closed session
            self.session.send(_answer(pdu, ok), self.now)
        del self.held[:n]
        self._pump()

    def _pump(self) -> None:
        session = self.session
        while (event := session.next_event()) is not NEED_DATA:
            if isinstance(event, P.Pdu) and not event.is_response \
                    and not isinstance(event, P.Unbind):
                self.held.append(event)
        self.wire_out += session.data_to_send()
        assert 0 <= session.pending_requests <= session.config.window, \
            (session.pending_requests, session.config.window)
        assert session.awaiting_responses >= 0
        assert session.closed == (session.state is State.CLOSED)

    def finish(self) -> None:
        """Answer everything still held, then check the conversation as a whole."""
        self.answer(len(self.held))
        session = self.session
        out = split_frames(bytes(self.wire_out), DEFAULT_MAX_COMMAND_LENGTH)
        assert out.fatal is None, "we wrote a broken stream"
        assert out.leftover == 0, "we wrote half a PDU"
        written = [decode(frame) for frame in out.frames]  # must not raise
        assert len(written) == self.written
        for pdu in written:
            CommandStatus(pdu.command_status)  # a status we know, never garbage
        stream = split_frames(bytes(self.wire_in), self.cap)
        consumed = stream.frames[:self.consumed]
        framing_lost = session.close_reason.startswith("invalid command_length")
        if framing_lost:
            assert stream.fatal is not None
            assert self.consumed == len(stream.frames)
        if not session.closed:
            assert stream.fatal is None
            assert self.consumed == len(stream.frames)
            assert session.pending_requests == 0
        else:
            reason = next((r for r in _CLOSE_REASONS if session.close_reason.startswith(r)),
                          None)
            assert reason is not None, session.close_reason
            assert self.ticked or not _CLOSE_REASONS[reason], session.close_reason
        # Every request consumed is answered exactly once, except those the application
        # still held when the session closed (the server drops them with the socket).
        owed = sum(_needs_answer(f) for f in consumed) + framing_lost
        answered = sum(p.is_response for p in written)
        assert answered + session.pending_requests == owed, (answered, owed)
        seqs = {_HEADER.unpack_from(f)[3] for f in consumed}
        if stream.fatal is not None:
            # The framing error is raised as soon as command_length is readable; the
            # rest of the header may not have arrived yet, hence sequence_number 0.
            seqs.update((stream.fatal.sequence_number, 0))
        for pdu in written:
            if pdu.is_response:
                assert pdu.sequence_number in seqs, pdu


def run_session(stream: bytes, *, window: int = 4, chunk: int = 0, answer_every: int = 0,
                ok: bool = True, tick: float = 0.0) -> SessionDriver:
    """Feed ``stream`` in ``chunk``-octet pieces (0: whole), answering the held requests
    after every ``answer_every`` pieces (0: only at the end) and moving the clock by
    ``tick`` seconds per piece; checks everything."""
    driver = SessionDriver(window=window, timers=tick > 0)
    step = chunk or max(len(stream), 1)
    for i, pos in enumerate(range(0, len(stream), step)):
        driver.feed(stream[pos:pos + step])
        if answer_every and i % answer_every == 0:
            driver.answer(len(driver.held), ok=ok)
        if tick:
            driver.tick(tick)
    driver.finish()
    return driver


# --- content stage -----------------------------------------------------------------------

_ACCOUNT = Account(system_id="fuzz", password="pw")
_CTX = SessionContext(session_id=1, account=_ACCOUNT, bind_type=BindType.TRANSMITTER,
                      system_type="", interface_version=0x34, peer="127.0.0.1:1")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (the in-memory sink and flood state don't)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coro.close()
    raise AssertionError("the content stage suspended on an in-memory sink")


def as_submits(pdus: Iterable[P.Pdu]) -> list[P.SubmitSm]:
    """The submit_sm the server hands the content stage for each message request."""
    out: list[P.SubmitSm] = []
    for pdu in pdus:
        if isinstance(pdu, P.SubmitSm):
            out.append(pdu)
        elif isinstance(pdu, P.DataSm):
            out.append(_data_sm_as_submit(pdu))
        elif isinstance(pdu, P.SubmitMulti):
            out.extend(_multi_as_submit(pdu, d) for d in pdu.dest_addresses
                       if d.dest_flag == 1)
    return out


def _check_status(status: int) -> None:
    assert status != _S.ESME_ROK
    CommandStatus(status)  # a status docs/smpp.md documents


def check_content(submits: Sequence[P.SubmitSm], *, udhi: bool = True) -> MemorySink:
    """Feed ``submits`` (parts of long messages, often) through a ContentHandler with a
    MemorySink; ``udhi`` also reads each with esm_class UDHI forced on."""
    now = 1_000_000.0
    ids = itertools.count(1)
    sink = MemorySink()
    handler = ContentHandler(sink, new_id=lambda _ctx: f"m{next(ids)}", clock=lambda: now)
    for pdu in submits:
        esm_classes = {pdu.esm_class, pdu.esm_class | EsmClass.UDHI} if udhi \
            else {pdu.esm_class}
        for esm_class in esm_classes:
            try:
                read_segment(esm_class, pdu.short_message, pdu.tlv)
            except ContentError as exc:
                _check_status(exc.status)
        result = _run(handler.submit(_CTX, pdu))
        if result.ok:
            assert result.message_id
        else:
            _check_status(result.status)
    _run(handler.expire(now + 3600))
    assert handler.reassembler.pending_parts == 0
    for failure in sink.failures:
        _check_status(failure.status)
    return sink


# --- one fuzzer input --------------------------------------------------------------------


def fuzz_one(data: bytes) -> None:
    """One input of the deep fuzzer: ``[mode][4 parameter octets][byte stream]``.

    ``mode % 3`` picks the target: 0 codec (chunks of ``p0 + 1`` octets too); 1 session
    (window ``1 + p0 % 8``, chunks of ``p1 + 1`` octets, answers every ``p2 % 4`` chunks
    (0: at the end), refusals when ``p3 & 1``, the clock moving 7 s per chunk when
    ``p3 & 2``); 2 content stage (every message request that decodes).
    """
    if len(data) < 5:
        return
    mode, params, stream = data[0] % 3, data[1:5], data[5:]
    if mode == 0:
        check_codec(stream, chunks=(params[0] + 1,))
    elif mode == 1:
        run_session(stream, window=1 + params[0] % 8, chunk=params[1] + 1,
                    answer_every=params[2] % 4, ok=not params[3] & 1,
                    tick=7.0 if params[3] & 2 else 0.0)
    else:
        check_content(as_submits(check_codec(stream)))
