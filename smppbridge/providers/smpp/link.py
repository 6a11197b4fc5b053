"""One connection to the upstream SMSC: the asyncio glue around the sans-IO
:class:`~smppbridge.smpp.client.EsmeSession`. It only moves bytes and timers: reads,
feeds the session, hands its events to the owner, writes.

A :class:`Link` keeps itself connected: connect (TLS where configured), bind, run
until the session closes, then reconnect after a backoff that doubles from
``reconnect_backoff`` to ``reconnect_backoff_max`` (reset by a bind that worked).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import time
from typing import TYPE_CHECKING, Protocol

import structlog

from smppbridge.observability.metrics import METRICS, status_name
from smppbridge.smpp import client as CL
from smppbridge.smpp import pdu as P

if TYPE_CHECKING:
    from prometheus_client import Counter

    from smppbridge.core.provider_settings import UpstreamSettings

__all__ = ["Link", "LinkOwner"]

_log = structlog.get_logger("smppbridge.upstream")


class LinkOwner(Protocol):
    """What a link reports to (the provider)."""

    def link_bound(self, link: Link) -> None: ...

    def link_answer(self, link: Link, event: CL.SubmitAnswered | CL.SubmitTimedOut
                    | CL.SubmitUnreadable) -> None:
        """One answer; the provider refills the windows on :meth:`link_read`."""
        ...

    def link_read(self, link: Link) -> None:
        """A read's events are handed over: time to refill."""
        ...

    def link_deliver(self, link: Link, pdu: P.DeliverSm) -> None: ...

    def link_closed(self, link: Link, unanswered: tuple[P.SubmitSm, ...]) -> None: ...


