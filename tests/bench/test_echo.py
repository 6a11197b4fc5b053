"""The bare-echo SMSC, both engines, seen through a raw client and our codec."""

from __future__ import annotations

import asyncio

import pytest

from smppbridge.bench.echo import EchoCounters, start_echo_server
from smppbridge.smpp import pdu as P
from smppbridge.smpp.codec import FrameReader, decode, encode
from smppbridge.smpp.constants import CommandStatus, EsmClass, MessageState, Tag
from smppbridge.smpp.receipts import parse_receipt

ENGINES = ["raw", "session"]


class _Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.frames = FrameReader()

    def send(self, pdu: P.Pdu) -> None:
        self.writer.write(encode(pdu))

    async def read(self, count: int) -> list[P.Pdu]:
        """The next ``count`` PDUs, within 5 s."""
        out: list[P.Pdu] = []
        async with asyncio.timeout(5):
            while len(out) < count:
                frame = self.frames.next_frame()
                if frame is None:
                    data = await self.reader.read(65536)
                    assert data, "echo closed the connection"
                    self.frames.feed(data)
                    continue
                out.append(decode(frame))
        return out

    async def finish(self, seq: int) -> None:
        """Unbind, then read until the echo closes, then close our side."""
        self.send(P.Unbind(sequence_number=seq))
        (resp,) = await self.read(1)
        assert isinstance(resp, P.UnbindResp)
        async with asyncio.timeout(5):
            while await self.reader.read(65536):
                pass
        self.writer.close()
        await self.writer.wait_closed()


async def _connect(engine: str, counters: EchoCounters) -> tuple[asyncio.Server, _Client]:
    server = await start_echo_server("127.0.0.1", 0, engine=engine,  # type: ignore[arg-type]
                                     counters=counters)
    port = server.sockets[0].getsockname()[1]
    return server, _Client(*await asyncio.open_connection("127.0.0.1", port))


def _submit(seq: int, registered_delivery: int) -> P.SubmitSm:
    return P.SubmitSm(sequence_number=seq, source_addr_ton=5, source_addr="bench",
                      dest_addr_ton=1, dest_addr_npi=1, destination_addr="79010000001",
                      registered_delivery=registered_delivery, short_message=b"hi")


@pytest.mark.parametrize("engine", ENGINES)
async def test_submit_gets_ack_and_one_delivrd_receipt(engine):
    """A transceiver's submit with registered_delivery 1 gets a submit_sm_resp with an
    incrementing id and one DELIVRD receipt, addresses swapped, carrying the same id."""
    counters = EchoCounters()
    server, client = await _connect(engine, counters)
    async with server:
        client.send(P.BindTransceiver(sequence_number=1, system_id="x", password="y"))
        (bind_resp,) = await client.read(1)
        assert isinstance(bind_resp, P.BindTransceiverResp)
        assert bind_resp.command_status == CommandStatus.ESME_ROK
        assert bind_resp.tlv(Tag.SC_INTERFACE_VERSION) == b"\x34"
        client.send(_submit(2, 1))
        client.send(_submit(3, 1))
        pdus = await client.read(4)
        acks = [p for p in pdus if isinstance(p, P.SubmitSmResp)]
        receipts = [p for p in pdus if isinstance(p, P.DeliverSm)]
        assert [a.sequence_number for a in acks] == [2, 3]
        assert [a.message_id for a in acks] == ["0000000001", "0000000002"]
        for ack, receipt in zip(acks, receipts, strict=True):
            assert receipt.esm_class == EsmClass.DELIVERY_RECEIPT
            assert (receipt.source_addr, receipt.source_addr_ton) == ("79010000001", 1)
            assert (receipt.destination_addr, receipt.dest_addr_ton) == ("bench", 5)
            assert receipt.tlv(Tag.RECEIPTED_MESSAGE_ID) == ack.message_id.encode() + b"\0"
            assert receipt.tlv(Tag.MESSAGE_STATE) == bytes([MessageState.DELIVERED])
            fields = parse_receipt(receipt.short_message.decode())
            assert (fields["id"], fields["stat"]) == (ack.message_id, "DELIVRD")
        await client.finish(4)
    assert (counters.submits, counters.receipts) == (2, 2)


@pytest.mark.parametrize("engine", ENGINES)
async def test_no_receipt_unless_asked_or_possible(engine):
    """No receipt for registered_delivery 0 or 2 (failure only), nor on a transmitter
    bind, which cannot receive deliver_sm; enquire_link is answered."""
    counters = EchoCounters()
    server, client = await _connect(engine, counters)
    async with server:
        client.send(P.BindTransmitter(sequence_number=1, system_id="x", password="y"))
        assert [type(p) for p in await client.read(1)] == [P.BindTransmitterResp]
        client.send(_submit(2, 1))
        client.send(_submit(3, 0))
        client.send(P.EnquireLink(sequence_number=4))
        pdus = sorted(await client.read(3), key=lambda p: p.sequence_number)
        # (responses may come out of order: the session engine answers enquire_link
        # itself, before the submits reach the application)
        assert [type(p) for p in pdus] == [P.SubmitSmResp, P.SubmitSmResp,
                                           P.EnquireLinkResp]
        await client.finish(5)
    server2, client2 = await _connect(engine, counters)
    async with server2:
        client2.send(P.BindTransceiver(sequence_number=1, system_id="x", password="y"))
        assert [type(p) for p in await client2.read(1)] == [P.BindTransceiverResp]
        client2.send(_submit(2, 2))
        client2.send(P.EnquireLink(sequence_number=3))
        pdus = sorted(await client2.read(2), key=lambda p: p.sequence_number)
        assert [type(p) for p in pdus] == [P.SubmitSmResp, P.EnquireLinkResp]
        await client2.finish(4)
    assert counters.receipts == 0
