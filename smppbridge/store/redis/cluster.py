"""Where each slot of a Redis Cluster lives: the sharded store's router
(docs/cluster.md, *Running on a Redis Cluster*).

Theory of operation
-------------------
The sharded store (:mod:`.sharded`) runs one :class:`~.store.RedisStore` per partition,
each on a prefix whose hash tag puts all of its keys in one slot. The partitions'
batchers send their pipelines to the master that owns each slot over a plain connection
to that master — one pipeline for all the partitions it serves (``batching.Pipelines``
queues by client) — not through redis-py's ``ClusterPipeline``, because the store's
``WAIT`` (``min_replicas``) must follow the writes on the same connection, and a
cluster pipeline sends a keyless ``WAIT`` to every node instead.

:class:`ClusterRouter` keeps the slot layout (``CLUSTER SLOTS``, asked of the seeds and
then of any node it knows) and one client per master (the store's own pool settings,
:func:`~.store.open_client`). It asks again every ``refresh_interval`` seconds and as
soon as a partition reports trouble (:meth:`ClusterRouter.stale`): a master that died,
a MOVED after a failover or a resharding, a READONLY from a master demoted to replica.
Until then the operations on that slot fail as ``StoreUnavailable`` (a submit gets
ESME_RMSGQFUL and is retried by the ESME); none is sent to a node that does not own the
slot, because every script names its prefix as ``KEYS[1]`` and Redis answers MOVED.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import random
from typing import Any
from urllib.parse import quote

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from smppbridge.core.errors import StoreUnavailable
from smppbridge.store.redis.store import open_client
from smppbridge.store.redis.urls import ClusterUrl

__all__ = ["ClusterRouter", "Node"]

_log = structlog.get_logger("smppbridge")
#: host, port
Node = tuple[str, int]
#: asking for the layout again right after a refresh waits this long (a failover takes
#: the cluster-node-timeout, seconds: no need to ask a hundred times meanwhile)
_MIN_REFRESH_GAP = 0.1


class ClusterRouter:
    """The slot layout of a Redis Cluster and a client per master; see the module
    docstring. ``open`` fails with StoreUnavailable when no seed answers."""

    def __init__(self, url: ClusterUrl, *, max_connections: int = 64,
                 connect_timeout: float = 1.0, socket_timeout: float = 5.0,
                 retries: int = 3, refresh_interval: float = 5.0) -> None:
        self.url = url
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self.socket_timeout = socket_timeout
        self.retries = retries
        self.refresh_interval = refresh_interval
        #: sorted slot ranges: starts, and (end, master) of each
        self._starts: list[int] = []
        self._ranges: list[tuple[int, Node]] = []
        self._known: list[Node] = list(url.seeds)
        self._clients: dict[Node, aioredis.Redis] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.refreshes = 0  # layouts read (observability, tests)

    # --- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        if not await self.refresh():
            msg = "redis cluster: no seed answered CLUSTER SLOTS"
            raise StoreUnavailable(msg)
        self._task = asyncio.get_running_loop().create_task(
            self._refresh_loop(), name="redis-cluster-router")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()

    # --- routing ---------------------------------------------------------------------

    def master_of(self, slot: int) -> Node:
        """The master that owns ``slot`` as last read; StoreUnavailable when none does
        (a slot not covered: the cluster is down for it)."""
        i = bisect.bisect_right(self._starts, slot) - 1
        if i >= 0:
            end, node = self._ranges[i]
            if slot <= end:
                return node
        msg = f"redis cluster: no master serves slot {slot}"
        raise StoreUnavailable(msg)

    def client_for(self, slot: int) -> aioredis.Redis:
        """The client of the master that owns ``slot`` now."""
        return self._client(self.master_of(slot))

    def masters(self) -> list[aioredis.Redis]:
        """A client of every master that serves slots."""
        return [self._client(node) for node in sorted({n for _, n in self._ranges})]

    def stale(self) -> None:
        """Something failed on a slot: read the layout again soon."""
        self._wake.set()

    # --- the layout ------------------------------------------------------------------

    async def refresh(self) -> bool:
        """Read the layout from the first node that answers (the known nodes in random
        order, then the seeds); False when none did (the old layout stays)."""
        known = [n for n in self._known if n not in self.url.seeds]
        random.shuffle(known)
        for node in [*known, *self.url.seeds]:
            probe = self._connect(node, retries=0, max_connections=1)
            try:
                reply = await probe.execute_command("CLUSTER SLOTS")  # type: ignore[no-untyped-call]
            except (RedisError, OSError) as exc:
                _log.debug("store.cluster_slots_failed", node=f"{node[0]}:{node[1]}",
                           error=repr(exc))
                continue
            finally:
                await probe.aclose()
            if not reply:  # a node not (yet) part of the cluster: ask another
                continue
            self._install(reply, node[0])
            self.refreshes += 1
            return True
        return False

    def _install(self, reply: Any, asked: str) -> None:
        """The layout from a ``CLUSTER SLOTS`` reply: per range ``[start, end, master,
        *replicas]``, each node ``[host, port, id, ...]`` (an empty host: the one
        asked)."""
        ranges: list[tuple[int, int, Node]] = []
        known: set[Node] = set()
        for start, end, *nodes in reply:
            served = [(str(n[0]) or asked, int(n[1])) for n in nodes]
            ranges.append((int(start), int(end), served[0]))
            known.update(served)
        ranges.sort()
        old = {n for _, n in self._ranges}
        self._starts = [start for start, _, _ in ranges]
        self._ranges = [(end, node) for _, end, node in ranges]
        self._known = sorted(known)
        new = {n for _, n in self._ranges}
        if old and new != old:
            _log.info("store.cluster_layout_changed",
                      masters=[f"{h}:{p}" for h, p in sorted(new)])

    async def _refresh_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.refresh_interval)
            self._wake.clear()
            try:
                await self.refresh()
            except Exception:  # keep routing on the last layout
                _log.exception("store.cluster_refresh_crashed")
            await asyncio.sleep(_MIN_REFRESH_GAP)

    # --- clients ---------------------------------------------------------------------

    def _client(self, node: Node) -> aioredis.Redis:
        client = self._clients.get(node)
        if client is None:
            client = self._clients[node] = self._connect(node, retries=self.retries,
                                                         max_connections=self.max_connections)
        return client

    def _connect(self, node: Node, *, retries: int, max_connections: int) -> aioredis.Redis:
        u = self.url
        auth = ""
        if u.username or u.password:
            auth = (quote(u.username or "", safe="") + ":"
                    + quote(u.password or "", safe="") + "@")
        scheme = "rediss" if u.tls else "redis"
        host = f"[{node[0]}]" if ":" in node[0] else node[0]
        return open_client(f"{scheme}://{auth}{host}:{node[1]}/0",
                           max_connections=max_connections,
                           connect_timeout=self.connect_timeout,
                           socket_timeout=self.socket_timeout, retries=retries)
