"""Group commit for Redis: every command and script call of the store goes through one
:class:`Batcher`, and whatever is queued while its round trips are in progress (up to
``MAX_IN_FLIGHT`` at once) is sent as the next pipeline. Hundreds of concurrent
``accept`` calls cost one round trip (and one AOF fsync with ``appendfsync always``), as
one transaction does in the SQLite store.

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

__all__ = ["Batcher", "map_error", "redis_unavailable"]

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


class Batcher:
    """Queues commands and script calls and sends them as pipelines, one at a time.

    ``client`` gives the open redis-py client (raising StoreUnavailable when there is
    none); ``script_args`` are the arguments every script gets first (key prefix,
    consumer group, history cap). With ``min_replicas`` a durable operation is
    acknowledged only once that many replicas have its batch (``WAIT``).
    """

    def __init__(self, client: Callable[[], aioredis.Redis], script_args: tuple[Any, ...], *,
                 min_replicas: int = 0, replica_timeout: float = 1.0) -> None:
        self._client = client
        self._script_args = script_args
        self.min_replicas = min_replicas
        self.replica_timeout = replica_timeout
        self.round_trips = 0  # pipelines sent (observability, tests)
        self.operations = 0  # commands and script calls sent (tests: one call a batch)
        self.closing = False
        self.health = StoreHealth("redis")
        self._pending: list[_Op] = []
        self._flusher: asyncio.Task[None] | None = None

    async def load_scripts(self) -> None:
        """Load every script into Redis (after a connect, a restart or SCRIPT FLUSH)."""
        client = self._client()
        with redis_unavailable():
            for name, src in SCRIPTS.items():
                sha = await client.script_load(src)
                if sha != SHAS[name]:  # pragma: no cover - Redis hashes what we hash
                    msg = f"script {name}: Redis named it {sha}, expected {SHAS[name]}"
                    raise RuntimeError(msg)

    async def call(self, command: tuple[Any, ...], *, durable: bool = False) -> Any:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._submit(_Op(command, fut, durable=durable))
        return await fut

    async def script(self, name: str, *args: Any, durable: bool = False) -> Any:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._submit(_Op((*self._script_args, *args), fut, script=name, durable=durable))
        return await fut

    async def drain(self) -> None:
        """Wait for the operations already queued (closing the store)."""
        if self._flusher is not None:
            await asyncio.shield(self._flusher)

    def _submit(self, op: _Op) -> None:
        self._client()  # raises StoreUnavailable when the store is not open
        if self.closing:
            msg = "store is not open"
            raise StoreUnavailable(msg)
        self._pending.append(op)
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        """Send what is queued, up to ``MAX_IN_FLIGHT`` pipelines at a time (each on a
        connection of its own); what is queued while they are out goes in the next."""
        running: set[asyncio.Task[None]] = set()
        loop = asyncio.get_running_loop()
        try:
            while self._pending or running:
                while self._pending and len(running) < MAX_IN_FLIGHT:
                    batch = self._pending[:MAX_BATCH]
                    del self._pending[:MAX_BATCH]
                    running.add(loop.create_task(self._send(batch)))
                _, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._flusher = None

    async def _send(self, batch: list[_Op]) -> None:
        try:
            await self._run(batch)
        except Exception as exc:
            # an unexpected failure fails its batch; no caller is left waiting
            _log.exception("store.batch_failed")
            for op in batch:
                settle(op.future, None, map_error(exc))

    async def _run(self, batch: list[_Op]) -> None:
        """One round trip for ``batch``; a script Redis forgot (restart, SCRIPT FLUSH) is
        loaded again and only the commands that met NOSCRIPT are re-sent."""
        while batch:
            started = time.monotonic()
            pipe = self._client().pipeline(transaction=False)
            for op in batch:
                pipe.execute_command(*op.args())
            wait = self.min_replicas > 0
            if wait:
                pipe.execute_command("WAIT", self.min_replicas,
                                     max(1, int(self.replica_timeout * 1000)))
            self.round_trips += 1
            self.operations += len(batch)
            try:
                results = await pipe.execute(raise_on_error=False)
            except Exception as exc:
                error = map_error(exc)
                self.health.failed(error_kind(exc), repr(exc), len(batch))
                for op in batch:
                    settle(op.future, None, error)
                return
            _WRITE_LATENCY.observe(time.monotonic() - started)
            replicated = True
            if wait:
                acked = results.pop()
                replicated = isinstance(acked, int) and acked >= self.min_replicas
            again: list[_Op] = []
            refused = 0
            for op, result in zip(batch, results, strict=True):
                if isinstance(result, NoScriptError) and op.attempts == 0:
                    op.attempts += 1
                    again.append(op)
                elif isinstance(result, Exception):
                    mapped = map_error(result)
                    if isinstance(mapped, StoreUnavailable):
                        refused += 1
                        self.health.failed(error_kind(result), str(result))
                    settle(op.future, None, mapped)
                elif op.durable and not replicated:
                    settle(op.future, None, StoreUnavailable(
                        f"fewer than {self.min_replicas} replicas acknowledged the write"))
                else:
                    settle(op.future, result, None)
            if not refused:
                self.health.succeeded()
            if again:
                try:
                    await self.load_scripts()
                except StoreUnavailable as exc:
                    for op in again:
                        settle(op.future, None, exc)
                    return
            batch = again
