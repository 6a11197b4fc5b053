"""Integration fixtures: a real :class:`~smppbridge.node.node.Node` on 127.0.0.1 (ephemeral
ports) per test, and a raw-bytes SMPP peer built on asyncio streams and our own codec.

The tests that open sockets are listed in docs/development.md. Every socket a test opens is
closed by the fixtures that hand it out, because ``filterwarnings = error`` turns an
unclosed transport's ResourceWarning into a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from smppbridge.config import Config, parse_config
from smppbridge.core.ports import SubmitHandler
from smppbridge.core.session import SessionContext, SubmitResult
from smppbridge.node.node import Node
from smppbridge.smpp import pdu as P
from smppbridge.smpp.codec import decode, encode
from smppbridge.smpp.constants import HEADER_LENGTH
from smppbridge.smpp.receipts import parse_receipt
from smppbridge.testing import MemoryHandler
from tests.integration.callback_receiver import CallbackReceiver

#: The account every test binds with unless it configures its own.
DEMO_ACCOUNT: dict[str, Any] = {"system_id": "demo", "password": "demo"}
#: Generous bound for a single round trip on loopback; far above the real latency.
ROUND_TRIP = 2.0
_HEADER = struct.Struct(">IIII")


# --- configuration -----------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value)  # strings and lists of strings are valid TOML this way


def config_toml(smpp: Mapping[str, Any] | None = None,
                accounts: Sequence[Mapping[str, Any]] = (DEMO_ACCOUNT,), extra: str = "") -> str:
    """TOML text for a test node: ephemeral SMPP port, no HTTP side, memory store;
    ``extra`` is appended verbatim (e.g. ``[[providers]]`` tables).

    ``shutdown_grace`` defaults to 1 s so that teardown never waits long on a peer
    that a test left unanswered.
    """
    settings: dict[str, Any] = {"listen": "127.0.0.1:0", "shutdown_grace": 1.0}
    settings.update(smpp or {})
    lines = ["[smpp]", *(f"{k} = {_toml_value(v)}" for k, v in settings.items()),
             "", "[http]", 'listen = ""', "", "[store]", 'url = "memory://"']
    for account in accounts:
        lines += ["", "[[accounts]]", *(f"{k} = {_toml_value(v)}" for k, v in account.items())]
    return "\n".join(lines) + "\n" + extra


def build_config(smpp: Mapping[str, Any] | None = None,
                 accounts: Sequence[Mapping[str, Any]] = (DEMO_ACCOUNT,),
                 extra: str = "") -> Config:
    return parse_config(config_toml(smpp, accounts, extra), source="<integration test>",
                        env={})


def free_port() -> int:
    """A TCP port that was free a moment ago (for the subprocess tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --- handlers ----------------------------------------------------------------------------


@dataclass
class GatedHandler(MemoryHandler):
    """A MemoryHandler whose submits wait on ``gate``: holds requests in flight.

    ``in_flight`` counts submits inside the handler right now and ``peak`` the most
    ever seen at once; :meth:`wait_in_flight` waits on a condition, never on a clock.
    """

    gate: asyncio.Event = field(default_factory=asyncio.Event)
    in_flight: int = 0
    peak: int = 0
    calls: int = 0
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def submit(self, ctx: SessionContext, pdu: P.SubmitSm) -> SubmitResult:
        async with self._changed:
            self.calls += 1
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            self._changed.notify_all()
        try:
            await self.gate.wait()
            return await super().submit(ctx, pdu)
        finally:
            self.in_flight -= 1

    async def wait_in_flight(self, n: int, timeout: float = ROUND_TRIP) -> None:
        async def reached() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: self.in_flight >= n)

        await asyncio.wait_for(reached(), timeout)


# --- raw peer ----------------------------------------------------------------------------


def frame(command_id: int, body: bytes = b"", *, sequence_number: int = 1, status: int = 0,
          command_length: int | None = None) -> bytes:
    """One PDU as raw bytes; ``command_length`` may lie about the real size."""
    length = HEADER_LENGTH + len(body) if command_length is None else command_length
    return _HEADER.pack(length, command_id, status, sequence_number) + body


def cstr(value: bytes) -> bytes:
    return value + b"\0"


def submit_body(*, source_addr: bytes = b"12345", destination_addr: bytes = b"79000000001",
                short_message: bytes = b"hi", sm_length: int | None = None,
                tlvs: bytes = b"") -> bytes:
    """A submit_sm body written field by field (SMPP 3.4 §4.4.1), so that a test can
    break exactly one field where our encoder would refuse to."""
    return b"".join([
        cstr(b""),                      # service_type
        bytes([1, 1]), cstr(source_addr),
        bytes([1, 1]), cstr(destination_addr),
        bytes([0, 0, 0]),               # esm_class, protocol_id, priority_flag
        cstr(b""), cstr(b""),           # schedule_delivery_time, validity_period
        bytes([0, 0, 0, 0]),            # registered_delivery .. sm_default_msg_id
        bytes([len(short_message) if sm_length is None else sm_length]),
        short_message,
        tlvs,
    ])


def submit_sm(sequence_number: int, text: bytes = b"hi") -> P.SubmitSm:
    return P.SubmitSm(sequence_number=sequence_number, source_addr_ton=1, source_addr_npi=1,
                      source_addr="12345", dest_addr_ton=1, dest_addr_npi=1,
                      destination_addr="79000000001", short_message=text)


