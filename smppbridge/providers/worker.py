"""A provider's I/O in a child process: ``worker = true`` on a ``[[providers]]`` table.

A node is one CPython process, and everything a message costs runs on one core under
one GIL. The provider calls — building the request (XML, JSON), httpx and h11, parsing
the answer, mapping statuses — are a self-contained slice of that work with a narrow
interface (``send`` a batch, ``poll`` ids, ``ready``), so this module runs the real
adapter in a child process and talks to it over a socketpair:

* :class:`WorkerProvider` is the :class:`~smppbridge.core.ports.Provider` the
  node sees. It keeps a local adapter only for its attributes and ``parse_webhook``
  (webhooks arrive on the node's HTTP side and are pure parsing), and forwards
  ``send``/``poll``/``ready`` to the child. Batching, retries, the breaker and the
  metrics stay in the node's :class:`~smppbridge.delivery.runner.ProviderRunner`.
* The child (``python -m smppbridge.providers.worker <fd>``) builds the adapter
  from the settings it is sent first and answers requests concurrently, in the order
  they finish.

Frames are a 4-byte big-endian length and a pickle of plain tuples: pickling the
message dataclasses themselves cost ~17 µs a message on the node's side, flat tuples
~2 µs (send and outcome) — see docs/performance.md.

Failure: if the child dies, every request in flight fails with ProviderUnavailable (the
runner retries it, so a message the child had already handed to the provider may be
sent twice: at-least-once, as with any lost HTTP answer) and the next call starts a new
child, at most once per ``restart_delay``. The child ignores SIGINT/SIGTERM (a terminal's
Ctrl-C or systemd's stop reach the whole group) and exits when the node closes the
socket, so a node's shutdown still flushes its batches through it; after a kill -9 of
the node the child sees end-of-file and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import signal
import socket
import struct
import sys
import time
from collections.abc import Sequence
from dataclasses import fields
from operator import attrgetter
from typing import TYPE_CHECKING, Any

import structlog

from smppbridge.core.errors import (
    ProviderError,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
)
from smppbridge.core.message import Address, OutboundMessage
from smppbridge.core.outcomes import (
    Balance,
    Err,
    HlrResult,
    SendOutcome,
    SendResult,
    StatusUpdate,
)
from smppbridge.core.ports import Provider
from smppbridge.observability.metrics import METRICS
from smppbridge.smpp.receipts import Stat
from smppbridge.text.content import Content, Kind

if TYPE_CHECKING:
    from smppbridge.core.provider_settings import ProviderSettings
    from smppbridge.http.request import HttpRequest

__all__ = ["WorkerProvider", "main"]

_log = structlog.get_logger("smppbridge.provider")

_HEADER = struct.Struct(">I")
#: a frame longer than this is a bug, not a batch (10,000 messages of 160 bytes ~ 3 MB)
_MAX_FRAME = 256 * 1024 * 1024
_PICKLE = pickle.HIGHEST_PROTOCOL

# --- wire form: plain tuples, field order taken from the dataclasses ---------------------

_ADDRESS = attrgetter("addr", "ton", "npi")
_CONTENT_NAMES = tuple(f.name for f in fields(Content) if f.name != "kind")
_CONTENT = attrgetter(*_CONTENT_NAMES)
_MESSAGE_NAMES = tuple(f.name for f in fields(OutboundMessage)
                       if f.name not in ("source", "destination", "content"))
_MESSAGE = attrgetter(*_MESSAGE_NAMES)
_KIND = {k.value: k for k in Kind}
_STAT = {s.value: s for s in Stat}
_ERR = {int(e): e for e in Err}
_RESULT = {r.value: r for r in SendResult}
_HLR_NAMES = tuple(f.name for f in fields(HlrResult))
_HLR = attrgetter(*_HLR_NAMES)


def message_to_wire(m: OutboundMessage) -> tuple[Any, ...]:
    c = m.content
    return (_ADDRESS(m.source), _ADDRESS(m.destination), c.kind.value, _CONTENT(c),
            _MESSAGE(m))


def message_from_wire(w: tuple[Any, ...]) -> OutboundMessage:
    source, destination, kind, content, rest = w
    return OutboundMessage(source=Address(*source), destination=Address(*destination),
                           content=Content(_KIND[kind], *content),
                           **dict(zip(_MESSAGE_NAMES, rest, strict=True)))


def outcome_to_wire(o: SendOutcome) -> tuple[Any, ...]:
    return (o.message_id, o.result.value, o.provider_id, o.parts, o.stat.value, int(o.err),
            o.detail, o.provider)


def outcome_from_wire(w: tuple[Any, ...]) -> SendOutcome:
    message_id, result, provider_id, parts, stat, err, detail, provider = w
    return SendOutcome(message_id, _RESULT[result], provider_id, parts, _STAT[stat],
                       _ERR[err], detail, provider)


def update_to_wire(u: StatusUpdate) -> tuple[Any, ...]:
    return (u.provider_id, u.stat.value, int(u.err), u.detail, u.done_at, u.message_id,
            None if u.hlr is None else _HLR(u.hlr))


def update_from_wire(w: tuple[Any, ...]) -> StatusUpdate:
    provider_id, stat, err, detail, done_at, message_id, hlr = w
    return StatusUpdate(provider_id, _STAT[stat], _ERR[err], detail, done_at, message_id,
                        None if hlr is None else HlrResult(*hlr))


_ERRORS: dict[str, type[ProviderError]] = {
    cls.__name__: cls for cls in (ProviderError, ProviderTimeout, ProviderUnavailable,
                                  ProviderRejected)}


def error_to_wire(exc: BaseException) -> tuple[Any, ...]:
    """A ProviderError keeps its class, message, err and stat; anything else is a bug in
    the adapter and comes back as a RuntimeError naming it."""
    if isinstance(exc, ProviderError):
        name = next((c.__name__ for c in type(exc).__mro__ if c.__name__ in _ERRORS),
                    "ProviderError")
        return ("provider", name, str(exc), int(exc.err), exc.stat.value)
    return ("bug", f"{type(exc).__name__}: {exc}")


def error_from_wire(w: tuple[Any, ...]) -> Exception:
    if w[0] == "provider":
        _, name, message, err, stat = w
        return _ERRORS[name](message, err=_ERR[err], stat=_STAT[stat])
    return RuntimeError(f"provider worker: {w[1]}")


# --- frames -----------------------------------------------------------------------------

def _frame(obj: Any) -> bytes:
    body = pickle.dumps(obj, _PICKLE)
    return _HEADER.pack(len(body)) + body


async def _read_frame(reader: asyncio.StreamReader) -> Any:
    (length,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    if length > _MAX_FRAME:
        raise ConnectionError(f"provider worker: frame of {length} bytes")
    # Both ends are this node and its own child, on a private socketpair: trusted.
    return pickle.loads(await reader.readexactly(length))  # noqa: S301


# --- the node's side --------------------------------------------------------------------

class WorkerProvider:
    """A provider whose ``send``/``poll``/``ready`` run in a child process."""

    #: how long a child whose socket closed may take to exit before it is killed
    exit_grace = 5.0

    def __init__(self, local: Provider, settings: ProviderSettings, *,
                 log: tuple[str, str] | None = None, restart_delay: float = 1.0,
                 start_timeout: float = 30.0) -> None:
        self.local = local
        self.settings = settings
        self.name = local.name
        self.kinds = local.kinds
        self.supports_schedule = local.supports_schedule
        self.poll_interval = local.poll_interval
        self.restart_delay = restart_delay
        self.start_timeout = start_timeout
        self._log_settings = log
        self._process: asyncio.subprocess.Process | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 1
        self._started_at = -float("inf")
        self._starting: asyncio.Lock | None = None
        self._closed = False

    @property
    def pid(self) -> int | None:
        """The child's pid while it runs (tests and operators)."""
        return self._process.pid if self._writer is not None and self._process else None

    async def start(self) -> None:
        """Start the child now (the node does this at start-up) instead of on first use."""
        await self._ensure()

    async def _ensure(self) -> asyncio.StreamWriter:
        if self._writer is not None:
            return self._writer
        if self._closed:
            raise ProviderUnavailable(f"{self.name}: provider worker closed")
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._writer is not None:
                return self._writer
            wait = self._started_at + self.restart_delay - time.monotonic()
            if wait > 0:
                raise ProviderUnavailable(
                    f"{self.name}: provider worker restarting (in {wait:.1f} s)")
            self._started_at = time.monotonic()
            return await self._spawn()

    async def _spawn(self) -> asyncio.StreamWriter:
        ours, theirs = socket.socketpair()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "smppbridge.providers.worker",
                str(theirs.fileno()), pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL)
        except OSError as exc:
            ours.close()
            raise ProviderUnavailable(f"{self.name}: cannot start provider worker: {exc}") \
                from exc
        finally:
            theirs.close()
        reader, writer = await asyncio.open_connection(sock=ours)
        writer.write(_frame((self.settings, self._log_settings)))
        try:
            async with asyncio.timeout(self.start_timeout):
                hello = await _read_frame(reader)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError) as exc:
            writer.close()
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise ProviderUnavailable(
                f"{self.name}: provider worker did not start "
                f"(exit code {process.returncode})") from exc
        if hello[1] is not True:
            writer.close()
            await process.wait()
            raise ProviderUnavailable(f"{self.name}: provider worker: {hello[2]}")
        self._process = process
        self._writer = writer
        # Each child has its own table of requests: a dead child's reader fails its own
        # requests, never those already sent to its successor.
        self._pending = {}
        self._reader_task = asyncio.get_running_loop().create_task(
            self._read_answers(reader, writer, process, self._pending),
            name=f"provider worker {self.name}")
        _log.debug("provider.worker_started", provider=self.name, pid=process.pid)
        return writer

    async def _read_answers(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            process: asyncio.subprocess.Process,
                            pending: dict[int, asyncio.Future[Any]]) -> None:
        try:
            while True:
                request_id, ok, payload = await _read_frame(reader)
                future = pending.pop(request_id, None)
                if future is None or future.done():
                    continue
                if ok:
                    future.set_result(payload)
                else:
                    future.set_exception(error_from_wire(payload))
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass  # the child's end closed: it exited, or is about to
        except Exception as exc:  # an unreadable frame: this child is not to be trusted
            _log.error("provider.worker_garbled", provider=self.name, error=repr(exc))
        finally:
            if self._writer is writer:
                self._writer = None
            writer.close()
            # Fail the requests first: they must not wait on the child's exit.
            failed = list(pending.values())
            pending.clear()
            for future in failed:
                if not future.done():
                    future.set_exception(ProviderUnavailable(
                        f"{self.name}: provider worker exited"))
            try:
                async with asyncio.timeout(self.exit_grace):
                    code = await process.wait()
            except TimeoutError:  # its socket is gone but it lingers: end it
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                code = await process.wait()
            if not self._closed:
                METRICS.worker_exits.labels(self.name).inc()
                _log.error("provider.worker_exited", provider=self.name, code=code,
                           requests_failed=len(failed))

    async def _call(self, op: str, payload: Any) -> Any:
        writer = await self._ensure()
        pending = self._pending  # this child's (set with the writer)
        request_id = self._next_id
        self._next_id += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        pending[request_id] = future
        writer.write(_frame((request_id, op, payload)))
        try:
            return await future
        finally:
            pending.pop(request_id, None)

    async def send(self, messages: Sequence[OutboundMessage]) -> list[SendOutcome]:
        answer = await self._call("send", [message_to_wire(m) for m in messages])
        return [outcome_from_wire(w) for w in answer]

    async def poll(self, provider_ids: Sequence[str]) -> list[StatusUpdate]:
        answer = await self._call("poll", list(provider_ids))
        return [update_from_wire(w) for w in answer]

    def parse_webhook(self, request: HttpRequest) -> list[StatusUpdate]:
        return self.local.parse_webhook(request)

    async def ready(self) -> bool:
        try:
            return bool(await self._call("ready", None))
        except ProviderError:
            return False

    async def balance(self) -> Balance | None:
        answer = await self._call("balance", None)
        return None if answer is None else Balance(*answer)

    async def aclose(self) -> None:
        """Let the child finish its requests and close its adapter, then stop it."""
        self._closed = True
        writer, process = self._writer, self._process
        if writer is not None and process is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.settings.timeout + 5):
                    await self._call_closing(writer)
            writer.close()
            try:
                async with asyncio.timeout(5):
                    await process.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if self._reader_task is not None:
            with contextlib.suppress(Exception):
                await self._reader_task
        await self.local.aclose()

    async def _call_closing(self, writer: asyncio.StreamWriter) -> None:
        request_id = self._next_id
        self._next_id += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        writer.write(_frame((request_id, "close", None)))
        await future


