"""``smppbridge send``: a small ESME for smoke tests. It binds, submits one text (split
into UDH parts when long) and waits for the receipts of *its own* message ids; or, with
``query``/``cancel``, asks about one message id and unbinds.

What makes it trustworthy as a smoke test:

- a receipt counts only when its id (``receipted_message_id``, else the text's ``id:``)
  is one of this run's message ids. Any other deliver_sm (a receipt kept for the account
  while it was unbound, or one meant for the account's own ESME) is answered
  ``ESME_RX_T_APPN``, so the node keeps it and retries it to the account's receivers,
  and is only counted (:attr:`SendResult.other_receipts`);
- it stays bound until every part has its receipt, or ``wait`` ends;
- a submit answered ``ESME_RTHROTTLED`` or ``ESME_RMSGQFUL`` (temporary, docs/smpp.md)
  is tried again after a backoff, :data:`RETRY` bounding the tries; while it waits it
  keeps reading, so receipts and enquire_link are answered;
- every status it reports is named by :func:`~smppbridge.smpp.constants.describe_status`.

It speaks SMPP with the project's sans-IO codec over a blocking socket (:class:`Link`):
smpplib has no cancel_sm, and the choices above need the PDU loop in hand (responses
matched by sequence_number, each deliver_sm answered by whose it is). The clock and the
link are parameters, so the tests drive it without a network or real waiting.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from smppbridge.smpp import pdu as P
from smppbridge.smpp.codec import FrameReader, decode, encode
from smppbridge.smpp.constants import CommandStatus, MessageState, Tag, describe_status
from smppbridge.smpp.errors import SmppError
from smppbridge.smpp.receipts import Stat, parse_receipt
from smppbridge.text.encoding import gsm_encodable, gsm_encode

__all__ = ["RETRY", "TEMPORARY", "Answer", "Esme", "Link", "QueryAnswer", "RetryPolicy",
           "SendError", "SendObserver", "SendResult", "SocketLink", "cancel", "encode_parts",
           "query", "receipt_id", "send"]

#: Octets of user data in one SMS (GSM 03.40 §9.2.3.24: 140 octets).
_SMS_OCTETS = 140
#: 8-bit concatenation UDH: UDHL, IEI 0x00, IEDL 3, ref, total, seq (6 octets).
_UDH_LEN = 6
_UCS2 = 8
_S = CommandStatus
#: Submit answers that mean "not now": tried again (docs/smpp.md, Temporary statuses).
TEMPORARY = frozenset({_S.ESME_RTHROTTLED, _S.ESME_RMSGQFUL})
#: How long the unbind on the way out may take.
_UNBIND_TIMEOUT = 1.0

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """At most ``tries`` submits of one part; before try n+1 a wait of
    ``first_delay * factor**(n-1)``, capped at ``max_delay``."""

    tries: int = 6
    first_delay: float = 0.5
    factor: float = 2.0
    max_delay: float = 4.0

    def delay(self, attempt: int) -> float | None:
        """Seconds to wait after failed try ``attempt`` (1-based); None: no more tries."""
        if attempt >= self.tries:
            return None
        return min(self.max_delay, self.first_delay * self.factor ** (attempt - 1))

    def describe(self) -> str:
        delays = [self.delay(n) for n in range(1, self.tries)]
        return (f"up to {self.tries} tries, waiting "
                + ", ".join(f"{d:g} s" for d in delays if d is not None))


#: The retry policy of ``smppbridge send`` (its --help prints it).
RETRY = RetryPolicy()


@dataclass
class SendResult:
    """What a run did: the message id of each part accepted, this run's receipts (one
    per part, in arrival order), how many distinct other receipts came to the bind, and
    how many submits were tried again after a temporary status."""

    message_ids: list[str] = field(default_factory=list)
    receipts: list[str] = field(default_factory=list)
    other_receipts: int = 0
    retries: int = 0

    def missing(self) -> list[str]:
        """Message ids without a receipt."""
        got = {parse_receipt(r).get("id") for r in self.receipts}
        return [m for m in self.message_ids if m not in got]

    def undelivered(self) -> list[str]:
        """This run's receipts whose ``stat:`` is not DELIVRD."""
        return [r for r in self.receipts if parse_receipt(r).get("stat") != Stat.DELIVRD]


class SendError(Exception):
    """Connect, bind or a request failed; the message says why. ``result`` holds what
    was done before the failure (ids of parts already accepted, receipts)."""

    def __init__(self, message: str, result: SendResult | None = None) -> None:
        super().__init__(message)
        self.result = result if result is not None else SendResult()


