"""The SMSC side of one SMPP 3.4 session, sans-IO.

Size: over 500 lines because the state table, the timers and the window are one state
machine (h11's _connection.py is the model).

Theory of operation
-------------------
Bytes from the ESME go in with :meth:`SmscSession.receive_data`; :meth:`next_event`
then yields what the application must decide on (bind requests, submits, responses to
our own requests, timeouts) until it returns :data:`NEED_DATA`. The application answers
with :meth:`send`, and writes :meth:`data_to_send` to the socket. Everything the
protocol alone can decide is answered here without bothering the application:

* enquire_link is answered in every state (SMPP v5.0 §2.4 operation matrix; 3.4
  clients send it before binding too);
* a request not allowed in the current state gets its response with ESME_RINVBNDSTS,
  a second bind ESME_RALYBND (SMPP 3.4 §2.3, Table 2-1) — looked up in ``_ALLOWED``,
  no special cases;
* an unknown command_id gets generic_nack ESME_RINVCMDID; a malformed body gets the
  command's own response with the status of the offending field; an impossible
  command_length gets generic_nack ESME_RINVCMDLEN and closes the session;
* more outstanding requests than the window allows get ESME_RTHROTTLED.

Time is a parameter (as in aioquic): every call that depends on time takes ``now``;
:meth:`get_timer` says when :meth:`handle_timer` must next be called. The session
never reads a clock.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from smppbridge.smpp import pdu as P
from smppbridge.smpp.codec import DEFAULT_MAX_COMMAND_LENGTH, FrameReader, decode, encode
from smppbridge.smpp.constants import (
    INTERFACE_VERSION_34,
    MAX_SEQUENCE,
    RESPONSE_BIT,
    CommandId,
    CommandStatus,
    Tag,
)
from smppbridge.smpp.errors import (
    InvalidCommandLength,
    LocalProtocolError,
    RemoteProtocolError,
)

__all__ = [
    "NEED_DATA",
    "Closed",
    "NeedData",
    "ResponseTimeout",
    "SessionConfig",
    "SmscSession",
    "State",
]


class State(Enum):
    OPEN = "open"
    BOUND_TX = "bound_tx"
    BOUND_RX = "bound_rx"
    BOUND_TRX = "bound_trx"
    UNBOUND = "unbound"
    CLOSED = "closed"


C = CommandId

_TX = frozenset({C.SUBMIT_SM, C.SUBMIT_MULTI, C.DATA_SM, C.QUERY_SM, C.CANCEL_SM,
                 C.REPLACE_SM})
_RX = frozenset({C.DELIVER_SM_RESP, C.DATA_SM_RESP})
_ALWAYS = frozenset({C.ENQUIRE_LINK, C.ENQUIRE_LINK_RESP, C.GENERIC_NACK})
_BOUND = _ALWAYS | {C.UNBIND, C.UNBIND_RESP}
_BINDS = frozenset({C.BIND_TRANSMITTER, C.BIND_RECEIVER, C.BIND_TRANSCEIVER})

#: What the ESME may send in each state (SMPP 3.4 Table 2-1, ESME → SMSC direction).
#: replace_sm is TX-only in the table; TRX is the union of TX and RX.
_ALLOWED: dict[State, frozenset[CommandId]] = {
    State.OPEN: _ALWAYS | _BINDS,
    State.BOUND_TX: _BOUND | _TX,
    State.BOUND_RX: _BOUND | _RX,
    State.BOUND_TRX: _BOUND | _TX | _RX,
    State.UNBOUND: _ALWAYS | {C.UNBIND_RESP},
    State.CLOSED: frozenset(),
}

#: What we may send in each state (SMSC → ESME).
_MAY_SEND: dict[State, frozenset[CommandId]] = {
    State.OPEN: frozenset({C.ENQUIRE_LINK}),
    State.BOUND_TX: frozenset({C.ENQUIRE_LINK, C.UNBIND}),
    State.BOUND_RX: frozenset({C.ENQUIRE_LINK, C.UNBIND, C.DELIVER_SM, C.DATA_SM,
                               C.ALERT_NOTIFICATION}),
    State.BOUND_TRX: frozenset({C.ENQUIRE_LINK, C.UNBIND, C.DELIVER_SM, C.DATA_SM,
                                C.ALERT_NOTIFICATION}),
    State.UNBOUND: frozenset(),
    State.CLOSED: frozenset(),
}

_BOUND_STATE = {
    C.BIND_TRANSMITTER_RESP: State.BOUND_TX,
    C.BIND_RECEIVER_RESP: State.BOUND_RX,
    C.BIND_TRANSCEIVER_RESP: State.BOUND_TRX,
}

#: Requests that occupy a slot of the window until the application answers them.
_WINDOWED = _TX

#: SMPP 3.4 §3.4: message ids sent to a v3.3 ESME are at most 8 octets.
MAX_V33_MESSAGE_ID = 8


class NeedData:
    """Sentinel type of :data:`NEED_DATA`."""

    def __repr__(self) -> str:
        return "NEED_DATA"


#: Returned by :meth:`SmscSession.next_event` when it needs more bytes.
NEED_DATA = NeedData()


@dataclass(frozen=True, slots=True)
class Closed:
    """The session is over; ``reason`` says why (for logs and metrics)."""

    reason: str


@dataclass(frozen=True, slots=True)
class ResponseTimeout:
    """Our request (e.g. a deliver_sm) got no response within the response timer."""

    request: P.Pdu


Event = P.Pdu | Closed | ResponseTimeout


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Limits and timers of one session (seconds; 0 disables a timer)."""

    #: Outstanding requests from the ESME not yet answered; over it → ESME_RTHROTTLED.
    window: int = 100
    #: A bind must arrive this long after the TCP connect (§7.2 session_init_timer).
    session_init_timeout: float = 10.0
    #: Probe a silent ESME with enquire_link after this long (§7.2 enquire_link_timer).
    enquire_link_interval: float = 30.0
    #: Unbind an ESME that sent no PDU other than probe answers for this long.
    inactivity_timeout: float = 300.0
    #: Our requests (deliver_sm, enquire_link, unbind) must be answered within this.
    response_timeout: float = 30.0
    #: Cap on command_length; see codec.DEFAULT_MAX_COMMAND_LENGTH for the reason.
    max_command_length: int = DEFAULT_MAX_COMMAND_LENGTH


