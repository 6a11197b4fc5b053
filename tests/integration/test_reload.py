"""SIGHUP reload (Node.reload): all or nothing; accounts, routes and providers replaced
without dropping binds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from smppbridge.config import load_config
from smppbridge.node.node import Node
from smppbridge.providers.worker import WorkerProvider
from smppbridge.smpp.constants import CommandStatus
from smppbridge.text.content import Kind
from tests.integration.conftest import OpenPeer

BASE = """
[smpp]
listen = "127.0.0.1:0"
shutdown_grace = 1.0
[http]
listen = ""
[store]
url = "memory://"
[[accounts]]
system_id = "a"
password = "pw"
providers = ["sim"]
[[providers]]
name = "sim"
type = "simulator"
{sim_extra}
{more}
"""


@pytest.fixture
async def reloadable(tmp_path: Path) -> AsyncIterator[tuple[Node, Path]]:
    path = tmp_path / "node.toml"
    path.write_text(BASE.format(sim_extra="", more=""))
    node = Node(load_config(str(path), env={}), str(path))
    await node.start()
    try:
        yield node, path
    finally:
        await node.stop()


async def test_reload_replaces_accounts_routes_and_changed_providers(
        reloadable: tuple[Node, Path], open_peer: OpenPeer) -> None:
    """A valid new file: the new account binds, a new provider and route exist, a changed
    provider gets a new adapter, and the existing bind keeps working."""
    node, path = reloadable
    peer = await open_peer(node.smpp.addresses["smpp"])
    assert (await peer.bind(system_id="a", password="pw")).command_status == 0
    old_sim = node.router.runners["sim"]
    path.write_text(BASE.format(
        sim_extra="simulator = { default_outcome = \"undeliverable\" }",
        more="""
[[accounts]]
system_id = "b"
password = "pw"
providers = ["sim2"]
[[providers]]
name = "sim2"
type = "simulator"
[[routes]]
prefix = ["380"]
providers = ["sim2"]
"""))
    assert node.reload()
    assert node.router.runners["sim"] is not old_sim
    assert set(node.router.runners) == {"sim", "sim2"}
    assert node.router.resolve("a", "380501234567", Kind.SMS) == ("sim2",)
    assert node.router.resolve("a", "79001234567", Kind.SMS) == ("sim",)
    other = await open_peer(node.smpp.addresses["smpp"])
    assert (await other.bind(system_id="b", password="pw")).command_status == 0
    assert (await peer.submit()).command_status == CommandStatus.ESME_ROK


async def test_invalid_reload_changes_nothing(reloadable: tuple[Node, Path]) -> None:
    """A file whose route names an unknown provider is refused as a whole: accounts,
    providers and routes stay as they were."""
    node, path = reloadable
    runners, accounts = dict(node.router.runners), node.config.accounts
    path.write_text(BASE.format(sim_extra="", more="""
[[accounts]]
system_id = "c"
password = "pw"
[[routes]]
providers = ["nope"]
"""))
    assert not node.reload()
    assert node.router.runners == runners
    assert node.config.accounts == accounts
    assert node.config.account("c") is None


async def test_reload_gives_a_changed_worker_provider_a_new_child_and_closes_the_old(
        tmp_path: Path) -> None:
    """A provider in a worker process whose table changed gets a new adapter with its own
    child (started on first use); the retired one finishes and its child exits."""
    path = tmp_path / "node.toml"
    path.write_text(BASE.format(sim_extra="worker = true", more=""))
    node = Node(load_config(str(path), env={}), str(path))
    await node.start()
    try:
        old = node.providers["sim"]
        assert isinstance(old, WorkerProvider)
        old_process = old._process
        assert old_process is not None  # started with the node
        assert old_process.returncode is None
        path.write_text(BASE.format(
            sim_extra="worker = true\nsimulator = { deliver_after = 0.1 }", more=""))
        assert node.reload()
        new = node.providers["sim"]
        assert isinstance(new, WorkerProvider)
        assert new is not old
        assert await new.ready()  # its own child, started on first use
        assert new.pid not in (None, old_process.pid)
        async with asyncio.timeout(30):
            assert await old_process.wait() == 0
    finally:
        await node.stop()
