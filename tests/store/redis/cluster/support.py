"""A real local Redis Cluster for the tests: three masters, each with a replica, in a
temporary directory on free ports (each port and its cluster bus port, +10000), AOF
with ``appendfsync always``; created with ``redis-cli --cluster create`` and ready once
every node says ``cluster_state:ok`` and agrees on the masters (polled, no sleep)."""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tests.integration.cluster import stop, wait_port

#: upper bound for the cluster to form or to fail over
DEADLINE = 30.0


async def until(what: str, probe: Callable[[], Awaitable[bool] | bool]) -> None:
    """Poll ``probe`` (sync or async) until it is true; fail naming ``what`` after
    DEADLINE seconds. The state polled is another process's (a cluster's gossip), so
    there is nothing to wait on but the answer itself."""
    deadline = time.monotonic() + DEADLINE
    while True:
        answer = probe()
        if answer if isinstance(answer, bool) else await answer:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def free_cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port + 10000 > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise AssertionError("no free port pair for a cluster node")


@dataclass
class ClusterNode:
    dir: Path
    port: int = field(default_factory=free_cluster_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.dir / "redis.log"

    async def start(self, node_timeout_ms: int) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise AssertionError("redis-server is not on PATH (the cluster tests start "
                                 "a private cluster)")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log.touch()
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--logfile", str(self.log), "--save", "", "--cluster-enabled", "yes",
             "--cluster-config-file", str(self.dir / "nodes.conf"),
             "--cluster-node-timeout", str(node_timeout_ms),
             # a replica takes over however long it was cut off from its master
             "--cluster-replica-validity-factor", "0",
             "--appendonly", "yes", "--appendfsync", "always"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        await wait_port(self.port, self.proc, self.log)

    def kill(self) -> None:
        """kill -9."""
        if self.proc is not None:
            stop(self.proc, signal.SIGKILL)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    def client(self) -> aioredis.Redis:
        return aioredis.Redis(port=self.port, decode_responses=True)


@dataclass
class LocalCluster:
    """Three masters with a replica each (``replicas=1``)."""

    dir: Path
    masters: int = 3
    replicas: int = 1
    node_timeout_ms: int = 1000
    nodes: list[ClusterNode] = field(default_factory=list)

    async def start(self) -> None:
        count = self.masters * (1 + self.replicas)
        self.nodes = [ClusterNode(self.dir / f"node-{i}") for i in range(count)]
        await asyncio.gather(*(n.start(self.node_timeout_ms) for n in self.nodes))
        cli = shutil.which("redis-cli")
        if cli is None:
            raise AssertionError("redis-cli is not on PATH")
        created = await asyncio.create_subprocess_exec(
            cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
            "--cluster-replicas", str(self.replicas), "--cluster-yes",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await created.communicate()
        if created.returncode != 0:
            raise AssertionError(f"redis-cli --cluster create failed: {out.decode()[-3000:]}")
        await self.wait_ok()

    @property
    def url(self) -> str:
        return "redis-cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:2])

    def url_with(self, **params: object) -> str:
        return self.url + "/?" + "&".join(f"{k}={v}" for k, v in params.items())

    async def wait_ok(self, alive: list[ClusterNode] | None = None) -> None:
        """Until every live node says cluster_state:ok and all see the same number of
        masters, each with its replicas."""
        nodes = alive if alive is not None else [n for n in self.nodes if _running(n)]
        await until("the cluster to reach cluster_state:ok", lambda: self._settled(nodes))

    async def _settled(self, nodes: list[ClusterNode]) -> bool:
        for node in nodes:
            client = node.client()
            try:
                info = await client.execute_command("CLUSTER INFO")
            except RedisError:
                return False
            finally:
                await client.aclose()
            text = info if isinstance(info, str) else str(info)
            if "cluster_state:ok" not in text and (
                    not isinstance(info, dict) or info.get("cluster_state") != "ok"):
                return False
        return True

    async def master_ports(self) -> dict[int, list[tuple[int, int]]]:
        """Each master's port and the slot ranges it serves, as a live node sees it."""
        for node in self.nodes:
            if not _running(node):
                continue
            client = node.client()
            try:
                slots = await client.execute_command("CLUSTER SLOTS")
            except RedisError:
                continue
            finally:
                await client.aclose()
            out: dict[int, list[tuple[int, int]]] = {}
            for start, end, master, *_ in slots:
                out.setdefault(int(master[1]), []).append((int(start), int(end)))
            return out
        raise AssertionError("no live cluster node")

    async def wait_replicated(self) -> None:
        """Until every master has a replica that is online (replication caught up)."""
        await until("the masters to get their replicas", self._replicated)
        await self.wait_ok()

    async def _replicated(self) -> bool:
        masters = await self.master_ports()
        if len(masters) != self.masters:
            return False
        for port in masters:
            client = self.node(port).client()
            try:
                info = await client.info("replication")
            except RedisError:
                return False
            finally:
                await client.aclose()
            online = [v for k, v in info.items() if k.startswith("slave")
                      and isinstance(v, dict) and v.get("state") == "online"]
            if len(online) < self.replicas:
                return False
        return True

    async def wait_promoted(self, dead: int, slot: int) -> None:
        """Until a live node reports another master than ``dead`` for ``slot``."""
        async def promoted() -> bool:
            masters = await self.master_ports()
            owner = [p for p, ranges in masters.items()
                     if any(lo <= slot <= hi for lo, hi in ranges)]
            return bool(owner) and owner[0] != dead

        await until(f"slot {slot} to fail over", promoted)

    async def delete_prefix(self, prefix: str) -> None:
        """Delete every key starting with ``prefix`` from every live master."""
        for node in self.nodes:
            if not _running(node):
                continue
            client = node.client()
            try:
                role = await client.execute_command("ROLE")
                if role[0] != "master":
                    continue
                keys = [k async for k in client.scan_iter(match=prefix + "*", count=1000)]
                for key in keys:  # one at a time: keys of different slots
                    await client.delete(key)
            except RedisError:
                continue
            finally:
                await client.aclose()

    @staticmethod
    def owner(masters: dict[int, list[tuple[int, int]]], slot: int) -> int:
        """The port of the master serving ``slot`` in ``masters`` (master_ports)."""
        (port,) = [p for p, ranges in masters.items()
                   if any(lo <= slot <= hi for lo, hi in ranges)]
        return port

    async def replica_of(self, master: ClusterNode) -> ClusterNode:
        """A replica of ``master`` (its ``INFO replication``)."""
        client = master.client()
        try:
            info = await client.info("replication")
        finally:
            await client.aclose()
        ports = [int(v["port"]) for k, v in info.items()
                 if k.startswith("slave") and isinstance(v, dict)]
        return self.node(ports[0])

    def node(self, port: int) -> ClusterNode:
        return next(n for n in self.nodes if n.port == port)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _running(node: ClusterNode) -> bool:
    return node.proc is not None and node.proc.poll() is None

