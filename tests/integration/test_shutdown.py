"""Graceful shutdown: in process (Node.stop with requests held in flight) and as a real
``smppbridge serve`` process receiving SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

import pytest
import smpplib.client
import smpplib.exceptions
import smpplib.smpp

from smppbridge.smpp import pdu as P
from smppbridge.smpp.constants import CommandStatus

from .conftest import (
    DEMO_ACCOUNT,
    ROUND_TRIP,
    GatedHandler,
    OpenPeer,
    StartNode,
    config_toml,
    free_port,
    submit_sm,
)

_S = CommandStatus
#: A provider so that the real pipeline of ``smppbridge serve`` accepts submits.
SIMULATOR = '\n[[providers]]\nname = "sim"\ntype = "simulator"\n'


async def test_stop_answers_in_flight_submits_then_unbinds(start_node: StartNode,
                                                           open_peer: OpenPeer) -> None:
    """On stop the listener closes at once and new submits are refused, but a submit
    already in flight is answered ESME_ROK before the server sends unbind; the stop
    completes once the ESME answers the unbind."""
    handler = GatedHandler()
    node = await start_node(smpp={"shutdown_grace": 5.0}, handler=handler)
    address = node.smpp.addresses["smpp"]
    peer = await open_peer(address)
    assert (await peer.bind()).command_status == _S.ESME_ROK
    held = peer.next_seq()
    peer.send(submit_sm(held))
    await handler.wait_in_flight(1)

    stopping = asyncio.create_task(node.stop())
    try:
        # One round trip lets the stop task run its first step (flag, close listener).
        assert isinstance(await peer.request(P.EnquireLink(sequence_number=peer.next_seq())),
                          P.EnquireLinkResp)
        assert node.smpp.stopping
        with pytest.raises(ConnectionRefusedError):
            await _connect_and_close(address)

        late = peer.next_seq()
        refused = await peer.request(submit_sm(late))
        assert isinstance(refused, P.SubmitSmResp)
        assert refused.sequence_number == late
        assert refused.command_status != _S.ESME_ROK
        assert handler.calls == 1  # the refused submit never reached the handler

        handler.gate.set()
        answered = await peer.read()
        assert isinstance(answered, P.SubmitSmResp)
        assert (answered.sequence_number, answered.command_status) == (held, _S.ESME_ROK)
        unbind = await peer.read()
        assert isinstance(unbind, P.Unbind)
        peer.send(P.UnbindResp(sequence_number=unbind.sequence_number))
        assert await peer.expect_closed() == b""
        await asyncio.wait_for(asyncio.shield(stopping), ROUND_TRIP)
    finally:
        handler.gate.set()
        await asyncio.wait_for(stopping, 10)


async def _connect_and_close(address: tuple[str, int]) -> None:
    _, writer = await asyncio.open_connection(*address)
    writer.close()
    await writer.wait_closed()


async def test_stop_aborts_sessions_that_ignore_unbind(start_node: StartNode,
                                                       open_peer: OpenPeer) -> None:
    """An ESME that never answers the unbind is disconnected when shutdown_grace runs
    out, and the stop still completes."""
    node = await start_node(smpp={"shutdown_grace": 0.3})
    peer = await open_peer(node.smpp.addresses["smpp"])
    assert (await peer.bind()).command_status == _S.ESME_ROK
    loop = asyncio.get_running_loop()
    began = loop.time()
    stopping = asyncio.create_task(node.stop())
    try:
        assert isinstance(await peer.read(), P.Unbind)
        await peer.expect_closed(0.3 + ROUND_TRIP)
        await asyncio.wait_for(asyncio.shield(stopping), ROUND_TRIP)
        assert loop.time() - began >= 0.3 - 0.05
    finally:
        await asyncio.wait_for(stopping, 10)


# --- SIGTERM to a real process -------------------------------------------------------------


def _bind_and_submit(port: int) -> smpplib.client.Client:
    client = smpplib.client.Client("127.0.0.1", port, timeout=5, allow_unknown_opt_params=True)
    try:
        client.connect()
        client.bind_transceiver(system_id="demo", password="demo")
        client.send_message(source_addr_ton=1, source_addr_npi=1, source_addr="12345",
                            dest_addr_ton=1, dest_addr_npi=1, destination_addr="79000000001",
                            short_message=b"before shutdown")
        resp = client.read_pdu()
        assert (resp.command, resp.status) == ("submit_sm_resp", 0)
    except BaseException:
        client.disconnect()
        raise
    return client


def _answer_unbind(client: smpplib.client.Client) -> None:
    """Read the server's unbind, answer unbind_resp, then see the server close."""
    try:
        pdu = client.read_pdu()
        assert pdu.command == "unbind"
        resp = smpplib.smpp.make_pdu("unbind_resp", client=client)
        resp.sequence = pdu.sequence
        client.send_pdu(resp)
        with pytest.raises(smpplib.exceptions.ConnectionError):
            client.read_pdu()
    finally:
        client.disconnect()


async def _wait_for_log(stream: asyncio.StreamReader, event: str, lines: list[str]) -> None:
    while True:
        raw = await stream.readline()
        if not raw:
            raise AssertionError(f"process ended before logging {event}: {lines}")
        lines.append(raw.decode(errors="replace"))
        if f'"event": "{event}"' in lines[-1]:
            return


async def test_sigterm_unbinds_and_exits_zero(tmp_path: Path) -> None:
    """``smppbridge serve`` on SIGTERM sends unbind to a bound smpplib client, closes
    once the client answers, and exits 0 well within shutdown_grace."""
    grace = 5.0
    port = free_port()
    config = tmp_path / "smppbridge.toml"
    config.write_text(config_toml(
        smpp={"listen": f"127.0.0.1:{port}", "shutdown_grace": grace},
        accounts=[{**DEMO_ACCOUNT, "providers": ["sim"]}], extra=SIMULATOR) +
        '\n[log]\nformat = "json"\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMPPBRIDGE_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "smppbridge", "serve", "--config", str(config),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE, env=env)
    assert proc.stderr is not None
    logs: list[str] = []
    try:
        await asyncio.wait_for(_wait_for_log(proc.stderr, "node.ready", logs), 20)
        client = await asyncio.wait_for(asyncio.to_thread(_bind_and_submit, port), 10)
        unbound = asyncio.create_task(asyncio.to_thread(_answer_unbind, client))
        loop = asyncio.get_running_loop()
        sent_at = loop.time()
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(unbound, grace)
        code = await asyncio.wait_for(proc.wait(), grace)
        assert code == 0
        assert loop.time() - sent_at < grace
        rest = await asyncio.wait_for(proc.stderr.read(), ROUND_TRIP)
        logs.extend(rest.decode(errors="replace").splitlines())
        assert any('"shutdown.finished"' in line for line in logs), logs
        assert not any('"shutdown.forced"' in line for line in logs), logs
    finally:
        if proc.returncode is None:
            proc.kill()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 10)
