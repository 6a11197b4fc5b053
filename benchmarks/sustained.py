"""Sustained load on one node: consecutive runs against the same server and database.

    .venv/bin/python benchmarks/sustained.py                  # 10 reps of 25 s
    .venv/bin/python benchmarks/sustained.py --reps 3 --duration 10 --tree /tmp/old

Issue 21 #4's figures in one invocation, the bare-echo baseline measured first:

1. the echo (W = 100 and W = 1, one bind, receipts requested) for ``--duration`` /
   ``--w1-duration`` seconds;
2. ``smppbridge serve`` started **once** (stock bench config, SQLite file, in-process
   simulator delivering after 1 s), then ``--reps`` runs of ``--duration`` seconds at
   W = 100 on one bind, receipts requested and flowing (each rep waits up to
   ``--receipt-wait`` s for the receipts of its acks, so the next one starts on a
   drained outbox): acks/s, receipts/s (first submit -> last receipt), p99, ratio to the
   echo per rep, and the last rep over the first (the decay: the database grows by every
   rep's messages);
3. on the same server: W = 1 (ratio to the echo's W = 1) and a steady ``--rate`` (5,000/s
   by default) at W = 100, whose p99 is the latency figure.

``--tree`` runs the server from another checkout (``PYTHONPATH``), as compare_trees.py
does; the load generator and config always come from this one.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from smppbridge.bench.echo import use_loop
from smppbridge.bench.loadgen import LoadConfig, LoadResult, run_load
from smppbridge.bench.procstat import read_cpu_seconds, read_memory, thread_cpu_seconds
from smppbridge.bench.targets import start_target, start_tree

#: messages a session may send in one run: each run starts its numbering this far on,
#: so that no run repeats an earlier one's message (the flood rules would refuse it)
_STRIDE = 1_000_000


def _row(name: str, r: LoadResult, echo: float, cpu: float | None = None) -> str:
    rate = r.submits_per_second
    extra = f"  {cpu / max(1, r.acked) * 1e6:5.0f} CPU-us/msg" if cpu is not None else ""
    return (f"  {name:<12} {rate:>9,.0f} acks/s {r.receipts_per_second:>9,.0f} rcpt/s "
            f"({r.receipts}/{r.expected_receipts})  p50 {r.latency.p50_ms:6.1f} ms  "
            f"p99 {r.latency.p99_ms:6.1f} ms  {rate / echo:.3f}x echo{extra}"
            f"  errors {r.errors or '-'}  unacked {r.unacked}")


def _threads(pid: int, before: dict[int, float], r: LoadResult) -> str:
    """CPU-us per message of the event loop's thread (the main one) and of the busiest
    other thread (the SQLite writer)."""
    spent = {t: c - before.get(t, 0.0) for t, c in thread_cpu_seconds(pid).items()}
    main = spent.pop(pid, 0.0)
    other = max(spent.values(), default=0.0)
    n = max(1, r.acked)
    rss = read_memory(pid)[0] / 1e6
    return (f"CPU-us/msg: event loop {main / n * 1e6:.0f}, busiest other thread "
            f"(store writer) {other / n * 1e6:.0f}; RSS {rss:.0f} MB")


async def _echo(cfg: LoadConfig) -> LoadResult:
    with tempfile.TemporaryDirectory() as tmp:
        echo = await start_target("echo", Path(tmp))
        try:
            return await run_load(replace(cfg, port=echo.port))
        finally:
            await echo.stop()


async def main_async(args: argparse.Namespace) -> int:
    w100 = LoadConfig(window=100, messages=None, duration=args.duration,
                      receipt_timeout=args.receipt_wait)
    w1 = replace(w100, window=1, duration=args.w1_duration)
    steady = replace(w100, rate=args.rate)
    echo = await _echo(w100)
    echo1 = await _echo(w1)
    base, base1 = echo.submits_per_second, echo1.submits_per_second
    print(f"echo W=100 {base:,.0f}/s p99 {echo.latency.p99_ms:.1f} ms; "
          f"echo W=1 {base1:,.0f}/s", flush=True)
    rates: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        server = await start_tree(args.tree, Path(tmp))
        try:
            for n in range(args.reps):
                cpu0 = read_cpu_seconds(server.pid)
                threads0 = thread_cpu_seconds(server.pid)
                r = await run_load(replace(w100, port=server.port,
                                           first_message=n * _STRIDE))
                cpu = read_cpu_seconds(server.pid) - cpu0
                rates.append(r.submits_per_second)
                print(_row(f"rep {n + 1}", r, base, cpu), flush=True)
                print("      " + _threads(server.pid, threads0, r), flush=True)
            r1 = await run_load(replace(w1, port=server.port,
                                        first_message=args.reps * _STRIDE))
            print(_row("W=1", r1, base1), flush=True)
            rs = await run_load(replace(steady, port=server.port,
                                        first_message=(args.reps + 1) * _STRIDE))
            print(_row(f"{args.rate:,.0f}/s", rs, base), flush=True)
            size = sum(f.stat().st_size for f in Path(tmp).glob("bench.db*"))
        finally:
            await server.stop()
    print(f"W=100 median {statistics.median(rates):,.0f} acks/s = "
          f"{statistics.median(rates) / base:.3f}x echo; last/first "
          f"{rates[-1] / rates[0]:.2f}; W=1 {r1.submits_per_second / base1:.3f}x echo; "
          f"p99 at {args.rate:,.0f}/s {rs.latency.p99_ms:.1f} ms; "
          f"database {size / 1e6:,.0f} MB")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--duration", type=float, default=25.0, help="seconds of one rep")
    p.add_argument("--w1-duration", type=float, default=10.0)
    p.add_argument("--rate", type=float, default=5000.0, help="the steady row's rate")
    p.add_argument("--receipt-wait", type=float, default=15.0)
    p.add_argument("--tree", type=Path, help="run the server from this checkout")
    args = p.parse_args(argv)
    if args.tree is not None:
        args.tree = args.tree.resolve()
    use_loop("auto")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
