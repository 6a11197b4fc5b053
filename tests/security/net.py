"""Real-socket helpers for the security tests: a Node on 127.0.0.1 with the simulator
provider behind it, a raw SMPP client on our own codec, and a :class:`Watchdog` — a
well-behaved client that keeps submitting while an abuse runs, and fails the test if
one of its round trips takes longer than a generous bound.

Every socket opened here is closed by its owner (``filterwarnings = error``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import ssl
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from smppbridge.config import parse_config
from smppbridge.node.node import Node
from smppbridge.smpp import pdu as P
from smppbridge.smpp.codec import decode, encode
from smppbridge.smpp.constants import HEADER_LENGTH, CommandStatus

__all__ = ["GOOD", "ROUND_TRIP", "Client", "Watchdog", "node_toml", "start_node"]

#: Generous bound for one round trip on loopback, far above the real latency.
ROUND_TRIP = 2.0
_HEADER = struct.Struct(">IIII")
_S = CommandStatus

#: The well-behaved ESME's account.
GOOD: dict[str, Any] = {"system_id": "good", "password": "goodpw"}


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)  # strings and lists of strings are TOML this way


def node_toml(smpp: Mapping[str, Any] | None = None, *,
              accounts: Sequence[Mapping[str, Any]] = (GOOD,),
              providers: Sequence[Mapping[str, Any]] = ({"name": "sim", "type": "simulator"},),
              http: Mapping[str, Any] | None = None) -> str:
    """A node on ephemeral loopback ports with a memory store. Accounts route to the
    first provider and have the flood rules off (tests send the same text a lot)."""
    settings: dict[str, Any] = {"listen": "127.0.0.1:0", "shutdown_grace": 1.0}
    settings.update(smpp or {})
    lines = ["[smpp]", *(f"{k} = {_toml(v)}" for k, v in settings.items()),
             "[http]", *(f"{k} = {_toml(v)}" for k, v in (http or {"listen": ""}).items()),
             "[store]", 'url = "memory://"', "[log]", 'level = "debug"']
    for account in accounts:
        full = {"providers": [providers[0]["name"]], "flood": {"enabled": False}, **account}
        lines += ["[[accounts]]", *(f"{k} = {_toml(v)}" for k, v in full.items())]
    for provider in providers:
        lines += ["[[providers]]", *(f"{k} = {_toml(v)}" for k, v in provider.items())]
    return "\n".join(lines) + "\n"


async def start_node(toml: str) -> Node:
    node = Node(parse_config(toml, source="<security test>", env={}))
    await node.start()
    return node


class Client:
    """A raw SMPP client: write PDUs or bytes, read one PDU at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._seq = itertools.count(1)

    @classmethod
    async def connect(cls, address: tuple[str, int] | None, **kwargs: Any) -> Client:
        """Connect to ``address`` (None with ``sock=`` for a socket already connected)."""
        host, port = address if address is not None else (None, None)
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, **kwargs), ROUND_TRIP)
        return cls(reader, writer)

    def next_seq(self) -> int:
        return next(self._seq)

    def send(self, pdu: P.Pdu) -> None:
        self.writer.write(encode(pdu))

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def read(self, timeout: float = ROUND_TRIP) -> P.Pdu:
        async def one() -> P.Pdu:
            header = await self.reader.readexactly(HEADER_LENGTH)
            length = _HEADER.unpack(header)[0]
            return decode(header + await self.reader.readexactly(length - HEADER_LENGTH))

        return await asyncio.wait_for(one(), timeout)

    async def request(self, pdu: P.Pdu, timeout: float = ROUND_TRIP) -> P.Pdu:
        self.send(pdu)
        return await self.read(timeout)

    async def bind(self, system_id: str = GOOD["system_id"], password: str = GOOD["password"],
                   cls: type[P.Pdu] = P.BindTransmitter) -> P.Pdu:
        return await self.request(cls(sequence_number=self.next_seq(),  # type: ignore[call-arg]
                                      system_id=system_id, password=password))

    def submit_pdu(self, text: bytes = b"hello") -> P.SubmitSm:
        return P.SubmitSm(sequence_number=self.next_seq(), source_addr="SENDER",
                          dest_addr_ton=1, dest_addr_npi=1, destination_addr="380501234567",
                          short_message=text)

    async def submit(self, text: bytes = b"hello") -> P.Pdu:
        return await self.request(self.submit_pdu(text))

    async def expect_closed(self, timeout: float = ROUND_TRIP) -> bytes:
        """Read until the server closes; what arrived before EOF (a reset counts too)."""
        async def until_eof() -> bytes:
            got = bytearray()
            with contextlib.suppress(ConnectionResetError):
                while chunk := await self.reader.read(65536):
                    got += chunk
            return bytes(got)

        return await asyncio.wait_for(until_eof(), timeout)

    async def close(self) -> None:
        if self.writer.is_closing():
            return
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError, TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), ROUND_TRIP)


@dataclass
class Watchdog:
    """A bound, well-behaved ESME submitting in a loop while an abuse runs.

    Each round trip must finish within ``bound`` seconds with ESME_ROK; the first one
    that does not fails :meth:`check`. :meth:`more` waits (on an event, with a deadline)
    until a number of further round trips completed, so a test can say "while the
    abuse is running, the good client still got N answers".
    """

    client: Client
    bound: float = ROUND_TRIP
    round_trips: list[float] = field(default_factory=list)
    _done: asyncio.Event = field(default_factory=asyncio.Event)
    _progress: asyncio.Condition = field(default_factory=asyncio.Condition)
    _task: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, address: tuple[str, int]) -> Watchdog:
        client = await Client.connect(address)
        resp = await client.bind()
        assert resp.command_status == _S.ESME_ROK, resp
        dog = cls(client)
        dog._task = asyncio.get_running_loop().create_task(dog._run())
        return dog

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        for n in itertools.count(1):
            if self._done.is_set():
                return
            started = loop.time()
            # The text changes so that no content rule could ever refuse it.
            resp = await self.client.request(self.client.submit_pdu(f"ping {n}".encode()),
                                             timeout=self.bound)
            assert resp.command_status == _S.ESME_ROK, resp
            async with self._progress:
                self.round_trips.append(loop.time() - started)
                self._progress.notify_all()
            # Pacing, not synchronisation: leave the CPU to the abuse being measured.
            await asyncio.sleep(0.02)

    async def more(self, n: int = 3, timeout: float = 10 * ROUND_TRIP) -> None:
        """Wait until ``n`` more round trips have completed (the watchdog's own failure,
        if any, is raised here)."""
        assert self._task is not None
        target = len(self.round_trips) + n

        async def reached() -> None:
            async with self._progress:
                await self._progress.wait_for(lambda: len(self.round_trips) >= target
                                              or self._task is None or self._task.done())

        await asyncio.wait_for(reached(), timeout)
        if self._task.done():
            self._task.result()  # re-raise why it stopped

    async def check(self) -> None:
        """Stop, then fail if any round trip failed or took longer than the bound."""
        self._done.set()
        if self._task is not None:
            await asyncio.wait_for(self._task, 2 * self.bound)
        assert self.round_trips, "the well-behaved client never got an answer"
        assert max(self.round_trips) <= self.bound, max(self.round_trips)

    async def close(self) -> None:
        self._done.set()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self.client.close()