class SendObserver(Protocol):
    """Progress hooks (the CLI draws a progress bar with them on a TTY)."""

    def submitting(self, parts: int, receipts: bool) -> None:
        """Bound; ``parts`` submit_sm are about to go, receipts awaited or not."""

    def message_id(self, message_id: str) -> None:
        """One submit_sm_resp arrived with this id."""

    def receipt(self, text: str) -> None:
        """One receipt of this run's messages (deliver_sm short_message) arrived."""

    def notice(self, text: str) -> None:
        """Something the operator should see as it happens (a submit to be retried)."""


class Link(Protocol):
    """A connection that carries whole PDUs."""

    def send(self, pdu: P.Pdu) -> None: ...

    def receive(self, timeout: float) -> P.Pdu | None:
        """The next PDU, or None when none came within ``timeout`` seconds."""

    def close(self) -> None: ...


class SocketLink:
    """:class:`Link` over a blocking TCP socket."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._frames = FrameReader()

    @classmethod
    def open(cls, host: str, port: int, timeout: float) -> SocketLink:
        return cls(socket.create_connection((host, port), timeout=timeout))

    def send(self, pdu: P.Pdu) -> None:
        self._sock.sendall(encode(pdu))

    def receive(self, timeout: float) -> P.Pdu | None:
        deadline = time.monotonic() + timeout
        while (frame := self._frames.next_frame()) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._sock.settimeout(remaining)
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                return None
            if not data:
                raise ConnectionError("the server closed the connection")
            self._frames.feed(data)
        return decode(frame)

    def close(self) -> None:
        self._sock.close()


Connect = Callable[[str, int, float], Link]


def receipt_id(pdu: P.DeliverSm) -> str | None:
    """The message id a deliver_sm reports on: ``receipted_message_id`` (0x001E), else
    the ``id:`` of its text; None when it names none."""
    tlv = pdu.tlv(Tag.RECEIPTED_MESSAGE_ID)
    if tlv is not None and tlv.rstrip(b"\0"):
        return tlv.rstrip(b"\0").decode("latin-1")
    return parse_receipt(pdu.short_message.decode("latin-1")).get("id") or None


class Esme:
    """One SMPP session on a :class:`Link`, one request at a time: a request waits for
    the response with its sequence_number (or a generic_nack); whatever else arrives
    meanwhile is answered — enquire_link, and deliver_sm: ESME_ROK for a receipt of
    ``own`` ids, ESME_RX_T_APPN for any other (the node keeps it for the account's
    receivers). A receipt for an unknown id while a submit is unanswered is answered
    once that response is in, since it may carry the id."""

    def __init__(self, link: Link, *, timeout: float = 5.0, clock: Clock = time.monotonic,
                 observer: SendObserver | None = None) -> None:
        self.link = link
        self.timeout = timeout
        self.clock = clock
        self.observer = observer
        self.own: dict[str, str | None] = {}  # message id → its receipt text, once in
        self.receipts: list[str] = []
        self.others: set[str] = set()
        self.retries = 0
        self.bound = False
        self._seq = itertools.count(1)
        self._submitting = False
        self._held: list[tuple[int, str | None, str]] = []

    def next_seq(self) -> int:
        return next(self._seq)

    # --- requests ---------------------------------------------------------------------

    def request(self, pdu: P.Pdu, timeout: float | None = None) -> P.Pdu:
        """Send ``pdu`` (with a fresh sequence_number) and return its response."""
        seq = self.next_seq()
        self.link.send(pdu.with_(sequence_number=seq))
        limit = self.timeout if timeout is None else timeout
        deadline = self.clock() + limit
        while (remaining := deadline - self.clock()) > 0:
            got = self.link.receive(remaining)
            if got is None:
                continue
            if got.sequence_number == seq and (got.is_response
                                               or isinstance(got, P.GenericNack)):
                return got
            self._unasked(got)
        name = type(pdu).__name__
        raise SendError(f"no answer to {name} within {limit:g}s")

    def bind(self, cls: type[P.BindTransceiver | P.BindTransmitter], system_id: str,
             password: str) -> None:
        resp = self.request(cls(system_id=system_id, password=password))
        if resp.command_status != _S.ESME_ROK:
            raise SendError(f"bind refused: {describe_status(resp.command_status)}")
        self.bound = True

    def unbind(self) -> None:
        """Best effort: unbind and wait a moment for unbind_resp."""
        if not self.bound:
            return
        self.bound = False
        with contextlib.suppress(SendError, OSError, SmppError):
            self.request(P.Unbind(), timeout=_UNBIND_TIMEOUT)

    def submit(self, pdu: P.SubmitSm, retry: RetryPolicy = RETRY, label: str = "") -> str:
        """Submit one part, trying again after a temporary answer; its message id."""
        for attempt in itertools.count(1):
            self._submitting = True
            try:
                resp = self.request(pdu)
            finally:
                self._submitting = False
            status = resp.command_status
            if status == _S.ESME_ROK and isinstance(resp, P.SubmitSmResp):
                self.own.setdefault(resp.message_id, None)
                self._release_held()
                return resp.message_id
            self._release_held()
            delay = retry.delay(attempt) if status in TEMPORARY else None
            if delay is None:
                tries = f" (try {attempt} of {retry.tries})" if status in TEMPORARY else ""
                raise SendError(f"submit_sm{label} refused: {describe_status(status)}{tries}")
            self.retries += 1
            if self.observer is not None:
                self.observer.notice(f"submit_sm{label}: {describe_status(status)}; "
                                     f"try {attempt + 1} of {retry.tries} in {delay:g} s")
            self.pump(self.clock() + delay)
        raise AssertionError("unreachable")  # pragma: no cover

    # --- reading ----------------------------------------------------------------------

    def pump(self, until: float, done: Callable[[], bool] = lambda: False) -> None:
        """Read and answer what arrives until ``until`` or ``done()``."""
        while not done() and (remaining := until - self.clock()) > 0:
            got = self.link.receive(remaining)
            if got is not None:
                self._unasked(got)

    def all_receipts_in(self) -> bool:
        return all(text is not None for text in self.own.values())

    def _unasked(self, pdu: P.Pdu) -> None:
        if isinstance(pdu, P.DeliverSm):
            self._deliver(pdu.sequence_number, receipt_id(pdu),
                          pdu.short_message.decode("latin-1"))
        elif isinstance(pdu, P.EnquireLink):
            self.link.send(P.EnquireLinkResp(sequence_number=pdu.sequence_number))
        elif isinstance(pdu, P.Unbind):
            self.link.send(P.UnbindResp(sequence_number=pdu.sequence_number))
            self.bound = False
            raise SendError("the server unbound the session")
        elif isinstance(pdu, P.GenericNack):
            raise SendError(f"generic_nack: {describe_status(pdu.command_status)}")
        # a late response to a request given up on: nothing to do

    def _deliver(self, seq: int, message_id: str | None, text: str) -> None:
        if message_id is not None and message_id in self.own:
            if self.own[message_id] is None:
                self.own[message_id] = text
                self.receipts.append(text)
                if self.observer is not None:
                    self.observer.receipt(text)
            self.link.send(P.DeliverSmResp(sequence_number=seq))
        elif self._submitting:
            self._held.append((seq, message_id, text))
        else:
            self.others.add(message_id if message_id is not None else text)
            self.link.send(P.DeliverSmResp(sequence_number=seq,
                                           command_status=_S.ESME_RX_T_APPN))

    def _release_held(self) -> None:
        held, self._held = self._held, []
        for seq, message_id, text in held:
            self._deliver(seq, message_id, text)


def encode_parts(text: str, ref: int) -> tuple[int, list[bytes], bool]:
    """(data_coding, short_message of each part, udhi) for ``text``.

    GSM 03.38 unpacked septets (data_coding 0) when every character is in the
    alphabet, else UCS2 (data_coding 8). Long texts are cut into parts with an 8-bit
    concatenation UDH; a part never ends inside an escape sequence or a surrogate pair.
    """
    if gsm_encodable(text):
        coding, payload, unit = 0, gsm_encode(text), 1
    else:
        coding, payload, unit = _UCS2, text.encode("utf-16-be"), 2
    if len(payload) <= _SMS_OCTETS:
        return coding, [payload], False
    size = _SMS_OCTETS - _UDH_LEN
    size -= size % unit
    chunks: list[bytes] = []
    pos = 0
    while pos < len(payload):
        end = min(pos + size, len(payload))
        if end < len(payload):
            if coding == 0 and payload[end - 1] == 0x1B:  # keep ESC with its character
                end -= 1
            elif coding == _UCS2 and 0xD8 <= payload[end - 2] <= 0xDB:  # high surrogate
                end -= 2
        chunks.append(payload[pos:end])
        pos = end
    total = len(chunks)
    parts = [bytes([5, 0, 3, ref & 0xFF, total, i + 1]) + c for i, c in enumerate(chunks)]
    return coding, parts, True


def _source_ton(source: str) -> int:
    """1 (international) for a number, 5 (alphanumeric) for a name."""
    return 1 if source.isdigit() else 5


def _session(connect: Connect | None, host: str, port: int, timeout: float, clock: Clock,
             observer: SendObserver | None) -> Esme:
    try:
        link = (connect or SocketLink.open)(host, port, timeout)
    except OSError as exc:
        raise SendError(f"cannot connect to {host}:{port}: {exc}") from None
    return Esme(link, timeout=timeout, clock=clock, observer=observer)


def send(*, host: str, port: int, system_id: str, password: str, source: str,
         destination: str, text: str, wait: float = 10.0, receipt: bool = True,
         timeout: float = 5.0, observer: SendObserver | None = None,
         retry: RetryPolicy = RETRY, connect: Connect | None = None,
         clock: Clock = time.monotonic) -> SendResult:
    """Bind (transceiver; transmitter when no receipt is asked for, so that no receipt
    comes to this bind at all), submit ``text``, wait up to ``wait`` seconds for this
    run's receipts, unbind."""
    result = SendResult()
    esme = _session(connect, host, port, timeout, clock, observer)
    try:
        esme.bind(P.BindTransceiver if receipt else P.BindTransmitter, system_id, password)
        coding, parts, udhi = encode_parts(text, ref=int(time.time()) & 0xFF)
        if observer is not None:
            observer.submitting(len(parts), receipt)
        for n, part in enumerate(parts, 1):
            label = f" part {n}/{len(parts)}" if len(parts) > 1 else ""
            pdu = P.SubmitSm(
                source_addr_ton=_source_ton(source), source_addr_npi=0, source_addr=source,
                dest_addr_ton=1, dest_addr_npi=1, destination_addr=destination,
                short_message=part, data_coding=coding, esm_class=0x40 if udhi else 0,
                registered_delivery=1 if receipt else 0)
            message_id = esme.submit(pdu, retry, label)
            result.message_ids.append(message_id)
            if observer is not None:
                observer.message_id(message_id)
        if receipt:
            esme.pump(esme.clock() + wait, esme.all_receipts_in)
        return result
    except SendError as exc:
        exc.result = result
        raise
    except (OSError, SmppError) as exc:
        raise SendError(f"connection failed: {exc}", result) from None
    finally:
        result.receipts = list(esme.receipts)
        result.other_receipts = len(esme.others)
        result.retries = esme.retries
        try:
            esme.unbind()
        finally:
            esme.link.close()


