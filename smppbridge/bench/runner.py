"""Scenario runner: ``python -m smppbridge.bench [SCENARIO ...]``.

For every scenario row and every target it starts a fresh server process (so CPU,
peak RSS and the store belong to that row alone), runs the load generator in this
process, samples the server from ``/proc``, stops it with SIGTERM and prints one table
line. Each smppbridge row is compared with the echo row of the same run ("ratio").

Scenarios (``all`` = every one but ``soak``):

=========  ===============================================================================
ack        (a) submit → ack with receipts requested; W = 1, 10, 100 × 1 and 4 binds
latency    (a-latency) a steady rate (``--rate``, 5,000/s) at W = 100; p99 ack latency
e2e        (b) end to end: receipts through the simulator, waited for; receipts/s
binds      (c) ``--binds`` (1,000) binds open, load on 10 of them; RSS
ucs2       (d) 3-part UCS2 messages (16-bit-ref UDH), W = 100
soak       (e) ``--soak-duration`` (600 s) at ``--soak-rate``; RSS every 10 s, growth %
=========  ===============================================================================
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from smppbridge.bench.echo import use_loop
from smppbridge.bench.loadgen import LoadConfig, LoadError, LoadGenerator, LoadResult
from smppbridge.bench.procstat import read_cpu_seconds
from smppbridge.bench.targets import TARGETS, ServerProcess, TargetError, start_target

__all__ = ["SCENARIOS", "Case", "Options", "Row", "build_cases", "main", "run_suite"]

SCENARIOS = ("ack", "latency", "e2e", "binds", "ucs2", "soak")
#: ``all`` runs the quick suite; the soak is long and asked for by name.
QUICK = ("ack", "latency", "e2e", "binds", "ucs2")
ALIASES = {"a": "ack", "a-latency": "latency", "b": "e2e", "c": "binds", "d": "ucs2",
           "e": "soak"}
_MB = 1024 * 1024
#: Loaded sessions of the binds scenario; the rest only stay bound.
_BINDS_LOADED = 10


@dataclass(frozen=True, slots=True)
class Options:
    """Knobs of one suite run (the CLI's options)."""

    targets: tuple[str, ...] = ("echo", "smppbridge")
    duration: float = 3.0
    messages: int | None = None
    rate: float = 5000.0
    binds: int = 1000
    receipt_wait: float = 20.0
    soak_duration: float = 600.0
    soak_rate: float = 1000.0
    soak_interval: float = 10.0
    deliver_after: float = 1.0
    loop: str = "auto"
    keep: bool = False
    #: ``worker`` of smppbridge's provider: None = the type's default, else on/off
    provider_worker: bool | None = None


@dataclass(frozen=True, slots=True)
class Case:
    """One row of the table: a scenario with its parameters."""

    scenario: str
    label: str
    load: LoadConfig
    #: what the ratio to the baseline compares: msg/s, p99, receipts/s or rss
    key: str = "msg/s"
    soak: bool = False


@dataclass(slots=True)
class Row:
    """One case run against one target."""

    scenario: str
    label: str
    target: str
    key: str
    ok: bool = True
    error: str = ""
    start_failed: bool = False
    submits_per_s: float = 0.0
    messages_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    receipts: int = 0
    receipts_per_s: float = 0.0
    receipt_flow_per_s: float = 0.0
    server_cpu_s: float = 0.0
    #: CPU of this process (the load generator) over the same span: well under the
    #: elapsed time means the generator was not the bottleneck
    client_cpu_s: float = 0.0
    peak_rss_mb: float = 0.0
    #: RSS after start (no sessions) and with every session bound, before the load
    rss_idle_mb: float = 0.0
    rss_bound_mb: float = 0.0
    rss_growth_pct: float | None = None
    rss_series_mb: list[tuple[float, float]] = field(default_factory=list)
    ratio: float | None = None
    exit_code: int | None = None
    load: dict[str, Any] = field(default_factory=dict)

    def key_value(self) -> float:
        return {"msg/s": self.submits_per_s, "p99": self.p99_ms,
                "receipts/s": self.receipts_per_s, "rss": self.peak_rss_mb}[self.key]


def build_cases(names: Sequence[str], opts: Options) -> list[Case]:
    """The rows of the named scenarios, in the order given."""
    timed: dict[str, Any] = ({"messages": opts.messages, "duration": None}
                             if opts.messages else
                             {"messages": None, "duration": opts.duration})
    base = LoadConfig(**timed)
    cases: list[Case] = []
    for name in names:
        if name == "ack":
            cases += [Case("ack", f"W={w} binds={b}", replace(base, window=w, sessions=b))
                      for w in (1, 10, 100) for b in (1, 4)]
        elif name == "latency":
            cases.append(Case("latency", f"{opts.rate:g}/s W=100 binds=1",
                              replace(base, window=100, rate=opts.rate), key="p99"))
        elif name == "e2e":
            cases.append(Case("e2e", "W=100 binds=4, receipts waited",
                              replace(base, window=100, sessions=4,
                                      receipt_timeout=opts.receipt_wait),
                              key="receipts/s"))
        elif name == "binds":
            idle = max(0, opts.binds - _BINDS_LOADED)
            cases.append(Case("binds", f"{opts.binds} binds, load on {_BINDS_LOADED} W=10",
                              replace(base, window=10, sessions=min(opts.binds, _BINDS_LOADED),
                                      idle_sessions=idle, connect_timeout=30.0),
                              key="rss"))
        elif name == "ucs2":
            cases.append(Case("ucs2", "3-part UCS2 W=100 binds=1",
                              replace(base, window=100, parts=3)))
        elif name == "soak":
            cases.append(Case("soak", f"{opts.soak_duration:g}s at {opts.soak_rate:g}/s "
                                      "W=100 binds=4",
                              replace(base, messages=None, duration=opts.soak_duration,
                                      rate=opts.soak_rate, window=100, sessions=4),
                              key="rss", soak=True))
        else:
            raise ValueError(f"unknown scenario {name!r}")
    return cases


async def _sample_rss(server: ServerProcess, interval: float,
                      series: list[tuple[float, float]], started: float) -> None:
    """Append (seconds since start, RSS MB) every ``interval`` until cancelled."""
    while True:  # ends by cancellation when the load ends; one sample per interval
        await asyncio.sleep(interval)
        with contextlib.suppress(TargetError):
            s = server.sample()
            series.append((round(s.at - started, 1), s.rss_bytes / _MB))


def _growth(series: list[tuple[float, float]]) -> float | None:
    """RSS growth from the first interval sample (after warm-up) to the last, in %."""
    if len(series) < 2 or series[0][1] <= 0:
        return None
    return (series[-1][1] - series[0][1]) / series[0][1] * 100.0


async def run_case(case: Case, target: str, opts: Options) -> Row:
    """Start ``target``, run ``case`` against it, stop it; never raises for the target."""
    row = Row(case.scenario, case.label, target, case.key)
    workdir = Path(tempfile.mkdtemp(prefix=f"smppbridge-bench-{target}-"))
    server: ServerProcess | None = None
    try:
        try:
            server = await start_target(target, workdir, loop=opts.loop,
                                        max_binds=max(2000, 2 * opts.binds),
                                        deliver_after=opts.deliver_after,
                                        worker=opts.provider_worker)
        except TargetError:
            row.start_failed = True
            raise
        load = replace(case.load, port=server.port)
        before = server.sample()
        client_before = read_cpu_seconds(os.getpid())
        row.rss_idle_mb = before.rss_bytes / _MB
        gen = LoadGenerator(load)
        sampler: asyncio.Task[None] | None = None
        try:
            await gen.open()
            row.rss_bound_mb = server.sample().rss_bytes / _MB
            if case.soak:
                sampler = asyncio.create_task(_sample_rss(server, opts.soak_interval,
                                                          row.rss_series_mb, before.at))
            result = await gen.run()
            after = server.sample()
            row.client_cpu_s = read_cpu_seconds(os.getpid()) - client_before
        finally:
            if sampler is not None:
                sampler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sampler
            await gen.close()
        _fill_row(row, result, after.cpu_seconds - before.cpu_seconds, after.peak_rss_bytes)
    except (TargetError, LoadError, OSError) as exc:
        row.ok = False
        row.error = str(exc)
    finally:
        if server is not None:
            row.exit_code = await server.stop()
        if not opts.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        elif server is not None:
            row.load["workdir"] = str(workdir)
    return row


def _fill_row(row: Row, r: LoadResult, cpu: float, peak: int) -> None:
    row.submits_per_s = r.submits_per_second
    row.messages_per_s = r.messages_per_second
    row.p50_ms = r.latency.p50_ms
    row.p99_ms = r.latency.p99_ms
    row.max_ms = r.latency.max_ms
    row.receipts = r.receipts
    row.receipts_per_s = r.receipts_per_second
    row.receipt_flow_per_s = r.receipt_flow_per_second
    row.server_cpu_s = cpu
    row.peak_rss_mb = peak / _MB
    row.rss_growth_pct = _growth(row.rss_series_mb)
    row.load.update(asdict(r))
    if r.unacked or r.errors or r.sessions_lost:
        row.error = _problems(r)


def _problems(r: LoadResult) -> str:
    parts = [f"{n} {name}" for name, n in sorted(r.errors.items(), key=lambda kv: -kv[1])]
    if r.unacked:
        parts.append(f"{r.unacked} unacked")
    if r.sessions_lost:
        parts.append(f"{r.sessions_lost} sessions lost")
    return ", ".join(parts)


def _ratios(rows: list[Row]) -> None:
    baseline = {(r.scenario, r.label): r for r in rows if r.target == "echo" and r.ok}
    for r in rows:
        base = baseline.get((r.scenario, r.label))
        if r.ok and base is not None and base.key_value() > 0:
            r.ratio = r.key_value() / base.key_value()


# --- output ------------------------------------------------------------------------------

_COLUMNS = (
    ("scenario", 8), ("case", 34), ("target", 12), ("msg/s", 8), ("p50 ms", 7),
    ("p99 ms", 7), ("max ms", 7), ("rcpt/s", 8), ("cpu s", 6), ("RSS MB", 13),
    ("vs echo", 14),
)


def _fmt(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}" if value else "-"


def _cells(r: Row) -> list[str]:
    if not r.ok:
        return [r.scenario, r.label, r.target, "FAILED"] + [""] * (len(_COLUMNS) - 4)
    ratio = f"{r.ratio:.2f}x {r.key}" if r.ratio is not None else ""
    rss = _fmt(r.peak_rss_mb, 1)
    if r.rss_growth_pct is not None:
        rss += f" {r.rss_growth_pct:+.1f}%"
    return [r.scenario, r.label, r.target, _fmt(r.submits_per_s), _fmt(r.p50_ms, 2),
            _fmt(r.p99_ms, 2), _fmt(r.max_ms, 1), _fmt(r.receipts_per_s),
            _fmt(r.server_cpu_s, 2), rss, ratio]


def print_header(out: TextIO) -> None:
    out.write("  ".join(name.ljust(width) for name, width in _COLUMNS).rstrip() + "\n")
    out.write("  ".join("-" * width for _, width in _COLUMNS) + "\n")
    out.flush()


def _notes(r: Row) -> list[str]:
    """Figures a scenario is about that the columns do not show."""
    notes: list[str] = []
    sessions = int(r.load.get("sessions", 0)) + int(r.load.get("idle_sessions", 0))
    if r.scenario == "binds" and sessions:
        per_bind = (r.rss_bound_mb - r.rss_idle_mb) * 1024 / sessions
        notes.append(f"RSS {r.rss_idle_mb:.1f} MB idle -> {r.rss_bound_mb:.1f} MB with "
                     f"{sessions} binds ({per_bind:.1f} KB per bind), bound in "
                     f"{float(r.load.get('bind_seconds', 0)):.2f}s")
    if int(r.load.get("parts", 1)) > 1:
        notes.append(f"{r.messages_per_s:,.0f} messages/s of {r.load['parts']} parts")
    if r.scenario == "e2e":
        notes.append(f"{r.receipts} of {r.load.get('expected_receipts', 0)} receipts; first "
                     f"after {float(r.load.get('first_receipt_after', 0)):.2f}s, last after "
                     f"{float(r.load.get('last_receipt_after', 0)):.2f}s; receipt stream "
                     f"{r.receipt_flow_per_s:,.0f}/s")
    if r.rss_series_mb:
        samples = ", ".join(f"{t:g}s {mb:.1f}" for t, mb in r.rss_series_mb)
        notes.append(f"RSS MB every interval: {samples}")
    return notes


def print_row(r: Row, out: TextIO) -> None:
    cells = _cells(r)
    out.write("  ".join(c.ljust(w) for c, (_, w) in zip(cells, _COLUMNS, strict=True))
              .rstrip() + "\n")
    if r.ok:
        out.writelines(f"    {note}\n" for note in _notes(r))
    if r.error:
        first = r.error.strip().splitlines()
        note = "error" if not r.ok else "note"
        out.write(f"    {note}: {first[0] if first else ''}\n")
        if not r.ok:
            out.writelines(f"      {line}\n" for line in first[1:])
    out.flush()


def print_table(rows: Sequence[Row], out: TextIO) -> None:
    print_header(out)
    for r in rows:
        print_row(r, out)


async def run_suite(cases: Sequence[Case], opts: Options,
                    on_row: Callable[[Row], None] | None = None) -> list[Row]:
    """Every case against every target, in order; a target that fails to start is
    reported once and skipped for the rest of the suite."""
    rows: list[Row] = []
    broken: dict[str, str] = {}
    for case in cases:
        for target in opts.targets:
            if target in broken:
                row = Row(case.scenario, case.label, target, case.key, ok=False,
                          error=f"skipped: {target} failed to start earlier")
            else:
                row = await run_case(case, target, opts)
                if row.start_failed:
                    broken[target] = row.error
            rows.append(row)
            _ratios(rows)
            if on_row is not None:
                on_row(row)
    return rows


def _host_info(loop_name: str) -> dict[str, Any]:
    # The load average tells a quiet machine from a busy one: figures taken while other
    # work shares the CPUs are low and noisy.
    return {"python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count(), "loop": loop_name,
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def build_parser() -> argparse.ArgumentParser:
    d = Options()
    p = argparse.ArgumentParser(
        prog="python -m smppbridge.bench",
        description="SMPP benchmarks: smppbridge against a bare-echo baseline.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(__doc__ or "").split("\n\n", 2)[-1])
    p.add_argument("scenarios", nargs="*", default=["all"], metavar="SCENARIO",
                   help=f"all (default: {', '.join(QUICK)}), {', '.join(SCENARIOS)}, or "
                        f"the letters {', '.join(ALIASES)}")
    p.add_argument("--targets", default=",".join(d.targets),
                   help=f"comma-separated, of {', '.join(TARGETS)} (default: %(default)s)")
    p.add_argument("--duration", type=float, default=d.duration,
                   help="seconds of load per row (default: %(default)s)")
    p.add_argument("--messages", type=int, default=None,
                   help="messages per row instead of --duration")
    p.add_argument("--rate", type=float, default=d.rate,
                   help="steady submit_sm/s of the latency scenario (default: %(default)s)")
    p.add_argument("--binds", type=int, default=d.binds,
                   help="binds held open by the binds scenario (default: %(default)s)")
    p.add_argument("--receipt-wait", type=float, default=d.receipt_wait,
                   help="seconds e2e waits for the last receipts (default: %(default)s)")
    p.add_argument("--soak-duration", type=float, default=d.soak_duration,
                   help="seconds of the soak (default: %(default)s)")
    p.add_argument("--soak-rate", type=float, default=d.soak_rate,
                   help="steady submit_sm/s of the soak (default: %(default)s)")
    p.add_argument("--soak-interval", type=float, default=d.soak_interval,
                   help="seconds between RSS samples in the soak (default: %(default)s)")
    p.add_argument("--deliver-after", type=float, default=d.deliver_after,
                   help="simulator seconds to a final status (default: %(default)s)")
    p.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default=d.loop,
                   help="event loop of the load generator and the echo (default: auto = "
                        "uvloop when installed, as smppbridge serve does)")
    p.add_argument("--provider-worker", choices=("default", "on", "off"), default="default",
                   help="smppbridge's provider requests in a child process (the "
                        "provider's `worker` key); default: the type's own (on for the "
                        "HTTP types, off for the in-process simulator)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--keep", action="store_true",
                   help="keep each run's directory (config, logs, database)")
    return p


def _scenario_names(raw: Sequence[str]) -> list[str]:
    names: list[str] = []
    for item in raw:
        for given in item.split(","):
            name = ALIASES.get(given.strip(), given.strip())
            if name == "all":
                names += [n for n in QUICK if n not in names]
            elif name in SCENARIOS:
                if name not in names:
                    names.append(name)
            elif name:
                raise ValueError(f"unknown scenario {name!r} (known: all, "
                                 f"{', '.join(SCENARIOS)}, {', '.join(ALIASES)})")
    return names


def main(argv: list[str] | None = None) -> int:
    """Run the named scenarios and print the table; 0 when every row ran cleanly."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        names = _scenario_names(args.scenarios)
    except ValueError as exc:
        parser.error(str(exc))
    targets = tuple(t.strip() for t in str(args.targets).split(",") if t.strip())
    unknown = [t for t in targets if t not in TARGETS]
    if unknown or not targets:
        parser.error(f"--targets: unknown {unknown} (known: {', '.join(TARGETS)})")
    if args.messages is not None and args.messages < 1:
        parser.error("--messages must be at least 1")
    if not math.isfinite(args.duration) or args.duration <= 0:
        parser.error("--duration must be positive")
    opts = Options(targets=targets, duration=args.duration, messages=args.messages,
                   rate=args.rate, binds=args.binds, receipt_wait=args.receipt_wait,
                   soak_duration=args.soak_duration, soak_rate=args.soak_rate,
                   soak_interval=args.soak_interval, deliver_after=args.deliver_after,
                   loop=args.loop, keep=args.keep,
                   provider_worker={"on": True, "off": False}.get(args.provider_worker))
    loop_name = use_loop(opts.loop)
    cases = build_cases(names, opts)
    out = sys.stdout
    info = _host_info(loop_name)
    out.write(f"smppbridge bench: {len(cases)} rows x {len(targets)} targets; "
              f"python {info['python']}, {info['cpus']} CPUs, loop {loop_name}, "
              f"load average {info['load_average'][0]:g}\n")
    print_header(out)
    if out.isatty():
        # Progress on a terminal (rows still print as they finish); plain text otherwise.
        from rich.progress import Progress

        with Progress(transient=True) as progress:
            task = progress.add_task("benchmark", total=len(cases) * len(targets))

            def on_row(r: Any) -> None:
                print_row(r, out)
                progress.advance(task)

            rows = asyncio.run(run_suite(cases, opts, on_row=on_row))
    else:
        rows = asyncio.run(run_suite(cases, opts, on_row=lambda r: print_row(r, out)))
    if any(r.ratio is not None for r in rows):
        out.write("\nratio: the smppbridge figure over the echo figure of the same row "
                  "(msg/s, receipts/s: higher is better; p99, rss: lower is better)\n")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"host": info, "options": asdict(opts), "rows": [asdict(r) for r in rows]},
            indent=2, default=str) + "\n")
    return 0 if all(r.ok and not r.error for r in rows) else 1