class SmscSession:
    """One ESME connection seen from the SMSC."""

    def __init__(self, config: SessionConfig, now: float) -> None:
        self.config = config
        self.state = State.OPEN
        self.interface_version = INTERFACE_VERSION_34
        self.bind_request: P.Pdu | None = None
        self.close_reason = ""
        self._reader = FrameReader(config.max_command_length)
        self._out = bytearray()
        self._events: deque[Event] = deque()
        self._opened_at = now
        self._last_rx = now  # any PDU from the ESME (drives enquire_link probes)
        self._last_active = now  # any PDU but our probes' answers (drives inactivity)
        self._next_seq = 1
        # Their requests we have not answered, by sequence_number. A list, because an
        # ESME may reuse a sequence_number that is still outstanding (§5.1.2.4 says it
        # should not): each request is still answered, and each counts in the window.
        self._pending_in: dict[int, list[P.Pdu]] = {}
        self._pending_count = 0
        #: the peer's unbind, answered once its earlier requests are
        self._unbind_seq: int | None = None
        self._unbind_deadline = 0.0
        # ours, with deadline, in the order sent (OrderedDict: the first is found in O(1)
        # however many answered ones were deleted before it)
        self._pending_out: OrderedDict[int, tuple[P.Pdu, float]] = OrderedDict()
        self._probe_seq = 0
        #: Called with ("in" | "out", command_id, command_status) for every PDU, so the
        #: I/O layer can count them without the session knowing about metrics.
        self.observer: Callable[[str, int, int], None] | None = None

    # --- input ---------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        """Feed bytes read from the socket; events become available from next_event."""
        if self.state is State.CLOSED:
            return
        self._reader.feed(data)
        while True:
            try:
                frame = self._reader.next_frame()
            except InvalidCommandLength as exc:
                self._nack(exc)
                self._close(f"invalid command_length: {exc}")
                return
            if frame is None:
                return
            self._last_rx = now
            try:
                pdu = decode(frame)
            except RemoteProtocolError as exc:
                self._last_active = now
                if self.observer is not None:
                    self.observer("in", exc.command_id, 0)
                self._reject(exc)
                continue
            self._handle(pdu, now)
            if self.closed:
                return

    def next_event(self) -> Event | NeedData:
        """The next thing the application must act on, or NEED_DATA."""
        if self._events:
            return self._events.popleft()
        return NEED_DATA

    @property
    def buffered(self) -> int:
        """Octets of a PDU received in part (the rest has not arrived)."""
        return self._reader.buffered

    def _handle(self, pdu: P.Pdu, now: float) -> None:
        cid = pdu.command_id
        if self.observer is not None:
            self.observer("in", cid, pdu.command_status)
        if cid is not C.ENQUIRE_LINK_RESP:
            self._last_active = now
        if cid not in _ALLOWED[self.state]:
            if cid.is_response or cid is C.ALERT_NOTIFICATION:
                # Never answer a response; alert_notification has none (§4.12).
                return
            status = (CommandStatus.ESME_RALYBND if cid in _BINDS
                      and (self.state is not State.OPEN or self.bind_request is not None)
                      else CommandStatus.ESME_RINVBNDSTS)
            self._respond_error(pdu, status)
            return
        if cid.is_response:
            self._handle_response(pdu)
            return
        if cid is C.ENQUIRE_LINK:
            self._write(P.EnquireLinkResp(sequence_number=pdu.sequence_number))
            return
        if cid is C.GENERIC_NACK:
            self._handle_response(pdu)
            return
        if cid in _BINDS:
            if self.bind_request is not None:
                self._respond_error(pdu, CommandStatus.ESME_RALYBND)
                return
            self.bind_request = pdu
            self._hold(pdu)
            self._events.append(pdu)
            return
        if cid is C.UNBIND:
            self.state = State.UNBOUND
            self._pending_out.clear()
            self._events.append(pdu)
            # Requests still being worked on are answered first, then unbind_resp: an
            # accepted message's submit_sm_resp must not be lost to the unbind. Bounded
            # by the response timer.
            self._unbind_seq = pdu.sequence_number
            self._unbind_deadline = now + self.config.response_timeout
            self._finish_unbind_if_idle()
            return
        if cid in _WINDOWED and self._pending_count >= self.config.window:
            self._respond_error(pdu, CommandStatus.ESME_RTHROTTLED)
            return
        self._hold(pdu)
        self._events.append(pdu)

    def _hold(self, request: P.Pdu) -> None:
        self._pending_in.setdefault(request.sequence_number, []).append(request)
        self._pending_count += 1

    def _release(self, response: P.Pdu) -> P.Pdu | None:
        """The oldest outstanding request that ``response`` answers, now answered."""
        waiting = self._pending_in.get(response.sequence_number, [])
        for i, request in enumerate(waiting):
            if request.command_id | RESPONSE_BIT == response.command_id:
                del waiting[i]
                if not waiting:
                    del self._pending_in[response.sequence_number]
                self._pending_count -= 1
                return request
        return None

    def _handle_response(self, pdu: P.Pdu) -> None:
        entry = self._pending_out.pop(pdu.sequence_number, None)
        if entry is None:
            return  # a late or unsolicited response: nothing waits for it
        request, _ = entry
        if request.command_id is C.UNBIND:
            self._close("unbind completed")
            return
        if request.command_id is C.ENQUIRE_LINK:
            self._probe_seq = 0
            return
        self._events.append(pdu)

    # --- output --------------------------------------------------------------------

    def send(self, pdu: P.Pdu, now: float) -> int:
        """Queue ``pdu`` for the wire and return its sequence_number.

        Responses must answer an outstanding request of the ESME (their
        sequence_number says which); requests get the next sequence_number and a
        response deadline. A bind response with ESME_ROK moves the session to its bound
        state and, for a 3.4 bind, carries sc_interface_version (§3.4).

        A request PDU is the session's from here on: its sequence_number is set in place
        (a copy per deliver_sm was ~3 % of a node's CPU). Send a new PDU each time.
        """
        if self.state is State.CLOSED:
            raise LocalProtocolError("session is closed")
        cid = pdu.command_id
        if cid.is_response:
            if (self._v33 and isinstance(pdu, P.SubmitSmResp | P.DataSmResp)
                    and len(pdu.message_id) > MAX_V33_MESSAGE_ID):
                raise LocalProtocolError(
                    f"message_id {pdu.message_id!r} too long for a v3.3 bind")
            request = self._release(pdu)
            if request is None:
                raise LocalProtocolError(f"{cid.name} answers no outstanding request")
            if cid in _BOUND_STATE:
                pdu = self._complete_bind(pdu, request)
            self._write(pdu)
            if self._unbind_seq is not None:
                self._finish_unbind_if_idle()
            return pdu.sequence_number
        if cid not in _MAY_SEND[self.state]:
            raise LocalProtocolError(f"cannot send {cid.name} in state {self.state.name}")
        seq = self._take_seq()
        pdu.sequence_number = seq
        if cid is not C.ALERT_NOTIFICATION:  # the only request without a response
            self._pending_out[seq] = (pdu, now + self.config.response_timeout)
        if cid is C.UNBIND:
            self.state = State.UNBOUND
        self._write(pdu)
        return seq

    def _finish_unbind_if_idle(self, *, force: bool = False) -> None:
        if self._unbind_seq is None or (self._pending_count and not force):
            return
        self._write(P.UnbindResp(sequence_number=self._unbind_seq))
        self._unbind_seq = None
        self._close("unbound by peer")

    def _complete_bind(self, resp: P.Pdu, request: P.Pdu) -> P.Pdu:
        assert isinstance(request, P.BindTransmitter | P.BindReceiver | P.BindTransceiver)
        self.bind_request = None
        if resp.command_status != CommandStatus.ESME_ROK:
            return resp
        self.state = _BOUND_STATE[resp.command_id]
        self.interface_version = request.interface_version
        if not self._v33:
            version = P.Tlv(Tag.SC_INTERFACE_VERSION, bytes([INTERFACE_VERSION_34]))
            resp = resp.with_(tlvs=(*resp.tlvs, version))
        return resp

    @property
    def _v33(self) -> bool:
        return self.interface_version < INTERFACE_VERSION_34

    def data_to_send(self) -> bytes:
        """The bytes queued for the wire since the last call (possibly empty)."""
        if not self._out:
            return b""
        data = bytes(self._out)
        self._out.clear()
        return data

    @property
    def pending_requests(self) -> int:
        """Requests from the ESME not yet answered (the window in use)."""
        return self._pending_count

    @property
    def awaiting_responses(self) -> int:
        """Our requests the ESME has not answered yet."""
        return len(self._pending_out)

    def _write(self, pdu: P.Pdu) -> None:
        if self.observer is not None:
            self.observer("out", pdu.command_id, pdu.command_status)
        if self._v33 and pdu.tlvs:
            pdu = pdu.with_(tlvs=())  # SMPP 3.4 §3.4: no TLVs to a v3.3 ESME
        self._out += encode(pdu)

    def _take_seq(self) -> int:
        seq = self._next_seq
        self._next_seq = 1 if seq >= MAX_SEQUENCE else seq + 1
        return seq

    def _respond_error(self, request: P.Pdu, status: int) -> None:
        resp_cls = P.RESPONSE_CLASS.get(type(request))
        if resp_cls is None:
            self._write(P.GenericNack(sequence_number=request.sequence_number,
                                      command_status=status))
        else:
            self._write(resp_cls(sequence_number=request.sequence_number,
                                 command_status=status))

    def _reject(self, exc: RemoteProtocolError) -> None:
        """Answer a PDU that failed to decode: its own response, else generic_nack."""
        cls = P.PDU_CLASSES.get(exc.command_id)
        if cls is None or cls.command_id.is_response or cls not in P.RESPONSE_CLASS:
            if cls is not None and cls.command_id.is_response:
                return  # a malformed response: nothing to answer
            self._nack(exc)
            return
        if cls.command_id not in _ALLOWED[self.state]:
            # The state decides before the body does: a bad submit_sm from an
            # unbound ESME is still ESME_RINVBNDSTS.
            self._respond_error(cls(sequence_number=exc.sequence_number),
                                CommandStatus.ESME_RINVBNDSTS)
            return
        self._respond_error(cls(sequence_number=exc.sequence_number), exc.status)

    def _nack(self, exc: RemoteProtocolError) -> None:
        self._write(P.GenericNack(sequence_number=exc.sequence_number,
                                  command_status=exc.status))

    # --- timers --------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """When handle_timer must next run, or None when no timer is armed."""
        cfg = self.config
        deadlines: list[float] = []
        if self.state is State.CLOSED:
            return None
        if self.state is State.OPEN and cfg.session_init_timeout:
            deadlines.append(self._opened_at + cfg.session_init_timeout)
        if self.state in (State.BOUND_TX, State.BOUND_RX, State.BOUND_TRX):
            if cfg.enquire_link_interval and not self._probe_seq:
                deadlines.append(self._last_rx + cfg.enquire_link_interval)
            if cfg.inactivity_timeout:
                deadlines.append(self._last_active + cfg.inactivity_timeout)
        if self._pending_out:
            # Requests are kept in the order sent, each with now + response_timeout, so
            # the first is due first (a scan of up to a window of deliver_sm per call
            # was measurable). After a reload shortened response_timeout, later entries
            # may be due earlier; handle_timer checks them all when this one fires.
            deadlines.append(next(iter(self._pending_out.values()))[1])
        if self._unbind_seq is not None:
            deadlines.append(self._unbind_deadline)
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> None:
        """Act on every timer that has expired at ``now``."""
        cfg = self.config
        if self.state is State.CLOSED:
            return
        if self._unbind_seq is not None and now >= self._unbind_deadline:
            self._finish_unbind_if_idle(force=True)
            return
        for seq, (request, deadline) in list(self._pending_out.items()):
            if deadline > now:
                continue
            del self._pending_out[seq]
            if request.command_id in (C.ENQUIRE_LINK, C.UNBIND):
                self._close(f"no {request.command_id.name.lower()}_resp within "
                            f"{cfg.response_timeout:g}s")
                return
            self._events.append(ResponseTimeout(request))
        if self.state is State.OPEN and cfg.session_init_timeout \
                and now >= self._opened_at + cfg.session_init_timeout:
            self._close(f"no bind within {cfg.session_init_timeout:g}s")
            return
        if self.state not in (State.BOUND_TX, State.BOUND_RX, State.BOUND_TRX):
            return
        if cfg.inactivity_timeout and now >= self._last_active + cfg.inactivity_timeout:
            self.send(P.Unbind(), now)
            return
        if cfg.enquire_link_interval and not self._probe_seq \
                and now >= self._last_rx + cfg.enquire_link_interval:
            self._probe_seq = self.send(P.EnquireLink(), now)

    # --- closing -------------------------------------------------------------------

    def start_unbind(self, now: float) -> None:
        """Ask the ESME to unbind (graceful shutdown); closes on unbind_resp or timeout."""
        if self.state in (State.BOUND_TX, State.BOUND_RX, State.BOUND_TRX):
            self.send(P.Unbind(), now)
        elif self.state is State.OPEN:
            self._close("shutting down")

    def close(self, reason: str = "closed") -> None:
        """Mark the session closed (the transport went away)."""
        self._close(reason)

    def _close(self, reason: str) -> None:
        if self.state is State.CLOSED:
            return
        self.state = State.CLOSED
        self.close_reason = reason
        self._pending_out.clear()
        self._events.append(Closed(reason))

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    @property
    def bound(self) -> bool:
        return self.state in (State.BOUND_TX, State.BOUND_RX, State.BOUND_TRX)
