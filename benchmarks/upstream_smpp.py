"""End to end through an upstream SMSC: ESME (the load generator) → node A
(``smppbridge serve``, provider type ``smpp``, SQLite store) → upstream (the bare-echo
SMSC in its own process: a submit_sm_resp and a DELIVRD receipt per submit_sm) → the
receipt back through node A to the ESME. Also runs the load generator straight at the
same echo (the bare-echo baseline of the same run) and prints both and their ratio.

    .venv/bin/python benchmarks/upstream_smpp.py --duration 20 --sessions 4 --window 100
    .venv/bin/python benchmarks/upstream_smpp.py --upstream smppbridge   # node A → node B

``--upstream smppbridge`` puts a second ``smppbridge serve`` (node B: SQLite, the
in-process simulator delivering at once) in the echo's place, so one node forwards to
another; the baseline row stays the bare echo.

The figure is receipts/s: first submit → last receipt at the ESME, every receipt of an
acked submit (the e2e scenario's measure, docs/performance.md).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from smppbridge.bench.loadgen import LoadConfig, LoadResult, run_load


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port} after {timeout:g}s")


def node_config(workdir: Path, smpp_port: int, upstream_port: int, binds: int,
                window: int, http_port: int = 0) -> str:
    http = f"127.0.0.1:{http_port}" if http_port else ""
    return f"""\
[smpp]
listen = "127.0.0.1:{smpp_port}"
shutdown_grace = 2.0
[http]
listen = "{http}"
[store]
url = "sqlite:///{workdir / 'bench.db'}"
[log]
level = "warning"
format = "json"
[[accounts]]
system_id = "bench"
password = "bench"
max_binds = 100
window = 1000
providers = ["upstream"]
[[providers]]
name = "upstream"
type = "smpp"
host = "127.0.0.1"
port = {upstream_port}
system_id = "bench"
password = "bench"
binds = {binds}
window = {window}
"""


def upstream_node_config(workdir: Path, smpp_port: int) -> str:
    return f"""\
[smpp]
listen = "127.0.0.1:{smpp_port}"
shutdown_grace = 2.0
[http]
listen = ""
[store]
url = "sqlite:///{workdir / 'upstream.db'}"
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
poll_interval = 0.2
[providers.simulator]
deliver_after = 0.0
"""


def _load(port: int, args: argparse.Namespace) -> LoadResult:
    return asyncio.run(run_load(LoadConfig(
        port=port, sessions=args.sessions, window=args.window, messages=None,
        duration=args.duration, receipt_timeout=args.receipt_wait)))


def _show(name: str, r: LoadResult) -> None:
    print(f"{name:28} acked {r.acked:7d}  {r.submits_per_second:8.0f} msg/s  "
          f"receipts {r.receipts:7d}/{r.expected_receipts:<7d} {r.receipts_per_second:8.0f} "
          f"rcpt/s  p99 ack {r.latency.p99_ms:6.1f} ms  errors {dict(r.errors)} "
          f"unacked {r.unacked}", flush=True)


def _upstream_answers(http_port: int) -> None:
    """The node's upstream counters (answers by status, receipts by result, session
    errors), from its /metrics."""
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(("smppbridge_upstream_submits_total",
                            "smppbridge_upstream_receipts_total",
                            "smppbridge_upstream_session_errors_total")):
            series, value = line.rsplit(" ", 1)
            family = series.split("{")[0].removeprefix("smppbridge_upstream_")
            label = series.split('status="')[-1].split('result="')[-1]
            label = label.split('reason="')[-1].split('"')[0]
            key = f"{family}[{label}]"
            totals[key] = totals.get(key, 0.0) + float(value)
    print("  node:", ", ".join(f"{k} {v:.0f}" for k, v in sorted(totals.items()) if v),
          flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--sessions", type=int, default=4, help="ESME binds to node A")
    ap.add_argument("--window", type=int, default=100)
    ap.add_argument("--binds", type=int, default=2, help="node A's upstream sessions")
    ap.add_argument("--upstream-window", type=int, default=500)
    ap.add_argument("--receipt-wait", type=float, default=30.0)
    ap.add_argument("--upstream", choices=("echo", "smppbridge"), default="echo")
    args = ap.parse_args()
    echo_port, smpp_port, b_port = _free_port(), _free_port(), _free_port()
    http_port = _free_port()
    echo = subprocess.Popen([sys.executable, "-m", "smppbridge.bench.echo", "--listen",
                             f"127.0.0.1:{echo_port}"])
    try:
        _wait_port(echo_port)
        base = _load(echo_port, args)
        _show("bare echo (baseline)", base)
        with tempfile.TemporaryDirectory() as tmp:
            upstream_port = echo_port
            procs: list[subprocess.Popen[bytes]] = []
            if args.upstream == "smppbridge":
                b_config = Path(tmp) / "upstream.toml"
                b_config.write_text(upstream_node_config(Path(tmp), b_port))
                procs.append(subprocess.Popen([sys.executable, "-m", "smppbridge", "serve",
                                               "--config", str(b_config)]))
                _wait_port(b_port)
                upstream_port = b_port
            config = Path(tmp) / "node.toml"
            config.write_text(node_config(Path(tmp), smpp_port, upstream_port, args.binds,
                                          args.upstream_window, http_port))
            procs.append(subprocess.Popen([sys.executable, "-m", "smppbridge", "serve",
                                           "--config", str(config)]))
            try:
                _wait_port(smpp_port)
                time.sleep(1.0)  # the upstream sessions bind (a script, not a test)
                e2e = _load(smpp_port, args)
                _show(f"ESME → node → {args.upstream}", e2e)
                _upstream_answers(http_port)
            finally:
                for proc in reversed(procs):
                    proc.terminate()
                    proc.wait(20)
        ratio = e2e.receipts_per_second / base.receipts_per_second
        print(f"end to end {e2e.receipts_per_second:.0f} receipts/s = {ratio:.2f} × the "
              f"bare echo's {base.receipts_per_second:.0f}", flush=True)
    finally:
        echo.terminate()
        echo.wait(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
