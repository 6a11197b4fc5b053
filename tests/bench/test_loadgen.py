"""The load generator against servers on 127.0.0.1 in this process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from smppbridge.bench.echo import EchoCounters, start_echo_server
from smppbridge.bench.loadgen import LoadConfig, LoadError, run_load
from smppbridge.smpp import pdu as P
from smppbridge.smpp.session import NEED_DATA, Closed, SessionConfig, SmscSession


@pytest.fixture
async def echo() -> AsyncIterator[tuple[int, EchoCounters]]:
    counters = EchoCounters()
    server = await start_echo_server("127.0.0.1", 0, counters=counters)
    async with server:
        yield server.sockets[0].getsockname()[1], counters


async def test_every_submit_is_acked_and_receipted(echo):
    """200 messages at W=10: every submit acked, one receipt per submit counted, one
    latency sample per ack, no errors."""
    port, counters = echo
    r = await run_load(LoadConfig(port=port, messages=200, window=10, receipt_timeout=10))
    assert (r.submitted, r.acked, r.unacked, r.errors) == (200, 200, 0, {})
    assert r.receipts == r.expected_receipts == 200
    assert r.latency.count == 200
    assert 0 < r.latency.p50_ms <= r.latency.p99_ms <= r.latency.max_ms
    assert r.submits_per_second > 0
    assert counters.submits == 200
    assert counters.receipts == 200


async def test_sessions_share_the_budget(echo):
    """4 sessions send 203 messages between them, not 203 each."""
    port, counters = echo
    r = await run_load(LoadConfig(port=port, messages=203, window=7, sessions=4,
                                  registered_delivery=0))
    assert (r.submitted, r.acked, r.receipts) == (203, 203, 0)
    assert counters.binds == 4


async def test_multipart_ucs2_sends_every_part(echo):
    """parts=3: each message is three submit_sm; receipts come per part."""
    port, counters = echo
    r = await run_load(LoadConfig(port=port, messages=20, window=9, parts=3,
                                  receipt_timeout=10))
    assert (r.submitted, r.acked, r.receipts) == (60, 60, 60)
    assert counters.submits == 60
    assert r.messages_per_second == pytest.approx(r.submits_per_second / 3)


async def test_duration_bounds_the_run(echo):
    """With only a duration, issuing stops at it and every issued submit is acked."""
    port, _ = echo
    started = time.monotonic()
    r = await run_load(LoadConfig(port=port, messages=None, duration=0.3, window=10,
                                  registered_delivery=0))
    assert time.monotonic() - started < 5
    assert r.submitted > 0
    assert r.acked == r.submitted


async def test_rate_paces_submits(echo):
    """rate=2000 for 0.5 s issues about 1,000 submits, not as many as the window allows."""
    port, _ = echo
    r = await run_load(LoadConfig(port=port, messages=None, duration=0.5, rate=2000,
                                  window=100, registered_delivery=0))
    assert 600 <= r.submitted <= 1100


class _Recorder:
    """An SMSC on SmscSession that binds anyone and records submits; ``answer`` says
    whether it acks them."""

    def __init__(self, *, answer: bool) -> None:
        self.answer = answer
        self.submits: list[P.SubmitSm] = []

    def protocol(self) -> asyncio.Protocol:
        recorder = self

        class _Proto(asyncio.Protocol):
            def connection_made(self, transport):
                self.transport = transport
                self.session = SmscSession(SessionConfig(window=10_000), 0.0)

            def data_received(self, data):
                self.session.receive_data(data, 0.0)
                while (event := self.session.next_event()) is not NEED_DATA:
                    if isinstance(event, P.BindTransceiver):
                        self.session.send(P.BindTransceiverResp(
                            sequence_number=event.sequence_number, system_id="rec"), 0.0)
                    elif isinstance(event, P.SubmitSm):
                        recorder.submits.append(event)
                        if recorder.answer:
                            self.session.send(P.SubmitSmResp(
                                sequence_number=event.sequence_number, message_id="1"), 0.0)
                    elif isinstance(event, Closed):
                        self.transport.close()
                self.transport.write(self.session.data_to_send())

        return _Proto()


async def _serve(recorder: _Recorder) -> tuple[asyncio.Server, int]:
    loop = asyncio.get_running_loop()
    factory: Callable[[], asyncio.Protocol] = recorder.protocol
    server = await loop.create_server(factory, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_messages_differ_in_destination_and_text():
    """Every message has its own destination and text (flood rules refuse repeats), and
    sequence numbers are distinct per session."""
    recorder = _Recorder(answer=True)
    server, port = await _serve(recorder)
    async with server:
        r = await run_load(LoadConfig(port=port, messages=50, window=5, sessions=2,
                                      registered_delivery=0))
    assert r.acked == 50
    assert len({s.destination_addr for s in recorder.submits}) == 50
    assert len({s.short_message for s in recorder.submits}) == 50
    assert recorder.submits[0].destination_addr == "7900" + "0000000"
    assert recorder.submits[0].short_message == b"load 0 0"


async def test_first_message_numbers_a_run_after_an_earlier_one():
    """``first_message`` starts each session's numbering further on, so a second run
    against the same server repeats none of the first run's messages."""
    recorder = _Recorder(answer=True)
    server, port = await _serve(recorder)
    async with server:
        for first in (0, 1_000_000):
            r = await run_load(LoadConfig(port=port, messages=10, window=5,
                                          registered_delivery=0, first_message=first))
            assert r.acked == 10
    assert len({(s.destination_addr, s.short_message) for s in recorder.submits}) == 20
    assert recorder.submits[10].destination_addr == "7900" + "1000000"
    assert recorder.submits[10].short_message == b"load 0 1000000"


