"""Status callback dispatcher: the durable callback outbox → HTTP requests to the
customer (docs/http.md, *Status callbacks*).

The pipeline writes each event in the same store operation as the status it reports;
this dispatcher leases due events from the store (the oldest of each message only, so
a message's ``sent`` goes before its final status), sends each one as its format says
(:func:`smppbridge.core.callbacks.build_request`) and finishes it in the store: any 2xx
is delivered; 408, 429, 5xx, a refused connection or a timeout is retried (5 s,
doubling to 15 min, then every 15 min, or what Retry-After asks) until the account's
``callback_ttl``, then expired; any other answer fails the event at once. A failed or
expired event is an entry of its message's timeline.

One dead endpoint slows no other: each destination host has its own cap of attempts
in flight and its own circuit breaker (after ``breaker_after`` failures in a row its
events wait ``breaker_open`` seconds, then one attempt tries the host again); every
attempt is its own task, bounded by ``max_in_flight`` for the whole process.

Timers (due times, retries, TTLs, the breaker) are steady time (core.clock); the
signature's timestamp and the event dates are wall time. A store outage makes the
loop back off and go on; it never ends but by cancellation.

Size: just over 500 lines because the dispatcher (leases, per-host slots and breaker,
the outcome rules) and its HTTP edge (resolution, address checks, the request to the
checked address) are one feature read together; the request shapes, signing and the
schedule are already in core.callbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
import time
import urllib.parse
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from logging import DEBUG
from typing import TYPE_CHECKING, Protocol

import httpx
import structlog

from smppbridge.core.callback_urls import address_refused
from smppbridge.core.callbacks import (
    ATTEMPT_TIMEOUT,
    CONNECT_TIMEOUT,
    MAX_ANSWER,
    CallbackEvent,
    CallbackOutcome,
    CallbackRequest,
    MessageFacts,
    build_request,
    parse_retry_after,
    retry_delay,
)
from smppbridge.core.clock import timer_for
from smppbridge.core.errors import StoreUnavailable
from smppbridge.core.message import Extra
from smppbridge.delivery.outage import until_stored
from smppbridge.observability.metrics import METRICS

if TYPE_CHECKING:
    from smppbridge.core.accounts import Account
    from smppbridge.core.net import IpNetwork
    from smppbridge.core.ports import Store
    from smppbridge.core.records import StoredMessage

__all__ = ["Answer", "CallbackDispatcher", "CallbackSender", "HttpCallbackSender"]

_log = structlog.get_logger("smppbridge.callbacks")
#: seconds an event may wait in memory for a slot of its host (a lease is 60 s)
_WAIT_BUDGET = 20.0
#: destination hosts remembered (attempts in flight, breaker) before idle ones are dropped
_MAX_HOSTS = 10_000


@dataclass(frozen=True, slots=True)
class Answer:
    """What an attempt got: the HTTP status (None: no answer — refused, timed out),
    the Retry-After header, and in words what went wrong; ``refused``: the address
    may not be called (never retried)."""

    status: int | None
    retry_after: str | None = None
    error: str = ""
    refused: bool = False


class CallbackSender(Protocol):
    """The HTTP edge: one attempt of one request."""

    async def send(self, request: CallbackRequest) -> Answer: ...

    async def aclose(self) -> None: ...


Resolver = Callable[[str, int], Awaitable[list[str]]]


async def _resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port,
                                                         type=socket.SOCK_STREAM)
    seen: list[str] = []
    for info in infos:
        ip = str(info[4][0])
        if ip not in seen:
            seen.append(ip)
    return seen


class HttpCallbackSender:
    """Sends callbacks with httpx: the host is resolved at every attempt and every
    address it resolves to is checked (core.callback_urls.address_refused against
    ``[http] callback_allow_networks``); the request goes to the checked address (the
    name stays in Host and, for https, in SNI and the certificate check), so DNS
    cannot send it elsewhere between the check and the connect. No proxies from the
    environment, no redirects, 5 s to connect, 15 s for the attempt, at most 64 KB of
    the answer read. One client per destination (scheme, host, port), so a TLS
    connection made for one name is never reused for another."""

    def __init__(self, allow: Callable[[], Sequence[IpNetwork]], *,
                 resolve: Resolver = _resolve, clients: int = 256,
                 verify: ssl.SSLContext | bool = True) -> None:
        self.allow = allow
        self.resolve = resolve
        #: how https servers are verified (the system's CAs; a test hands its own CA)
        self.verify = verify
        self.max_clients = clients
        self._clients: OrderedDict[tuple[str, str, int], httpx.AsyncClient] = OrderedDict()

    def _client(self, key: tuple[str, str, int]) -> httpx.AsyncClient:
        client = self._clients.get(key)
        if client is not None:
            self._clients.move_to_end(key)
            return client
        client = httpx.AsyncClient(
            follow_redirects=False, trust_env=False, verify=self.verify,
            timeout=httpx.Timeout(ATTEMPT_TIMEOUT, connect=CONNECT_TIMEOUT),
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=8))
        self._clients[key] = client
        while len(self._clients) > self.max_clients:
            _, old = self._clients.popitem(last=False)
            asyncio.get_running_loop().create_task(old.aclose())
        return client

    async def send(self, request: CallbackRequest) -> Answer:
        parts = urllib.parse.urlsplit(request.url)
        host = parts.hostname or ""
        if parts.scheme not in ("http", "https") or not host:
            return Answer(None, error="not an http(s) URL", refused=True)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            async with asyncio.timeout(ATTEMPT_TIMEOUT):
                try:
                    addresses = await self.resolve(host, port)
                except OSError as exc:
                    return Answer(None, error=f"cannot resolve {host}: {exc}")
                allow = self.allow()
                for ip in addresses:
                    why = address_refused(ip, allow)
                    if why is not None:
                        return Answer(None, error=f"refused: {host} resolves to {why}",
                                      refused=True)
                if not addresses:
                    return Answer(None, error=f"{host} resolves to nothing")
                return await self._exchange(request, parts, host, port, addresses[0])
        except TimeoutError:
            return Answer(None, error=f"no answer within {ATTEMPT_TIMEOUT:g} s")

    async def _exchange(self, request: CallbackRequest, parts: urllib.parse.SplitResult,
                        host: str, port: int, ip: str) -> Answer:
        netloc_ip = f"[{ip}]" if ipaddress.ip_address(ip).version == 6 else ip
        url = urllib.parse.urlunsplit(parts._replace(netloc=f"{netloc_ip}:{port}"))
        headers = dict(request.headers)
        default = 443 if parts.scheme == "https" else 80
        headers["Host"] = parts.netloc.rpartition("@")[2] if parts.port not in (
            None, default) else (f"[{host}]" if ":" in host else host)
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        client = self._client((parts.scheme, host, port))
        try:
            async with client.stream(request.method, url, headers=headers,
                                     content=request.body or None,
                                     extensions=extensions) as resp:
                read = 0
                async for chunk in resp.aiter_raw():
                    read += len(chunk)
                    if read >= MAX_ANSWER:
                        break  # the answer's status is all that counts
                return Answer(resp.status_code, resp.headers.get("retry-after"))
        except httpx.TimeoutException:
            return Answer(None, error="timed out")
        except (httpx.HTTPError, OSError) as exc:
            return Answer(None, error=f"{type(exc).__name__}: {exc}".rstrip(": "))

    async def aclose(self) -> None:
        clients = list(self._clients.values())
        self._clients.clear()
        for client in clients:
            await client.aclose()


def retryable(answer: Answer) -> bool:
    """408, 429, 5xx and no answer at all are worth another attempt."""
    if answer.refused:
        return False
    status = answer.status
    return status is None or status in (408, 429) or status >= 500


class _Host:
    """One destination host: attempts in flight, events leased and waiting for a slot,
    and its circuit breaker."""

    __slots__ = ("busy", "failures", "latency", "open_until", "waiting")

    def __init__(self) -> None:
        self.busy = 0
        self.failures = 0
        self.open_until = 0.0
        self.waiting: deque[CallbackEvent] = deque()
        #: seconds an attempt takes here (moving average; a start guess of 0.25 s)
        self.latency = 0.25

    def room(self, per_host: int) -> int:
        """Events that may wait for this host's slots: what its slots get through in
        :data:`_WAIT_BUDGET` seconds at its latency (at least two rounds), so none
        waits anywhere near a lease's end."""
        rounds = min(1000.0, max(2.0, _WAIT_BUDGET / max(self.latency, 0.001)))
        return int(per_host * rounds)


