"""The callback dispatcher on a real SQLite store with a scripted HTTP edge and an
injected clock: the retry schedule over an hour's outage, order per message, what is
retried and what fails at once, Retry-After, expiry, the per-host cap and breaker,
store outages; and the sender's address checks (no socket is opened)."""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import Callable
from typing import Any

import pytest

from smppbridge.core.accounts import Account
from smppbridge.core.callbacks import (
    SIGNATURE_HEADER,
    CallbackEvent,
    CallbackRequest,
    EventKind,
    new_event,
    sign,
)
from smppbridge.core.errors import StoreUnavailable
from smppbridge.delivery.callbacks import Answer, CallbackDispatcher, HttpCallbackSender
from smppbridge.store.sqlite.store import SqliteStore
from tests.store.samples import sample_message

T0 = 1_800_000_000.0


class Time:
    """Wall and steady time of the test (the same line; advanced by hand)."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Receiver:
    """The HTTP edge: answers each request with ``answer(request)``; records them."""

    def __init__(self, answer: Callable[[CallbackRequest], Answer]) -> None:
        self.answer = answer
        self.requests: list[tuple[float, CallbackRequest]] = []
        self.clock: Time | None = None

    async def send(self, request: CallbackRequest) -> Answer:
        self.requests.append((self.clock.now if self.clock else 0.0, request))
        return self.answer(request)

    async def aclose(self) -> None:
        pass

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.body) for _, r in self.requests]


ACCOUNT = Account("acme", "pw", receipts="http", receipt_url="https://a.example/cb",
                  callback_secret="k3y", callback_ttl=86_400.0)


def _dispatcher(store: SqliteStore, receiver: Receiver, t: Time,
                **kwargs: Any) -> CallbackDispatcher:
    receiver.clock = t
    return CallbackDispatcher(store, receiver, accounts=lambda _n: ACCOUNT, clock=t,
                              timer=t, **kwargs)


async def _final_with_events(store: SqliteStore, i: int, url: str = "https://a.example/cb",
                             sent: bool = False, ttl: float = 86_400.0) -> list[CallbackEvent]:
    m = sample_message(i)
    await store.accept(m)
    events = []
    if sent:
        ev = new_event(EventKind.SENT, message_id=m.message_id, account="acme", url=url,
                       stat="ENROUTE", err=0, at=T0, since=T0, ttl=ttl)
        await store.mark_sent_many([(m.message_id, "p", f"P{i}", "ENROUTE", T0, ())],
                                   callbacks=[ev])
        events.append(ev)
    ev = new_event(EventKind.FINAL, message_id=m.message_id, account="acme", url=url,
                   stat="DELIVRD", err=0, at=T0, since=T0, ttl=ttl)
    await store.mark_final(m.message_id, "DELIVRD", 0, T0, callbacks=[ev])
    events.append(ev)
    return events


async def _run_until(d: CallbackDispatcher, t: Time, store: SqliteStore, end: float,
                     step: float = 1.0) -> None:
    """Sweep, finish every attempt, advance the clock: until ``end``."""
    while t.now <= end:
        await d.sweep()
        await d.drain()
        t.now += step


async def test_an_hour_down_then_everything_once_in_order(store: SqliteStore) -> None:
    """The receiver answers 503 for an hour: attempts at 0, 5, 15, 35 ... s (doubling,
    then every 15 min); once it is back every event arrives once, each message's sent
    before its final, every body signed."""
    t = Time()
    up_at = T0 + 3600
    receiver = Receiver(lambda _r: Answer(200) if t.now >= up_at else Answer(503))
    d = _dispatcher(store, receiver, t, breaker_after=1000)  # the schedule alone
    events = [e for i in range(3) for e in await _final_with_events(store, i, sent=True)]
    await _run_until(d, t, store, T0 + 5000, step=5.0)
    per_event: dict[str, list[float]] = {}
    for at, req in receiver.requests:
        per_event.setdefault(json.loads(req.body)["event_id"], []).append(at - T0)
    sent_id = events[0].event_id
    # the first event of message 0: 5 s, doubling, then 15 min apart
    assert per_event[sent_id][:9] == [0, 5, 15, 35, 75, 155, 315, 635, 1275]
    assert per_event[sent_id][9] - per_event[sent_id][8] == 900
    delivered = [b for (at, _), b in zip(receiver.requests, receiver.bodies(), strict=True)
                 if at >= up_at]
    assert sorted(b["event_id"] for b in delivered) == sorted(e.event_id for e in events)
    for message_id in {e.message_id for e in events}:
        kinds = [b["status"] for b in receiver.bodies() if b["message_id"] == message_id]
        assert kinds.index("delivered") > max(i for i, k in enumerate(kinds) if k == "sent")
    assert await store.count_callbacks() == 0
    for _, req in receiver.requests:
        ts = req.headers["X-Smppbridge-Timestamp"]
        assert req.headers[SIGNATURE_HEADER] == sign("k3y", int(ts), req.body)
    assert [b["attempt"] for b in receiver.bodies() if b["event_id"] == sent_id] == list(
        range(1, len(per_event[sent_id]) + 1))


@pytest.mark.parametrize("status", [400, 401, 404, 410, 302])
async def test_other_answers_fail_at_once_into_the_timeline(store: SqliteStore,
                                                            status: int) -> None:
    t = Time()
    receiver = Receiver(lambda _r: Answer(status))
    d = _dispatcher(store, receiver, t)
    [ev] = await _final_with_events(store, 1)
    await _run_until(d, t, store, T0 + 60)
    assert len(receiver.requests) == 1
    assert await store.count_callbacks() == 0
    last = (await store.timeline(ev.message_id))[-1]
    assert last.detail == f"final callback failed: HTTP {status} (https://a.example/cb)"
    assert d.failed == 1


@pytest.mark.parametrize("answer", [Answer(408), Answer(429), Answer(500), Answer(502),
                                    Answer(None, error="connection refused"),
                                    Answer(None, error="timed out")])
async def test_retried_answers(store: SqliteStore, answer: Answer) -> None:
    t = Time()
    receiver = Receiver(lambda _r: answer if len(receiver.requests) < 3 else Answer(204))
    d = _dispatcher(store, receiver, t)
    await _final_with_events(store, 1)
    await _run_until(d, t, store, T0 + 30)
    assert [at - T0 for at, _ in receiver.requests] == [0, 5, 15]
    assert await store.count_callbacks() == 0
    assert d.retried == 2
    assert d.sent == 1


async def test_retry_after_is_honoured(store: SqliteStore) -> None:
    t = Time()
    receiver = Receiver(lambda _r: Answer(429, "120") if len(receiver.requests) < 2
                        else Answer(200))
    d = _dispatcher(store, receiver, t)
    await _final_with_events(store, 1)
    await _run_until(d, t, store, T0 + 200)
    assert [at - T0 for at, _ in receiver.requests] == [0, 120]


async def test_given_up_as_expired_at_the_ttl(store: SqliteStore) -> None:
    t = Time()
    receiver = Receiver(lambda _r: Answer(503))
    d = _dispatcher(store, receiver, t, breaker_after=1000)
    [ev] = await _final_with_events(store, 1, ttl=100.0)
    await _run_until(d, t, store, T0 + 300)
    # 0, 5, 15, 35, 75: the next (155) is past the TTL
    assert len(receiver.requests) == 5
    assert await store.count_callbacks() == 0
    last = (await store.timeline(ev.message_id))[-1]
    assert last.detail == ("final callback expired after 5 attempts: HTTP 503 "
                           "(https://a.example/cb)")


async def test_a_dead_host_slows_no_other(store: SqliteStore) -> None:
    """Attempts to a host that never answers hold only that host's slots; the other
    host's callbacks are delivered meanwhile; after ``breaker_after`` failures the dead
    host's events wait without attempts."""
    t = Time()
    hang = asyncio.Event()
    three_dead_waiting = asyncio.Event()

    class Edge(Receiver):
        async def send(self, request: CallbackRequest) -> Answer:
            self.requests.append((t.now, request))
            if "dead.example" in request.url:
                if sum("dead.example" in r.url for _, r in self.requests) == 3:
                    three_dead_waiting.set()
                await hang.wait()
                return Answer(None, error="timed out")
            return Answer(200)

    receiver = Edge(lambda _r: Answer(200))
    d = _dispatcher(store, receiver, t, per_host=3, breaker_after=2, breaker_open=600.0)
    for i in range(5):
        await _final_with_events(store, i, url="https://dead.example/cb")
    for i in range(5, 8):
        await _final_with_events(store, i, url="https://live.example/cb")
    await d.sweep()
    await asyncio.wait_for(three_dead_waiting.wait(), 5)
    live_done = [task for task in d._tasks if not task.done()]
    # every live attempt finishes while the dead host's three hang (no time passes)
    for _ in range(3):
        if d.sent == 3:
            break
        await asyncio.wait(live_done, timeout=5, return_when=asyncio.FIRST_COMPLETED)
        live_done = [task for task in live_done if not task.done()]
    live = [r for _, r in receiver.requests if "live.example" in r.url]
    dead = [r for _, r in receiver.requests if "dead.example" in r.url]
    assert len(live) == 3
    assert len(dead) == 3
    assert not hang.is_set()
    assert d.sent == 3
    hang.set()
    await d.drain()
    # failures in a row: the breaker is open, the dead host's events wait without
    # attempts (none while it is open, 600 s), the live host's are all delivered
    def dead_attempts() -> int:
        return sum("dead.example" in r.url for _, r in receiver.requests)
    before = dead_attempts()
    assert before >= 3
    assert d.host("https://dead.example/cb").open_until > t.now
    for _ in range(5):
        t.now += 10
        await d.sweep()
        await d.drain()
    assert dead_attempts() == before
    assert await store.count_callbacks() == 5