class Link(asyncio.Protocol):
    """See the module docstring. ``session`` is the upstream session's number (the
    metrics' and the operator API's ``session`` label), ``kind`` the bind."""

    def __init__(self, owner: LinkOwner, provider: str, settings: UpstreamSettings,
                 password: str, *, session: int, kind: CL.BindKind,
                 response_timeout: float, connect_timeout: float) -> None:
        self.owner = owner
        self.provider = provider
        self.settings = settings
        self.password = password
        self.number = session
        self.kind = kind
        self.connect_timeout = connect_timeout
        self.config = CL.ClientConfig(window=settings.window,
                                      enquire_link_interval=settings.enquire_link,
                                      response_timeout=response_timeout)
        self.session: CL.EsmeSession | None = None
        self.transport: asyncio.Transport | None = None
        self.bound_at = 0.0
        self.reconnects = 0
        self.last_error = ""
        self._task: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()
        self._stopping = False
        self._timer: asyncio.TimerHandle | None = None
        self._paused = False
        label = str(session) if kind is not CL.BindKind.RECEIVER else f"{session}rx"
        self.label = label
        self._up = METRICS.upstream_binds.labels(provider, label)
        self._window = METRICS.upstream_window.labels(provider, label)
        self._answers: dict[int, Counter] = {}

    # --- state the provider reads -----------------------------------------------

    @property
    def bound(self) -> bool:
        return self.session is not None and self.session.bound

    @property
    def can_submit(self) -> bool:
        return (self.kind is not CL.BindKind.RECEIVER and not self._paused
                and self.session is not None and self.session.can_submit)

    @property
    def window_in_use(self) -> int:
        return self.session.window_in_use if self.session is not None else 0

    # --- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._keep_connected(), name=f"upstream {self.provider} {self.label}")

    async def stop(self, grace: float = 2.0) -> None:
        self._stopping = True
        s = self.session
        if s is not None and s.bound:
            s.unbind(time.monotonic())
            self._flush()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self._closed.wait()
        if self.transport is not None:
            self.transport.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _keep_connected(self) -> None:
        s = self.settings
        delay = s.reconnect_backoff
        loop = asyncio.get_running_loop()
        while not self._stopping:
            self._closed.clear()
            try:
                ctx = _tls_context(s) if s.tls else None
                async with asyncio.timeout(self.connect_timeout):
                    await loop.create_connection(lambda: self, s.host, s.port, ssl=ctx,
                                                 server_hostname=s.host if ctx else None)
            except (OSError, TimeoutError, ssl.SSLError) as exc:
                self.last_error = f"connect: {exc!r}"
                METRICS.upstream_errors.labels(self.provider, "connect").inc()
                _log.warning("upstream.connect_failed", provider=self.provider,
                             session=self.label, error=repr(exc), retry_in=round(delay, 2))
            else:
                await self._closed.wait()
                if self.bound_at:
                    delay = s.reconnect_backoff  # it worked: start the backoff over
            if self._stopping:
                return
            self.reconnects += 1
            await asyncio.sleep(delay * (0.5 + random.random() / 2))
            delay = min(s.reconnect_backoff_max, max(delay * 2, 0.05))

    # --- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.bound_at = 0.0
        now = time.monotonic()
        session = CL.EsmeSession(self.config, now)
        session.observer = _count_pdu
        self.session = session
        s = self.settings
        session.bind(self.kind, system_id=s.system_id, password=self.password,
                     system_type=s.system_type, now=now)
        self._pump(now)

    def data_received(self, data: bytes) -> None:
        session = self.session
        if session is None:
            return
        now = time.monotonic()
        session.receive_data(data, now)
        self._pump(now)

    def connection_lost(self, exc: Exception | None) -> None:
        session = self.session
        if session is not None and not session.closed:
            session.close("connection lost" + (f": {exc!r}" if exc else ""))
            self._pump(time.monotonic())
        self.transport = None
        self._closed.set()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self.owner.link_bound(self)  # space again: let the provider refill

    # --- the session's events ---------------------------------------------------------

    def submit(self, pdu: P.SubmitSm) -> None:
        """Send one submit_sm (the caller checked :attr:`can_submit`)."""
        assert self.session is not None
        self.session.submit(pdu, time.monotonic())

    def answer(self, pdu: P.DeliverSm, status: int = 0, *, flush: bool = True) -> None:
        """Answer a deliver_sm, if this connection is still the one it came on
        (``flush=False``: the caller flushes once after many)."""
        session = self.session
        if session is None or session.closed or self.transport is None:
            return  # the upstream sends it again on the next session
        with contextlib.suppress(Exception):
            session.answer_deliver(pdu, status)
        if flush:
            self._flush()

    def flush(self) -> None:
        self._flush()

    def _pump(self, now: float) -> None:
        session = self.session
        assert session is not None
        while True:
            event = session.next_event()
            if event is None:
                break
            if isinstance(event, CL.SubmitAnswered | CL.SubmitTimedOut
                          | CL.SubmitUnreadable):
                key = (event.status if isinstance(event, CL.SubmitAnswered)
                       else -1 if isinstance(event, CL.SubmitTimedOut) else -2)
                counter = self._answers.get(key)
                if counter is None:
                    counter = self._answers[key] = METRICS.upstream_submits.labels(
                        self.provider, self.label, status_name(key) if key >= 0
                        else "timeout" if key == -1 else "unreadable")
                counter.inc()
                self.owner.link_answer(self, event)
            elif isinstance(event, P.DeliverSm):
                self.owner.link_deliver(self, event)
            elif isinstance(event, CL.Bound):
                self.bound_at = time.time()
                self.last_error = ""
                self._up.set(1)
                _log.info("upstream.bound", provider=self.provider, session=self.label,
                          system_id=event.system_id, kind=self.kind.value)
                self.owner.link_bound(self)
            elif isinstance(event, CL.BindRefused):
                self.last_error = f"bind refused: {status_name(event.status)}"
                METRICS.upstream_errors.labels(self.provider, "bind").inc()
                _log.warning("upstream.bind_refused", provider=self.provider,
                             session=self.label, status=f"0x{event.status:08X}")
            elif isinstance(event, CL.Closed):
                self._up.set(0)
                garbage = "command_length" in event.reason
                METRICS.upstream_errors.labels(
                    self.provider, "garbage" if garbage else "closed").inc()
                if not self._stopping:
                    self.last_error = event.reason
                    _log.warning("upstream.closed", provider=self.provider,
                                 session=self.label, reason=event.reason,
                                 unanswered=len(event.unanswered))
                self._flush()
                if self.transport is not None:
                    self.transport.close()
                self.owner.link_closed(self, event.unanswered)
        self.owner.link_read(self)
        self._flush()
        self._arm(session)

    def _flush(self) -> None:
        session = self.session
        if session is None:
            return
        data = session.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
        self._window.set(session.window_in_use)

    def _arm(self, session: CL.EsmeSession) -> None:
        deadline = session.get_timer()
        if self._timer is not None:
            if deadline is not None and abs(self._timer.when() - deadline) < 0.01:
                return
            self._timer.cancel()
            self._timer = None
        if deadline is None:
            return
        loop = asyncio.get_running_loop()
        # time.monotonic and loop.time are the same clock on Linux (both monotonic);
        # the handle is re-armed on every pump.
        self._timer = loop.call_at(loop.time() + max(0.0, deadline - time.monotonic()),
                                   self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        session = self.session
        if session is None or session.closed:
            return
        now = time.monotonic()
        session.handle_timer(now)
        self._pump(now)


def _count_pdu(direction: str, command_id: int, status: int) -> None:
    METRICS.pdu("upstream_" + direction, command_id, status).inc()


def _tls_context(s: UpstreamSettings) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=s.tls_ca_file or None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx
