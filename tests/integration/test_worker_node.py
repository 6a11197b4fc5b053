"""A node whose provider runs in a worker process (the default for HTTP providers):
mysmpp XML over real HTTP to the simulator on loopback, a real SMPP bind, receipts for
every message — also for messages submitted after the worker was killed (SIGKILL), which
the node replaces."""

from __future__ import annotations

import asyncio
import os
import signal
import time

from smppbridge.config import Config
from smppbridge.node.node import Node
from smppbridge.providers.simulator.settings import SimConfig
from smppbridge.providers.worker import WorkerProvider
from smppbridge.simulator.app import Simulator
from smppbridge.smpp import pdu as P
from smppbridge.smpp.constants import CommandStatus

from .conftest import ROUND_TRIP, OpenPeer, Peer, StartNode, answer_unasked, build_config

#: sending, a status poll (0.1 s) and the simulator's 0.2 s to a final status, plus a
#: worker's start (a Python start-up) after the kill: generous for a loaded CI machine
RECEIPT_TIMEOUT = 30.0


def _config(sim_url: str) -> Config:
    return build_config(accounts=[{"system_id": "workers", "password": "pw",
                                   "providers": ["mysmpp"]}], extra=f"""
[[providers]]
name = "mysmpp"
type = "mysmpp-xml"
url = "{sim_url}/xml"
status_url = "{sim_url}/xml/state.php"
login = "user"
password = "pass"
poll_interval = 0.1
poll_max_interval = 0.1
linger = 0.01
retries = 5
backoff = 0.2
backoff_max = 0.5
""")


def _submit(peer: Peer, text: str, destination: str) -> P.SubmitSm:
    return P.SubmitSm(sequence_number=peer.next_seq(), source_addr_ton=5,
                      source_addr="Bank", dest_addr_ton=1, dest_addr_npi=1,
                      destination_addr=destination, short_message=text.encode(),
                      registered_delivery=1)


async def _submit_all(peer: Peer, texts: list[str], receipts: list[dict[str, str]]) -> list[str]:
    """Submit each text (one destination each) and return the message ids; receipts
    that arrive meanwhile are acknowledged and collected."""
    ids = []
    for i, text in enumerate(texts):
        request = _submit(peer, text, f"7903{len(receipts) + i:07d}{len(ids)}")
        peer.send(request)
        while True:
            pdu = await peer.read()
            if pdu.is_response and pdu.sequence_number == request.sequence_number:
                assert pdu.command_status == CommandStatus.ESME_ROK
                ids.append(pdu.message_id)  # type: ignore[attr-defined]
                break
            answer_unasked(peer, pdu, receipts)
    return ids


async def _until_receipts(peer: Peer, receipts: list[dict[str, str]], ids: list[str]) -> None:
    deadline = time.monotonic() + RECEIPT_TIMEOUT
    while not set(ids) <= {r["id"] for r in receipts}:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"receipts for {sorted(set(ids) - {r['id'] for r in receipts})}"
        answer_unasked(peer, await peer.read(timeout=remaining), receipts)


async def test_receipts_flow_through_the_worker_and_survive_its_death(
        start_node: StartNode, open_peer: OpenPeer) -> None:
    sim = Simulator(SimConfig(deliver_after=0.2))
    host, port = await sim.start("127.0.0.1", 0, webhook_interval=None)
    try:
        node: Node = await start_node(config=_config(f"http://{host}:{port}"),
                                      content_pipeline=True)
        provider = node.providers["mysmpp"]
        assert isinstance(provider, WorkerProvider)
        first_pid = provider.pid
        assert first_pid is not None
        assert first_pid != os.getpid()

        peer = await open_peer(node.smpp.addresses["smpp"])
        bound = await peer.bind(system_id="workers", password="pw")
        assert bound.command_status == CommandStatus.ESME_ROK
        receipts: list[dict[str, str]] = []
        ids = await _submit_all(peer, [f"before {i}" for i in range(5)], receipts)
        await _until_receipts(peer, receipts, ids)
        assert {r["stat"] for r in receipts} == {"DELIVRD"}
        # the provider saw each message once, through the child
        assert len(sim.engine.messages) == 5

        os.kill(first_pid, signal.SIGKILL)
        async with asyncio.timeout(ROUND_TRIP * 5):
            while provider.pid == first_pid:  # the node notices the end of its socket
                await asyncio.sleep(0.01)
        later = await _submit_all(peer, [f"after {i}" for i in range(5)], receipts)
        await _until_receipts(peer, receipts, later)
        by_id = {r["id"]: r for r in receipts}
        assert {by_id[i]["stat"] for i in later} == {"DELIVRD"}
        assert provider.pid not in (None, first_pid)
    finally:
        await sim.aclose()
