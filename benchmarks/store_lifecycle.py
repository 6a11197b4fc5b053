"""The SQLite store alone: what one message's writes cost, phase by phase, as the file grows.

    .venv/bin/python benchmarks/store_lifecycle.py --rounds 10 --messages 50000

Each round drives ``--messages`` lifecycles through :class:`SqliteStore` the way a node
under load does, in batches of ``--batch``: ``accept_many(claim=True)``,
``mark_sent_many``, ``mark_final_many(lease=True)`` with one DELIVRD receipt a message,
``receipt_done``; then prints the writer thread's CPU-us per message and per phase. The
rounds run against the same file, so a per-message cost that grows with the history
(the decay of issue 21 #4) shows round after round. No network, no event-loop work of
the node: a lever on the store shows here first, then in benchmarks/sustained.py.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

from smppbridge.core.message import Address, OutboundMessage
from smppbridge.core.records import ReceiptRecord
from smppbridge.store.sqlite.store import SqliteStore
from smppbridge.text.content import Content, Kind


def _message(i: int, now: float) -> OutboundMessage:
    return OutboundMessage(
        message_id=f"{i:015d}", part_ids=(f"{i:015d}",), account="bench",
        source=Address("bench", 5, 0), destination=Address(f"79{i:09d}", 1, 1),
        content=Content(Kind.SMS, f"load {i}"), registered_delivery=1, submitted_at=now)


def _receipt(m: OutboundMessage, now: float) -> ReceiptRecord:
    return ReceiptRecord(account=m.account, message_id=m.message_id, stat="DELIVRD", err=0,
                         submit_date=m.submitted_at, done_date=now, text="load",
                         source_addr=m.destination.addr, source_ton=1, source_npi=1,
                         dest_addr=m.source.addr, dest_ton=5, dest_npi=0,
                         expire_at=now + 86400)


class _WriterClock:
    """CPU time of the store's writer thread (``time.thread_time`` read on it)."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store

    async def now(self) -> float:
        return await self.store._call(lambda _db: time.thread_time())


async def _phase(clock: _WriterClock, spent: dict[str, float], name: str,
                 work: Callable[[], Awaitable[object]]) -> None:
    t0 = await clock.now()
    await work()
    spent[name] = spent.get(name, 0.0) + await clock.now() - t0


async def main_async(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "lifecycle.db")
        store = SqliteStore(path, synchronous=args.synchronous)
        await store.open()
        clock = _WriterClock(store)
        first = 1
        try:
            for n in range(args.rounds):
                spent: dict[str, float] = {}
                wall = time.perf_counter()
                for start in range(first, first + args.messages, args.batch):
                    now = time.time()
                    batch = [_message(i, now) for i in range(start, start + args.batch)]
                    ids = [m.message_id for m in batch]
                    await _phase(clock, spent, "accept",
                                 partial(store.accept_many, batch, claim=True))
                    await _phase(clock, spent, "sent", partial(
                        store.mark_sent_many, [(m, "sim", f"p{m}", "ENROUTE", now, ())
                                               for m in ids]))
                    leased: list[tuple[int, ReceiptRecord]] = []

                    async def final(b: list[OutboundMessage] = batch, t: float = now,
                                    out: list[tuple[int, ReceiptRecord]] = leased) -> None:
                        out += await store.mark_final_many(
                            [(m.message_id, "DELIVRD", 0, t, [_receipt(m, t)], "")
                             for m in b], lease=True)
                    await _phase(clock, spent, "final", final)
                    await _phase(clock, spent, "receipt done", partial(
                        store.receipt_done, [s for s, _ in leased], now))
                first += args.messages
                wall = time.perf_counter() - wall
                total = sum(spent.values())
                size = sum(f.stat().st_size for f in Path(tmp).glob("lifecycle.db*"))
                phases = "  ".join(f"{k} {v / args.messages * 1e6:5.1f}"
                                   for k, v in spent.items())
                print(f"round {n + 1:2}: {args.messages / wall:8,.0f} lifecycles/s  writer "
                      f"{total / args.messages * 1e6:5.1f} CPU-us/msg ({phases})  "
                      f"file {size / 1e6:6.0f} MB", flush=True)
        finally:
            await store.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--messages", type=int, default=50_000)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--synchronous", default="FULL")
    return asyncio.run(main_async(p.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
