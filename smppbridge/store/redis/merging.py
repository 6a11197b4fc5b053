"""Group commit one level above the batcher: the entries of one batch script (accept,
record_status, mark_sent, mark_final of :mod:`.messages_lua`, flood_check of
:mod:`.flood_lua`) that callers hand over during one turn of the event loop are sent as
ONE script call, queued in the batcher at the end of that turn (so it still goes in
the batcher's next pipeline: merging adds no round trip).

Why: the SMPP path accepts each message with its own ``accept`` and checks its flood
rules with its own check (a window of submits from many binds, each its own task), and
a provider reports intermediate statuses one by one. Through the batcher alone those
were one EVALSHA each — one command for redis-py to pack and parse and one script run
for Redis, a message. Merged, the submits of a turn are one call: the node's Python
cost of a call and Redis's cost of a script run are paid once per batch
(``benchmarks/cluster_scale.py``; docs/performance.md, Cluster mode).
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
    """Queues entries of one script; at the end of the loop's turn, what was queued is
    handed to ``send`` as one batch."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._pending: list[tuple[list[Any], asyncio.Future[Any]]] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def add(self, entries: Sequence[list[Any]]) -> list[Any]:
        """Send ``entries`` with whatever else is queued this turn; their replies, in
        order (a call that failed raises its error)."""
        if not entries:
            return []
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in entries]
        self._pending += zip(entries, futures, strict=True)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
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
        """Wait until what is queued was sent and answered (closing the store)."""
        while self._scheduled or self._tasks:
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            else:
                await asyncio.sleep(0)  # the end of this turn: _flush runs

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        if batch:
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[list[Any], asyncio.Future[Any]]]) -> None:
        try:
            replies = await self._send([entry for entry, _ in batch])
        except Exception as exc:
            for _, fut in batch:
                settle(fut, None, exc)
            return
        except BaseException:  # cancelled (the loop is closing)
            for _, fut in batch:
                fut.cancel()
            raise
        for (_, fut), reply in zip(batch, replies, strict=True):
            settle(fut, reply, None)
