"""Group commit one level above the batcher: the entries of one batch script (accept,
mark_sent, mark_final, record_status of :mod:`.messages_lua`) that callers hand over
while the previous call of that script is in flight are sent as ONE script call.

Why: the SMPP path accepts each message with its own ``accept`` (a window of submits
from many binds, each its own task), and a provider reports intermediate statuses one
by one. Through the batcher alone those were one EVALSHA each — one command for
redis-py to pack and parse and one script run for Redis, a message. Merged, a window of
them is one call: the node's Python cost of a call and Redis's cost of a script run are
paid once per batch (``benchmarks/cluster_scale.py``; docs/performance.md, Cluster mode).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from smppbridge.store.common import settle

__all__ = ["Merger"]

#: sends entries as one (or a few) script calls; returns one reply per entry
Send = Callable[[list[list[Any]]], Awaitable[Sequence[Any]]]


class Merger:
    """Queues entries of one script; one task sends what is queued, waits for the
    reply, and sends what was queued meanwhile, until nothing is left."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._pending: list[tuple[list[Any], asyncio.Future[Any]]] = []
        self._task: asyncio.Task[None] | None = None

    async def add(self, entries: Sequence[list[Any]]) -> list[Any]:
        """Send ``entries`` with whatever else is queued; their replies, in order (a
        call that failed raises its error)."""
        if not entries:
            return []
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in entries]
        self._pending += zip(entries, futures, strict=True)
        if self._task is None:
            self._task = loop.create_task(self._run())
        if len(futures) == 1:  # the usual case: no asyncio.wait (its sets and callbacks)
            return [await futures[0]]
        try:
            await asyncio.wait(futures)
        except asyncio.CancelledError:
            for fut in futures:  # what is sent is sent; nobody waits for its reply
                fut.cancel()
            raise
        for fut in futures:
            error = fut.exception()
            if error is not None:
                raise error
        return [fut.result() for fut in futures]

    async def drain(self) -> None:
        """Wait until what is queued was sent (closing the store)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def _run(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    replies = await self._send([entry for entry, _ in batch])
                except Exception as exc:
                    for _, fut in batch:
                        settle(fut, None, exc)
                    continue
                for (_, fut), reply in zip(batch, replies, strict=True):
                    settle(fut, reply, None)
        finally:
            self._task = None
