"""The web console's pages against a large history: every page timed over HTTP.

1. Fills a fresh SQLite file with ``--messages`` messages (default 1,000,000) through
   ``history_sqlite.fill`` — the store's own write path and its population (50
   accounts of Zipf sizes, 200,000 destinations, 4 providers, 7 days of traffic) —
   with the 7 days ending now, so that "messages today" and time ranges find data.
2. Starts a real node on that file (127.0.0.1, ephemeral ports): the 50 accounts, an
   admin token, a simulator under each provider name of the history, ``history_days =
   30`` (nothing is purged meanwhile); its pipeline, poller and receipt dispatcher run
   as in production. The timing starts once the queued part of the history has been
   sent (at most 60 s).
3. Logs in through the login form, as an operator and as the largest account, and
   GETs each page ``--runs`` times (default 50) with parameters drawn from messages of
   the file: the overview and its live panel, the message search (first page, by
   destination, by account, by stat, by state, by time range, a deep page through its
   cursor), a message's page, binds, providers, accounts; for the account its own
   overview, search and message pages. Prints p50 / p95 / max in ms and the page size,
   and exits 1 when a page's p95 is over ``--budget`` (300 ms).

Usage::

    .venv/bin/python benchmarks/console_pages.py                  # 1,000,000 messages
    .venv/bin/python benchmarks/console_pages.py --smoke          # 20,000, 5 runs (CI)
    .venv/bin/python benchmarks/console_pages.py --db /tmp/c.db --keep    # keep the file
    .venv/bin/python benchmarks/console_pages.py --db /tmp/c.db --reuse   # pages only
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import history_sqlite as hs  # benchmarks/ is on sys.path when this runs as a script
import httpx

from smppbridge.config import parse_config
from smppbridge.core.history import Cursor
from smppbridge.core.records import DeliveryState
from smppbridge.node.api import encode_cursor
from smppbridge.node.node import Node
from smppbridge.observability.logging import configure_logging
from smppbridge.store.sqlite.store import SqliteStore

TOKEN = "a-benchmark-admin-token"
ACCOUNTS = 50
ZONE = "Europe/Kyiv"


def config(path: str) -> str:
    # the history names these providers: each is a simulator here (a stored message
    # in flight with a provider the config lacks stops the node's pipeline at start)
    names = [name for name, _ in hs.PROVIDERS]
    accounts = "".join(f'[[accounts]]\nsystem_id = "acct{i:02d}"\npassword = "pw"\n'
                       f'providers = {names!r}\n'.replace("'", '"')
                       for i in range(ACCOUNTS))
    providers = "".join(f'[[providers]]\nname = "{name}"\ntype = "simulator"\n'
                        f'simulator = {{ deliver_after = 1.0 }}\n' for name in names)
    return f"""
