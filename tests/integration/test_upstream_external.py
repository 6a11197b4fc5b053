"""The smpp provider against SMSCs this project did not write, as upstreams: the npm
``smpp`` package's server (tests/upstreams/npm_smpp_server.js; receipts in the text
only, ids decimal in submit_sm_resp and hex in the receipt) and Net::SMPP's
(tests/upstreams/netsmpp_server.pl; hex ids, receipt TLVs). Each test skips, saying
why, when node + the npm package or perl + Net::SMPP are missing here; .ci/run
installs both."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from smppbridge.node.node import Node
from smppbridge.providers.smpp.provider import SmppProvider
from tests.integration.conftest import OpenPeer, StartNode, build_config
from tests.integration.test_upstream_faults import bound_peer, receipts_for, send
from tests.integration.test_upstream_smpp import forwarding_provider

pytestmark = pytest.mark.integration

UPSTREAMS = Path(__file__).resolve().parent.parent / "upstreams"
#: where the npm package is (``npm install --prefix tests/upstreams``, or elsewhere)
NODE_MODULES = Path(os.environ.get("SMPPBRIDGE_TEST_NODE_MODULES",
                                   UPSTREAMS / "node_modules"))


def _npm_command() -> list[str] | None:
    if shutil.which("node") is None or not (NODE_MODULES / "smpp").is_dir():
        return None
    return ["node", str(UPSTREAMS / "npm_smpp_server.js"), "0"]


def _perl_command() -> list[str] | None:
    if shutil.which("perl") is None or subprocess.run(
            ["perl", "-MNet::SMPP", "-e", "1"], capture_output=True, check=False).returncode:
        return None
    return ["perl", str(UPSTREAMS / "netsmpp_server.pl"), "0"]


async def _spawn(command: list[str]) -> tuple[asyncio.subprocess.Process, int]:
    env = {**os.environ, "NODE_PATH": str(NODE_MODULES)}
    proc = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE,
                                                env=env)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 15)
    assert line.startswith(b"LISTENING "), line
    return proc, int(line.split()[1])


@pytest.fixture
async def external() -> AsyncIterator[Callable[[list[str] | None, str], object]]:
    procs: list[asyncio.subprocess.Process] = []

    async def start(command: list[str] | None, missing: str) -> int:
        if command is None:
            pytest.skip(missing)
        proc, port = await _spawn(command)
        procs.append(proc)
        return port

    yield start  # type: ignore[misc]
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def _through(start_node: StartNode, open_peer: OpenPeer, port: int) -> None:
    node: Node = await start_node(config=build_config(
        accounts=[{"system_id": "demo", "password": "demo", "providers": ["up"]}],
        extra=forwarding_provider(port)), content_pipeline=True)
    provider = node.providers["up"]
    assert isinstance(provider, SmppProvider)
    async with asyncio.timeout(10):
        await provider._bound.wait()
    peer = await bound_peer(node, open_peer)
    ids = await send(peer, 5)
    got = await receipts_for(peer, ids)
    assert {got[i]["stat"] for i in ids} == {"DELIVRD"}


async def test_the_npm_smpp_server_as_upstream_delivers_and_its_receipts_match(
        start_node: StartNode, open_peer: OpenPeer, external: Callable[..., object]) -> None:
    port = await external(_npm_command(),  # type: ignore[misc]
                          f"node or the npm smpp package missing (npm install --prefix "
                          f"tests/upstreams; looked in {NODE_MODULES})")
    await _through(start_node, open_peer, port)


async def test_net_smpp_as_upstream_delivers_and_its_receipts_match(
        start_node: StartNode, open_peer: OpenPeer, external: Callable[..., object]) -> None:
    port = await external(_perl_command(),  # type: ignore[misc]
                          "perl or Net::SMPP missing (apt-get install libnet-smpp-perl)")
    await _through(start_node, open_peer, port)
