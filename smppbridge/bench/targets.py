"""Servers under test, each started as its own process so its CPU and memory are its own.

* ``echo`` / ``echo-session``: ``python -m smppbridge.bench.echo`` (engine raw / session)
* ``smppbridge``: ``python -m smppbridge serve --config <temp toml>`` with one account
  ``bench``/``bench`` routed to the in-process ``simulator`` provider.

Readiness is "accepts a TCP connection", polled within a deadline; stop is SIGTERM,
then SIGKILL after a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from smppbridge.bench.procstat import ProcSample, sample

__all__ = [
    "TARGETS",
    "ServerProcess",
    "TargetError",
    "free_port",
    "smppbridge_config",
    "start_target",
    "start_tree",
]

TARGETS = ("echo", "echo-session", "smppbridge", "smppbridge-mysmpp", "smppbridge-smsfly")
#: smppbridge targets whose provider is the standalone simulator over HTTP (scenario b):
#: the adapter type the node uses for it
HTTP_PROVIDERS = {"smppbridge-mysmpp": "mysmpp-xml", "smppbridge-smsfly": "smsfly"}
#: How often readiness is polled while a server starts.
_POLL = 0.05
#: Lines of a failed server's output quoted in the error.
_TAIL_LINES = 15


class TargetError(Exception):
    """The server under test did not start, or died; the message quotes its output."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the kernel's choice for port 0).

    Another process could take it before the server binds it; on a bench machine that
    race is acceptable, and a server that cannot bind fails loudly.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def smppbridge_config(workdir: Path, smpp_port: int, http_port: int, *,
                      max_binds: int = 2000, window: int = 1000,
                      deliver_after: float = 1.0, shutdown_grace: float = 2.0,
                      http_provider: tuple[str, int] | None = None,
                      worker: bool | None = None) -> str:
    """The TOML of the server under test.

    Limits a benchmark would otherwise hit by design are raised and say so: 1,000
    binds come from one IP (``max_connections_per_ip``), the account allows
    ``max_binds`` binds with ``window`` outstanding each. Everything else is the
    default, so the figures describe a stock server.
    """
    db = (workdir / "bench.db").as_posix()
    return f"""\
# Written by smppbridge.bench for one benchmark run.
[smpp]
listen = "127.0.0.1:{smpp_port}"
# the binds scenario opens {max_binds // 2}+ connections from 127.0.0.1
max_connections = {max_binds + 100}
max_connections_per_ip = {max_binds + 100}
shutdown_grace = {shutdown_grace}

[http]
listen = "127.0.0.1:{http_port}"

[store]
url = "sqlite:///{db}"

[log]
level = "info"
format = "json"

[[accounts]]
system_id = "bench"
password = "bench"
max_binds = {max_binds}
window = {window}
providers = ["simulator"]

{_provider_table(deliver_after, http_provider)}{_worker_line(worker)}"""


def _worker_line(worker: bool | None) -> str:
    """``worker`` of the provider table: None leaves the type's default (the stock
    server: on for the HTTP types, off for the in-process simulator)."""
    if worker is None:
        return ""
    return f"# provider requests in a child process: set by --provider-worker\n" \
           f"worker = {'true' if worker else 'false'}\n"


def _provider_table(deliver_after: float, http_provider: tuple[str, int] | None) -> str:
    if http_provider is None:
        return f"""[[providers]]
name = "simulator"
type = "simulator"
# final status this long after acceptance (the simulator's default is 2 s)
simulator = {{ deliver_after = {deliver_after} }}
"""
    kind, port = http_provider
    base = f"http://127.0.0.1:{port}"
    if kind == "mysmpp-xml":
        # mysmpp batching: many <abonent> per request; statuses by batched state.php
        return f"""[[providers]]
name = "simulator"
type = "mysmpp-xml"
url = "{base}/xml"
status_url = "{base}/xml/state.php"
login = "bench"
password = "bench"
poll_interval = 1.0
poll_max_interval = 1.0
"""
    # SMS-fly: one recipient per request; statuses by GETMESSAGESTATUS
    return f"""[[providers]]
name = "simulator"
type = "smsfly"
url = "{base}/api/v2/api.php"
key = "bench"
poll_interval = 1.0
poll_max_interval = 1.0
"""


