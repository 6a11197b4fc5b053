"""Cluster scaling: N smppbridge nodes on one Redis, the project's load generator
pipelining into every node at once; prints acked submit_sm/s per node count and what
each message cost Redis, against ONE SQLite node under the same load in the same run.

    .venv/bin/python benchmarks/cluster_scale.py --nodes 1,2,3 --messages 10000 --rounds 3

Each round runs the SQLite node first and then every node count (the order alternates
between rounds, so drift on a shared machine does not favour one side); the summary is
the median of the rounds, and the ratio of one cluster node to the SQLite node is
computed within each round (target of issue 21: >= 0.8x). ``--spy RAW`` records node 0
of the one-node Redis run with py-spy (``--gil``) and prints where its time went.

By default each node count gets a private redis-server (``--redis spawn``: a free
port, AOF with ``appendfsync always``, the durable setting docs/cluster.md prescribes),
so the counts below are this run's alone; ``--redis redis://...`` uses a running one
(each run under its own key prefix; other clients' commands then count too).

Every message asks for a receipt, and the run waits (up to --receipt-wait) until each
acked message's receipt reached the load generator: the Redis figures cover a message's
whole life (accept, hand-off, sent, status, final, receipt out, history), not the
accept alone. From ``INFO commandstats`` and ``INFO cpu`` before and after:
commands per message (every command a script runs counts, as Redis counts them), the
busiest commands, and Redis CPU per message (user + system of the server process), from
which ``1e6 / cpu_us`` is the ceiling of one Redis core in messages per second.

Every row also gives the nodes' own CPU per message (``/proc``, user + system of the
node processes): with the Redis CPU beside it, it says which side limits a node.

Every loop is bounded: the load stops after --messages per node, and the load
generator's own max_seconds / ack / receipt timeouts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

from smppbridge.bench.loadgen import LoadConfig, run_load
from smppbridge.bench.procstat import read_cpu_seconds

CONFIG = """
[smpp]
listen = "127.0.0.1:{port}"
window = 1000
max_connections_per_ip = 5000
[http]
listen = ""
[store]
url = "{store}"
[log]
level = "warning"
format = "json"
{accounts}[[providers]]
name = "simulator"
type = "simulator"
"""


#: one account per node's load: an account's receipts go to any of its receivers on any
#: node, so with one shared account a node's generator would wait for receipts that
#: another node's session took
ACCOUNT = """
[[accounts]]
system_id = "bench{i}"
password = "bench"
max_binds = 100
window = 1000
providers = ["simulator"]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def wait_port(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        w.close()
        await w.wait_closed()
        return
    raise SystemExit(f"node on port {port} did not start")


@dataclass
class RedisCost:
    """What Redis spent between two readings of INFO."""

    commands: int = 0
    cpu_seconds: float = 0.0
    by_command: dict[str, int] = field(default_factory=dict)


def _reading(client: redis.Redis) -> tuple[dict[str, int], float]:
    stats = client.info("commandstats")
    cpu = client.info("cpu")
    calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()
             if isinstance(v, dict)}
    return calls, float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


@contextlib.contextmanager
def redis_cost(url: str) -> Iterator[RedisCost]:
    """Measure the commands and CPU of the Redis at ``url`` over the block (the INFO
    calls themselves are left out)."""
    client = redis.Redis.from_url(url)
    cost = RedisCost()
    before, cpu0 = _reading(client)
    try:
        yield cost
    finally:
        after, cpu1 = _reading(client)
        client.close()
        cost.by_command = {k: n - before.get(k, 0) for k, n in after.items()
                           if k != "info" and n - before.get(k, 0) > 0}
        cost.commands = sum(cost.by_command.values())
        cost.cpu_seconds = cpu1 - cpu0


@contextlib.contextmanager
def private_redis(workdir: Path) -> Iterator[str]:
    """A redis-server of this run alone: AOF, appendfsync always, nothing else."""
    server = shutil.which("redis-server")
    if server is None:
        raise SystemExit("redis-server is not installed (or pass --redis redis://...)")
    port = free_port()
    data = workdir / f"redis-{port}"
    data.mkdir()
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "yes", "--appendfsync", "always",
                             "--dir", str(data)], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise SystemExit("the private redis-server did not start") from None
                time.sleep(0.05)
        client.close()
        yield url
    finally:
        proc.terminate()
        proc.wait(15)


