"""The ESME side of one SMPP 3.4 session, sans-IO: the node bound to an upstream SMSC.

The mirror of :class:`smppbridge.smpp.session.SmscSession` (same shape, same rules:
bytes in with :meth:`EsmeSession.receive_data`, events out with :meth:`next_event`,
bytes to write from :meth:`data_to_send`; time is a parameter, :meth:`get_timer` /
:meth:`handle_timer` drive the timers; the session never reads a clock).

What the session decides alone:

* it answers the SMSC's enquire_link, and its unbind (then closes);
* a deliver_sm that does not decode gets deliver_sm_resp with the status of the
  offending field; an unknown request gets generic_nack ESME_RINVCMDID; a response
  that answers nothing we sent is counted (``stray_responses``) and dropped;
* an impossible command_length closes the session (framing is lost);
* it probes a silent SMSC with enquire_link every ``enquire_link_interval`` and closes
  the session when a probe or the bind is not answered within ``response_timeout``;
* at most ``window`` submit_sm wait for their response (:attr:`can_submit`).

What it hands to the application: :class:`Bound` / :class:`BindRefused` (the answer to
:meth:`bind`), :class:`SubmitAnswered` (a submit_sm_resp, or a generic_nack that names
a submit's sequence_number), :class:`SubmitTimedOut`, :class:`SubmitUnreadable` (an
answer that did not decode), the SMSC's :class:`P.DeliverSm` requests (answer them with
:meth:`answer_deliver`), and :class:`Closed` with the submits still in the window
(:attr:`Closed.unanswered`). After a timeout, an unreadable answer or a close, the
upstream may or may not have taken the message: the application sends it again —
SMPP's one place for a duplicate.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from smppbridge.smpp import pdu as P
from smppbridge.smpp.codec import DEFAULT_MAX_COMMAND_LENGTH, FrameReader, decode, encode
from smppbridge.smpp.constants import MAX_SEQUENCE, CommandId, CommandStatus
from smppbridge.smpp.errors import InvalidCommandLength, LocalProtocolError, RemoteProtocolError

__all__ = ["BindKind", "BindRefused", "Bound", "ClientConfig", "Closed", "EsmeSession",
           "EsmeState", "SubmitAnswered", "SubmitTimedOut", "SubmitUnreadable"]

C = CommandId
_S = CommandStatus


class EsmeState(Enum):
    OPEN = "open"
    BINDING = "binding"
    BOUND = "bound"
    UNBINDING = "unbinding"
    CLOSED = "closed"


class BindKind(Enum):
    TRANSMITTER = "transmitter"
    RECEIVER = "receiver"
    TRANSCEIVER = "transceiver"


_BIND_CLASS: dict[BindKind, type[P.BindTransmitter | P.BindReceiver | P.BindTransceiver]] = {
    BindKind.TRANSMITTER: P.BindTransmitter,
    BindKind.RECEIVER: P.BindReceiver,
    BindKind.TRANSCEIVER: P.BindTransceiver,
}
_BIND_RESPS = frozenset({C.BIND_TRANSMITTER_RESP, C.BIND_RECEIVER_RESP,
                         C.BIND_TRANSCEIVER_RESP})


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Limits and timers of one upstream session (seconds; 0 disables a timer)."""

    #: submit_sm outstanding at once
    window: int = 100
    #: probe a silent SMSC with enquire_link after this long
    enquire_link_interval: float = 30.0
    #: our bind, enquire_link, unbind and submit_sm must be answered within this
    response_timeout: float = 30.0
    max_command_length: int = DEFAULT_MAX_COMMAND_LENGTH


@dataclass(frozen=True, slots=True)
class Bound:
    """The SMSC took our bind (``system_id`` is the one it answered with)."""

    system_id: str


@dataclass(frozen=True, slots=True)
class BindRefused:
    """The SMSC refused our bind with ``status``; the session is closed after this."""

    status: int


