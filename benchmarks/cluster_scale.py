"""Cluster scaling: N smppbridge nodes on one Redis, the project's load generator
pipelining into every node at once; prints acked submit_sm/s per node count and what
each message cost Redis.

    .venv/bin/python benchmarks/cluster_scale.py --nodes 1,2,3 --messages 10000

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

Every loop is bounded: the load stops after --messages per node, and the load
generator's own max_seconds / ack / receipt timeouts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis

from smppbridge.bench.loadgen import LoadConfig, run_load

CONFIG = """
[smpp]
listen = "127.0.0.1:{port}"
window = 1000
max_connections_per_ip = 5000
[http]
listen = ""
[store]
url = "{redis}?prefix=scale-{run}:"
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


async def run(nodes: int, messages: int, window: int, redis_url: str, workdir: Path,
              receipt_wait: float) -> float:
    if redis_url == "spawn":
        with private_redis(workdir) as url:
            return await _run(nodes, messages, window, url, workdir, receipt_wait)
    return await _run(nodes, messages, window, redis_url, workdir, receipt_wait)


async def _run(nodes: int, messages: int, window: int, redis_url: str, workdir: Path,
               receipt_wait: float) -> float:
    run_id = secrets.token_hex(4)
    ports = [free_port() for _ in range(nodes)]
    procs = []
    for i, port in enumerate(ports):
        cfg = workdir / f"node{nodes}-{i}.toml"
        accounts = "".join(ACCOUNT.format(i=n) for n in range(nodes))
        cfg.write_text(CONFIG.format(port=port, redis=redis_url, run=run_id,
                                     accounts=accounts))
        with (workdir / f"node{nodes}-{i}.log").open("w") as log:
            procs.append(subprocess.Popen([sys.executable, "-m", "smppbridge", "serve",
                                           "--config", str(cfg)],
                                          stdout=subprocess.DEVNULL, stderr=log))
    try:
        deadline = time.monotonic() + 20
        for port in ports:
            await wait_port(port, deadline)
        with redis_cost(redis_url) as cost:
            started = time.monotonic()
            results = await asyncio.gather(*(run_load(LoadConfig(
                port=port, window=window, messages=messages, source_addr=f"node{i}",
                system_id=f"bench{i}", receipt_timeout=receipt_wait))
                for i, port in enumerate(ports)))
            elapsed = time.monotonic() - started
        acked = sum(r.acked for r in results)
        receipts = sum(r.receipts for r in results)
        errors = {k: v for r in results for k, v in r.errors.items()}
        # acks/s over the load phase (first submit to the last ack of the slowest node);
        # the receipts' tail is the time until the last receipt of any node
        load = max(r.elapsed for r in results)
        tail = max(r.last_receipt_after for r in results)
        print(f"{nodes} node(s): {acked} acked in {load:.2f} s = {acked / load:,.0f}/s"
              f"  per node {[round(r.acked / r.elapsed) for r in results]}"
              f"  receipts {receipts}/{acked}, the last {tail:.1f} s after the first submit"
              f" (run {elapsed:.1f} s)"
              f"{'  errors ' + str(errors) if errors else ''}", flush=True)
        if acked:
            cpu_us = cost.cpu_seconds * 1e6 / acked
            top = sorted(cost.by_command.items(), key=lambda kv: -kv[1])[:8]
            print(f"  Redis: {cost.commands / acked:.1f} commands/message, "
                  f"{cpu_us:.0f} us CPU/message -> one Redis core tops out near "
                  f"{1e6 / cpu_us if cpu_us else float('inf'):,.0f} messages/s", flush=True)
            print("  busiest: " + ", ".join(f"{k} {n / acked:.2f}" for k, n in top),
                  flush=True)
        return acked / load
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(15)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default="1,2,3")
    parser.add_argument("--messages", type=int, default=10_000, help="per node")
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--redis", default="spawn",
                        help="'spawn' (a private redis-server per node count) or a URL")
    parser.add_argument("--receipt-wait", type=float, default=120.0,
                        help="seconds to wait for every acked message's receipt")
    args = parser.parse_args()
    counts = [int(n) for n in args.nodes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        rates = [asyncio.run(run(n, args.messages, args.window, args.redis, Path(tmp),
                                 args.receipt_wait))
                 for n in counts]
    base = rates[0]
    for n, r in zip(counts, rates, strict=True):
        print(f"  {n} node(s): {r:,.0f}/s = {r / base:.2f}x one node")
    return 0


if __name__ == "__main__":
    sys.exit(main())