async def test_multipart_parts_travel_together():
    """The parts of one message go to one destination in order, UDHI set, UCS2, with a
    16-bit-reference UDH numbering them 1..3 under one reference."""
    recorder = _Recorder(answer=True)
    server, port = await _serve(recorder)
    async with server:
        r = await run_load(LoadConfig(port=port, messages=4, window=3, parts=3,
                                      registered_delivery=0))
    assert r.acked == 12
    for first in range(0, 12, 3):
        parts = recorder.submits[first:first + 3]
        assert len({p.destination_addr for p in parts}) == 1
        assert {(p.esm_class, p.data_coding) for p in parts} == {(0x40, 8)}
        udhs = [p.short_message[:7] for p in parts]
        assert [u[:3] for u in udhs] == [b"\x06\x08\x04"] * 3
        assert len({u[3:5] for u in udhs}) == 1
        assert [(u[5], u[6]) for u in udhs] == [(3, 1), (3, 2), (3, 3)]


async def test_window_caps_outstanding_submits():
    """A server that never answers sees exactly W submits per session; the rest of the
    budget is never issued and the run ends at ack_timeout."""
    recorder = _Recorder(answer=False)
    server, port = await _serve(recorder)
    async with server:
        r = await run_load(LoadConfig(port=port, messages=100, window=7, sessions=2,
                                      ack_timeout=0.3, max_seconds=0.2, unbind_timeout=0.5))
    assert len(recorder.submits) == 14
    assert (r.submitted, r.acked, r.unacked) == (14, 0, 14)


async def test_connect_failure_is_a_load_error():
    """Nothing listening: LoadError naming the address, within connect_timeout."""
    server = await asyncio.get_running_loop().create_server(asyncio.Protocol, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(LoadError, match=f"127.0.0.1:{port}"):
        await run_load(LoadConfig(port=port, connect_timeout=2))


def test_config_refuses_a_window_smaller_than_a_message():
    """A window must hold all parts of one message, or nothing could ever be sent."""
    with pytest.raises(ValueError, match="window"):
        LoadConfig(window=2, parts=3).validate()
    with pytest.raises(ValueError, match="messages, duration"):
        LoadConfig(messages=None, duration=None).validate()