@dataclass
class Row:
    """One run: a store, a node count, what it reached and what it cost."""

    label: str
    rate: float
    cost: RedisCost | None = None
    node_cpu_us: float = 0.0
    acked: int = 0


def _spy(pid: int, raw: Path, seconds: float) -> subprocess.Popen[bytes] | None:
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.exists():
        print("  (py-spy is not in the venv: no profile)", flush=True)
        return None
    return subprocess.Popen([str(spy), "record", "--pid", str(pid), "--duration",
                             str(max(1, int(seconds))), "--format", "raw", "--output",
                             str(raw), "--rate", "200", "--gil"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _print_profile(raw: Path) -> None:
    """profile.py's summary (loaded by path: ``profile`` is also a stdlib module)."""
    spec = importlib.util.spec_from_file_location(
        "smppbridge_bench_profile", Path(__file__).with_name("profile.py"))
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    print(module.summarise(raw, 25), flush=True)


async def run(nodes: int, messages: int, window: int, redis_url: str, workdir: Path,
              receipt_wait: float, spy: Path | None = None) -> Row:
    """``nodes`` nodes on one Redis (``spawn``: a private one)."""
    if redis_url == "spawn":
        with private_redis(workdir) as url:
            return await _run(nodes, messages, window, url, workdir, receipt_wait, spy)
    return await _run(nodes, messages, window, redis_url, workdir, receipt_wait, spy)


async def run_sqlite(messages: int, window: int, workdir: Path, receipt_wait: float) -> Row:
    """One node on a fresh SQLite file: the single-node figure the cluster is held to."""
    db = workdir / f"sqlite-{secrets.token_hex(4)}.db"
    return await _run(1, messages, window, "", workdir, receipt_wait, None,
                      store=f"sqlite:///{db.as_posix()}")


async def _run(nodes: int, messages: int, window: int, redis_url: str, workdir: Path,
               receipt_wait: float, spy: Path | None, store: str = "") -> Row:
    run_id = secrets.token_hex(4)
    label = f"{nodes} node(s)" if not store else "SQLite node"
    store = store or f"{redis_url}?prefix=scale-{run_id}:"
    ports = [free_port() for _ in range(nodes)]
    procs = []
    for i, port in enumerate(ports):
        cfg = workdir / f"node{run_id}-{i}.toml"
        accounts = "".join(ACCOUNT.format(i=n) for n in range(nodes))
        cfg.write_text(CONFIG.format(port=port, store=store, accounts=accounts))
        with (workdir / f"node{run_id}-{i}.log").open("w") as log:
            procs.append(subprocess.Popen([sys.executable, "-m", "smppbridge", "serve",
                                           "--config", str(cfg)],
                                          stdout=subprocess.DEVNULL, stderr=log))
    try:
        deadline = time.monotonic() + 20
        for port in ports:
            await wait_port(port, deadline)
        measured = redis_cost(redis_url) if redis_url else contextlib.nullcontext()
        with measured as cost:
            cpu0 = sum(read_cpu_seconds(p.pid) for p in procs)
            # the profile covers the first seconds of the load (the generator's warm-up
            # included): enough samples for the shares, never longer than the run
            recorder = _spy(procs[0].pid, spy, 3.0) if spy is not None else None
            started = time.monotonic()
            results = await asyncio.gather(*(run_load(LoadConfig(
                port=port, window=window, messages=messages, source_addr=f"node{i}",
                system_id=f"bench{i}", receipt_timeout=receipt_wait))
                for i, port in enumerate(ports)))
            elapsed = time.monotonic() - started
            node_cpu = sum(read_cpu_seconds(p.pid) for p in procs) - cpu0
            if recorder is not None:
                recorder.wait(30)
        acked = sum(r.acked for r in results)
        receipts = sum(r.receipts for r in results)
        errors = {k: v for r in results for k, v in r.errors.items()}
        # acks/s over the load phase (first submit to the last ack of the slowest node);
        # the receipts' tail is the time until the last receipt of any node
        load = max(r.elapsed for r in results)
        tail = max(r.last_receipt_after for r in results)
        row = Row(label, acked / load if load else 0.0, cost if redis_url else None,
                  node_cpu * 1e6 / acked if acked else 0.0, acked)
        print(f"{label}: {acked} acked in {load:.2f} s = {row.rate:,.0f}/s"
              f"  per node {[round(r.acked / r.elapsed) for r in results]}"
              f"  receipts {receipts}/{acked}, the last {tail:.1f} s after the first submit"
              f" (run {elapsed:.1f} s); nodes' CPU {row.node_cpu_us:.0f} us/message"
              f"{'  errors ' + str(errors) if errors else ''}", flush=True)
        if acked and row.cost is not None:
            cpu_us = row.cost.cpu_seconds * 1e6 / acked
            top = sorted(row.cost.by_command.items(), key=lambda kv: -kv[1])[:8]
            print(f"  Redis: {row.cost.commands / acked:.1f} commands/message, "
                  f"{cpu_us:.0f} us CPU/message -> one Redis core tops out near "
                  f"{1e6 / cpu_us if cpu_us else float('inf'):,.0f} messages/s", flush=True)
            print("  busiest: " + ", ".join(f"{k} {n / acked:.2f}" for k, n in top),
                  flush=True)
        if spy is not None and spy.exists() and spy.stat().st_size:
            _print_profile(spy)
        return row
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(15)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default="1,2,3")
    parser.add_argument("--messages", type=int, default=10_000, help="per node")
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--redis", default="spawn",
                        help="'spawn' (a private redis-server per node count) or a URL")
    parser.add_argument("--no-sqlite", action="store_true",
                        help="leave out the SQLite node (and the ratio)")
    parser.add_argument("--spy", type=Path, default=None,
                        help="py-spy raw output: profile node 0 of the first one-node run")
    parser.add_argument("--receipt-wait", type=float, default=120.0,
                        help="seconds to wait for every acked message's receipt")
    args = parser.parse_args()
    counts = [int(n) for n in args.nodes.split(",")]
    runs: dict[str, list[Row]] = {}
    ratios: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(args.rounds):
            print(f"-- round {rnd + 1} of {args.rounds}", flush=True)
            order: list[int | None] = [None, *counts] if not args.no_sqlite else [*counts]
            if rnd % 2:
                order.reverse()
            rows: dict[str, Row] = {}
            for n in order:
                if n is None:
                    row = asyncio.run(run_sqlite(args.messages, args.window, Path(tmp),
                                                 args.receipt_wait))
                else:
                    spy = args.spy if rnd == 0 and n == counts[0] else None
                    row = asyncio.run(run(n, args.messages, args.window, args.redis,
                                          Path(tmp), args.receipt_wait, spy))
                rows[row.label] = row
                runs.setdefault(row.label, []).append(row)
            one, lite = rows.get(f"{counts[0]} node(s)"), rows.get("SQLite node")
            if one is not None and lite is not None and lite.rate:
                ratios.append(one.rate / lite.rate)
    print(f"-- median of {args.rounds} round(s)")
    base = _median([r.rate for r in runs[f"{counts[0]} node(s)"]])
    for label, rows_of in runs.items():
        rate = _median([r.rate for r in rows_of])
        line = f"  {label}: {rate:,.0f}/s"
        if label != "SQLite node":
            line += f" = {rate / base:.2f}x {counts[0]} node(s)"
            cmds = [r.cost.commands / r.acked for r in rows_of if r.cost and r.acked]
            cpus = [r.cost.cpu_seconds * 1e6 / r.acked for r in rows_of if r.cost and r.acked]
            if cmds:
                line += (f", Redis {_median(cmds):.1f} commands/message, "
                         f"{_median(cpus):.0f} us CPU/message")
        line += f", nodes' CPU {_median([r.node_cpu_us for r in rows_of]):.0f} us/message"
        print(line)
    if ratios:
        print(f"  one cluster node / SQLite node: {_median(ratios):.2f}x "
              f"(per round {', '.join(f'{r:.2f}' for r in ratios)}; target >= 0.8x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
