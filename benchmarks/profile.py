"""Profile a server under the harness's load: where the CPU of one message goes.

Starts a target of the harness (``smppbridge`` by default: stock config, in-process
simulator), puts the load generator on it (W=100, one bind, receipts requested) for
``--seconds``, records the server with py-spy (``--gil``: only the thread holding the
GIL, i.e. the Python work that competes for the one core a node uses) and prints

* the load: acks/s, receipts/s, p50/p99 ack latency, server CPU-µs per message;
* the share of samples under each stage of the pipeline;
* the functions with the most samples of their own.

py-spy is not a project dependency: ``.venv/bin/pip install py-spy``. Usage::

    .venv/bin/python benchmarks/profile.py --seconds 10
    .venv/bin/python benchmarks/profile.py --target smppbridge-mysmpp --raw /tmp/raw.txt

Without py-spy (or with ``--no-spy``) only the load figures are printed. The figures
are noisy on a shared 2-vCPU VM: run it two or three times.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from smppbridge.bench.echo import use_loop
from smppbridge.bench.loadgen import LoadConfig, LoadGenerator
from smppbridge.bench.procstat import read_cpu_seconds
from smppbridge.bench.targets import start_target

#: Stages of a node, by a frame that every sample of that stage has on its stack.
STAGES = {
    "submit_sm in: decode, session": "SmppConnection.data_received",
    "submit path: content, flood, store hand-over, submit_sm_resp":
        "SmppConnection._submit_batch",
    "sender: route, provider call, mark sent": "Pipeline._send_many",
    "status polling: statuses, mark final, receipts made": "StatusPoller",
    "receipts out: deliver_sm, answers": "ReceiptDispatcher",
    "in-process simulator (the provider)": "SimulatorProvider",
    "store thread (SQLite writes, Python side)": "SqliteStore._run",
    "Redis store's batcher (redis-py: packing, sending, parsing)": "Batcher._run",
    "event loop and I/O callbacks (the rest)": "Runner.run",
}


def summarise(raw: Path, top: int) -> str:
    """Stage shares and top self-time functions of a py-spy ``--format raw`` file."""
    own: collections.Counter[str] = collections.Counter()
    stage: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for name, marker in STAGES.items():
            if marker in stack:
                stage[name] += n
                break
    lines = [f"{total} samples", "", "share  stage"]
    lines += [f"{100 * stage[name] / total:5.1f}% {name}" for name in STAGES]
    lines += ["", f"share  top {top} functions by own samples"]
    lines += [f"{100 * n / total:5.1f}% {f}" for f, n in own.most_common(top)]
    return "\n".join(lines)


async def _run(target: str, seconds: float, spy: str | None, raw: Path,
               worker: bool | None) -> str:
    workdir = Path(tempfile.mkdtemp(prefix="smppbridge-profile-"))
    server = await start_target(target, workdir, worker=worker)
    recorder = None
    try:
        if spy:
            recorder = subprocess.Popen(
                [spy, "record", "--pid", str(server.pid), "--duration", str(int(seconds)),
                 "--format", "raw", "--output", str(raw), "--rate", "200", "--gil"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        before = server.sample()
        node_before = read_cpu_seconds(server.pid)
        gen = LoadGenerator(LoadConfig(port=server.port, window=100, sessions=1,
                                       messages=None, duration=seconds))
        await gen.open()
        try:
            result = await gen.run()
        finally:
            await gen.close()
        after = server.sample()
        node_cpu = read_cpu_seconds(server.pid) - node_before
        if recorder is not None:
            recorder.wait(timeout=seconds + 30)
    finally:
        await server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    cpu = after.cpu_seconds - before.cpu_seconds
    return (f"{target}: {result.submits_per_second:,.0f} acks/s, "
            f"{result.receipt_flow_per_second:,.0f} receipts/s, "
            f"ack p50 {result.latency.p50_ms:.1f} ms p99 {result.latency.p99_ms:.1f} ms, "
            f"{cpu:.2f} server CPU-s = {cpu / max(1, result.acked) * 1e6:.0f} µs "
            f"per message (node process {node_cpu:.2f} s, provider workers "
            f"{max(0.0, cpu - node_cpu):.2f} s)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--target", default="smppbridge")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--raw", type=Path, help="keep py-spy's raw samples here")
    p.add_argument("--no-spy", action="store_true", help="load figures only")
    p.add_argument("--provider-worker", choices=("default", "on", "off"), default="default",
                   help="the provider's `worker` key (default: the type's own); py-spy "
                        "records the node process only")
    args = p.parse_args(argv)
    spy = None if args.no_spy else shutil.which("py-spy") or (
        str(Path(sys.executable).parent / "py-spy")
        if (Path(sys.executable).parent / "py-spy").exists() else None)
    raw = args.raw or Path(tempfile.mkstemp(suffix=".txt")[1])
    use_loop("auto")
    worker = {"on": True, "off": False}.get(args.provider_worker)
    print(asyncio.run(_run(args.target, args.seconds, spy, raw, worker)))
    if spy is None:
        print("(py-spy not found: no profile; pip install py-spy)")
        return 0
    if raw.stat().st_size == 0:
        print("py-spy recorded nothing (ptrace not permitted?)")
        return 1
    print(summarise(raw, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
