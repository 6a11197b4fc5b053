"""Group commit for Redis: every command and script call of the store goes through one
:class:`Batcher`, and whatever is queued while its round trips are in progress (up to
``MAX_IN_FLIGHT`` at once) is sent as the next pipeline. Hundreds of concurrent
``accept`` calls cost one round trip (and one AOF fsync with ``appendfsync always``), as
one transaction does in the SQLite store. The queue is per Redis client
(:class:`Pipelines`): the partitions of a sharded store that one master serves share
theirs, so they cost that master one pipeline a round trip, not one each.

Redis errors never leave this module as redis-py types where they mean "the store is
not there right now": :func:`map_error` makes them
:class:`~smppbridge.core.errors.StoreUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import (
    AskError,
    BusyLoadingError,
    ClusterDownError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from smppbridge.core.errors import StoreUnavailable
from smppbridge.observability.metrics import METRICS
from smppbridge.store.common import StoreHealth, settle
from smppbridge.store.redis.scripts import SCRIPTS, SHAS

__all__ = ["Batcher", "Pipelines", "map_error", "redis_unavailable"]

_log = structlog.get_logger("smppbridge")
_WRITE_LATENCY = METRICS.store_write

#: Most operations sent in one pipeline; bounds one round trip's size and latency.
MAX_BATCH = 1000
#: Pipelines out at once. One at a time serialised every stage of every message behind
#: one round trip (a pipeline of one or two batch script calls took ~10 ms with
#: ``appendfsync always``: the node waited on it with half a core idle); a few at once
#: overlap the stages, and Redis still fsyncs once per turn of its loop for all of them.
MAX_IN_FLIGHT = 4


@contextlib.contextmanager
def redis_unavailable() -> Iterator[None]:
    """Turn "cannot reach Redis" (and the other temporary Redis states of
    :func:`map_error`) into :class:`StoreUnavailable`."""
    try:
        yield
    except Exception as exc:
        mapped = map_error(exc)
        if mapped is exc:
            raise
        raise mapped from exc


def map_error(exc: Exception) -> Exception:
    """Redis unreachable, loading, read-only (a failover in progress) or out of memory,
    or a Redis Cluster whose slot moved (MOVED/ASK: the sharded store asks for the
    layout again), is down or busy (CLUSTERDOWN, TRYAGAIN): temporary for the caller
    (a submit is answered ESME_RMSGQFUL)."""
    if isinstance(exc, StoreUnavailable):
        return exc
    if isinstance(exc, RedisConnectionError | RedisTimeoutError | BusyLoadingError
                  | ReadOnlyError | OutOfMemoryError | ConnectionError | TimeoutError
                  | AskError | ClusterDownError | TryAgainError):
        mapped = StoreUnavailable(f"redis unavailable: {exc}")
        mapped.__cause__ = exc
        return mapped
    return exc


def error_kind(exc: BaseException) -> str:
    """How a Redis failure is counted (``smppbridge_store_errors_total{kind}``)."""
    if isinstance(exc, OutOfMemoryError):
        return "out_of_memory"
    if isinstance(exc, ReadOnlyError):
        return "read_only"
    if isinstance(exc, BusyLoadingError):
        return "loading"
    if isinstance(exc, AskError | ClusterDownError | TryAgainError):
        return "cluster"  # MOVED (an AskError) while the layout changes, or down
    if isinstance(exc, RedisConnectionError | RedisTimeoutError | ConnectionError
                  | TimeoutError):
        return "unreachable"
    return "other"


@dataclass(slots=True)
class _Op:
    """One command waiting for the next pipeline."""

    command: tuple[Any, ...]
    future: asyncio.Future[Any]
    #: the batcher that queued it (its health, counters and ``min_replicas``)
    owner: Batcher
    script: str | None = None
    #: with ``min_replicas``: fail unless the replicas acknowledged the batch
    durable: bool = False
    attempts: int = 0

    def args(self) -> tuple[Any, ...]:
        if self.script is None:
            return self.command
        # KEYS[1] is the key prefix (also ARGV[1], from which the scripts build their
        # keys): a Redis Cluster routes the call by it and answers MOVED where the
        # prefix's slot is not served; a sharded store's prefix carries a hash tag, so
        # every key a script touches is in that one slot. Plain Redis ignores it.
        return ("EVALSHA", SHAS[self.script], 1, self.command[0], *self.command)


async def _load_scripts(client: aioredis.Redis) -> None:
    with redis_unavailable():
        for name, src in SCRIPTS.items():
            sha = await client.script_load(src)
            if sha != SHAS[name]:  # pragma: no cover - Redis hashes what we hash
                msg = f"script {name}: Redis named it {sha}, expected {SHAS[name]}"
                raise RuntimeError(msg)


class _Lane:
    """The queue and the pipelines in flight of one Redis server (one client)."""

    __slots__ = ("client", "flusher", "pending")

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self.pending: list[_Op] = []
        self.flusher: asyncio.Task[None] | None = None


class Pipelines:
    """Where batchers' operations wait for a pipeline: one lane per Redis client. A
    batcher of its own has its own; the partitions of a sharded store share one, so the
    operations that all partitions served by one master queue during a round trip go to
    that master as ONE pipeline (one ``WAIT`` for all of them, on the connection that
    wrote them) instead of one pipeline per partition (docs/cluster.md, *Batch paths on
    a Redis Cluster*)."""

    def __init__(self) -> None:
        self._lanes: dict[aioredis.Redis, _Lane] = {}
        self.round_trips = 0  # pipelines sent (observability, tests)

    def submit(self, client: aioredis.Redis, op: _Op) -> None:
        """Queue ``op`` in the lane of ``client`` (the master that owned its slot when it
        was queued: after a failover the old master's queue fails as StoreUnavailable,
        nothing is sent to a node not asked for)."""
        lane = self._lanes.get(client)
        if lane is None:
            lane = self._lanes[client] = _Lane(client)
        lane.pending.append(op)
        if lane.flusher is None:
            lane.flusher = asyncio.get_running_loop().create_task(self._flush(client, lane))

    async def drain(self) -> None:
        """Wait for the operations already queued in every lane."""
        for lane in list(self._lanes.values()):
            if lane.flusher is not None:
                await asyncio.shield(lane.flusher)

    async def _flush(self, key: aioredis.Redis, lane: _Lane) -> None:
        """Send what is queued, up to ``MAX_IN_FLIGHT`` pipelines at a time (each on a
        connection of its own); what is queued while they are out goes in the next."""
        running: set[asyncio.Task[None]] = set()
        loop = asyncio.get_running_loop()
        try:
            while lane.pending or running:
                while lane.pending and len(running) < MAX_IN_FLIGHT:
                    batch = lane.pending[:MAX_BATCH]
                    del lane.pending[:MAX_BATCH]
                    running.add(loop.create_task(self._send(lane, batch)))
                _, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lane.flusher = None
            if not lane.pending and self._lanes.get(key) is lane:
                del self._lanes[key]  # no closed client is kept

    async def _send(self, lane: _Lane, batch: list[_Op]) -> None:
        try:
            await self._run(lane, batch)
        except Exception as exc:
            # an unexpected failure fails its batch; no caller is left waiting
            _log.exception("store.batch_failed")
            for op in batch:
                settle(op.future, None, map_error(exc))

    async def _run(self, lane: _Lane, batch: list[_Op]) -> None:
        """One round trip for ``batch``; a script Redis forgot (restart, SCRIPT FLUSH) is
        loaded again and only the commands that met NOSCRIPT are re-sent."""
        while batch:
            started = time.monotonic()
            owners: dict[Batcher, int] = {}
            for op in batch:
                owners[op.owner] = owners.get(op.owner, 0) + 1
            client = lane.client
            pipe = client.pipeline(transaction=False)
            for op in batch:
                pipe.execute_command(*op.args())
            replicas = max(o.min_replicas for o in owners)
            if replicas > 0:
                timeout = max(o.replica_timeout for o in owners)
                pipe.execute_command("WAIT", replicas, max(1, int(timeout * 1000)))
            self.round_trips += 1
            for owner, ops in owners.items():
                owner.round_trips += 1
                owner.operations += ops
            try:
                results = await pipe.execute(raise_on_error=False)
            except Exception as exc:
                error = map_error(exc)
                for owner, ops in owners.items():
                    owner.health.failed(error_kind(exc), repr(exc), ops)
                for op in batch:
                    settle(op.future, None, error)
                return
            _WRITE_LATENCY.observe(time.monotonic() - started)
            acked = results.pop() if replicas > 0 else 0
            again: list[_Op] = []
            refused: set[Batcher] = set()
            for op, result in zip(batch, results, strict=True):
                need = op.owner.min_replicas
                if isinstance(result, NoScriptError) and op.attempts == 0:
                    op.attempts += 1
                    again.append(op)
                elif isinstance(result, Exception):
                    mapped = map_error(result)
                    if isinstance(mapped, StoreUnavailable):
                        refused.add(op.owner)
                        op.owner.health.failed(error_kind(result), str(result))
                    settle(op.future, None, mapped)
                elif op.durable and need > 0 and not (isinstance(acked, int)
                                                      and acked >= need):
                    settle(op.future, None, StoreUnavailable(
                        f"fewer than {need} replicas acknowledged the write"))
                else:
                    settle(op.future, result, None)
            for owner in owners:
                if owner not in refused:
                    owner.health.succeeded()
            if again:
                try:
                    await _load_scripts(client)
                except StoreUnavailable as exc:
                    for op in again:
                        settle(op.future, None, exc)
                    return
            batch = again


class Batcher:
    """Queues commands and script calls and sends them as pipelines.

    ``client`` gives the open redis-py client (raising StoreUnavailable when there is
    none); ``script_args`` are the arguments every script gets first (key prefix,
    consumer group, history cap). With ``min_replicas`` a durable operation is
    acknowledged only once that many replicas have its batch (``WAIT``).
    ``pipelines``: the lanes shared with other batchers (a sharded store's partitions);
    by default its own.
    """

    def __init__(self, client: Callable[[], aioredis.Redis], script_args: tuple[Any, ...], *,
                 min_replicas: int = 0, replica_timeout: float = 1.0,
                 pipelines: Pipelines | None = None) -> None:
        self._client = client
        self._script_args = script_args
        self.min_replicas = min_replicas
        self.replica_timeout = replica_timeout
        self.pipelines = Pipelines() if pipelines is None else pipelines
        self.round_trips = 0  # pipelines that carried its operations (observability, tests)
        self.operations = 0  # commands and script calls sent (tests: one call a batch)
        self.closing = False
        self.health = StoreHealth("redis")

    async def load_scripts(self) -> None:
        """Load every script into Redis (after a connect, a restart or SCRIPT FLUSH)."""
        await _load_scripts(self._client())

    async def call(self, command: tuple[Any, ...], *, durable: bool = False) -> Any:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._submit(_Op(command, fut, self, durable=durable))
        return await fut

    async def script(self, name: str, *args: Any, durable: bool = False) -> Any:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._submit(_Op((*self._script_args, *args), fut, self, script=name,
                         durable=durable))
        return await fut

    async def drain(self) -> None:
        """Wait for the operations already queued (closing the store)."""
        await self.pipelines.drain()

    def _submit(self, op: _Op) -> None:
        client = self._client()  # raises StoreUnavailable when the store is not open
        if self.closing:
            msg = "store is not open"
            raise StoreUnavailable(msg)
        self.pipelines.submit(client, op)
