"""One smppbridge node on one Redis against the same node on a Redis Cluster of three
local masters (docs/cluster.md, *Running on a Redis Cluster*): acked submit_sm/s with
receipts, and what each message cost Redis (commands and CPU, summed over every
master and replica), alternating the stores rep after rep.

    .venv/bin/python benchmarks/redis_cluster.py --reps 3 --messages 10000

Stores (each a fresh server set per rep, AOF with ``appendfsync always``):

* ``one`` — one redis-server, ``redis://``;
* ``cluster`` — three masters, no replicas, ``redis-cluster://`` with 16 partitions
  (``--partitions``);
* ``cluster+wait`` — three masters with a replica each and ``min_replicas=1``, the
  failover prescription.

``--commands`` also prints each store's commands a message, by command (medians).
All of it runs on this machine: Redis servers, the node and the load generator share its
cores, so the figures say what the sharding costs a node, not what a cluster of real
machines reaches. The local cluster is the tests' (tests/store/redis/cluster/support.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import redis
from cluster_scale import (  # benchmarks/ is on sys.path when this runs as a script
    ACCOUNT,
    CONFIG,
    _reading,
    free_port,
    private_redis,
    wait_port,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' cluster

from smppbridge.bench.loadgen import LoadConfig, run_load
from tests.store.redis.cluster.support import LocalCluster

STORES = ("one", "cluster", "cluster+wait")


@contextlib.asynccontextmanager
async def servers(store: str, workdir: Path) -> AsyncIterator[tuple[str, list[str]]]:
    """The store's URL (without its query) and the plain URL of each of its Redis
    servers."""
    if store == "one":
        with private_redis(workdir) as url:
            yield url, [url]
        return
    local = LocalCluster(workdir / f"cluster-{secrets.token_hex(3)}",
                         replicas=1 if store == "cluster+wait" else 0)
    try:
        await local.start()
        if local.replicas:
            await local.wait_replicated()
        yield local.url + "/", [f"redis://127.0.0.1:{n.port}/0" for n in local.nodes]
    finally:
        local.stop()


def _cost(urls: list[str]) -> tuple[dict[str, int], float]:
    """Calls by command and CPU seconds, summed over ``urls`` (INFO left out)."""
    calls: dict[str, int] = {}
    cpu = 0.0
    for url in urls:
        client = redis.Redis.from_url(url)
        try:
            c, u = _reading(client)
        finally:
            client.close()
        for k, n in c.items():
            if k != "info":
                calls[k] = calls.get(k, 0) + n
        cpu += u
    return calls, cpu


async def one_run(store: str, messages: int, window: int, workdir: Path,
                  partitions: int = 16) -> dict[str, float]:
    async with servers(store, workdir) as (url, plain):
        port = free_port()
        cfg = workdir / f"node-{store}-{port}.toml"
        text = CONFIG.format(port=port, store=f"{url}?prefix=scale-b:",
                             accounts=ACCOUNT.format(i=0))
        if store != "one":
            text = text.replace("?prefix=", f"?partitions={partitions}&prefix=")
        if store == "cluster+wait":
            text = text.replace("?prefix=", "?min_replicas=1&prefix=")
        cfg.write_text(text)
        with (workdir / f"node-{store}-{port}.log").open("w") as log:
            proc = subprocess.Popen([sys.executable, "-m", "smppbridge", "serve",
                                     "--config", str(cfg)],
                                    stdout=subprocess.DEVNULL, stderr=log)
        try:
            await wait_port(port, time.monotonic() + 20)
            calls0, cpu0 = _cost(plain)
            result = await run_load(LoadConfig(port=port, window=window, messages=messages,
                                               source_addr="node0", system_id="bench0",
                                               receipt_timeout=120.0))
            calls1, cpu1 = _cost(plain)
        finally:
            proc.terminate()
            proc.wait(15)
    acked = max(1, result.acked)
    by_command = {k: (n - calls0.get(k, 0)) / acked for k, n in calls1.items()}
    return {"acks_per_s": result.acked / result.elapsed, "receipts": result.receipts,
            "acked": result.acked, "commands": sum(by_command.values()),
            "cpu_us": (cpu1 - cpu0) * 1e6 / acked,
            **{f"cmd:{k}": v for k, v in by_command.items() if v > 0}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--stores", default=",".join(STORES))
    parser.add_argument("--partitions", type=int, default=16,
                        help="partitions of the cluster stores")
    parser.add_argument("--commands", action="store_true",
                        help="also print each store's commands a message, by command")
    args = parser.parse_args()
    stores = args.stores.split(",")
    runs: dict[str, list[dict[str, float]]] = {s: [] for s in stores}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            for store in stores:  # alternating: one, cluster, cluster+wait, one, ...
                r = asyncio.run(one_run(store, args.messages, args.window, Path(tmp),
                                       args.partitions))
                runs[store].append(r)
                print(f"rep {rep + 1} {store:13} {r['acks_per_s']:8,.0f} acks/s  receipts "
                      f"{r['receipts']:.0f}/{r['acked']:.0f}  {r['commands']:.1f} cmd/msg  "
                      f"{r['cpu_us']:.0f} us Redis CPU/msg", flush=True)
    base = statistics.median(r["acks_per_s"] for r in runs[stores[0]])
    for store in stores:
        med = statistics.median(r["acks_per_s"] for r in runs[store])
        cpu = statistics.median(r["cpu_us"] for r in runs[store])
        cmd = statistics.median(r["commands"] for r in runs[store])
        print(f"median {store:13} {med:8,.0f} acks/s = {med / base:.2f}x {stores[0]}  "
              f"{cmd:.1f} cmd/msg  {cpu:.0f} us Redis CPU/msg")
        if args.commands:
            names = {k for r in runs[store] for k in r if k.startswith("cmd:")}
            each = {k: statistics.median(r.get(k, 0.0) for r in runs[store]) for k in names}
            busiest = sorted(each.items(), key=lambda kv: -kv[1])
            print("   ", "  ".join(f"{k[4:]} {v:.2f}" for k, v in busiest if v >= 0.05))
    return 0


if __name__ == "__main__":
    sys.exit(main())
