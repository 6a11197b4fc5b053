"""Batching, retries with backoff and jitter, and a circuit breaker around one provider.

Theory of operation: the pipeline hands messages one at a time to
:meth:`ProviderRunner.submit`. The runner gathers them into batches of ``batch_size``
(or whatever arrived within ``linger`` of the first), sends each batch with at most
``concurrency`` requests in flight, and resolves every caller with its own
:class:`SendOutcome`. A batch that fails as a whole with a transient error
(:class:`ProviderTimeout`, :class:`ProviderUnavailable`) is sent again, unchanged, after
an exponential backoff with jitter: the provider's client-side id (mysmpp
``client_id_sms``) makes that resend harmless. After ``retries`` the messages come back
``FAILED`` so the router can try the next provider.

The breaker counts consecutive transient failures; at ``breaker_threshold`` it opens and
every request fails at once (no waiting on a dead provider) until ``breaker_reset``
seconds have passed on the injected clock; then one trial request is let through
(half-open): success closes the breaker, failure opens it again.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING

import structlog

from smppbridge.core.errors import ProviderError, ProviderRejected, ProviderTimeout
from smppbridge.core.outcomes import Err, SendOutcome, SendResult
from smppbridge.core.ports import Provider
from smppbridge.observability.metrics import METRICS

if TYPE_CHECKING:
    from prometheus_client import Counter

    from smppbridge.core.message import OutboundMessage
    from smppbridge.core.provider_settings import ProviderSettings

__all__ = ["Backoff", "BreakerState", "CircuitBreaker", "ProviderRunner"]

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

_log = structlog.get_logger()


#: request latencies kept per provider for the operator API's p50/p99
_LATENCY_SAMPLES = 2000


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Consecutive-failure breaker with an injected monotonic clock."""

    def __init__(self, threshold: int, reset_after: float, clock: Clock = time.monotonic,
                 *, name: str = "") -> None:
        #: the provider it guards (named in its log events)
        self.name = name
        self.threshold = threshold
        self.reset_after = reset_after
        self.clock = clock
        self.failures = 0
        self._opened_at: float | None = None
        self._trial = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self.clock() - self._opened_at >= self.reset_after:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allow(self) -> bool:
        """May a request go out now? In half-open state only one trial at a time."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._trial:
            self._trial = True
            return True
        return False

    def success(self) -> None:
        if self._opened_at is not None:
            _log.info("provider.breaker_closed", provider=self.name,
                      open_for=round(self.clock() - self._opened_at, 3))
        self.failures = 0
        self._opened_at = None
        self._trial = False

    def failure(self) -> None:
        self.failures += 1
        if self._trial or self.failures >= self.threshold:
            if self._opened_at is None or self._trial:
                _log.warning("provider.breaker_opened", provider=self.name,
                             failures=self.failures, trial=self._trial)
            self._opened_at = self.clock()
        self._trial = False


class Backoff:
    """``min(cap, base * 2**attempt)``, scaled by a random factor in [0.5, 1] ("equal
    jitter"), so synchronized clients spread out but never retry at once."""

    def __init__(self, base: float, cap: float, rng: random.Random | None = None) -> None:
        self.base = base
        self.cap = cap
        self.rng = rng or random.Random()

    def delay(self, attempt: int) -> float:
        ceiling: float = min(self.cap, self.base * 2.0 ** attempt)
        return ceiling * (0.5 + self.rng.random() / 2)


class ProviderRunner:
    """One provider with batching, retries and its breaker. See the module docstring."""

    def __init__(self, provider: Provider, settings: ProviderSettings, *,
                 clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep,
                 rng: random.Random | None = None) -> None:
        self.provider = provider
        self.name = provider.name
        self.settings = settings
        self.breaker = CircuitBreaker(settings.breaker_threshold, settings.breaker_reset, clock,
                                      name=self.name)
        self.backoff = Backoff(settings.backoff, settings.backoff_max, rng)
        self._sleep = sleep
        self._pending: list[tuple[OutboundMessage, asyncio.Future[SendOutcome]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._request_children: dict[str, Counter] = {}
        self._latency = METRICS.provider_latency.labels(self.name)
        #: messages in a request to the provider right now
        self.in_flight = 0
        #: messages the provider took / that failed here, since start (the operator API
        #: reads them as rates)
        self.accepted = 0
        self.failed = 0
        #: (when, seconds) of the last requests, for the latency the operator API shows
        self.latencies: deque[tuple[float, float]] = deque(maxlen=_LATENCY_SAMPLES)

    def _observe(self, outcome: str, started: float) -> None:
        # Children bound once per (provider, outcome); outcomes are a closed set.
        child = self._request_children.get(outcome)
        if child is None:
            child = self._request_children[outcome] = METRICS.provider_requests.labels(
                self.name, outcome)
        child.inc()
        now = time.monotonic()
        self._latency.observe(now - started)
        self.latencies.append((now, now - started))

    @property
    def available(self) -> bool:
        """False while the breaker is open: the router skips this provider."""
        return self.breaker.state is not BreakerState.OPEN

    async def submit(self, message: OutboundMessage) -> SendOutcome:
        """Send one message as part of the next batch; resolves with its outcome."""
        return await asyncio.shield(self.enqueue(message))

    def enqueue(self, message: OutboundMessage) -> asyncio.Future[SendOutcome]:
        """Queue one message for the next batch; the future resolves with its outcome."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[SendOutcome] = loop.create_future()
        if self._closed:
            future.set_result(SendOutcome.failed(message.message_id, Err.UNAVAILABLE,
                                                 "shutting down"))
            return future
        self._pending.append((message, future))
        if len(self._pending) >= self.settings.batch_size:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.settings.linger, self._flush)
        return future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, []
        if not batch:
            return
        task = asyncio.get_running_loop().create_task(self._run_batch(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_batch(self, batch: list[tuple[OutboundMessage,
                                                 asyncio.Future[SendOutcome]]]) -> None:
        try:
            async with self._slots:
                outcomes = await self.send_batch([m for m, _ in batch])
        except BaseException as exc:  # cancelled or a bug: nobody may wait forever
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc if isinstance(exc, Exception)
                                      else asyncio.CancelledError())
            raise
        for (_, fut), outcome in zip(batch, outcomes, strict=True):
            if not fut.done():
                fut.set_result(outcome)

    async def send_now(self, messages: Sequence[OutboundMessage]) -> list[SendOutcome]:
        """Send a batch the caller already holds (the sender): queued like
        :meth:`submit` — full requests go at once, a partial one waits ``linger`` for
        more — with one future per message and no task or shield each."""
        futures = [self.enqueue(m) for m in messages]
        return list(await asyncio.gather(*futures))

    async def send_batch(self, messages: Sequence[OutboundMessage]) -> list[SendOutcome]:
        """Send ``messages`` with retries; every outcome is ACCEPTED, REJECTED or FAILED."""
        self.in_flight += len(messages)
        try:
            outcomes = await self._send_with_retries(messages)
        finally:
            self.in_flight -= len(messages)
        for outcome in outcomes:
            if outcome.result is SendResult.ACCEPTED:
                self.accepted += 1
            elif outcome.result is SendResult.FAILED:
                self.failed += 1
        return outcomes

    async def _send_with_retries(self, messages: Sequence[OutboundMessage]
                                 ) -> list[SendOutcome]:
        results: dict[int, SendOutcome] = {}
        todo = list(range(len(messages)))
        last_error = ""
        for attempt in range(self.settings.retries + 1):
            if attempt:
                await self._sleep(self.backoff.delay(attempt - 1))
            if not self.breaker.allow():
                last_error = f"{self.name}: circuit breaker open"
                break
            started = time.monotonic()
            try:
                outcomes = await self.provider.send([messages[i] for i in todo])
            except ProviderRejected as exc:
                self._observe("refused", started)
                self.breaker.success()  # it answered: it is up, it just refuses us
                _log.warning("provider.send_refused", provider=self.name, error=str(exc))
                for i in todo:
                    results[i] = SendOutcome.failed(messages[i].message_id, exc.err, str(exc),
                                                    stat=exc.stat)
                todo = []
                break
            except ProviderError as exc:
                self._observe("timeout" if isinstance(exc, ProviderTimeout) else "failed",
                              started)
                self.breaker.failure()
                last_error = str(exc)
                _log.warning("provider.send_failed", provider=self.name, attempt=attempt,
                             error=last_error, messages=len(todo))
                continue
            self._observe("ok", started)
            self.breaker.success()
            retry = []
            for i, outcome in zip(todo, outcomes, strict=True):
                if outcome.result is SendResult.RETRY:
                    retry.append(i)
                    last_error = outcome.detail
                else:
                    results[i] = outcome
            todo = retry
            if not todo:
                break
        for i in todo:
            results[i] = SendOutcome.failed(messages[i].message_id, Err.UNAVAILABLE,
                                            last_error or "unavailable")
        return [_with_provider(results[i], self.name) for i in range(len(messages))]

    async def aclose(self) -> None:
        """Send what is pending, wait for batches in flight, close the provider."""
        self._closed = True
        self._flush()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.provider.aclose()


def _with_provider(outcome: SendOutcome, name: str) -> SendOutcome:
    return SendOutcome(outcome.message_id, outcome.result, outcome.provider_id, outcome.parts,
                       outcome.stat, outcome.err, outcome.detail, name)