@dataclass(frozen=True, slots=True)
class Answer:
    """The response to a query_sm or cancel_sm: its command_status, described."""

    message_id: str
    status: int

    @property
    def ok(self) -> bool:
        return self.status == _S.ESME_ROK

    @property
    def status_text(self) -> str:
        return describe_status(self.status)


@dataclass(frozen=True, slots=True)
class QueryAnswer(Answer):
    """A query_sm_resp: the message's state (SMPP 3.4 §5.2.28), its final date (an SMPP
    time, empty while not final) and error code."""

    message_state: int = 0
    final_date: str = ""
    error_code: int = 0

    @property
    def state_name(self) -> str:
        """The message_state as SMPP 3.4 §5.2.28 names it."""
        try:
            return MessageState(self.message_state).name
        except ValueError:
            return f"unknown message_state {self.message_state}"


def _one_request(connect: Connect | None, host: str, port: int, system_id: str, password: str,
                 timeout: float, clock: Clock, pdu: P.Pdu) -> P.Pdu:
    """Bind as a transmitter (no receipts come to it), send ``pdu``, unbind."""
    esme = _session(connect, host, port, timeout, clock, None)
    try:
        esme.bind(P.BindTransmitter, system_id, password)
        return esme.request(pdu)
    except (OSError, SmppError) as exc:
        raise SendError(f"connection failed: {exc}") from None
    finally:
        try:
            esme.unbind()
        finally:
            esme.link.close()


