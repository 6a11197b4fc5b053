"""A step of the wall clock (NTP, ``date -s``) an hour either way changes no timer of
the delivery side — retries, validity ends, receipt TTLs, the poller's deadlines — and
the dates it writes are the stepped wall clock's (core.clock)."""

from __future__ import annotations

import pytest

from smppbridge.core.clock import Clock
from smppbridge.core.outcomes import Err, SendOutcome, StatusUpdate
from smppbridge.core.records import DeliveryState
from smppbridge.delivery.pipeline import Pipeline
from smppbridge.delivery.poller import StatusPoller
from smppbridge.delivery.receipts import ReceiptDispatcher
from smppbridge.providers.simulator.provider import SimulatorProvider
from smppbridge.smpp.receipts import Stat
from smppbridge.store.sqlite.store import SqliteStore
from tests.core.test_clock import Hand
from tests.delivery.test_pipeline import FakeRouter, _msg
from tests.providers.helpers import message, settings

HOUR = 3600.0
T0 = 1_000_000.0


def clocks() -> tuple[Hand, Hand, Clock]:
    wall, mono = Hand(T0), Hand(0.0)
    return wall, mono, Clock(wall, mono)


def step(wall: Hand, mono: Hand, *, passed: float, stepped: float) -> None:
    """``passed`` seconds go by, and the wall clock is stepped by ``stepped``."""
    mono.now += passed
    wall.now += passed + stepped


@pytest.mark.parametrize("stepped", [HOUR, -HOUR])
async def test_a_retry_is_due_after_its_backoff_on_steady_time(
        store: SqliteStore, stepped: float) -> None:
    """A failed send is retried after its backoff, whichever way the wall clock went:
    not an hour early (step forward), not an hour late (step back)."""
    wall, mono, clock = clocks()
    router = FakeRouter([SendOutcome.failed("", Err.UNAVAILABLE)])
    pipe = Pipeline(store, router, clock=clock.wall, timer=clock.steady,  # type: ignore[arg-type]
                    retry_backoff=10.0)
    await pipe.accept(_msg(expire_at=T0 + 600))
    await pipe._send_many(await store.due(clock.steady(), 10))
    step(wall, mono, passed=1, stepped=stepped)
    retry = await store.find("1")
    assert retry is not None
    assert retry.state is DeliveryState.QUEUED
    assert T0 < retry.next_at <= T0 + 20  # backoff 10-20 s with jitter, on steady time
    assert await store.due(clock.steady(), 10) == []
    mono.now += 20
    assert [m.message.message_id for m in await store.due(clock.steady(), 10)] == ["1"]


async def test_a_validity_end_is_not_reached_early_by_a_step_forward(
        store: SqliteStore) -> None:
    """Validity ends 10 minutes after the submit: a step of the wall clock an hour
    forward right after it leaves the message retried, not EXPIRED."""
    wall, mono, clock = clocks()
    router = FakeRouter([SendOutcome.failed("", Err.UNAVAILABLE)] * 2)
    pipe = Pipeline(store, router, clock=clock.wall, timer=clock.steady,  # type: ignore[arg-type]
                    retry_backoff=10.0)
    await pipe.accept(_msg(expire_at=T0 + 600))
    step(wall, mono, passed=1, stepped=HOUR)
    await pipe._send_many(await store.due(clock.steady(), 10))
    retried = await store.find("1")
    assert retried is not None
    assert (retried.state, retried.attempts) == (DeliveryState.QUEUED, 1)
    mono.now += 600  # the validity end, in time that really passed
    await pipe._send_many(await store.due(clock.steady(), 10))
    final = await store.find("1")
    assert final is not None
    assert (final.state, final.stat) == (DeliveryState.FINAL, "EXPIRED")


async def test_receipts_carry_the_stepped_date_and_keep_their_ttl(
        store: SqliteStore) -> None:
    """A final status after a step forward: the receipt's done date is the new wall
    date (dates on the wire stay right) while its TTL still runs from steady now — the
    dispatcher's sweep expires it only when the TTL has really passed."""
    wall, mono, clock = clocks()
    pipe = Pipeline(store, FakeRouter([SendOutcome.accepted("", "P1")]),  # type: ignore[arg-type]
                    clock=clock.wall, timer=clock.steady, receipt_ttl=2 * HOUR)
    dispatcher = ReceiptDispatcher(store, lambda _: [], clock=clock.wall,
                                   timer=clock.steady, expire_interval=0.0)
    await pipe.accept(_msg(rd=1))
    await pipe._send_many(await store.due(clock.steady(), 10))
    step(wall, mono, passed=5, stepped=HOUR)
    await pipe.on_status("sim", StatusUpdate("P1", Stat.DELIVRD, message_id="1"))
    final = await store.find("1")
    assert final is not None
    assert final.done_at == T0 + 5 + HOUR
    (receipt,) = await store.receipts_for("acme", clock.steady(), 10)
    assert (receipt.stat, receipt.done_date) == ("DELIVRD", T0 + 5 + HOUR)
    await store.release_receipts([receipt.seq])
    step(wall, mono, passed=60, stepped=2 * HOUR)  # the wall clock is now 3 h ahead
    await dispatcher.sweep()
    assert dispatcher.expired == 0
    assert await store.count_receipts("acme") == 1
    mono.now += 2 * HOUR
    await dispatcher.sweep()
    assert dispatcher.expired == 1
    assert await store.count_receipts("acme") == 0


async def test_the_pollers_deadline_is_steady_time() -> None:
    """A message with no final status is given up on at max_status_age of steady time:
    a step forward past it gives up nothing; the give-up is dated by the wall clock."""
    wall, mono, clock = clocks()
    s = settings("simulator", name="sim", simulator={"default_outcome": "never"},
                 poll_interval=10, max_status_age=100)
    provider = SimulatorProvider(s, clock=clock.wall)
    updates: list[StatusUpdate] = []

    async def got(_provider: str, update: StatusUpdate) -> None:
        updates.append(update)

    poller = StatusPoller({"sim": provider}, {"sim": s}, got, clock=clock.wall,
                          timer=clock.steady)
    [out] = await provider.send([message("n", "79030000000")])
    poller.track("sim", out.provider_id, "n")
    step(wall, mono, passed=10, stepped=HOUR)
    await poller.poll_due()
    assert [u for u in updates if u.final] == []
    assert len(poller) == 1
    for _ in range(10):
        mono.now += 10
        wall.now += 10
        await poller.poll_due()
    (final,) = [u for u in updates if u.final]
    assert (final.stat, final.err) == (Stat.UNKNOWN, Err.NO_FINAL_STATUS)
    assert final.done_at == T0 + 100 + HOUR  # at the deadline, dated by the wall clock
