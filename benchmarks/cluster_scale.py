"""Cluster scaling: N smppbridge nodes on one Redis, the project's load generator
pipelining into every node at once; prints acked submit_sm/s per node count.

    .venv/bin/python benchmarks/cluster_scale.py --nodes 1,2,3 --messages 10000

Needs a Redis at --redis (default redis://127.0.0.1:6379/11; each run uses its own key
prefix). Every loop is bounded: the load stops after --messages per node, and the
load generator's own max_seconds / ack timeouts.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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
[[accounts]]
system_id = "bench"
password = "bench"
max_binds = 100
window = 1000
providers = ["simulator"]
[[providers]]
name = "simulator"
type = "simulator"
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


async def run(nodes: int, messages: int, window: int, redis: str, workdir: Path) -> float:
    run_id = secrets.token_hex(4)
    ports = [free_port() for _ in range(nodes)]
    procs = []
    for i, port in enumerate(ports):
        cfg = workdir / f"node{nodes}-{i}.toml"
        cfg.write_text(CONFIG.format(port=port, redis=redis, run=run_id))
        with (workdir / f"node{nodes}-{i}.log").open("w") as log:
            procs.append(subprocess.Popen([sys.executable, "-m", "smppbridge", "serve",
                                           "--config", str(cfg)],
                                          stdout=subprocess.DEVNULL, stderr=log))
    try:
        deadline = time.monotonic() + 20
        for port in ports:
            await wait_port(port, deadline)
        started = time.monotonic()
        results = await asyncio.gather(*(run_load(LoadConfig(
            port=port, window=window, messages=messages, source_addr=f"node{i}"))
            for i, port in enumerate(ports)))
        elapsed = time.monotonic() - started
        acked = sum(r.acked for r in results)
        errors = {k: v for r in results for k, v in r.errors.items()}
        print(f"{nodes} node(s): {acked} acked in {elapsed:.2f} s = {acked / elapsed:,.0f}/s"
              f"  per node {[round(r.acked / r.elapsed) for r in results]}"
              f"{'  errors ' + str(errors) if errors else ''}", flush=True)
        return acked / elapsed
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
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/11")
    args = parser.parse_args()
    counts = [int(n) for n in args.nodes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        rates = [asyncio.run(run(n, args.messages, args.window, args.redis, Path(tmp)))
                 for n in counts]
    base = rates[0]
    for n, r in zip(counts, rates, strict=True):
        print(f"  {n} node(s): {r:,.0f}/s = {r / base:.2f}x one node")
    return 0


if __name__ == "__main__":
    sys.exit(main())