def query(*, host: str, port: int, system_id: str, password: str, message_id: str,
          source: str = "", timeout: float = 5.0, connect: Connect | None = None,
          clock: Clock = time.monotonic) -> QueryAnswer:
    """query_sm for ``message_id`` (``source``: the original source address)."""
    resp = _one_request(connect, host, port, system_id, password, timeout, clock,
                        P.QuerySm(message_id=message_id, source_addr_ton=_source_ton(source),
                                  source_addr_npi=0, source_addr=source))
    if not isinstance(resp, P.QuerySmResp):
        return QueryAnswer(message_id, resp.command_status)
    return QueryAnswer(message_id, resp.command_status, resp.message_state, resp.final_date,
                       resp.error_code)


def cancel(*, host: str, port: int, system_id: str, password: str, message_id: str,
           source: str = "", destination: str = "", timeout: float = 5.0,
           connect: Connect | None = None, clock: Clock = time.monotonic) -> Answer:
    """cancel_sm for ``message_id`` (``source``/``destination``: the original addresses,
    which SMPP 3.4 §4.9.1 has the SMSC check)."""
    resp = _one_request(connect, host, port, system_id, password, timeout, clock,
                        P.CancelSm(message_id=message_id, source_addr_ton=_source_ton(source),
                                   source_addr_npi=0, source_addr=source,
                                   dest_addr_ton=1 if destination else 0,
                                   dest_addr_npi=1 if destination else 0,
                                   destination_addr=destination))
    return Answer(message_id, resp.command_status)