async def test_store_outage_backs_off_and_goes_on(store: SqliteStore) -> None:
    """callbacks_due fails twice (StoreUnavailable): the loop stays alive and delivers
    once the store is back."""
    done = asyncio.Event()
    receiver = Receiver(lambda _r: (done.set(), Answer(200))[1])

    class Flaky:
        def __init__(self) -> None:
            self.failures = 2

        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

        async def callbacks_due(self, now: float, limit: int) -> list[CallbackEvent]:
            if self.failures:
                self.failures -= 1
                raise StoreUnavailable("sqlite: disk I/O error")
            return await store.callbacks_due(now, limit)

    flaky = Flaky()
    d = CallbackDispatcher(flaky, receiver, accounts=lambda _n: ACCOUNT,  # type: ignore[arg-type]
                           sweep_interval=0.05)
    await _final_with_events(store, 1)
    task = asyncio.create_task(d.run())
    try:
        await asyncio.wait_for(done.wait(), 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert flaky.failures == 0  # both failures were lived through
    assert len(receiver.requests) == 1


async def test_an_unexpected_error_reschedules_the_event(store: SqliteStore) -> None:
    t = Time()
    calls = []

    class Broken(Receiver):
        async def send(self, request: CallbackRequest) -> Answer:
            calls.append(t.now)
            if len(calls) == 1:
                raise RuntimeError("boom")
            return Answer(200)

    d = _dispatcher(store, Broken(lambda _r: Answer(200)), t)
    await _final_with_events(store, 1)
    await _run_until(d, t, store, T0 + 10)
    assert [c - T0 for c in calls] == [0, 5]
    assert await store.count_callbacks() == 0


# --- the sender's address checks (refused before any connection) -----------------------


def _request(url: str) -> CallbackRequest:
    return CallbackRequest("POST", url, {}, b"{}")


async def _resolving(*ips: str) -> Callable[[str, int], Any]:
    async def resolve(host: str, port: int) -> list[str]:
        return list(ips)
    return resolve


@pytest.mark.parametrize("ips", [("10.0.0.7",), ("127.0.0.1",), ("169.254.169.254",),
                                 ("93.184.216.34", "192.168.1.1"), ("::1",)])
async def test_sender_refuses_inward_addresses(ips: tuple[str, ...]) -> None:
    sender = HttpCallbackSender(lambda: (), resolve=await _resolving(*ips))
    answer = await sender.send(_request("https://cb.example/x"))
    assert answer.refused
    assert answer.status is None
    assert "refused" in answer.error
    await sender.aclose()


async def test_sender_refuses_a_scheme_other_than_http() -> None:
    sender = HttpCallbackSender(lambda: (), resolve=await _resolving("93.184.216.34"))
    assert (await sender.send(_request("ftp://cb.example/x"))).refused
    await sender.aclose()


async def test_an_allowed_network_is_not_refused_but_others_still_are() -> None:
    allow = (ipaddress.ip_network("10.0.0.0/8"),)
    sender = HttpCallbackSender(lambda: allow,
                                resolve=await _resolving("10.0.0.7", "192.168.0.1"))
    answer = await sender.send(_request("https://cb.example/x"))
    assert answer.refused
    assert "192.168.0.1" in answer.error
    await sender.aclose()


async def test_a_busy_host_takes_its_backlog_without_waiting_for_the_clock(
        store: SqliteStore) -> None:
    """Events beyond a host's slots wait in memory under their lease and go as slots
    free up: 50 events through 2 slots in one sweep, no time passing (none goes back
    to the store to wait a second)."""
    t = Time()
    receiver = Receiver(lambda _r: Answer(200))
    d = _dispatcher(store, receiver, t, per_host=2)
    for i in range(50):
        await _final_with_events(store, i)
    await d.sweep()
    await d.drain()
    assert len(receiver.requests) == 50
    assert {at for at, _ in receiver.requests} == {T0}
    assert await store.count_callbacks() == 0
