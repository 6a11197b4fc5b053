"""The SQLite store's message history at scale: fill, search, timelines, retention.

1. Fills a fresh SQLite file with ``--messages`` messages (default 1,000,000) through
   the store's own write path, in batches as the pipeline writes them:
   ``accept_many(claim=True)``, ``mark_sent_many``, ``mark_final_many(lease=True)``
   with one final receipt each, ``receipt_done`` for those receipts; 1 % also get a
   retry (``mark_retry``) and 1 % an intermediate status (``record_status``), and the
   newest ~1.5 % are left queued or sent. The population: 50 accounts of very different
   sizes (Zipf), 1-4 senders each, 200,000 destinations, 4 providers, stats mostly
   DELIVRD with some UNDELIV / EXPIRED / REJECTD, submitted_at spread over 7 days.
   Prints the fill rate (message lifecycles/s) and the file size (bytes per message).
2. Times every search 200 times (``--runs``) with random parameters, through
   ``SqliteStore.search`` (the reader thread, decoding included): each single filter
   and account + destination, the first page and a deep page (the page starting at a
   random message of the result, anywhere in the 7 days); then ``timeline`` and
   ``receipts_of`` of random messages, and ``purge(…, 500)`` batches. Prints p50 / p95
   / max in ms. Parameters come from messages drawn at random from the file, so each
   query finds something (``items`` sums what the runs returned).

Usage::

    .venv/bin/python benchmarks/history_sqlite.py                 # 1,000,000 messages
    .venv/bin/python benchmarks/history_sqlite.py --messages 200000
    .venv/bin/python benchmarks/history_sqlite.py --smoke         # 20,000, 20 runs (CI)
    .venv/bin/python benchmarks/history_sqlite.py --db /tmp/h.db --keep   # keep the file
    .venv/bin/python benchmarks/history_sqlite.py --db /tmp/h.db --reuse  # queries only

``--count-statements N`` also runs N lifecycles on a separate file with the writer's
statements counted (sqlite3 trace callback), and prints them per message.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from smppbridge.core.history import Cursor, MessageQuery
from smppbridge.core.message import Address, OutboundMessage
from smppbridge.core.ports import FinalEntry, SentEntry
from smppbridge.core.receipts import make_receipts
from smppbridge.core.records import DeliveryState
from smppbridge.store.sqlite.store import SqliteStore
from smppbridge.text.content import Content, Kind

DAY = 86_400.0
T0 = 1_700_000_000.0  # the first submitted_at
SPAN = 7 * DAY
DESTINATIONS = 200_000
PROVIDERS = (("mysmpp", 0.55), ("smsfly", 0.25), ("http_json", 0.15), ("backup", 0.05))
STATS = (("DELIVRD", 0.85), ("UNDELIV", 0.08), ("EXPIRED", 0.05), ("REJECTD", 0.02))
ERRS = {"DELIVRD": 0, "UNDELIV": 1, "EXPIRED": 3, "REJECTD": 101}
BATCH = 1000
PURGE_LIMIT = 500


@dataclass(frozen=True, slots=True)
class Population:
    """Who sends what: accounts (weights), their senders, the destinations."""

    accounts: tuple[str, ...]
    weights: tuple[float, ...]
    senders: dict[str, tuple[str, ...]]

    @classmethod
    def make(cls, rng: random.Random, accounts: int = 50) -> Population:
        names = tuple(f"acct{i:02d}" for i in range(accounts))
        weights = tuple(1.0 / (i + 1) ** 1.3 for i in range(accounts))  # Zipf-like
        senders = {a: tuple(f"{a.upper()}S{k}" for k in range(rng.randint(1, 4)))
                   for a in names}
        return cls(names, weights, senders)


def make_messages(rng: random.Random, pop: Population, first: int, count: int,
                  total: int) -> list[OutboundMessage]:
    """Messages ``first`` … ``first + count - 1`` of ``total``, submitted_at spread
    evenly (with jitter) over :data:`SPAN`; 5 % are long (2-3 parts)."""
    accounts = rng.choices(pop.accounts, pop.weights, k=count)
    out = []
    for k, account in enumerate(accounts):
        n = first + k
        parts = 1 if rng.random() < 0.95 else rng.randint(2, 3)
        ids = tuple(f"{n:09d}{p}" if parts > 1 else f"{n:09d}" for p in range(parts))
        dest = f"7{9_000_000_000 + rng.randrange(DESTINATIONS):010d}"
        text = f"Your code is {rng.randrange(10**6):06d}. Do not share it with anyone."
        out.append(OutboundMessage(
            message_id=ids[-1], part_ids=ids, account=account,
            source=Address(rng.choice(pop.senders[account]), 5, 0),
            destination=Address(dest, 1, 1), content=Content(Kind.SMS, text),
            registered_delivery=1,
            submitted_at=T0 + SPAN * n / total + rng.random() * 0.01,
            expire_at=None))
    return out


@dataclass(slots=True)
class FillReport:
    messages: int
    seconds: float
    file_bytes: int
    #: bytes this process wrote to disk meanwhile (WAL, checkpoints; Linux), 0 unknown
    written_bytes: int = 0

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else math.inf

    @property
    def bytes_per_message(self) -> float:
        return self.file_bytes / self.messages if self.messages else 0.0


async def lifecycle(store: SqliteStore, messages: Sequence[OutboundMessage],
                    rng: random.Random, *, finish: bool = True, extras: float = 0.01) -> None:
    """One batch through the write path, as the pipeline writes it; a share ``extras``
    of the messages is retried once, and another gets an intermediate status."""
    await store.accept_many(messages, claim=True)
    retried = [m for m in messages if rng.random() < extras]
    await asyncio.gather(*(store.mark_retry(m.message_id, m.submitted_at + 1, 1,
                                            "retry 1: provider unavailable")
                           for m in retried))
    providers = rng.choices([p for p, _ in PROVIDERS], [w for _, w in PROVIDERS],
                            k=len(messages))
    sent: list[SentEntry] = [
        (m.message_id, p, f"{p}-{m.message_id}", "ENROUTE", m.submitted_at + 0.5, ())
        for m, p in zip(messages, providers, strict=True)]
    await store.mark_sent_many(sent)
    statused = [m for m in messages if rng.random() < extras]
    await asyncio.gather(*(store.record_status(m.message_id, "ACCEPTD", 0,
                                               m.submitted_at + 1.0, "status from webhook")
                           for m in statused))
    if not finish:
        return
    stats = rng.choices([s for s, _ in STATS], [w for _, w in STATS], k=len(messages))
    finals: list[FinalEntry] = []
    for m, stat in zip(messages, stats, strict=True):
        done = m.submitted_at + 2.0 + rng.random() * 30
        finals.append((m.message_id, stat, ERRS[stat], done,
                       make_receipts(m, stat, ERRS[stat], done), "status from poll"))
    leased = await store.mark_final_many(finals, lease=True)
    await store.receipt_done([seq for seq, _ in leased], messages[-1].submitted_at + 40)


async def fill(store: SqliteStore, total: int, rng: random.Random, *,
               batch: int = BATCH, progress: bool = False) -> FillReport:
    """``total`` messages through :func:`lifecycle`; the newest 0.5 % are left queued
    and the 1 % before them sent (not final)."""
    pop = Population.make(rng)
    queued_from = total - total // 200
    sent_from = queued_from - total // 100
    written = _written_bytes()
    started = time.perf_counter()
    for first in range(0, total, batch):
        msgs = make_messages(rng, pop, first, min(batch, total - first), total)
        if first >= queued_from:
            await store.accept_many(msgs, claim=True)
        else:
            await lifecycle(store, msgs, rng, finish=first < sent_from)
        if progress and first % (batch * 100) == 0 and first:
            rate = first / (time.perf_counter() - started)
            print(f"  {first:>10,} messages, {rate:,.0f}/s", file=sys.stderr)
    seconds = time.perf_counter() - started
    return FillReport(total, seconds, _file_bytes(store.path), _written_bytes() - written)


def _file_bytes(path: str) -> int:
    return sum(p.stat().st_size for p in (Path(path), Path(path + "-wal")) if p.exists())


def _written_bytes() -> int:
    """What this process has written to storage so far (Linux /proc), else 0."""
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# --- queries ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Sample:
    """A stored message, its fields as the search filters name them."""

    id: str
    account: str
    dest: str
    source: str
    provider: str
    provider_id: str
    submitted_at: float


def samples(path: str, count: int, rng: random.Random) -> list[Sample]:
    """``count`` messages drawn at random (by rowid) from the file."""
    db = sqlite3.connect(path)
    try:
        top = db.execute("SELECT max(rowid) FROM messages").fetchone()[0] or 0
        out: list[Sample] = []
        while len(out) < count and top:
            row = db.execute("SELECT id, account, dest, source, provider, provider_id, "
                             "submitted_at FROM messages WHERE rowid=?",
                             (rng.randint(1, top),)).fetchone()
            if row is not None:
                out.append(Sample(*row))
        return out
    finally:
        db.close()


def _window(rng: random.Random, s: Sample) -> tuple[float, float]:
    width = rng.uniform(3600.0, DAY)
    since = s.submitted_at - rng.uniform(0, width)
    return since, since + width


#: name → how a query is made from a random sample (and the rng)
QueryMaker = Callable[[random.Random, Sample], MessageQuery]
def _account_time(rng: random.Random, s: Sample) -> MessageQuery:
    since, until = _window(rng, s)
    return MessageQuery(account=s.account, since=since, until=until)


def _time(rng: random.Random, s: Sample) -> MessageQuery:
    since, until = _window(rng, s)
    return MessageQuery(since=since, until=until)


QUERIES: dict[str, QueryMaker] = {
    "account + time range": _account_time,
    "destination": lambda rng, s: MessageQuery(destination=s.dest),
    "source": lambda rng, s: MessageQuery(source=s.source),
    "state": lambda rng, s: MessageQuery(state=rng.choice(list(DeliveryState))),
    "stat": lambda rng, s: MessageQuery(
        stat=rng.choice([st for st, _ in STATS] + ["ENROUTE"])),
    "provider + provider_id": lambda rng, s: MessageQuery(provider=s.provider,
                                                          provider_id=s.provider_id),
    "time range": _time,
    "account + destination": lambda rng, s: MessageQuery(account=s.account,
                                                         destination=s.dest),
}


@dataclass(frozen=True, slots=True)
class Timing:
    runs: int
    p50: float
    p95: float
    max: float
    #: items returned, summed over the runs (a query that finds nothing is no test)
    items: int = 0


def timing(ms: Sequence[float], items: int = 0) -> Timing:
    ordered = sorted(ms)
    p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
    return Timing(len(ms), statistics.median(ordered), p95, ordered[-1], items)


async def _timed(call: Callable[[], Awaitable[int]], runs: int) -> Timing:
    ms, items = [], 0
    for _ in range(runs):
        started = time.perf_counter()
        items += await call()
        ms.append((time.perf_counter() - started) * 1000)
    return timing(ms, items)


async def run_queries(store: SqliteStore, rng: random.Random, runs: int,
                      purge_batches: int) -> dict[str, Timing]:
    """Every query of :data:`QUERIES`, first page and deep page; timeline and
    receipts_of; then ``purge_batches`` purges of :data:`PURGE_LIMIT`."""
    pool = samples(store.path, 4 * runs, rng)
    out: dict[str, Timing] = {}
    for name, make in QUERIES.items():
        for page in ("first page", "deep page"):
            async def one(make: QueryMaker = make, deep: bool = page == "deep page") -> int:
                s = rng.choice(pool)
                q = make(rng, s)
                if deep:  # a cursor just newer than s: the page that starts at s,
                    # as deep in its result as s is (anywhere in the 7 days)
                    q = replace(q, after=Cursor(s.submitted_at + 1e-6, ""))
                return len((await store.search(q)).items)
            out[f"{name}, {page}"] = await _timed(one, runs)

    async def timeline() -> int:
        return len(await store.timeline(rng.choice(pool).id))

    async def receipts() -> int:
        return len(await store.receipts_of(rng.choice(pool).id))

    out["timeline"] = await _timed(timeline, runs)
    out["receipts_of"] = await _timed(receipts, runs)

    async def purge() -> int:
        return await store.purge(T0 + DAY, PURGE_LIMIT)
    if purge_batches:
        out[f"purge {PURGE_LIMIT}"] = await _timed(purge, purge_batches)
    return out


# --- statements per message ---------------------------------------------------------------

async def count_statements(path: str, total: int, seed: int) -> Counter[str]:
    """The writer's SQL statements (by first word) for ``total`` lifecycles, all final."""
    counts: Counter[str] = Counter()
    store = SqliteStore(path)
    await store.open()
    try:
        await store._call(lambda db: db.set_trace_callback(
            lambda sql: counts.update([sql.split(None, 1)[0].upper()])))
        rng = random.Random(seed)
        pop = Population.make(rng)
        for first in range(0, total, BATCH):
            await lifecycle(store, make_messages(rng, pop, first, min(BATCH, total - first),
                                                 total), rng, extras=0.0)
    finally:
        await store.close()
    return counts


