"""A/B of the server between checkouts: the same load generator, the same config and
the same bare-echo baseline, with only the server's code switched.

    .venv/bin/python benchmarks/compare_trees.py /tmp/old-checkout . --rounds 3

Each round runs the echo baseline, then ``smppbridge serve`` from every tree in turn
(``PYTHONPATH=<tree>``, so the server imports that checkout; the load generator and the
config always come from this one, so the older tree must read today's config format),
each for ``--duration`` seconds at W = ``--window`` on one bind with receipts requested,
a fresh server and database per run. The order of the trees alternates between rounds.
Prints acks/s, p99 and the ratio to the echo of the same round; compare the ratios
(the machine is noisy).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from smppbridge.bench.loadgen import LoadConfig, LoadResult, run_load
from smppbridge.bench.procstat import read_cpu_seconds
from smppbridge.bench.targets import start_target, start_tree


async def _load(port: int, cfg: LoadConfig) -> LoadResult:
    return await run_load(replace(cfg, port=port))


async def _server(tree: Path, workdir: Path, cfg: LoadConfig) -> tuple[LoadResult, float]:
    """The run's load figures and the server's CPU-us per acked message (steadier than
    acks/s on a shared machine: a neighbour's load takes time, not CPU)."""
    server = await start_tree(tree, workdir)
    try:
        cpu = read_cpu_seconds(server.pid)
        result = await _load(server.port, cfg)
        cpu = read_cpu_seconds(server.pid) - cpu
        return result, cpu / max(1, result.acked) * 1e6
    finally:
        await server.stop()


async def _echo(workdir: Path, cfg: LoadConfig) -> LoadResult:
    echo = await start_target("echo", workdir)
    try:
        return await _load(echo.port, cfg)
    finally:
        await echo.stop()


def _line(name: str, r: LoadResult, echo: float, cpu_us: float) -> str:
    rate = r.submits_per_second
    return (f"  {name:<28} {rate:>9,.0f} acks/s  p99 {r.latency.p99_ms:6.1f} ms  "
            f"{rate / echo:.3f}x echo  {cpu_us:4.0f} CPU-us/msg  errors {r.errors or '-'}")


async def main_async(trees: list[Path], rounds: int, cfg: LoadConfig) -> int:
    ratios: dict[str, list[float]] = {str(t): [] for t in trees}
    cpus: dict[str, list[float]] = {str(t): [] for t in trees}
    for n in range(rounds):
        order = trees if n % 2 == 0 else trees[::-1]
        with tempfile.TemporaryDirectory() as tmp:
            echo = await _echo(Path(tmp), cfg)
        base = echo.submits_per_second
        print(f"round {n + 1}: echo {base:,.0f}/s", flush=True)
        for tree in order:
            with tempfile.TemporaryDirectory() as tmp:
                r, cpu_us = await _server(tree, Path(tmp), cfg)
            ratios[str(tree)].append(r.submits_per_second / base)
            cpus[str(tree)].append(cpu_us)
            print(_line(str(tree), r, base, cpu_us), flush=True)
    print("median ratio to echo:")
    for name, values in ratios.items():
        each = ", ".join(f"{v:.3f}" for v in values)
        print(f"  {name:<28} {statistics.median(values):.3f}x  ({each}); server "
              f"{statistics.median(cpus[name]):.0f} CPU-us/msg")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("trees", nargs="+", type=Path, help="checkouts to compare")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=25.0)
    p.add_argument("--window", type=int, default=100)
    args = p.parse_args()
    cfg = LoadConfig(window=args.window, messages=None, duration=args.duration,
                     receipt_timeout=0.0)
    return asyncio.run(main_async([t.resolve() for t in args.trees], args.rounds, cfg))


if __name__ == "__main__":
    sys.exit(main())