class Peer:
    """A raw SMPP peer on one socket: write PDUs or bytes, read one PDU at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.last_frame = b""
        self._seq = itertools.count(1)

    def next_seq(self) -> int:
        return next(self._seq)

    def send(self, pdu: P.Pdu) -> None:
        self.writer.write(encode(pdu))

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def read_frame(self, timeout: float = ROUND_TRIP) -> bytes:
        """The next whole PDU as bytes; IncompleteReadError when the server closed."""
        async def read() -> bytes:
            header = await self.reader.readexactly(HEADER_LENGTH)
            length = _HEADER.unpack(header)[0]
            return header + await self.reader.readexactly(length - HEADER_LENGTH)

        self.last_frame = await asyncio.wait_for(read(), timeout)
        return self.last_frame

    async def read(self, timeout: float = ROUND_TRIP) -> P.Pdu:
        return decode(await self.read_frame(timeout))

    async def request(self, pdu: P.Pdu, timeout: float = ROUND_TRIP) -> P.Pdu:
        """Send ``pdu`` and return the next PDU read (its response on a quiet link)."""
        self.send(pdu)
        return await self.read(timeout)

    async def request_raw(self, data: bytes, timeout: float = ROUND_TRIP) -> P.Pdu:
        """Send raw bytes and return the next PDU read."""
        self.send_raw(data)
        return await self.read(timeout)

    async def bind(self, cls: type[P.Pdu] = P.BindTransceiver, system_id: str = "demo",
                   password: str = "demo", **fields: Any) -> P.Pdu:
        return await self.request(cls(sequence_number=self.next_seq(), system_id=system_id,
                                      password=password, **fields))

    async def submit(self, text: bytes = b"hi") -> P.Pdu:
        return await self.request(submit_sm(self.next_seq(), text))

    async def expect_closed(self, timeout: float = ROUND_TRIP) -> bytes:
        """Wait for the server to close the socket; return whatever arrived before EOF."""
        async def until_eof() -> bytes:
            got = bytearray()
            while chunk := await self.reader.read(65536):
                got += chunk
            return bytes(got)

        return await asyncio.wait_for(until_eof(), timeout)

    async def close(self) -> None:
        if self.writer.is_closing():
            return
        if self.writer.transport.get_write_buffer_size():
            # A peer the server stopped reading: close() would wait for a flush that
            # never comes, so reset the connection instead.
            self.writer.transport.abort()
        else:
            self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await self.writer.wait_closed()


OpenPeer = Callable[..., Awaitable[Peer]]
StartNode = Callable[..., Awaitable[Node]]


@pytest.fixture
async def start_node() -> AsyncIterator[StartNode]:
    """Factory: ``await start_node(smpp={...}, accounts=[...], handler=...)`` → a started
    Node; every node not already stopped by its test is stopped at teardown.

    The submit handler is a :class:`MemoryHandler` unless the test passes its own;
    ``content_pipeline=True`` keeps the node's real content stage and pipeline instead.
    """
    nodes: list[Node] = []

    async def start(smpp: Mapping[str, Any] | None = None,
                    accounts: Sequence[Mapping[str, Any]] = (DEMO_ACCOUNT,),
                    handler: SubmitHandler | None = None,
                    config: Config | None = None, *, extra: str = "",
                    content_pipeline: bool = False) -> Node:
        if not content_pipeline and handler is None:
            handler = MemoryHandler()
        node = Node(config or build_config(smpp, accounts, extra), handler=handler)
        await node.start()
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        if not node.smpp.stopping:
            await asyncio.wait_for(node.stop(), 10)


@pytest.fixture
async def node(start_node: StartNode) -> Node:
    """A node with the default limits and the demo/demo account."""
    return await start_node()


@pytest.fixture
async def open_peer() -> AsyncIterator[OpenPeer]:
    """Factory: ``await open_peer(address, ssl=..., server_hostname=...)`` (or
    ``open_peer(sock=...)``) → a connected :class:`Peer`; every peer is closed at
    teardown."""
    peers: list[Peer] = []

    async def connect(address: tuple[str, int] | None = None, **kwargs: Any) -> Peer:
        host, port = address if address is not None else (None, None)  # None: sock=...
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, **kwargs), ROUND_TRIP)
        peer = Peer(reader, writer)
        peers.append(peer)
        return peer

    yield connect
    for peer in peers:
        await peer.close()


def answer_unasked(peer: Peer, pdu: P.Pdu, receipts: list[dict[str, str]]) -> None:
    """Acknowledge what the server sends a peer unasked: receipts (parsed into
    ``receipts``) and enquire_link probes."""
    if isinstance(pdu, P.DeliverSm):
        receipts.append(parse_receipt(pdu.short_message.decode("ascii")))
        peer.send(P.DeliverSmResp(sequence_number=pdu.sequence_number))
    elif isinstance(pdu, P.EnquireLink):
        peer.send(P.EnquireLinkResp(sequence_number=pdu.sequence_number))


@pytest.fixture
async def receiver(request: pytest.FixtureRequest) -> AsyncIterator[CallbackReceiver]:
    """A real callback receiver (tests/integration/callback_receiver.py) that checks
    signatures with the test module's ``SECRET``."""
    r = CallbackReceiver(getattr(request.module, "SECRET", ""))
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


@pytest.fixture
async def http(node: Node) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the test's ``node`` (the module's own fixture)."""
    assert node.http_address is not None
    host, port = node.http_address
    async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=10) as client:
        yield client