@dataclass(frozen=True, slots=True)
class SubmitAnswered:
    """The answer to one of our submit_sm: its status and (ESME_ROK) message_id.
    ``request`` is the submit_sm as sent (its sequence_number set)."""

    request: P.SubmitSm
    status: int
    message_id: str


@dataclass(frozen=True, slots=True)
class SubmitTimedOut:
    """One of our submit_sm got no answer within ``response_timeout`` (its window slot
    is free again; whether the SMSC took it is unknown)."""

    request: P.SubmitSm


@dataclass(frozen=True, slots=True)
class SubmitUnreadable:
    """The answer to one of our submit_sm did not decode (``reason``): whether the SMSC
    took the message is unknown, as after a timeout."""

    request: P.SubmitSm
    reason: str


@dataclass(frozen=True, slots=True)
class Closed:
    """The session is over: why, and the submits it never answered, in send order."""

    reason: str
    unanswered: tuple[P.SubmitSm, ...] = field(default=())


Event = (Bound | BindRefused | SubmitAnswered | SubmitTimedOut | SubmitUnreadable
         | P.DeliverSm | Closed)


class EsmeSession:
    """One connection to an upstream SMSC, seen from the ESME (us)."""

    def __init__(self, config: ClientConfig, now: float) -> None:
        self.config = config
        self.state = EsmeState.OPEN
        self.close_reason = ""
        self._reader = FrameReader(config.max_command_length)
        self._out = bytearray()
        self._events: deque[Event] = deque()
        self._next_seq = 1
        self._last_rx = now
        #: submit_sm waiting for an answer: seq → (pdu, deadline), in send order
        self._submits: OrderedDict[int, tuple[P.SubmitSm, float]] = OrderedDict()
        #: bind / enquire_link / unbind waiting for an answer: seq → (command, deadline)
        self._control: dict[int, tuple[CommandId, float]] = {}
        #: deliver_sm from the SMSC not answered yet: seq → count
        self._deliver_pending: dict[int, int] = {}
        self._probe_seq = 0
        #: responses that answered nothing we sent, and PDUs that did not decode
        self.stray_responses = 0
        self.undecodable = 0
        #: called with ("in" | "out", command_id, command_status) for every PDU
        self.observer: Callable[[str, int, int], None] | None = None

    # --- requests of the application --------------------------------------------

    def bind(self, kind: BindKind, *, system_id: str, password: str, system_type: str = "",
             addr_ton: int = 0, addr_npi: int = 0, address_range: str = "",
             now: float) -> int:
        """Send our bind; :class:`Bound` or :class:`BindRefused` follows."""
        if self.state is not EsmeState.OPEN:
            raise LocalProtocolError(f"cannot bind in state {self.state.name}")
        pdu = _BIND_CLASS[kind](system_id=system_id, password=password,
                                system_type=system_type, addr_ton=addr_ton,
                                addr_npi=addr_npi, address_range=address_range)
        self.state = EsmeState.BINDING
        return self._request_control(pdu, now)

    @property
    def can_submit(self) -> bool:
        return self.state is EsmeState.BOUND and len(self._submits) < self.config.window

    @property
    def window_in_use(self) -> int:
        return len(self._submits)

    def submit(self, pdu: P.SubmitSm, now: float) -> int:
        """Send one submit_sm (its sequence_number is set in place); raises
        LocalProtocolError when not bound or the window is full."""
        if self.state is not EsmeState.BOUND:
            raise LocalProtocolError(f"cannot submit in state {self.state.name}")
        if len(self._submits) >= self.config.window:
            raise LocalProtocolError("window full")
        seq = self._take_seq()
        pdu.sequence_number = seq
        self._submits[seq] = (pdu, now + self.config.response_timeout)
        self._write(pdu)
        return seq

    def answer_deliver(self, deliver: P.DeliverSm, status: int = 0) -> None:
        """Answer a deliver_sm the session handed over."""
        seq = deliver.sequence_number
        left = self._deliver_pending.get(seq, 0)
        if not left:
            raise LocalProtocolError(f"deliver_sm {seq} is not outstanding")
        if left == 1:
            del self._deliver_pending[seq]
        else:
            self._deliver_pending[seq] = left - 1
        if self.state in (EsmeState.BOUND, EsmeState.UNBINDING):
            self._write(P.DeliverSmResp(sequence_number=seq, command_status=status))

    def unbind(self, now: float) -> None:
        """Ask the SMSC to end the session; closes on unbind_resp or its timeout."""
        if self.state is EsmeState.BOUND:
            self.state = EsmeState.UNBINDING
            self._request_control(P.Unbind(), now)
        elif self.state in (EsmeState.OPEN, EsmeState.BINDING):
            self._close("unbound before bind completed")

    def close(self, reason: str = "closed") -> None:
        """The transport went away (or the application gives up on it)."""
        self._close(reason)

    # --- input -------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        if self.state is EsmeState.CLOSED:
            return
        self._reader.feed(data)
        while not self.closed:
            try:
                frame = self._reader.next_frame()
            except InvalidCommandLength as exc:
                self.undecodable += 1
                self._write(P.GenericNack(sequence_number=exc.sequence_number,
                                          command_status=_S.ESME_RINVCMDLEN))
                self._close(f"invalid command_length from the SMSC: {exc}")
                return
            if frame is None:
                return
            self._last_rx = now
            try:
                pdu = decode(frame)
            except RemoteProtocolError as exc:
                self.undecodable += 1
                self._undecodable(exc)
                continue
            self._handle(pdu, now)

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def _handle(self, pdu: P.Pdu, now: float) -> None:
        cid = pdu.command_id
        if self.observer is not None:
            self.observer("in", cid, pdu.command_status)
        if cid.is_response:
            self._response(pdu)
            return
        if cid is C.ENQUIRE_LINK:
            self._write(P.EnquireLinkResp(sequence_number=pdu.sequence_number))
        elif cid is C.UNBIND:
            self._write(P.UnbindResp(sequence_number=pdu.sequence_number))
            self._close("unbound by the SMSC")
        elif isinstance(pdu, P.DeliverSm):
            if self.state not in (EsmeState.BOUND, EsmeState.UNBINDING):
                self._write(P.DeliverSmResp(sequence_number=pdu.sequence_number,
                                            command_status=_S.ESME_RINVBNDSTS))
                return
            seq = pdu.sequence_number
            self._deliver_pending[seq] = self._deliver_pending.get(seq, 0) + 1
            self._events.append(pdu)
        else:
            # data_sm, alert_notification, anything else: not taken on this session.
            resp = P.RESPONSE_CLASS.get(type(pdu))
            if cid is C.ALERT_NOTIFICATION:
                return  # has no response
            if resp is None:
                self._write(P.GenericNack(sequence_number=pdu.sequence_number,
                                          command_status=_S.ESME_RINVCMDID))
            else:
                self._write(resp(sequence_number=pdu.sequence_number,
                                 command_status=_S.ESME_RINVCMDID))

    def _response(self, pdu: P.Pdu) -> None:
        seq = pdu.sequence_number
        cid = pdu.command_id
        submit = self._submits.get(seq)
        if submit is not None and cid in (C.SUBMIT_SM_RESP, C.GENERIC_NACK):
            del self._submits[seq]
            message_id = pdu.message_id if isinstance(pdu, P.SubmitSmResp) else ""
            self._events.append(SubmitAnswered(submit[0], pdu.command_status, message_id))
            return
        control = self._control.get(seq)
        if control is None or (cid is not C.GENERIC_NACK
                               and control[0] | 0x80000000 != cid):
            self.stray_responses += 1
            return
        del self._control[seq]
        command = control[0]
        if command in (C.BIND_TRANSMITTER, C.BIND_RECEIVER, C.BIND_TRANSCEIVER):
            if pdu.command_status == _S.ESME_ROK and cid in _BIND_RESPS:
                self.state = EsmeState.BOUND
                system_id = pdu.system_id if isinstance(pdu, P.BindTransmitterResp
                                                        | P.BindReceiverResp
                                                        | P.BindTransceiverResp) else ""
                self._events.append(Bound(system_id))
            else:
                self._events.append(BindRefused(pdu.command_status or _S.ESME_RBINDFAIL))
                self._close(f"bind refused: 0x{pdu.command_status:08X}")
        elif command is C.ENQUIRE_LINK:
            self._probe_seq = 0
        elif command is C.UNBIND:
            self._close("unbind completed")

    def _undecodable(self, exc: RemoteProtocolError) -> None:
        cls = P.PDU_CLASSES.get(exc.command_id)
        status = exc.status or _S.ESME_RSYSERR
        if cls is None:
            self._write(P.GenericNack(sequence_number=exc.sequence_number,
                                      command_status=_S.ESME_RINVCMDID))
            return
        if cls.command_id.is_response:
            # A garbled answer to one of ours: the submit it names is reported as
            # unreadable (taken or not, nobody knows); anything else is dropped.
            submit = self._submits.pop(exc.sequence_number, None)
            if submit is not None:
                self._events.append(SubmitUnreadable(submit[0], str(exc)))
            else:
                self.stray_responses += 1
            return
        resp = P.RESPONSE_CLASS.get(cls)
        if resp is not None:
            self._write(resp(sequence_number=exc.sequence_number, command_status=status))

    # --- output ------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        if not self._out:
            return b""
        data = bytes(self._out)
        self._out.clear()
        return data

    def _request_control(self, pdu: P.Pdu, now: float) -> int:
        seq = self._take_seq()
        pdu.sequence_number = seq
        self._control[seq] = (pdu.command_id, now + self.config.response_timeout)
        self._write(pdu)
        return seq

    def _write(self, pdu: P.Pdu) -> None:
        if self.observer is not None:
            self.observer("out", pdu.command_id, pdu.command_status)
        self._out += encode(pdu)

    def _take_seq(self) -> int:
        seq = self._next_seq
        self._next_seq = 1 if seq >= MAX_SEQUENCE else seq + 1
        return seq

    # --- timers ------------------------------------------------------------------

    def get_timer(self) -> float | None:
        if self.state is EsmeState.CLOSED:
            return None
        deadlines = [d for _, d in self._control.values()]
        if self._submits:
            deadlines.append(next(iter(self._submits.values()))[1])
        if (self.state is EsmeState.BOUND and self.config.enquire_link_interval
                and not self._probe_seq):
            deadlines.append(self._last_rx + self.config.enquire_link_interval)
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> None:
        if self.state is EsmeState.CLOSED:
            return
        timeout = self.config.response_timeout
        for seq, (command, deadline) in list(self._control.items()):
            if deadline <= now:
                del self._control[seq]
                if command in (C.BIND_TRANSMITTER, C.BIND_RECEIVER, C.BIND_TRANSCEIVER):
                    self._close(f"no bind_resp within {timeout:g}s")
                else:
                    self._close(f"no {command.name.lower()}_resp within {timeout:g}s")
                return
        while self._submits:
            seq, (pdu, deadline) = next(iter(self._submits.items()))
            if deadline > now:
                break
            del self._submits[seq]
            self._events.append(SubmitTimedOut(pdu))
        if (self.state is EsmeState.BOUND and self.config.enquire_link_interval
                and not self._probe_seq
                and now >= self._last_rx + self.config.enquire_link_interval):
            self._probe_seq = self._request_control(P.EnquireLink(), now)

    def _close(self, reason: str) -> None:
        if self.state is EsmeState.CLOSED:
            return
        self.state = EsmeState.CLOSED
        self.close_reason = reason
        unanswered = tuple(pdu for pdu, _ in self._submits.values())
        self._submits.clear()
        self._control.clear()
        self._deliver_pending.clear()
        self._events.append(Closed(reason, unanswered))

    @property
    def closed(self) -> bool:
        return self.state is EsmeState.CLOSED

    @property
    def bound(self) -> bool:
        return self.state is EsmeState.BOUND