# --- the run ----------------------------------------------------------------------------

@dataclass(slots=True)
class Report:
    fill: FillReport | None
    queries: dict[str, Timing]
    statements: Counter[str] = field(default_factory=Counter)


async def run(args: argparse.Namespace) -> Report:
    rng = random.Random(args.seed)
    path = args.db or str(Path(tempfile.mkdtemp(prefix="history-")) / "history.db")
    if not args.reuse:
        for p in (Path(path), Path(path + "-wal"), Path(path + "-shm")):
            p.unlink(missing_ok=True)
    store = SqliteStore(path, synchronous=args.synchronous)
    await store.open()
    try:
        report = None
        if not args.reuse:
            report = await fill(store, args.messages, rng, progress=args.progress)
            print(f"fill: {report.messages:,} messages in {report.seconds:.1f} s = "
                  f"{report.rate:,.0f} messages/s; file {report.file_bytes:,} bytes = "
                  f"{report.bytes_per_message:,.0f} bytes/message; written "
                  f"{report.written_bytes / max(1, report.messages):,.0f} bytes/message")
        queries = await run_queries(store, rng, args.runs, args.purge_batches)
    finally:
        await store.close()
    print(f"{'query':<42} {'runs':>5} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'items':>8}")
    for name, t in queries.items():
        print(f"{name:<42} {t.runs:>5} {t.p50:>8.2f} {t.p95:>8.2f} {t.max:>8.2f} "
              f"{t.items:>8}")
    statements: Counter[str] = Counter()
    if args.count_statements:
        counted = str(Path(path).with_name("statements.db"))
        statements = await count_statements(counted, args.count_statements, args.seed)
        n = args.count_statements
        print(f"statements per message ({n:,} lifecycles, happy path): " + ", ".join(
            f"{word} {c / n:.2f}" for word, c in sorted(statements.items())))
        for suffix in ("", "-wal", "-shm"):
            Path(counted + suffix).unlink(missing_ok=True)
    if not args.keep and not args.db:
        for suffix in ("", "-wal", "-shm"):
            Path(path + suffix).unlink(missing_ok=True)
    return Report(report, queries, statements)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=200, help="runs of each query")
    ap.add_argument("--purge-batches", type=int, default=20)
    ap.add_argument("--smoke", action="store_true",
                    help="20,000 messages, 20 runs a query, 3 purges (CI)")
    ap.add_argument("--db", help="the SQLite file (default: a temporary one, removed)")
    ap.add_argument("--reuse", action="store_true", help="query --db as it is, no fill")
    ap.add_argument("--keep", action="store_true", help="keep the temporary file")
    ap.add_argument("--synchronous", default="FULL", choices=("FULL", "NORMAL", "OFF"))
    ap.add_argument("--count-statements", type=int, default=0, metavar="N")
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    if args.smoke:
        args.messages, args.runs, args.purge_batches = 20_000, 20, 3
    if args.reuse and not args.db:
        ap.error("--reuse needs --db")
    return args


def main(argv: Sequence[str] | None = None) -> Report:
    return asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    main()
