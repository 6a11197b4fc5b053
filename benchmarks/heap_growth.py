"""What grows in a node under sustained load: the heap between consecutive runs.

    .venv/bin/python benchmarks/heap_growth.py                       # 4 reps of 20 s
    .venv/bin/python benchmarks/heap_growth.py --reps 6 --tracemalloc 1
    .venv/bin/python benchmarks/heap_growth.py --no-flood --sim-max-messages 20000

A diagnostic, not a figure of merit (the probe's own bookkeeping costs a little CPU).
It starts ``smppbridge serve`` (the stock bench config of ``sustained.py``) under a
probe that, inside the server process,

* times every collection of the cyclic garbage collector by generation
  (``gc.callbacks``);
* on SIGUSR1 writes a JSON snapshot next to the database: ``gc.get_count()``,
  ``gc.get_stats()``, the pauses since the last snapshot, RSS, the number of objects
  the collector tracks by type (the 25 most numerous), and with ``--tracemalloc N``
  the top allocation sites diffed against the previous snapshot (N frames; slows the
  node by 2-3x, so use it to find *what*, not *how fast*).

Between reps the driver waits for the receipts, signals the node and prints the
snapshot against the previous one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

#: the probe's snapshot file inside the node's working directory
_SNAPSHOT = "heap-snapshot.json"


def _probe(argv: list[str]) -> int:
    """Run in the node's process: install the hooks, then the ordinary CLI."""
    import tracemalloc

    frames = int(os.environ.get("HEAP_PROBE_TRACEMALLOC", "0"))
    if frames:
        tracemalloc.start(frames)
    pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
    young: list[int] = []
    collected: list[int] = []
    started = [0.0, 0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            if info["generation"] == 0 and len(young) < 50:
                objs = gc.get_objects(0)
                young.append(len(objs))
                if len(young) == 5:
                    kinds.update(type(o).__qualname__ for o in objs)
                    sized = [(len(o), type(o).__qualname__, repr(o)[:80]) for o in objs
                             if isinstance(o, (dict, list, set, tuple))]
                    big.extend(sorted(sized, reverse=True)[:8])
                del objs
            started[0] = time.perf_counter()
            started[1] = time.thread_time()
        else:
            pauses[info["generation"]].append(time.perf_counter() - started[0])
            cpu[info["generation"]].append(time.thread_time() - started[1])
            collected.append(info["collected"])

    cpu: dict[int, list[float]] = {0: [], 1: [], 2: []}
    kinds: Counter[str] = Counter()
    big: list[tuple[int, str, str]] = []

    gc.callbacks.append(on_gc)
    previous: list[Any] = [None]

    def snapshot(_sig: int, _frame: object) -> None:
        tracked = gc.get_objects()
        by_type = Counter(type(o).__qualname__ for o in tracked)
        seen: set[int] = set()
        large: list[tuple[int, str, str]] = []
        for o in tracked:
            for c in (o, *gc.get_referents(o)):
                if (isinstance(c, (dict, list, set, tuple, frozenset))
                        and len(c) > 2000 and id(c) not in seen):
                    seen.add(id(c))
                    large.append((len(c), type(c).__qualname__,
                                  f"{type(o).__qualname__}: {repr(c)[:100]}"))
        large.sort(reverse=True)
        del tracked
        out: dict[str, Any] = {
            "count": gc.get_count(), "stats": gc.get_stats(),
            "tracked": sum(by_type.values()), "large": large[:20],
            "types": by_type.most_common(25),
            "pauses": {g: {"n": len(p), "total_ms": sum(p) * 1e3,
                           "max_ms": max(p, default=0.0) * 1e3}
                       for g, p in pauses.items()},
            "cpu_ms": {g: sum(p) * 1e3 for g, p in cpu.items()},
            "young": young[:], "collected": sum(collected),
            "young_types": kinds.most_common(12), "young_big": big[:],
            "rss": Path("/proc/self/status").read_text().split("RssAnon:")[1].split()[0],
        }
        for p in (*pauses.values(), *cpu.values()):
            p.clear()
        young.clear()
        collected.clear()
        big.clear()
        kinds.clear()
        if frames:
            snap = tracemalloc.take_snapshot()
            if previous[0] is not None:
                out["growth"] = [str(s) for s in
                                 snap.compare_to(previous[0], "traceback")[:15]]
            previous[0] = snap
        # written whole, then renamed: the driver reads it as soon as the name exists
        Path(_SNAPSHOT + ".tmp").write_text(json.dumps(out))
        Path(_SNAPSHOT + ".tmp").replace(_SNAPSHOT)

    signal.signal(signal.SIGUSR1, snapshot)
    from smppbridge.cli import main
    return main(argv)


def _print(snap: dict[str, Any], before: dict[str, Any] | None) -> None:
    old = dict(before["types"]) if before else {}
    print(f"   gc objects tracked {snap['tracked']:,}; count {snap['count']}")
    for g, p in snap["pauses"].items():
        print(f"   gen {g}: {p['n']} collections, {p['total_ms']:.0f} ms in all "
              f"({snap['cpu_ms'][g]:.0f} ms CPU), max {p['max_ms']:.1f} ms")
    print(f"   young sizes {snap['young'][:12]}; collected {snap['collected']:,}; "
          f"RssAnon {snap['rss']} kB")
    print(f"   young by type {snap['young_types']}")
    for row in snap["young_big"]:
        print(f"    big young {row}")
    for name, n in snap["types"][:15]:
        print(f"     {name:<32} {n:>10,} ({n - old.get(name, 0):+,})")
    for row in snap["large"]:
        print(f"    large {row}")
    for line in snap.get("growth", []):
        print("     " + line)


async def _drive(args: argparse.Namespace) -> int:
    from smppbridge.bench.echo import use_loop  # noqa: F401 - the driver's own loop
    from smppbridge.bench.loadgen import LoadConfig, run_load
    from smppbridge.bench.procstat import read_memory, thread_cpu_seconds
    from smppbridge.bench.targets import ServerProcess, free_port, smppbridge_config

    cfg = LoadConfig(window=100, messages=None, duration=args.duration,
                     receipt_timeout=15.0)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        port = free_port()
        config = work / "smppbridge.toml"
        text = smppbridge_config(work, port, free_port())
        if args.sim_max_messages is not None:  # the in-process simulator's cap
            text = text.replace("deliver_after = 1.0 }", "deliver_after = 1.0, "
                                f"max_messages = {args.sim_max_messages} }}")
        if args.no_flood:  # the account's flood rules off
            text = text.replace('providers = ["simulator"]\n',
                                'providers = ["simulator"]\nflood = { enabled = false }\n')
        config.write_text(text)
        env_frames = str(args.tracemalloc)
        os.environ["HEAP_PROBE_TRACEMALLOC"] = env_frames
        server = ServerProcess("probe", [sys.executable, str(Path(__file__).resolve()),
                                         "--probe", "serve", "--config", str(config)],
                               port, work)
        await server.start()
        before: dict[str, Any] | None = None
        try:
            for n in range(args.reps):
                t0 = thread_cpu_seconds(server.pid)
                r = await run_load(replace(cfg, port=server.port,
                                           first_message=n * 1_000_000))
                spent = thread_cpu_seconds(server.pid)
                loop_us = (spent[server.pid] - t0.get(server.pid, 0.0)) / max(1, r.acked)
                snap_path = work / _SNAPSHOT
                with contextlib.suppress(FileNotFoundError):
                    snap_path.unlink()
                os.kill(server.pid, signal.SIGUSR1)
                for _ in range(600):
                    if snap_path.exists():
                        break
                    await asyncio.sleep(0.1)
                snap = json.loads(snap_path.read_text())
                print(f"rep {n + 1}: {r.submits_per_second:,.0f} acks/s, receipts "
                      f"{r.receipts}/{r.expected_receipts}, p99 {r.latency.p99_ms:.1f} ms,"
                      f" event loop {loop_us * 1e6:.0f} us/msg, "
                      f"RSS {read_memory(server.pid)[0] / 1e6:.0f} MB", flush=True)
                _print(snap, before)
                before = snap
        finally:
            await server.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--probe":
        return _probe(argv[1:])
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=4)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES")
    p.add_argument("--no-flood", action="store_true", help="the flood rules off")
    p.add_argument("--sim-max-messages", type=int, metavar="N",
                   help="cap the in-process simulator at N messages (default 100,000)")
    args = p.parse_args(argv)
    from smppbridge.bench.echo import use_loop
    use_loop("auto")
    return asyncio.run(_drive(args))


if __name__ == "__main__":
    sys.exit(main())
