"""Batching, retries with backoff, and the circuit breaker, driven by the simulator's
fault switches over real HTTP."""

from __future__ import annotations

import asyncio
import random

from structlog.testing import capture_logs

from smppbridge.core.outcomes import Err, SendResult
from smppbridge.delivery.runner import Backoff, BreakerState, CircuitBreaker, ProviderRunner
from smppbridge.providers.mysmpp_xml import MysmppXmlProvider
from smppbridge.providers.simulator.settings import SimConfig
from smppbridge.smpp.receipts import Stat
from tests.providers.helpers import (
    FakeClock,
    RecordingSleep,
    message,
    running_simulator,
    settings,
)


def test_breaker_opens_half_opens_and_closes() -> None:
    """threshold consecutive failures open it; after reset_after one trial is allowed;
    a failed trial reopens it, a successful one closes it."""
    clock = FakeClock()
    b = CircuitBreaker(threshold=2, reset_after=10, clock=clock)
    b.failure()
    assert b.state is BreakerState.CLOSED
    b.failure()
    assert b.state is BreakerState.OPEN
    assert not b.allow()
    clock.advance(10)
    assert b.state is BreakerState.HALF_OPEN
    assert b.allow()
    assert not b.allow()  # one trial at a time
    b.failure()
    assert b.state is BreakerState.OPEN
    clock.advance(10)
    assert b.allow()
    b.success()
    assert b.state is BreakerState.CLOSED
    assert b.allow()


def test_breaker_events_name_their_provider() -> None:
    """provider.breaker_opened and provider.breaker_closed (when it recovers) are logged
    with the provider's name; a success while closed logs nothing."""
    clock = FakeClock()
    b = CircuitBreaker(threshold=1, reset_after=5, clock=clock, name="fly")
    with capture_logs() as logs:
        b.success()
        b.failure()
        clock.advance(5)
        assert b.allow()
        b.success()
    events = [(e["event"], e.get("provider")) for e in logs]
    assert events == [("provider.breaker_opened", "fly"), ("provider.breaker_closed", "fly")]
    assert logs[1]["open_for"] == 5


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    """delay(n) lies in [0.5, 1] × min(cap, base·2ⁿ)."""
    b = Backoff(0.5, 3.0, random.Random(1))
    for attempt, ceiling in enumerate([0.5, 1.0, 2.0, 3.0, 3.0]):
        d = b.delay(attempt)
        assert ceiling / 2 <= d <= ceiling


async def test_concurrent_submits_share_one_request() -> None:
    """Messages submitted together are sent as one batch: one HTTP request, and each
    caller gets its own outcome."""
    async with running_simulator() as (sim, url):
        s = settings("mysmpp-xml", url, batch_size=3, linger=5.0)
        runner = ProviderRunner(MysmppXmlProvider(s), s)
        try:
            outs = await asyncio.gather(*(runner.submit(message(str(i), f"7903000000{i}"))
                                          for i in range(3)))
        finally:
            await runner.aclose()
    assert [o.message_id for o in outs] == ["0", "1", "2"]
    assert all(o.result is SendResult.ACCEPTED and o.provider == "p" for o in outs)
    assert sim.engine.counters["requests"] == 1


async def test_linger_flushes_a_partial_batch() -> None:
    """Fewer messages than batch_size still go out once linger has passed."""
    async with running_simulator() as (sim, url):
        s = settings("mysmpp-xml", url, batch_size=100, linger=0.0)
        runner = ProviderRunner(MysmppXmlProvider(s), s)
        try:
            outs = await asyncio.gather(*(runner.submit(message(str(i))) for i in range(5)))
        finally:
            await runner.aclose()
    assert len({o.provider_id for o in outs}) == 5
    assert (sim.engine.counters["requests"], sim.engine.counters["accepted"]) == (1, 5)


async def test_transient_failures_are_retried_with_backoff_and_sent_once() -> None:
    """Two 5xx answers, then success: three requests, two backoff waits, one message."""
    sleep = RecordingSleep()
    async with running_simulator(SimConfig(fail_status=503)) as (sim, url):
        s = settings("mysmpp-xml", url, batch_size=1, retries=2, backoff=0.5)
        runner = ProviderRunner(MysmppXmlProvider(s), s, sleep=sleep, rng=random.Random(0))
        try:
            sim.engine.control({"fail_next": 2})
            out = await runner.submit(message())
        finally:
            await runner.aclose()
    assert out.result is SendResult.ACCEPTED
    assert sim.engine.counters["requests"] == 3
    assert sim.engine.counters["accepted"] == 1
    assert len(sleep.delays) == 2
    assert 0.25 <= sleep.delays[0] <= 0.5
    assert 0.5 <= sleep.delays[1] <= 1.0


async def test_exhausted_retries_fail_and_open_the_breaker() -> None:
    """After retries the message is FAILED (UNDELIV err 301); with the breaker open the
    next message fails at once without a request, until breaker_reset has passed."""
    clock = FakeClock()
    async with running_simulator() as (sim, url):
        s = settings("mysmpp-xml", url, batch_size=1, retries=1, breaker_threshold=2,
                     breaker_reset=30)
        runner = ProviderRunner(MysmppXmlProvider(s), s, clock=clock, sleep=RecordingSleep())
        try:
            sim.engine.control({"fail_next": 100})
            out = await runner.submit(message("1"))
            assert (out.result, out.stat, out.err) == (SendResult.FAILED, Stat.UNDELIV,
                                                       Err.UNAVAILABLE)
            assert not runner.available
            requests = sim.engine.counters["requests"]
            out2 = await runner.submit(message("2"))
            assert out2.result is SendResult.FAILED
            assert "circuit breaker open" in out2.detail
            assert sim.engine.counters["requests"] == requests
            sim.engine.control({"fail_next": 0})
            clock.advance(30)
            out3 = await runner.submit(message("3"))
            assert out3.result is SendResult.ACCEPTED
            assert runner.breaker.state is BreakerState.CLOSED
        finally:
            await runner.aclose()


async def test_refusal_is_not_retried() -> None:
    """Wrong credentials fail at once (no retries), with err 202, and keep the breaker
    closed: the provider is up, it refuses us."""
    sleep = RecordingSleep()
    async with running_simulator(SimConfig(token="other")) as (sim, url):
        s = settings("mysmpp-xml", url, batch_size=1, token="bad", retries=3)
        runner = ProviderRunner(MysmppXmlProvider(s), s, sleep=sleep)
        try:
            out = await runner.submit(message())
        finally:
            await runner.aclose()
    assert (out.result, out.stat, out.err) == (SendResult.FAILED, Stat.REJECTD,
                                               Err.ACCOUNT_BLOCKED)
    assert sim.engine.counters["requests"] == 1
    assert sleep.delays == []
    assert runner.breaker.state is BreakerState.CLOSED


async def test_aclose_sends_what_is_pending() -> None:
    """Closing the runner flushes the batch still lingering and waits for it."""
    async with running_simulator() as (sim, url):
        s = settings("mysmpp-xml", url, batch_size=100, linger=10.0)
        runner = ProviderRunner(MysmppXmlProvider(s), s)
        pending = runner.enqueue(message())
        await runner.aclose()
        out = await pending
        late = await runner.submit(message("2"))
    assert late.result is SendResult.FAILED
    assert out.result is SendResult.ACCEPTED
    assert sim.engine.counters["accepted"] == 1
