"""Messages submitted over HTTP: ``POST /api/v1/messages`` in batches, against a real
node, and against a bare HTTP echo on the same machine in the same run.

1. **echo** (the baseline, unless ``--no-echo``): a process serving ``POST
   /api/v1/messages`` on uvicorn that reads the JSON batch and answers an id per
   message — no auth, no store, no pipeline: what this machine's HTTP stack (uvicorn,
   json, the httpx client) does by itself.
2. **smppbridge**: ``python -m smppbridge serve`` in its own process on a fresh SQLite
   file (``synchronous`` as configured by default), one account with an api key and the
   in-process simulator provider (``deliver_after`` 1 s: the node sends, polls and
   finishes every message while the load runs), flood rules on (every message has its
   own destination and text).

The client (this process, httpx) keeps ``--concurrency`` requests in flight, each a
batch of ``--batch`` messages (default 100), for ``--duration`` seconds (default 20),
and prints messages accepted per second, requests per second, request latency p50 /
p99 and the server's CPU seconds. Exits 1 when a message was refused or a request
failed.

Usage::

    .venv/bin/python benchmarks/http_submit.py                    # 20 s, batches of 100
    .venv/bin/python benchmarks/http_submit.py --duration 5 --no-echo
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from smppbridge.bench.procstat import read_cpu_seconds
from smppbridge.bench.targets import free_port

API_KEY = "benchmark-api-key-0123456789"


def node_config(workdir: Path, smpp_port: int, http_port: int) -> str:
    return f"""
[smpp]
listen = "127.0.0.1:{smpp_port}"
shutdown_grace = 2.0
[http]
listen = "127.0.0.1:{http_port}"
[store]
url = "sqlite:///{workdir}/bench.db"
[[accounts]]
system_id = "bench"
password = "bench"
providers = ["simulator"]
api_keys = ["{API_KEY}"]
[[providers]]
name = "simulator"
type = "simulator"
simulator = {{ deliver_after = 1.0 }}
"""


# --- the echo ------------------------------------------------------------------------------


def echo_app() -> object:
    """The baseline: parse the batch, answer an id per message."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    ids = itertools.count(1)

    async def submit(request: Request) -> Response:
        body = json.loads(await request.body())
        items = [{"id": str(next(ids)), "parts": 1} for _ in body["messages"]]
        return Response(json.dumps({"items": items}), status_code=202,
                        media_type="application/json")

    return Starlette(routes=[Route("/api/v1/messages", submit, methods=["POST"]),
                             Route("/healthz", lambda _: Response("ok"))])


def serve_echo(port: int) -> None:
    import uvicorn

    uvicorn.run(echo_app(), host="127.0.0.1", port=port, log_level="warning",  # type: ignore[arg-type]
                access_log=False)


# --- the load ------------------------------------------------------------------------------


@dataclass
class Tally:
    accepted: int = 0
    refused: int = 0
    failed_requests: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)


async def load(base: str, *, duration: float, batch: int, concurrency: int,
               headers: dict[str, str], tag: str) -> tuple[Tally, float]:
    tally = Tally()
    counter = itertools.count()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits,
                                 headers=headers) as client:
        started = time.monotonic()
        stop = started + duration

        async def worker() -> None:
            while time.monotonic() < stop:
                n = next(counter)
                body = {"messages": [
                    {"to": f"79{n % 100:02d}{i:03d}{n // 100:05d}", "from": "Bench",
                     "text": f"{tag} {n} {i}"} for i in range(batch)]}
                sent = time.perf_counter()
                try:
                    r = await client.post("/api/v1/messages", json=body)
                except httpx.HTTPError as exc:
                    tally.failed_requests += 1
                    tally.errors[type(exc).__name__] = tally.errors.get(
                        type(exc).__name__, 0) + 1
                    continue
                tally.latencies.append(time.perf_counter() - sent)
                if r.status_code != 202:
                    tally.failed_requests += 1
                    tally.errors[str(r.status_code)] = tally.errors.get(
                        str(r.status_code), 0) + 1
                    continue
                for item in r.json()["items"]:
                    if "id" in item:
                        tally.accepted += 1
                    else:
                        tally.refused += 1
                        code = item["error"]["code"]
                        tally.errors[code] = tally.errors.get(code, 0) + 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.monotonic() - started
    return tally, elapsed


def _wait_ready(base: str, proc: subprocess.Popen[bytes], path: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(base + path, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the server at {base} did not start")
        time.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0.0


def run_row(name: str, argv: list[str], base: str, ready: str, args: argparse.Namespace,
            headers: dict[str, str], log: Path) -> bool:
    env = dict(os.environ, SMPPBRIDGE_LOG_LEVEL="warning")
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=out)
        try:
            _wait_ready(base, proc, ready)
            cpu0 = read_cpu_seconds(proc.pid)
            tally, elapsed = asyncio.run(load(base, duration=args.duration, batch=args.batch,
                                              concurrency=args.concurrency,
                                              headers=headers, tag=name))
            cpu = read_cpu_seconds(proc.pid) - cpu0
        finally:
            _stop(proc)
    rate = tally.accepted / elapsed if elapsed else 0.0
    print(f"{name:<11} {rate:>9,.0f} msg/s  {len(tally.latencies) / elapsed:>7,.1f} req/s  "
          f"p50 {_quantile(tally.latencies, 0.5):>6.1f} ms  "
          f"p99 {_quantile(tally.latencies, 0.99):>6.1f} ms  server cpu {cpu:>5.1f} s  "
          f"({tally.accepted:,} messages in {elapsed:.1f} s)")
    if tally.errors:
        print(f"{'':<11} errors: {tally.errors}")
    return not tally.errors


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--no-echo", action="store_true", help="skip the baseline")
    parser.add_argument("--echo-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.echo_server:
        serve_echo(args.echo_server)
        return 0
    print(f"POST /api/v1/messages, batches of {args.batch}, {args.concurrency} in flight, "
          f"{args.duration:.0f} s a row")
    ok = True
    with tempfile.TemporaryDirectory(prefix="http-submit-") as tmp:
        workdir = Path(tmp)
        if not args.no_echo:
            port = free_port()
            ok &= run_row("echo", [sys.executable, __file__, "--echo-server", str(port)],
                          f"http://127.0.0.1:{port}", "/healthz", args, {},
                          workdir / "echo.log")
        smpp_port, http_port = free_port(), free_port()
        (workdir / "node.toml").write_text(node_config(workdir, smpp_port, http_port))
        ok &= run_row("smppbridge", [sys.executable, "-m", "smppbridge", "serve", "--config",
                                     str(workdir / "node.toml")],
                      f"http://127.0.0.1:{http_port}", "/readyz", args,
                      {"authorization": f"Bearer {API_KEY}"}, workdir / "node.log")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
