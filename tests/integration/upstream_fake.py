"""A scripted upstream SMSC for the smpp provider's fault tests, on our codec: binds
anything, and hands every submit_sm to the test's ``behaviour``, which answers it
(or not) — with receipts before or after the submit_sm_resp, errors, garbage, or by
dropping the connection."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from smppbridge.smpp import pdu as P
from smppbridge.smpp.codec import FrameReader, decode, encode
from smppbridge.smpp.receipts import Receipt, Stat, receipt_deliver_sm

__all__ = ["FakeSmsc", "Upstream"]


@dataclass
class Upstream:
    """One connection of the fake as a behaviour sees it."""

    writer: asyncio.StreamWriter
    smsc: FakeSmsc
    seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1_000_000))

    def send(self, pdu: P.Pdu) -> None:
        self.writer.write(encode(pdu))

    def answer(self, submit: P.SubmitSm, status: int = 0, message_id: str = "") -> None:
        self.send(P.SubmitSmResp(sequence_number=submit.sequence_number,
                                 command_status=status, message_id=message_id))

    def receipt(self, submit: P.SubmitSm, message_id: str, stat: Stat = Stat.DELIVRD,
                err: int = 0) -> None:
        pdu = receipt_deliver_sm(
            Receipt(message_id, stat.value, err, text=submit.short_message.decode("latin-1")),
            source_addr=submit.destination_addr, source_ton=1, source_npi=1,
            dest_addr=submit.source_addr, dest_ton=0, dest_npi=0)
        pdu.sequence_number = next(self.seq)
        self.send(pdu)

    def drop(self) -> None:
        self.writer.transport.abort()


Behaviour = Callable[[Upstream, P.SubmitSm], None]


def deliver(up: Upstream, submit: P.SubmitSm) -> None:
    """The well-behaved upstream: an id, then a DELIVRD receipt."""
    mid = up.smsc.next_id()
    up.answer(submit, 0, mid)
    up.receipt(submit, mid)


class FakeSmsc:
    def __init__(self, behaviour: Behaviour = deliver) -> None:
        self.behaviour = behaviour
        self.submits: list[P.SubmitSm] = []
        self.binds = 0
        self.receipt_answers: list[int] = []
        self.connections: list[Upstream] = []
        self._ids = itertools.count(1)
        self._server: asyncio.Server | None = None
        self.bound = asyncio.Event()
        self.changed = asyncio.Event()

    def next_id(self) -> str:
        return f"{next(self._ids):08X}"

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for up in self.connections:
                up.writer.transport.abort()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up = Upstream(writer, self)
        self.connections.append(up)
        frames = FrameReader()
        try:
            while data := await reader.read(65536):
                frames.feed(data)
                while (frame := frames.next_frame()) is not None:
                    pdu = decode(frame)
                    self._handle(up, pdu)
                self.changed.set()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _handle(self, up: Upstream, pdu: P.Pdu) -> None:
        if isinstance(pdu, P.BindTransceiver | P.BindTransmitter | P.BindReceiver):
            resp = P.RESPONSE_CLASS[type(pdu)]
            up.send(resp(sequence_number=pdu.sequence_number, system_id="fake"))
            self.binds += 1
            self.bound.set()
        elif isinstance(pdu, P.SubmitSm):
            self.submits.append(pdu)
            self.behaviour(up, pdu)
        elif isinstance(pdu, P.EnquireLink):
            up.send(P.EnquireLinkResp(sequence_number=pdu.sequence_number))
        elif isinstance(pdu, P.Unbind):
            up.send(P.UnbindResp(sequence_number=pdu.sequence_number))
        elif isinstance(pdu, P.DeliverSmResp):
            self.receipt_answers.append(pdu.command_status)

    async def until(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not condition():
                self.changed.clear()
                await self.changed.wait()