# --- the child's side -------------------------------------------------------------------

async def _answer(provider: Provider, writer: asyncio.StreamWriter, request_id: int,
                  op: str, payload: Any) -> None:
    try:
        if op == "send":
            outcomes = await provider.send([message_from_wire(w) for w in payload])
            answer: Any = [outcome_to_wire(o) for o in outcomes]
        elif op == "poll":
            answer = [update_to_wire(u) for u in await provider.poll(payload)]
        elif op == "ready":
            answer = await provider.ready()
        elif op == "balance":
            got = await provider.balance()
            answer = None if got is None else (got.amount, got.currency, got.at)
        else:
            raise ValueError(f"unknown operation {op!r}")
    except Exception as exc:  # every failure goes back to the node, which decides
        writer.write(_frame((request_id, False, error_to_wire(exc))))
    else:
        writer.write(_frame((request_id, True, answer)))


async def serve(sock: socket.socket) -> None:
    """The child: build the adapter from the first frame, answer until end-of-file."""
    from smppbridge.providers import build_provider

    reader, writer = await asyncio.open_connection(sock=sock)
    settings, log = await _read_frame(reader)
    if log is not None:
        from smppbridge.observability.logging import configure_logging
        configure_logging(*log)
    try:
        provider = build_provider(settings)
    except Exception as exc:  # reported to the node, which refuses to start
        writer.write(_frame((0, False, f"{type(exc).__name__}: {exc}")))
        await writer.drain()
        return
    writer.write(_frame((0, True, "ready")))
    tasks: set[asyncio.Task[None]] = set()
    closing: int | None = None
    try:
        while True:
            try:
                request_id, op, payload = await _read_frame(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            if op == "close":
                closing = request_id
                break
            task = asyncio.get_running_loop().create_task(
                _answer(provider, writer, request_id, op, payload))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if closing is not None and tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await provider.aclose()
        if closing is not None:
            writer.write(_frame((closing, True, None)))
            with contextlib.suppress(Exception):
                await writer.drain()
        writer.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or not args[0].isdigit():
        print("usage: python -m smppbridge.providers.worker <socket fd> "
              "(started by the node)", file=sys.stderr)
        return 2
    # The node decides when this ends: it closes the socket on shutdown.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock = socket.socket(fileno=int(args[0]))
    try:
        import uvloop
    except ImportError:
        pass  # the stdlib loop, as `smppbridge serve` falls back to
    else:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(serve(sock))
    return 0


if __name__ == "__main__":
    sys.exit(main())