def _host_of(url: str) -> str:
    try:
        parts = urllib.parse.urlsplit(url)
        return f"{parts.hostname}:{parts.port or ''}"
    except ValueError:
        return ""


def _facts(stored: StoredMessage | None) -> MessageFacts:
    if stored is None:
        return MessageFacts()
    m, x = stored.message, stored.message.extra
    return MessageFacts(
        source=m.source.addr, destination=m.destination.addr,
        client_ref=x.get(Extra.CLIENT_REF, ""), parts=len(m.part_ids),
        provider=stored.provider, provider_id=stored.provider_id,
        submitted_at=m.submitted_at, done_at=stored.done_at, text=m.content.text,
        data_coding=m.data_coding, fmt=x.get(Extra.CALLBACK_FORMAT, "") or "json",
        method=x.get(Extra.CALLBACK_METHOD, "") or "POST",
        level=x.get(Extra.CALLBACK_LEVEL, ""), extra=x)


class CallbackDispatcher:
    """See the module docstring."""

    def __init__(self, store: Store, sender: CallbackSender, *,
                 accounts: Callable[[str], Account | None],
                 max_in_flight: int = 256, per_host: int = 8, breaker_after: int = 5,
                 breaker_open: float = 30.0, sweep_interval: float = 1.0,
                 busy_delay: float = 1.0,
                 clock: Callable[[], float] = time.time,
                 timer: Callable[[], float] | None = None) -> None:
        self.store = store
        self.sender = sender
        self.accounts = accounts
        self.max_in_flight = max_in_flight
        self.per_host = per_host
        self.breaker_after = breaker_after
        self.breaker_open = breaker_open
        self.sweep_interval = sweep_interval
        #: a host at its cap: its event is due again this much later
        self.busy_delay = busy_delay
        #: dates (wall: the signature's timestamp, a timeline entry); ``timer``: due
        #: times, retries, TTLs, the breaker (steady, core.clock)
        self.clock = clock
        self.timer = timer_for(clock, timer)
        self.sent = 0
        self.retried = 0
        self.failed = 0
        self.expired = 0
        self._hosts: dict[str, _Host] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: events leased and waiting in memory for a slot of their host
        self._waiting = 0
        self._wake = asyncio.Event()

    def notify(self) -> None:
        """Events were stored: look now."""
        self._wake.set()

    def host(self, url: str) -> _Host:
        key = _host_of(url)
        h = self._hosts.get(key)
        if h is None:
            if len(self._hosts) >= _MAX_HOSTS:
                # forget the hosts with nothing to remember (idle and healthy)
                self._hosts = {k: v for k, v in self._hosts.items()
                               if v.busy or v.failures}
            h = self._hosts[key] = _Host()
        return h

    async def run(self) -> None:
        """Dispatch until cancelled; a store outage backs off (up to 5 s) and goes on."""
        outage = 0
        try:
            while True:
                self._wake.clear()
                try:
                    full = await self.sweep()
                    outage = 0
                except StoreUnavailable as exc:
                    outage += 1
                    _log.debug("callbacks.store_unavailable", error=str(exc),
                               attempt=outage)
                    await asyncio.sleep(min(5.0, 0.1 * 2 ** min(outage, 6)))
                    continue
                except Exception:
                    outage += 1
                    _log.exception("callbacks.sweep_crashed")
                    await asyncio.sleep(min(5.0, 0.1 * 2 ** min(outage, 6)))
                    continue
                if full:
                    continue
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.sweep_interval):
                        await self._wake.wait()
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def sweep(self) -> bool:
        """Lease what is due and start its attempts; True when it took a full batch
        (more may be due at once)."""
        room = self.max_in_flight - len(self._tasks) - self._waiting
        if room <= 0:
            return False
        now = self.timer()
        events = await self.store.callbacks_due(now, room)
        for ev in events:
            self._dispatch(ev, now)
        return len(events) >= room

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("callbacks.task_crashed", error=repr(task.exception()))

    def _dispatch(self, ev: CallbackEvent, now: float) -> None:
        if now >= ev.expire_at:
            self._spawn(self._expire(ev, "its TTL ended before another attempt"))
            return
        h = self.host(ev.url)
        if h.open_until > now or (h.failures >= self.breaker_after and h.busy):
            # The host is failing: no attempt now (nor counted), again when it reopens.
            later = max(h.open_until, now + self.busy_delay)
            self._spawn(self._store(partial(self.store.callback_retry, ev.seq, later,
                                            ev.attempts)))
            return
        if h.busy >= self.per_host:
            if len(h.waiting) < h.room(self.per_host):
                # Held under its lease for the next free slot (_Host.room).
                h.waiting.append(ev)
                self._waiting += 1
            else:
                self._spawn(self._store(partial(self.store.callback_retry, ev.seq,
                                                now + self.busy_delay, ev.attempts)))
            return
        self._start(ev, h)

    def _start(self, ev: CallbackEvent, h: _Host) -> None:
        h.busy += 1
        self._spawn(self._attempt(ev, h))

    def _next(self, h: _Host) -> None:
        """A slot of ``h`` is free: its next waiting event goes, or, the host failing,
        every waiting one goes back to the store until the host reopens."""
        if not h.waiting:
            return
        now = self.timer()
        if h.open_until > now:
            while h.waiting:
                ev = h.waiting.popleft()
                self._waiting -= 1
                self._spawn(self._store(partial(self.store.callback_retry, ev.seq,
                                                h.open_until, ev.attempts)))
            return
        if h.busy < self.per_host and not (h.failures >= self.breaker_after and h.busy):
            ev = h.waiting.popleft()
            self._waiting -= 1
            if now >= ev.expire_at:
                self._spawn(self._expire(ev, "its TTL ended before another attempt"))
            else:
                self._start(ev, h)

    async def _attempt(self, ev: CallbackEvent, h: _Host) -> None:
        try:
            try:
                answer = await self._send(ev)
            except StoreUnavailable as exc:
                answer = Answer(None, error=f"store unavailable: {exc}")
            except Exception as exc:  # a bug must not strand the event under its lease
                _log.exception("callbacks.attempt_crashed", message_id=ev.message_id)
                answer = Answer(None, error=f"{type(exc).__name__}")
            try:
                await self._settle(ev, h, answer)
            except Exception:
                _log.exception("callbacks.settle_crashed", message_id=ev.message_id)
                attempts = ev.attempts + 1
                await self._store(partial(self.store.callback_retry, ev.seq,
                                          self.timer() + retry_delay(attempts), attempts))
        finally:
            h.busy -= 1
            self._next(h)
            self._wake.set()  # a slot is free: more may be leased

    async def _send(self, ev: CallbackEvent) -> Answer:
        stored = await self.store.find(ev.message_id)
        account = self.accounts(ev.account)
        secret = account.callback_secret if account is not None else ""
        request = build_request(ev, _facts(stored), attempt=ev.attempts + 1,
                                secret=secret, now=self.clock())
        started = self.timer()
        answer = await self.sender.send(request)
        took = max(0.0, self.timer() - started)
        METRICS.callback_latency.observe(took)
        h = self.host(ev.url)
        h.latency = 0.8 * h.latency + 0.2 * took
        return answer

    async def _settle(self, ev: CallbackEvent, h: _Host, answer: Answer) -> None:
        status = answer.status
        trace = _log.is_enabled_for(DEBUG)
        if status is not None and 200 <= status < 300:
            h.failures = 0
            h.open_until = 0.0
            self.sent += 1
            METRICS.callbacks.labels(ev.account, "sent").inc()
            if trace:
                _log.debug("callback.delivered", message_id=ev.message_id,
                           account=ev.account, kind=ev.kind, status=status,
                           attempts=ev.attempts + 1)
            await self._store(partial(self.store.callback_done, ev, self.clock()))
            return
        why = answer.error or f"HTTP {status}"
        if not retryable(answer):
            if status is not None:
                h.failures = 0  # the host answers: nothing wrong with it
            self.failed += 1
            METRICS.callbacks.labels(ev.account, "failed").inc()
            if trace:
                _log.debug("callback.failed", message_id=ev.message_id,
                           account=ev.account, why=why)
            await self._store(partial(
                self.store.callback_done, ev, self.clock(), CallbackOutcome.FAILED,
                f"{ev.kind} callback failed: {why} ({_short(ev.url)})"))
            return
        now = self.timer()
        if status is None or status >= 500:
            h.failures += 1
            if h.failures >= self.breaker_after:
                if h.open_until <= now:
                    _log.warning("callbacks.host_failing", host=_host_of(ev.url),
                                 failures=h.failures, pause=self.breaker_open)
                h.open_until = now + self.breaker_open
        attempts = ev.attempts + 1
        delay = parse_retry_after(answer.retry_after, self.clock())
        if delay is None:
            delay = retry_delay(attempts)
        if now + delay > ev.expire_at:
            await self._expire(ev, why, attempts)
            return
        self.retried += 1
        METRICS.callbacks.labels(ev.account, "retried").inc()
        if trace:
            _log.debug("callback.retry", message_id=ev.message_id, why=why, delay=delay)
        await self._store(partial(self.store.callback_retry, ev.seq, now + delay, attempts))

    async def _expire(self, ev: CallbackEvent, why: str, attempts: int | None = None) -> None:
        self.expired += 1
        METRICS.callbacks.labels(ev.account, "expired").inc()
        n = ev.attempts if attempts is None else attempts
        await self._store(partial(
            self.store.callback_done, ev, self.clock(), CallbackOutcome.EXPIRED,
            f"{ev.kind} callback expired after {n} attempt{'s' if n != 1 else ''}: "
            f"{why} ({_short(ev.url)})"))

    async def _store(self, write: Callable[[], Awaitable[None]]) -> None:
        """A write of an outcome, repeated through a store outage (the event stays
        leased meanwhile: a lost outcome would send it again)."""
        await until_stored(write, "callbacks.outcome_waiting_for_store")

    async def drain(self) -> None:
        """Wait for the attempts under way (tests, graceful stop)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def _short(url: str) -> str:
    """The URL without its query (which may hold the customer's tokens)."""
    return url.split("?", 1)[0][:200]
