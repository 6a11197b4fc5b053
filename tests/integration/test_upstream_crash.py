"""kill -9 of a node whose provider is an upstream SMSC (type smpp), in the middle of
a pipelined load, then a restart: every message acked with ESME_ROK reaches the
upstream. SMPP allows a duplicate here, and only here: a submit_sm the upstream took
whose submit_sm_resp was not yet written as sent when the node died is sent again
after the restart (docs/providers.md, The smpp provider: sending, at least once)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest

from smppbridge.smpp import pdu as P
from smppbridge.smpp.codec import FrameReader, decode, encode
from tests.integration.cluster import Bridge, free_port
from tests.integration.upstream_fake import FakeSmsc

pytestmark = pytest.mark.integration

WINDOW = 100
TOTAL = 3000
KILL_AFTER = 600


def _config(tmp_path: Path, smpp_port: int, upstream_port: int) -> str:
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
providers = ["up"]
[[providers]]
name = "up"
type = "smpp"
host = "127.0.0.1"
port = {upstream_port}
system_id = "bridge"
password = "pw"
reconnect_backoff = 0.05
reconnect_backoff_max = 0.2
"""


async def _load(port: int, acked: set[bytes], kill: asyncio.Event) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    frames = FrameReader()
    texts: dict[int, bytes] = {}
    try:
        writer.write(encode(P.BindTransmitter(sequence_number=1, system_id="load",
                                              password="pw")))
        outstanding = sent = 0
        seq = 1
        bound = False
        while True:
            while bound and outstanding < WINDOW and sent < TOTAL:
                seq += 1
                sent += 1
                outstanding += 1
                texts[seq] = f"crash {sent}".encode()
                writer.write(encode(P.SubmitSm(
                    sequence_number=seq, source_addr="Load", destination_addr=
                    f"7900{sent:07d}", short_message=texts[seq], registered_delivery=1)))
            data = await asyncio.wait_for(reader.read(65536), 20)
            if not data:
                return
            frames.feed(data)
            while (frame := frames.next_frame()) is not None:
                pdu = decode(frame)
                if isinstance(pdu, P.BindTransmitterResp):
                    bound = True
                elif isinstance(pdu, P.SubmitSmResp):
                    outstanding -= 1
                    if pdu.command_status == 0:
                        acked.add(texts[pdu.sequence_number])
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


async def test_kill9_loses_no_acknowledged_message_on_the_way_upstream(
        tmp_path: Path) -> None:
    fake = FakeSmsc()
    upstream_port = await fake.start()
    smpp_port = free_port()
    bridge = Bridge(tmp_path, "bridge", _config(tmp_path, smpp_port, upstream_port),
                    smpp_port)
    await bridge.start()
    acked: set[bytes] = set()
    kill = asyncio.Event()
    load = asyncio.create_task(_load(smpp_port, acked, kill))
    try:
        await asyncio.wait_for(kill.wait(), 60)
        bridge.kill()
        await asyncio.wait_for(load, 30)
        assert len(acked) >= KILL_AFTER
        await bridge.start()
        deadline = time.monotonic() + 60
        while not acked <= {s.short_message for s in fake.submits} \
                and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        upstream = [s.short_message for s in fake.submits]
        missing = acked - set(upstream)
        assert not missing, f"{len(missing)} acked messages never reached the upstream"
        # Duplicates are bounded by what can be in flight at the kill (docs).
        print(f"acked {len(acked)}, at the upstream {len(upstream)}, "
              f"duplicates {len(upstream) - len(set(upstream))}")
        assert len(upstream) - len(set(upstream)) <= 2000
    finally:
        load.cancel()
        await asyncio.to_thread(bridge.stop)
        await fake.close()
