"""Bare-echo SMSC: the baseline every smppbridge figure is compared with.

It accepts any bind, answers every submit_sm with a submit_sm_resp (ids 0000000001,
0000000002, ...) and, when registered_delivery asks for a final receipt, sends one
DELIVRD receipt deliver_sm per submit — nothing else: no store, no routing, no flood
rules. What the real server costs on top of this is what smppbridge itself adds.

Two engines:

* ``raw`` (default): frames are cut by :class:`~smppbridge.smpp.codec.FrameReader`;
  submit_sm is read only as far as registered_delivery, and answers come from
  pre-encoded templates (:mod:`smppbridge.bench.wire`). This is the floor: about the
  least work a Python SMSC can do per message.
* ``session``: every PDU goes through our sans-IO
  :class:`~smppbridge.smpp.session.SmscSession` (full decode, state table, window),
  and receipts through :func:`~smppbridge.smpp.receipts.receipt_deliver_sm` and
  ``encode``. The gap between the two is the cost of the protocol core alone.

Run it as its own process so its CPU and memory can be measured apart::

    python -m smppbridge.bench.echo --listen 127.0.0.1:2775
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Sequence
from typing import Literal, cast

from smppbridge.bench.wire import HEADER, ReceiptTemplate, response_header
from smppbridge.smpp import pdu as P
from smppbridge.smpp.codec import FrameReader, decode, encode
from smppbridge.smpp.constants import (
    HEADER_LENGTH,
    INTERFACE_VERSION_34,
    RECEIPT_MASK,
    CommandId,
    CommandStatus,
    RegisteredDelivery,
    Tag,
)
from smppbridge.smpp.errors import RemoteProtocolError
from smppbridge.smpp.receipts import Receipt, receipt_deliver_sm
from smppbridge.smpp.session import NEED_DATA, Closed, SessionConfig, SmscSession, State

__all__ = ["EchoCounters", "Engine", "main", "start_echo_server", "use_loop"]

Engine = Literal["raw", "session"]

_C = CommandId
_SUBMIT_SM = int(_C.SUBMIT_SM)
_DELIVER_SM_RESP = int(_C.DELIVER_SM_RESP)
_ENQUIRE_LINK = int(_C.ENQUIRE_LINK)
_UNBIND = int(_C.UNBIND)
_BINDS = {int(_C.BIND_TRANSMITTER): P.BindTransmitterResp,
          int(_C.BIND_RECEIVER): P.BindReceiverResp,
          int(_C.BIND_TRANSCEIVER): P.BindTransceiverResp}
_FINAL = int(RegisteredDelivery.FINAL)
#: Width of submit_sm_resp message ids (zero-padded decimal, as receipts carry them).
_ID_WIDTH = 10
_ID_MODULUS: int = 10**_ID_WIDTH
_SYSTEM_ID = "echo"
#: The session engine never throttles, probes or times out: the baseline measures the
#: protocol core, not its limits (0 disables a timer, see SessionConfig).
_SESSION_CONFIG = SessionConfig(window=1_000_000, session_init_timeout=0,
                                enquire_link_interval=0, inactivity_timeout=0,
                                response_timeout=3600.0)
_RX_STATES = (State.BOUND_RX, State.BOUND_TRX)


class EchoCounters:
    """Totals of one echo server (read by tests; the process prints nothing per PDU)."""

    __slots__ = ("binds", "message_id", "receipts", "submits")

    def __init__(self) -> None:
        self.binds = 0
        self.submits = 0
        self.receipts = 0
        self.message_id = 0

    def next_id(self) -> int:
        self.message_id += 1
        return self.message_id % _ID_MODULUS


class _EchoProtocol(asyncio.Protocol):
    """Transport bookkeeping and back-pressure shared by both engines."""

    transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; same interface.
        self.transport = cast("asyncio.Transport", transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def pause_writing(self) -> None:
        # The client is not reading our answers: stop reading its requests.
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()


class _RawEcho(_EchoProtocol):
    """The ``raw`` engine: templates in, templates out."""

    def __init__(self, counters: EchoCounters, receipts: ReceiptTemplate) -> None:
        self.counters = counters
        self.receipts = receipts
        self.reader = FrameReader()
        self.transport: asyncio.Transport | None = None
        self.seq = 0
        self.can_receive = False

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        if transport is None:
            return
        self.reader.feed(data)
        out: list[bytes] = []
        now = time.time()
        close = False
        while True:
            try:
                frame = self.reader.next_frame()
            except RemoteProtocolError as exc:
                out.append(response_header(_C.GENERIC_NACK, exc.status, exc.sequence_number))
                close = True
                break
            if frame is None:
                break
            _, cid, _, seq = HEADER.unpack_from(frame)
            if cid == _SUBMIT_SM:
                self._submit(frame, seq, out, now)
            elif cid == _DELIVER_SM_RESP:
                pass
            elif cid == _ENQUIRE_LINK:
                out.append(response_header(_C.ENQUIRE_LINK_RESP, 0, seq))
            elif cid in _BINDS:
                out.append(self._bind(frame, cid, seq))
            elif cid == _UNBIND:
                out.append(response_header(_C.UNBIND_RESP, 0, seq))
                close = True
                break
            elif not cid & 0x80000000:
                out.append(response_header(_C.GENERIC_NACK, CommandStatus.ESME_RINVCMDID, seq))
            # other responses (enquire_link_resp, generic_nack...): nothing to do
        if out:
            transport.write(b"".join(out))
        if close:
            transport.close()

    def _bind(self, frame: bytes, cid: int, seq: int) -> bytes:
        try:
            request = decode(frame)
        except RemoteProtocolError as exc:
            return encode(_BINDS[cid](sequence_number=seq, command_status=exc.status))
        self.counters.binds += 1
        self.can_receive = cid != _C.BIND_TRANSMITTER
        version = getattr(request, "interface_version", INTERFACE_VERSION_34)
        tlvs = (P.Tlv(Tag.SC_INTERFACE_VERSION, bytes([INTERFACE_VERSION_34])),) \
            if version >= INTERFACE_VERSION_34 else ()
        return encode(_BINDS[cid](sequence_number=seq, system_id=_SYSTEM_ID, tlvs=tlvs))

    def _submit(self, frame: bytes, seq: int, out: list[bytes], now: float) -> None:
        counters = self.counters
        counters.submits += 1
        message_id = counters.next_id()
        out.append(response_header(_C.SUBMIT_SM_RESP, 0, seq, _ID_WIDTH + 1)
                   + b"%0*d\0" % (_ID_WIDTH, message_id))
        if not self.can_receive:
            return
        try:
            # SMPP 3.4 §4.4.1: service_type, source TON/NPI/addr, dest TON/NPI/addr,
            # esm_class, protocol_id, priority_flag, schedule_delivery_time,
            # validity_period, registered_delivery.
            pos = frame.index(0, HEADER_LENGTH) + 1
            src_ton, src_npi = frame[pos], frame[pos + 1]
            end = frame.index(0, pos + 2)
            source = frame[pos + 2:end]
            dst_ton, dst_npi = frame[end + 1], frame[end + 2]
            pos = frame.index(0, end + 3)
            dest = frame[end + 3:pos]
            pos = frame.index(0, pos + 4)  # schedule_delivery_time
            pos = frame.index(0, pos + 1)  # validity_period
            wanted = frame[pos + 1] & RECEIPT_MASK
        except (ValueError, IndexError):
            return  # too short to say; the answer above is all it gets
        if wanted != _FINAL:
            return
        self.seq += 1
        counters.receipts += 1
        out.append(self.receipts.build(
            self.seq, message_id, source=dest, source_ton=dst_ton, source_npi=dst_npi,
            dest=source, dest_ton=src_ton, dest_npi=src_npi, now=now))


class _SessionEcho(_EchoProtocol):
    """The ``session`` engine: everything through SmscSession."""

    def __init__(self, counters: EchoCounters) -> None:
        self.counters = counters
        self.session = SmscSession(_SESSION_CONFIG, time.monotonic())
        self.transport = None

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.session.close("connection lost")

    def data_received(self, data: bytes) -> None:
        session = self.session
        now = time.monotonic()
        session.receive_data(data, now)
        close = False
        while True:
            event = session.next_event()
            if event is NEED_DATA:
                break
            if isinstance(event, Closed):
                close = True
            elif isinstance(event, P.SubmitSm):
                self._submit(event, now)
            elif isinstance(event, P.BindTransmitter | P.BindReceiver | P.BindTransceiver):
                self.counters.binds += 1
                resp = P.RESPONSE_CLASS[type(event)]
                session.send(resp(sequence_number=event.sequence_number,  # type: ignore[call-arg]
                                  system_id=_SYSTEM_ID), now)
            elif isinstance(event, P.Pdu) and not event.is_response \
                    and not isinstance(event, P.Unbind):
                # A request the echo does not serve (query_sm, data_sm...): refuse it.
                resp_cls = P.RESPONSE_CLASS[type(event)]
                session.send(resp_cls(sequence_number=event.sequence_number,
                                      command_status=CommandStatus.ESME_RSYSERR), now)
        if self.transport is not None:
            out = session.data_to_send()
            if out:
                self.transport.write(out)
            if close:
                self.transport.close()

    def _submit(self, submit: P.SubmitSm, now: float) -> None:
        counters = self.counters
        counters.submits += 1
        message_id = f"{counters.next_id():0{_ID_WIDTH}d}"
        session = self.session
        session.send(P.SubmitSmResp(sequence_number=submit.sequence_number,
                                    message_id=message_id), now)
        if submit.registered_delivery & RECEIPT_MASK != _FINAL or session.state not in _RX_STATES:
            return
        counters.receipts += 1
        wall = time.time()
        receipt = Receipt(message_id=message_id, stat="DELIVRD", submit_date=wall,
                          done_date=wall)
        session.send(receipt_deliver_sm(
            receipt, source_addr=submit.destination_addr, source_ton=submit.dest_addr_ton,
            source_npi=submit.dest_addr_npi, dest_addr=submit.source_addr,
            dest_ton=submit.source_addr_ton, dest_npi=submit.source_addr_npi,
            tlvs=session.interface_version >= INTERFACE_VERSION_34), now)


async def start_echo_server(host: str = "127.0.0.1", port: int = 0, *,
                            engine: Engine = "raw",
                            counters: EchoCounters | None = None) -> asyncio.Server:
    """Listen on ``host:port`` (0: any free port) and echo; the caller closes it."""
    loop = asyncio.get_running_loop()
    shared = counters if counters is not None else EchoCounters()
    if engine == "raw":
        template = ReceiptTemplate()
        return await loop.create_server(lambda: _RawEcho(shared, template), host, port,
                                        reuse_address=True)
    return await loop.create_server(lambda: _SessionEcho(shared), host, port,
                                    reuse_address=True)


async def _serve(host: str, port: int, engine: Engine) -> None:
    server = await start_echo_server(host, port, engine=engine)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    bound = server.sockets[0].getsockname()
    print(f"echo: listening on {bound[0]}:{bound[1]} (engine {engine}, loop "
          f"{type(loop).__module__})", flush=True)
    async with server:
        await stop.wait()


def use_loop(name: str) -> str:
    """Install the event loop policy ``name`` (auto | asyncio | uvloop); return the one used.

    ``auto`` takes uvloop when installed, as ``smppbridge serve`` does, so the baseline
    and the server under test run on the same loop.
    """
    if name == "asyncio":
        return "asyncio"
    try:
        import uvloop
    except ImportError:
        if name == "uvloop":
            raise
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m smppbridge.bench.echo",
                                     description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--listen", default="127.0.0.1:2775", metavar="HOST:PORT")
    parser.add_argument("--engine", choices=("raw", "session"), default="raw")
    parser.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    args = parser.parse_args(argv)
    host, _, port = str(args.listen).rpartition(":")
    if not host or not port.isdigit():
        parser.error(f"--listen: expected HOST:PORT, got {args.listen!r}")
    use_loop(args.loop)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(host.strip("[]"), int(port), args.engine))
    return 0


if __name__ == "__main__":
    sys.exit(main())