[smpp]
listen = "127.0.0.1:0"
shutdown_grace = 2.0
[http]
listen = "127.0.0.1:0"
admin_tokens = ["{TOKEN}"]
timezone = "{ZONE}"
[store]
url = "sqlite:///{path}"
history_days = 30
{accounts}
{providers}"""


async def fill(path: str, messages: int, seed: int) -> None:
    """The history of :mod:`history_sqlite`, its 7 days ending now."""
    hs.T0 = time.time() - hs.SPAN
    store = SqliteStore(path, synchronous="OFF")  # the fill is setup, not measured
    await store.open()
    try:
        report = await hs.fill(store, messages, random.Random(seed), progress=True)
    finally:
        await store.close()
    print(f"fill: {report.messages:,} messages in {report.seconds:.1f} s "
          f"({report.rate:,.0f}/s), file {report.file_bytes / 1e6:,.0f} MB")


@dataclass(frozen=True, slots=True)
class Page:
    name: str
    #: the client to use (operator / account) and the URL, from a random sample
    account: bool
    url: Callable[[random.Random, hs.Sample], str]


def _cursor(s: hs.Sample) -> str:
    return encode_cursor(Cursor(s.submitted_at + 1e-6, "")) or ""


def _window(rng: random.Random, s: hs.Sample) -> str:
    since = s.submitted_at - rng.uniform(0, 3600)
    return (f"since={time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(since))}Z"
            f"&until={since + rng.uniform(3600, hs.DAY):.0f}")


PAGES = [
    Page("overview", False, lambda rng, s: "/"),
    Page("overview panel (htmx)", False, lambda rng, s: "/overview/panel"),
    Page("messages, newest", False, lambda rng, s: "/messages"),
    Page("messages, by destination", False, lambda rng, s: f"/messages?to={s.dest}"),
    Page("messages, by account", False, lambda rng, s: f"/messages?account={s.account}"),
    Page("messages, by stat", False, lambda rng, s: "/messages?stat=" + rng.choice(
        ["DELIVRD", "UNDELIV", "EXPIRED", "REJECTD", "ENROUTE"])),
    Page("messages, by state", False, lambda rng, s: "/messages?state=" + rng.choice(
        [st.value for st in DeliveryState])),
    Page("messages, time range", False, lambda rng, s: "/messages?" + _window(rng, s)),
    Page("messages, deep page (cursor)", False,
         lambda rng, s: f"/messages?cursor={_cursor(s)}"),
    Page("messages, results only (htmx)", False, lambda rng, s: f"/messages?to={s.dest}"),
    Page("message page", False, lambda rng, s: f"/messages/{s.id}"),
    Page("binds", False, lambda rng, s: "/binds"),
    Page("providers", False, lambda rng, s: "/providers"),
    Page("accounts (50, counts today)", False, lambda rng, s: "/accounts"),
    Page("account: overview", True, lambda rng, s: "/"),
    Page("account: messages", True, lambda rng, s: "/messages"),
    Page("account: deep page (cursor)", True, lambda rng, s: f"/messages?cursor={_cursor(s)}"),
    Page("account: message page", True, lambda rng, s: f"/messages/{s.id}"),
    Page("account: accounts", True, lambda rng, s: "/accounts"),
]


@dataclass(frozen=True, slots=True)
class Row:
    name: str
    timing: hs.Timing
    size: int


async def _login(client: httpx.AsyncClient, form: dict[str, str]) -> None:
    r = await client.post("/login", data=form)
    if r.status_code != 303:
        raise SystemExit(f"login refused ({r.status_code}): {form.get('kind')}")


async def time_pages(node: Node, pool: list[hs.Sample], own: list[hs.Sample],
                     runs: int, rng: random.Random) -> list[Row]:
    assert node.http_address is not None
    host, port = node.http_address
    base = f"http://{host}:{port}"
    rows = []
    async with httpx.AsyncClient(base_url=base, timeout=30) as operator, \
            httpx.AsyncClient(base_url=base, timeout=30) as account:
        await _login(operator, {"kind": "operator", "token": TOKEN})
        await _login(account, {"kind": "account", "system_id": own[0].account,
                               "password": "pw"})
        for page in PAGES:
            client = account if page.account else operator
            headers = {}
            if "htmx" in page.name:
                target = "panel" if "panel" in page.name else "results"
                headers = {"hx-request": "true", "hx-target": target}
            ms: list[float] = []
            size = 0
            for _ in range(runs):
                url = page.url(rng, rng.choice(own if page.account else pool))
                started = time.perf_counter()
                r = await client.get(url, headers=headers)
                ms.append((time.perf_counter() - started) * 1000)
                if r.status_code != 200:
                    raise SystemExit(f"{page.name}: {url} answered {r.status_code}")
                size = max(size, len(r.content))
            rows.append(Row(page.name, hs.timing(ms), size))
    return rows


def own_samples(path: str, account: str, count: int, rng: random.Random) -> list[hs.Sample]:
    """``count`` messages of ``account`` drawn at random (by rowid range)."""
    db = sqlite3.connect(path)
    try:
        top = db.execute("SELECT max(rowid) FROM messages").fetchone()[0] or 0
        out: list[hs.Sample] = []
        while len(out) < count and top:
            row = db.execute("SELECT id, account, dest, source, provider, provider_id, "
                             "submitted_at FROM messages WHERE rowid>=? AND account=? "
                             "LIMIT 1", (rng.randint(1, top), account)).fetchone()
            if row is not None:
                out.append(hs.Sample(*row))
        return out
    finally:
        db.close()


async def drained(node: Node, limit: float) -> float:
    """Wait (at most ``limit`` s) until nothing is queued; the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if await node.store.count(DeliveryState.QUEUED) == 0:
            break
        await asyncio.sleep(0.5)
    return time.monotonic() - started


async def run(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    path = args.db or str(Path(tempfile.mkdtemp(prefix="console-")) / "console.db")
    if not args.reuse:
        for suffix in ("", "-wal", "-shm"):
            Path(path + suffix).unlink(missing_ok=True)
        await fill(path, args.messages, args.seed)
    pool = hs.samples(path, 4 * args.runs, rng)
    top_account = "acct00"  # the largest (Zipf rank 1)
    own = own_samples(path, top_account, max(4, args.runs), rng)
    node = Node(parse_config(config(path), env={}))
    await node.start()
    try:
        waited = await drained(node, 60)
        print(f"node up; queue drained in {waited:.1f} s; {args.runs} runs a page")
        rows = await time_pages(node, pool, own, args.runs, rng)
    finally:
        await node.stop()
    if not args.keep and not args.db:
        for suffix in ("", "-wal", "-shm"):
            Path(path + suffix).unlink(missing_ok=True)
    elif args.keep:
        print(f"kept {path}")
    print(f"{'page':<34} {'runs':>5} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} "
          f"{'KB':>6}")
    slow = []
    for row in rows:
        t = row.timing
        flag = "" if t.p95 <= args.budget else f"  over {args.budget:g} ms"
        if flag:
            slow.append(row.name)
        print(f"{row.name:<34} {t.runs:>5} {t.p50:>8.1f} {t.p95:>8.1f} {t.max:>8.1f} "
              f"{row.size / 1024:>6.1f}{flag}")
    if slow:
        print(f"p95 over budget: {', '.join(slow)}", file=sys.stderr)
        return 1
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=50, help="requests of each page")
    ap.add_argument("--budget", type=float, default=300.0, help="p95 ms a page may take")
    ap.add_argument("--smoke", action="store_true", help="20,000 messages, 5 runs a page")
    ap.add_argument("--db", help="the SQLite file (default: a temporary one, removed)")
    ap.add_argument("--reuse", action="store_true", help="time the pages on --db as it is")
    ap.add_argument("--keep", action="store_true", help="keep the temporary file")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    if args.smoke:
        args.messages, args.runs = 20_000, 5
    if args.reuse and not args.db:
        ap.error("--reuse needs --db")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging("warning", "console")
    return asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
