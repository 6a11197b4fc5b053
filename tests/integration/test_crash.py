"""kill -9 under load: every message acknowledged with ESME_ROK reaches the provider,
exactly once (docs/store.md, rule 1)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from smppbridge.providers.simulator.settings import SimConfig
from smppbridge.simulator.app import Simulator
from smppbridge.smpp import pdu as P
from smppbridge.smpp.codec import FrameReader, decode, encode
from tests.integration.cluster import Bridge, free_port

WINDOW = 100
TOTAL = 3000
KILL_AFTER = 600  # acks seen before the kill


def _config(tmp_path: Path, smpp_port: int, sim_port: int) -> str:
    return f"""
[smpp]
listen = "127.0.0.1:{smpp_port}"
window = {WINDOW}
[http]
listen = ""
[store]
url = "sqlite:///{tmp_path}/crash.db"
[log]
level = "warning"
format = "json"
[[accounts]]
system_id = "load"
password = "pw"
window = {WINDOW}
providers = ["mysmpp"]
[[providers]]
name = "mysmpp"
type = "mysmpp-xml"
url = "http://127.0.0.1:{sim_port}/xml"
status_url = "http://127.0.0.1:{sim_port}/xml/state.php"
login = "user"
password = "pass"
poll_interval = 0.5
"""


@pytest.fixture
async def simulator() -> AsyncIterator[tuple[Simulator, int]]:
    sim = Simulator(SimConfig(login="user", password="pass", deliver_after=0.5))
    _, port = await sim.start("127.0.0.1", 0)
    try:
        yield sim, port
    finally:
        await sim.aclose()


async def _load(port: int, acked: set[str], kill: asyncio.Event) -> None:
    """Bind and pipeline TOTAL submits with a window; record acked ids until the link
    drops (the bridge is killed) or everything is answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    frames = FrameReader()
    try:
        writer.write(encode(P.BindTransmitter(sequence_number=1, system_id="load",
                                              password="pw")))
        outstanding = 0
        sent = 0
        seq = 1
        bound = False
        while True:
            while bound and outstanding < WINDOW and sent < TOTAL:
                seq += 1
                sent += 1
                outstanding += 1
                writer.write(encode(P.SubmitSm(
                    sequence_number=seq, source_addr="Load", source_addr_ton=5,
                    destination_addr=f"7900{sent:07d}", dest_addr_ton=1,
                    short_message=f"crash test {sent}".encode(), registered_delivery=1)))
            data = await asyncio.wait_for(reader.read(65536), 20)
            if not data:
                return
            frames.feed(data)
            while (frame := frames.next_frame()) is not None:
                pdu = decode(frame)
                if isinstance(pdu, P.BindTransmitterResp):
                    assert pdu.command_status == 0
                    bound = True
                elif isinstance(pdu, P.SubmitSmResp):
                    outstanding -= 1
                    if pdu.command_status == 0:
                        acked.add(pdu.message_id)
                    if len(acked) >= KILL_AFTER:
                        kill.set()
            if sent == TOTAL and outstanding == 0:
                return
    except (ConnectionError, TimeoutError):
        return
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def test_kill9_under_load_loses_nothing_and_sends_once(
        tmp_path: Path, simulator: tuple[Simulator, int]) -> None:
    """kill -9 of the bridge in the middle of a pipelined load, then a restart: every
    message_id acked with ESME_ROK arrives at the provider (as client_id_sms), and no
    message is created twice there."""
    sim, sim_port = simulator
    smpp_port = free_port()
    bridge = Bridge(tmp_path, "bridge", _config(tmp_path, smpp_port, sim_port), smpp_port)
    await bridge.start()
    acked: set[str] = set()
    kill = asyncio.Event()
    load = asyncio.create_task(_load(smpp_port, acked, kill))
    try:
        await asyncio.wait_for(kill.wait(), 60)
        bridge.kill()
        await asyncio.wait_for(load, 30)
        assert len(acked) >= KILL_AFTER
        await bridge.start()

        def at_provider() -> dict[str, int]:
            counts: dict[str, int] = {}
            for m in sim.engine.messages.values():
                counts[m.client_id] = counts.get(m.client_id, 0) + 1
            return counts

        deadline = time.monotonic() + 60
        while not acked <= at_provider().keys() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        counts = at_provider()
        missing = acked - counts.keys()
        assert not missing, f"{len(missing)} acked messages never reached the provider"
        assert max(counts.values()) == 1, "a message was created twice at the provider"
    finally:
        load.cancel()
        # Off the event loop: the stopping bridge may still talk to the simulator,
        # which runs on this loop.
        await asyncio.to_thread(bridge.stop)
