"""Memory, commands and CPU per message of the Redis store's history (docs/cluster.md,
*History and memory per message*).

    .venv/bin/python benchmarks/history_redis.py                        # 100,000 messages
    .venv/bin/python benchmarks/history_redis.py --messages 20000 --text-len 160
    .venv/bin/python benchmarks/history_redis.py --smoke                # 300, seconds

Runs N messages through the whole lifecycle with one RedisStore — accept_many, due,
mark_sent_many, mark_final_many with one receipt each, receipts_for + receipt_done —
with submitted_at spread over ``--days`` (7) so the time indexes hold that many days;
then a few searches, then purge of everything. For each phase it prints, per message:
the change of ``used_memory`` (INFO memory), the script calls and the commands run
(INFO commandstats: EVALSHA calls, and the calls of every other command, most of them
inside the scripts), the time Redis spent in them (commandstats usec of EVALSHA, which
includes the commands it ran) and Redis's own CPU (INFO cpu, user + sys).

Redis at ``--url`` (default redis://127.0.0.1:6379/14); database 0 is refused. The run
works under a key prefix of its own and deletes its keys at the end; ``--flush``
FLUSHDBs that database first (only then is ``used_memory`` free of other data). The
figures count every client of that Redis: run it where nothing else is busy (a private
``redis-server --save "" --appendonly no`` is best).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis

from smppbridge.core.history import MessageQuery
from smppbridge.core.message import Address, OutboundMessage
from smppbridge.core.ports import FinalEntry, SentEntry
from smppbridge.core.receipts import make_receipts
from smppbridge.core.records import DeliveryState
from smppbridge.store.redis.scripts import BUCKET_SECONDS
from smppbridge.store.redis.store import RedisStore
from smppbridge.text.content import Content, Kind

DEFAULT_URL = "redis://127.0.0.1:6379/14"
SMOKE_MESSAGES = 300
#: messages per store call (one pipeline)
BATCH = 1000


@dataclass
class Phase:
    """What Redis did during one phase of the run."""

    name: str
    messages: int
    memory: int = 0
    scripts: int = 0
    commands: int = 0
    script_usec: int = 0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    top: list[tuple[str, int]] = field(default_factory=list)

    def per_message(self) -> dict[str, float]:
        n = max(1, self.messages)
        return {"memory_bytes": self.memory / n, "scripts": self.scripts / n,
                "commands": self.commands / n, "script_usec": self.script_usec / n,
                "cpu_usec": self.cpu_s * 1e6 / n}


@dataclass
class Snapshot:
    memory: int
    stats: dict[str, tuple[int, int]]  # command -> (calls, usec)
    cpu_s: float
    at: float


async def snapshot(client: aioredis.Redis) -> Snapshot:
    mem = await client.info("memory")
    cmd = await client.info("commandstats")
    cpu = await client.info("cpu")
    stats = {name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
             for name, v in cmd.items()}
    return Snapshot(int(mem["used_memory"]), stats,
                    float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
                    time.monotonic())


def phase(name: str, messages: int, a: Snapshot, b: Snapshot) -> Phase:
    calls: dict[str, int] = {}
    usec: dict[str, int] = {}
    for command, (n, us) in b.stats.items():
        n0, us0 = a.stats.get(command, (0, 0))
        if n > n0:
            calls[command] = n - n0
            usec[command] = us - us0
    # the measurement's own INFO calls are not the store's
    calls.pop("info", None)
    usec.pop("info", None)
    scripts = calls.get("evalsha", 0) + calls.get("eval", 0)
    return Phase(name, messages, memory=b.memory - a.memory, scripts=scripts,
                 commands=sum(calls.values()) - scripts,
                 script_usec=usec.get("evalsha", 0) + usec.get("eval", 0),
                 cpu_s=b.cpu_s - a.cpu_s, wall_s=b.at - a.at,
                 top=sorted(((c, n) for c, n in calls.items()
                             if c not in ("evalsha", "eval")),
                            key=lambda cn: -cn[1])[:8])


def messages(count: int, *, text_len: int, days: float, start: float) -> list[OutboundMessage]:
    """``count`` one-part messages of ``text_len`` characters: 10 accounts, 20 sources,
    destinations drawn from count/2 numbers, submitted_at evenly over ``days``."""
    rng = random.Random(7)
    step = days * 86400.0 / max(1, count)
    text = ("Your code is 123456. " * (text_len // 20 + 1))[:text_len]
    pool = [f"3809{rng.randrange(10**7, 10**8)}" for _ in range(max(1, count // 2))]
    out = []
    for i in range(count):
        mid = str(10_000_000 + i)
        out.append(OutboundMessage(
            message_id=mid, part_ids=(mid,), account=f"acct{i % 10}",
            source=Address(f"Brand{i % 20}", 5, 0),
            destination=Address(rng.choice(pool), 1, 1),
            content=Content(Kind.SMS, text), registered_delivery=1,
            submitted_at=start + i * step))
    return out


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


async def delete_prefix(client: aioredis.Redis, prefix: str) -> None:
    """Cleanup of the run's own keys (not a store query)."""
    batch: list[str] = []
    async for key in client.scan_iter(match=prefix + "*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            await client.delete(*batch)
            batch.clear()
    if batch:
        await client.delete(*batch)


#: key classes of the breakdown, by the start of the name after the prefix
CLASSES = ("m:", "ix:t", "ix:a:", "ix:d:", "ix:s:", "ix:e", "prov:", "h:", "r:", "rq:",
           "rw:", "rexp")


async def breakdown(client: aioredis.Redis, prefix: str) -> dict[str, tuple[int, int]]:
    """(keys, MEMORY USAGE bytes) of the run's keys by class. A benchmark's own
    accounting: it SCANs the run's prefix, which no store query ever does."""
    out: dict[str, list[int]] = {}
    names: list[str] = []

    async def measure() -> None:
        async with client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.memory_usage(name, samples=0)
            sizes = await pipe.execute()
        for name, size in zip(names, sizes, strict=True):
            rest = name.removeprefix(prefix)
            cls = next((c for c in CLASSES if rest.startswith(c)), "other")
            entry = out.setdefault(cls, [0, 0])
            entry[0] += 1
            entry[1] += int(size or 0)
        names.clear()

    async for key in client.scan_iter(match=prefix + "*", count=1000):
        names.append(key)
        if len(names) >= 1000:
            await measure()
    await measure()
    return {cls: (n, size) for cls, (n, size) in sorted(out.items())}


async def query_costs(client: aioredis.Redis, store: RedisStore, sample: OutboundMessage
                      ) -> list[dict[str, Any]]:
    """What each kind of query costs Redis: scripts, commands, usec (EVALSHA), items."""
    queries: list[tuple[str, Any]] = [
        ("account, 100 newest", MessageQuery(account=sample.account, limit=100)),
        ("account, page 2", None),
        ("destination", MessageQuery(destination=sample.destination.addr)),
        ("source, 100", MessageQuery(source=sample.source.addr, limit=100)),
        ("account + state final, 100", MessageQuery(account=sample.account,
                                                     state=DeliveryState.FINAL, limit=100)),
        ("all accounts, 100", MessageQuery(limit=100)),
        ("provider + provider id", MessageQuery(provider="sim",
                                                provider_id=f"P{sample.message_id}")),
        ("stat with no match (bounded)", MessageQuery(account=sample.account, stat="NOPE")),
        ("timeline", "timeline"),
        ("receipts_of", "receipts_of"),
    ]
    out = []
    last: MessageQuery | None = None
    next_cursor = None
    for label, q in queries:
        a = await snapshot(client)
        if q == "timeline":
            items = len(await store.timeline(sample.message_id))
        elif q == "receipts_of":
            items = len(await store.receipts_of(sample.message_id))
        else:
            query = q if q is not None or last is None else replace(last, after=next_cursor)
            page = await store.search(query)
            items, last, next_cursor = len(page.items), query, page.next
        p = phase(label, 1, a, await snapshot(client))
        out.append({"query": label, "items": items, "scripts": p.scripts,
                    "commands": p.commands, "script_usec": p.script_usec})
    return out


async def run(url: str, count: int, *, flush: bool, text_len: int, days: float,
              keep: bool = False) -> dict[str, Any]:
    db = int((urlsplit(url).path or "/0").strip("/") or 0)
    if db == 0:
        msg = "refusing database 0: give --url a database of its own (e.g. /14)"
        raise SystemExit(msg)
    client = aioredis.Redis.from_url(url, decode_responses=True)
    prefix = f"bench:{secrets.token_hex(4)}:"
    store = RedisStore(url, prefix=prefix, node_id="bench", history_days=days)
    try:
        if flush:
            await client.flushdb()
        await store.open()
        start = time.time() - days * 86400.0
        batch = messages(count, text_len=text_len, days=days, start=start)
        phases: list[Phase] = []
        snap = await snapshot(client)
        base_memory = snap.memory

        async def done(name: str) -> None:
            nonlocal snap
            now = await snapshot(client)
            phases.append(phase(name, count, snap, now))
            snap = now

        for part in chunks(batch, BATCH):
            outcome = await store.accept_many(part)
            if any(o is not None for o in outcome):
                msg = f"accept failed: {next(o for o in outcome if o is not None)!r}"
                raise RuntimeError(msg)
        await done("accept_many")
        sent = 0
        while sent < count:
            due = await store.due(time.time(), BATCH)
            if not due:
                break
            entries: list[SentEntry] = [
                (d.message.message_id, "sim", f"P{d.message.message_id}", "ENROUTE",
                 d.message.submitted_at + 1.0, ()) for d in due]
            await store.mark_sent_many(entries)
            sent += len(due)
        if sent != count:
            msg = f"due returned {sent} of {count} messages"
            raise RuntimeError(msg)
        await done("due + mark_sent_many")
        for part in chunks(batch, BATCH):
            finals: list[FinalEntry] = []
            for m in part:
                at = m.submitted_at + 5.0
                finals.append((m.message_id, "DELIVRD", 0, at,
                               make_receipts(m, "DELIVRD", 0, at), "status from poll"))
            await store.mark_final_many(finals)
        await done("mark_final_many (+1 receipt)")
        delivered = 0
        for a in range(10):
            while True:
                got = await store.receipts_for(f"acct{a}", time.time(), BATCH)
                if not got:
                    break
                await store.receipt_done([r.seq for r in got], time.time())
                delivered += len(got)
        await done("receipts_for + receipt_done")
        history_memory = snap.memory - base_memory
        sample = batch[len(batch) // 2]
        queries = await query_costs(client, store, sample)
        sizes = await breakdown(client, prefix)
        snap = await snapshot(client)
        purged = 0
        while n := await store.purge(time.time() + 2 * BUCKET_SECONDS, 10_000):
            purged += n
        await done("purge")
        left = snap.memory - base_memory
        return {
            "url": url, "prefix": prefix, "messages": count, "text_len": text_len, "days": days,
            "receipts_delivered": delivered, "purged": purged,
            "history_bytes_per_message": history_memory / count,
            "left_after_purge_bytes": left,
            "per_message": {p.name: p.per_message() for p in phases},
            "top_commands": {p.name: [[c, n / count] for c, n in p.top] for p in phases},
            "queries": queries,
            "breakdown": {cls: {"keys": n, "bytes_per_message": size / count}
                          for cls, (n, size) in sizes.items()},
            "wall_s": {p.name: p.wall_s for p in phases},
        }
    finally:
        await store.close()
        if not keep:
            await delete_prefix(client, prefix)
        await client.aclose()


def report(r: dict[str, Any]) -> str:
    lines = [f"history_redis: {r['messages']} messages, {r['text_len']}-character text, "
             f"{r['days']:g} days of indexes, {r['url']}",
             "",
             f"{'phase':32} {'memory B/msg':>12} {'scripts':>8} {'commands':>9} "
             f"{'script us':>10} {'redis cpu us':>13}"]
    for name, p in r["per_message"].items():
        lines.append(f"{name:32} {p['memory_bytes']:12.0f} {p['scripts']:8.2f} "
                     f"{p['commands']:9.2f} {p['script_usec']:10.2f} {p['cpu_usec']:13.2f}")
    lines += ["", f"memory per message in the history (all phases up to purge): "
              f"{r['history_bytes_per_message']:.0f} B",
              f"left after purge of {r['purged']}: {r['left_after_purge_bytes']} B in all",
              "", "MEMORY USAGE by key class after the receipts (bytes per message):"]
    lines += [f"  {cls:6} {b['keys']:8} keys {b['bytes_per_message']:8.1f}"
              for cls, b in r["breakdown"].items()]
    lines += ["", f"{'query':32} {'items':>6} {'scripts':>8} {'commands':>9} {'us':>8}"]
    lines += [f"{q['query']:32} {q['items']:6} {q['scripts']:8} {q['commands']:9} "
              f"{q['script_usec']:8}" for q in r["queries"]]
    lines += ["", "commands per message, by phase (the most frequent):"]
    for name, top in r["top_commands"].items():
        lines.append(f"  {name}: " + ", ".join(f"{c} {n:.2f}" for c, n in top))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default=DEFAULT_URL)
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--smoke", action="store_true",
                    help=f"{SMOKE_MESSAGES} messages (the test suite's run)")
    ap.add_argument("--flush", action="store_true", help="FLUSHDB the database first")
    ap.add_argument("--text-len", type=int, default=60)
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--keep", action="store_true", help="leave the run's keys in Redis")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)
    count = SMOKE_MESSAGES if args.smoke else args.messages
    result = asyncio.run(run(args.url, count, flush=args.flush, text_len=args.text_len,
                             days=args.days, keep=args.keep))
    print(json.dumps(result, indent=2) if args.json else report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