class ServerProcess:
    """One running server under test."""

    def __init__(self, name: str, argv: Sequence[str], port: int, workdir: Path) -> None:
        #: helper processes started with this one and stopped after it (a simulator)
        self.companions: list[ServerProcess] = []
        self.name = name
        self.argv = list(argv)
        self.host = "127.0.0.1"
        self.port = port
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.returncode: int | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise TargetError(f"{self.name}: not started")
        return self.proc.pid

    async def start(self, ready_timeout: float = 20.0) -> None:
        """Start the process and wait until it accepts connections."""
        with self.log_path.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, stdin=asyncio.subprocess.DEVNULL, stdout=log,
                stderr=asyncio.subprocess.STDOUT, cwd=self.workdir)
        deadline = time.monotonic() + ready_timeout
        last: OSError | None = None
        while time.monotonic() < deadline:
            if self.proc.returncode is not None:
                raise TargetError(f"{self.name} exited with {self.proc.returncode} while "
                                  f"starting:\n{self.log_tail()}")
            try:
                async with asyncio.timeout(max(0.01, deadline - time.monotonic())):
                    _, writer = await asyncio.open_connection(self.host, self.port)
            except (OSError, TimeoutError) as exc:
                last = exc if isinstance(exc, OSError) else None
                await asyncio.sleep(_POLL)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return
        await self.stop()
        raise TargetError(f"{self.name} did not accept connections on {self.host}:"
                          f"{self.port} within {ready_timeout:g}s ({last!r}):\n"
                          f"{self.log_tail()}")

    def sample(self) -> ProcSample:
        """CPU and memory now; TargetError if the process is gone."""
        try:
            return sample(self.pid)
        except OSError as exc:
            raise TargetError(f"{self.name} (pid {self.pid}) is gone: {exc}\n"
                              f"{self.log_tail()}") from exc

    async def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL; the exit code."""
        try:
            return await self._stop(grace)
        finally:
            for companion in self.companions:
                await companion.stop(grace)

    async def _stop(self, grace: float) -> int | None:
        proc = self.proc
        if proc is None:
            return None
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(grace):
                    await proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        self.returncode = proc.returncode
        return self.returncode

    def log_tail(self, lines: int = _TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no output)"
        return "\n".join(text.splitlines()[-lines:]) or "(no output)"


async def start_target(name: str, workdir: Path, *, loop: str = "auto",
                       max_binds: int = 2000, deliver_after: float = 1.0,
                       ready_timeout: float = 20.0,
                       worker: bool | None = None) -> ServerProcess:
    """Start server ``name`` (one of :data:`TARGETS`) with its files in ``workdir``."""
    port = free_port()
    if name in ("echo", "echo-session"):
        engine = "raw" if name == "echo" else "session"
        argv = [sys.executable, "-m", "smppbridge.bench.echo", "--listen",
                f"127.0.0.1:{port}", "--engine", engine, "--loop", loop]
    elif name == "smppbridge" or name in HTTP_PROVIDERS:
        companions = []
        http_provider = None
        if name in HTTP_PROVIDERS:
            sim_port = free_port()
            sim_config = workdir / "simulator.toml"
            sim_config.write_text(f"deliver_after = {deliver_after}\n")
            simulator = ServerProcess(
                "simulator", [sys.executable, "-m", "smppbridge", "simulator", "--listen",
                              f"127.0.0.1:{sim_port}", "--config", str(sim_config)],
                sim_port, workdir)
            await simulator.start(ready_timeout)
            companions.append(simulator)
            http_provider = (HTTP_PROVIDERS[name], sim_port)
        config = workdir / "smppbridge.toml"
        config.write_text(smppbridge_config(workdir, port, free_port(), max_binds=max_binds,
                                            deliver_after=deliver_after,
                                            http_provider=http_provider, worker=worker))
        argv = [sys.executable, "-m", "smppbridge", "serve", "--config", str(config)]
        server = ServerProcess(name, argv, port, workdir)
        server.companions = companions
        try:
            await server.start(ready_timeout)
        except TargetError:
            for companion in companions:
                await companion.stop()
            raise
        return server
    else:
        raise ValueError(f"unknown target {name!r} (known: {', '.join(TARGETS)})")
    server = ServerProcess(name, argv, port, workdir)
    await server.start(ready_timeout)
    return server


async def start_tree(tree: Path | None, workdir: Path, *,
                     ready_timeout: float = 20.0) -> ServerProcess:
    """``smppbridge serve`` with the stock bench config, importing the server's code
    from checkout ``tree`` (``PYTHONPATH``; None: this one). The config comes from this
    checkout, so an older tree must read today's config format."""
    if tree is None:
        return await start_target("smppbridge", workdir, ready_timeout=ready_timeout)
    port = free_port()
    config = workdir / "smppbridge.toml"
    config.write_text(smppbridge_config(workdir, port, free_port()))
    server = ServerProcess(tree.name, [sys.executable, "-m", "smppbridge", "serve",
                                       "--config", str(config)], port, workdir)
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(tree)
    try:
        await server.start(ready_timeout)
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = old
    return server
