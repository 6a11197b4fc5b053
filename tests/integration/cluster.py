"""Helpers for multi-process tests: a private redis-server, bridge processes, and a small
asyncio ESME on our own codec."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from smppbridge.smpp import pdu as P
from smppbridge.smpp.codec import FrameReader, decode, encode


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def wait_port(port: int, proc: subprocess.Popen[bytes], log: Path,
                    timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"process exited: {log.read_text()[-3000:]}")
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        w.close()
        with contextlib.suppress(ConnectionError):
            await w.wait_closed()
        return
    raise AssertionError(f"nothing listens on {port}: {log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class RedisServer:
    """A private redis-server with AOF fsync on every write (durable acks)."""

    dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        exe = shutil.which("redis-server")
        assert exe, "redis-server is needed (Debian package redis-server; .ci/run installs it)"
        self.dir.mkdir(parents=True, exist_ok=True)
        log = self.dir / "redis.log"
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.dir),
             "--logfile", str(log)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        await wait_port(self.port, self.proc, log)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@dataclass
class Bridge:
    """One `smppbridge serve` process."""

    dir: Path
    name: str
    config: str
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.dir / f"{self.name}.log"

    async def start(self) -> None:
        path = self.dir / f"{self.name}.toml"
        path.write_text(self.config)
        with self.log.open("ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "smppbridge", "serve", "--config", str(path)],
                stdout=subprocess.DEVNULL, stderr=err)
        await wait_port(self.port, self.proc, self.log)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)


class Esme:
    """A raw ESME: bind, submit with a window, collect receipts (answering them)."""

    def __init__(self) -> None:
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.frames = FrameReader()
        self.seq = 1
        self.waiting: dict[int, asyncio.Future[P.Pdu]] = {}
        self.receipts: list[P.DeliverSm] = []
        self.receipt_event = asyncio.Event()
        self.closed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def bind(self, port: int, system_id: str, password: str,
                   cls: type[P.Pdu] = P.BindTransceiver) -> int:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        self._task = asyncio.get_running_loop().create_task(self._read())
        resp = await self.request(cls(system_id=system_id,  # type: ignore[call-arg]
                                      password=password))
        return resp.command_status

    def send(self, pdu: P.Pdu) -> asyncio.Future[P.Pdu]:
        assert self.writer is not None
        self.seq += 1
        fut: asyncio.Future[P.Pdu] = asyncio.get_running_loop().create_future()
        self.waiting[self.seq] = fut
        self.writer.write(encode(pdu.with_(sequence_number=self.seq)))
        return fut

    async def request(self, pdu: P.Pdu, timeout: float = 10.0) -> P.Pdu:
        return await asyncio.wait_for(self.send(pdu), timeout)

    def submit(self, dest: str, text: str, rd: int = 1) -> asyncio.Future[P.Pdu]:
        return self.send(P.SubmitSm(source_addr="Test", source_addr_ton=5,
                                    destination_addr=dest, dest_addr_ton=1,
                                    short_message=text.encode(), registered_delivery=rd))

    async def _read(self) -> None:
        assert self.reader is not None
        assert self.writer is not None
        try:
            while data := await self.reader.read(65536):
                self.frames.feed(data)
                while (frame := self.frames.next_frame()) is not None:
                    pdu = decode(frame)
                    if isinstance(pdu, P.DeliverSm):
                        self.receipts.append(pdu)
                        self.receipt_event.set()
                        self.writer.write(encode(P.DeliverSmResp(
                            sequence_number=pdu.sequence_number)))
                    elif isinstance(pdu, P.EnquireLink):
                        self.writer.write(encode(P.EnquireLinkResp(
                            sequence_number=pdu.sequence_number)))
                    elif isinstance(pdu, P.Unbind):
                        self.writer.write(encode(P.UnbindResp(
                            sequence_number=pdu.sequence_number)))
                    else:
                        fut = self.waiting.pop(pdu.sequence_number, None)
                        if fut is not None and not fut.done():
                            fut.set_result(pdu)
        except (ConnectionError, OSError):
            pass
        finally:
            self.closed.set()
            for fut in self.waiting.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("link closed"))

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self.writer.wait_closed()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
