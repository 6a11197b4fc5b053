"""The in-process ``simulator`` provider type: every kind, rules, HLR, fault switches."""

from __future__ import annotations

import asyncio

import pytest

from smppbridge.core.errors import ProviderUnavailable, StoreUnavailable
from smppbridge.core.mo import InboundMo
from smppbridge.core.outcomes import Err, SendResult
from smppbridge.providers.simulator.engine import SimEngine
from smppbridge.providers.simulator.provider import SimulatorProvider
from smppbridge.providers.simulator.settings import SimConfig
from smppbridge.smpp.receipts import Stat
from smppbridge.text.content import Kind
from tests.providers.helpers import FakeClock, RecordingSleep, message, settings


def _provider(clock: FakeClock, **sim: object) -> tuple[SimulatorProvider, RecordingSleep]:
    sleep = RecordingSleep()
    s = settings("simulator", simulator=sim)
    return SimulatorProvider(s, clock=clock, sleep=sleep), sleep


async def test_carries_every_kind_and_follows_rules() -> None:
    """All kinds are accepted; numbers matching a send-error rule are REJECTD with err."""
    p, _ = _provider(FakeClock(), rules=[{"pattern": "7666*", "outcome": "moderation"}])
    assert p.kinds == frozenset(Kind)
    out = await p.send([message(str(i), kind=k) for i, k in enumerate(Kind)])
    assert {o.result for o in out} == {SendResult.ACCEPTED}
    [bad] = await p.send([message("x", "76661234567")])
    assert (bad.result, bad.stat, bad.err) == (SendResult.REJECTED, Stat.REJECTD,
                                               Err.MODERATION)


async def test_statuses_evolve_and_hlr_has_fields() -> None:
    """ACCEPTD, ENROUTE at half of deliver_after, then the outcome; HLR carries fields."""
    clock = FakeClock()
    p, _ = _provider(clock, deliver_after=4)
    [o] = await p.send([message("h", "380501234567", "", kind=Kind.HLR)])
    assert [u.stat for u in await p.poll([o.provider_id])] == [Stat.ACCEPTD]
    clock.advance(2)
    assert [u.stat for u in await p.poll([o.provider_id])] == [Stat.ENROUTE]
    clock.advance(2)
    [u] = await p.poll([o.provider_id, "missing"])
    assert (u.stat, u.message_id) == (Stat.DELIVRD, "h")
    assert u.hlr is not None
    assert (u.hlr.mcc, u.hlr.mnc, u.hlr.cn) == ("255", "01", "Ukraine")


async def test_faults_latency_and_outage() -> None:
    """fail_next and down_for raise ProviderUnavailable; latency is awaited; ready()
    is false during an outage."""
    clock = FakeClock()
    p, sleep = _provider(clock, latency=0.25)
    p.engine.control({"fail_next": 1})
    with pytest.raises(ProviderUnavailable, match="HTTP 500"):
        await p.send([message()])
    assert sleep.delays == [0.25]
    p.engine.control({"down_for": 10})
    assert not await p.ready()
    with pytest.raises(ProviderUnavailable, match="down"):
        await p.poll(["1"])
    clock.advance(10)
    assert await p.ready()
    with pytest.raises(ValueError, match="no webhooks"):
        p.parse_webhook(None)  # type: ignore[arg-type]


def test_engine_makes_scheduled_mo_one_per_mo_every() -> None:
    """mo_every = 2: none before 2 s, then one per 2 s passed (from mo_from to mo_to with
    mo_text), counted; 0 makes none."""
    clock = FakeClock()
    engine = SimEngine(SimConfig.from_dict({"mo_every": 2, "mo_to": "5555"}), clock)
    clock.advance(1.9)
    assert engine.due_mo() == []
    clock.advance(4.2)  # 6.1 s: three
    assert engine.due_mo() == [{"from": "79000000001", "to": "5555",
                                "text": "hello from the simulator"}] * 3
    assert engine.counters["mo"] == 3
    engine.control({"mo_every": 0})
    clock.advance(10)
    assert engine.due_mo() == []
    with pytest.raises(ValueError, match="mo_every: expected a number"):
        SimConfig.from_dict({"mo_every": "often"})


async def test_in_process_schedule_hands_mo_to_the_intake_and_retries_a_refused_one() -> None:
    """start_mo: the scheduled MO go to on_mo as InboundMo of this provider (GSM 7-bit
    octets); one the intake could not store is handed again at the next tick."""
    clock = FakeClock()

    async def tick(delay: float) -> None:
        clock.advance(delay)
        await asyncio.sleep(0)

    p = SimulatorProvider(settings("simulator", simulator={"mo_every": 1.0}), clock=clock,
                          sleep=tick)
    got: list[InboundMo] = []
    refused = 0
    three = asyncio.Event()

    async def on_mo(mo: InboundMo) -> None:
        nonlocal refused
        if not refused:
            refused += 1
            raise StoreUnavailable("full")
        got.append(mo)
        if len(got) == 3:
            three.set()

    p.start_mo(on_mo, interval=0.5)
    async with asyncio.timeout(5):
        await three.wait()
    await p.aclose()
    assert refused == 1
    assert {(m.provider, m.destination.addr, m.data_coding) for m in got} == {
        (p.name, "1234", 0)}
    assert got[0].payload == b"hello from the simulator"
