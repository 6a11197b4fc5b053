"""A step of the wall clock an hour either way changes no timer of the submit side —
the flood rules' windows, the long-message window, validity ends — and the dates of a
message are the stepped wall clock's (core.clock)."""

from __future__ import annotations

import dataclasses
import itertools
import time

import pytest

from smppbridge.core.clock import Clock
from smppbridge.ingest.submit import ContentHandler
from smppbridge.smpp.constants import CommandStatus
from smppbridge.testing import MemorySink
from smppbridge.text.concat import ReassemblyConfig
from tests.core.test_clock import Hand
from tests.ingest.test_submit import context, long_parts, submit_sm

S = CommandStatus
HOUR = 3600.0
T0 = 1_700_000_000.0


class Stepped:
    """A handler on a wall clock the test steps and a monotonic clock it advances."""

    def __init__(self) -> None:
        self.wall, self.mono = Hand(T0), Hand(0.0)
        self.clock = Clock(self.wall, self.mono)
        self.sink = MemorySink()
        ids = itertools.count(1)
        self.handler = ContentHandler(self.sink, new_id=lambda ctx: f"id{next(ids)}",
                                      reassembly=ReassemblyConfig(window=60.0),
                                      clock=self.clock.wall, timer=self.clock.steady)

    def step(self, *, passed: float, stepped: float = 0.0) -> None:
        self.mono.now += passed
        self.wall.now += passed + stepped


@pytest.mark.parametrize("stepped", [HOUR, -HOUR])
async def test_the_duplicate_window_is_sixty_seconds_of_steady_time(stepped: float) -> None:
    """The same text 10 s later is a duplicate though the wall clock moved an hour; 60 s
    after the first (really) it is accepted."""
    h = Stepped()
    assert (await h.handler.submit(context(), submit_sm(b"same"))).ok
    h.step(passed=10, stepped=stepped)
    assert (await h.handler.submit(context(), submit_sm(b"same"))).status == \
        S.VENDOR_DUPLICATE
    h.step(passed=50)
    assert (await h.handler.submit(context(), submit_sm(b"same"))).ok


async def test_the_flood_pause_is_measured_on_steady_time() -> None:
    """50 messages to one destination, then a step an hour forward: that is no 30 s
    pause, so the 51st is still refused as a flood."""
    h = Stepped()
    for i in range(50):
        h.step(passed=0.1)
        assert (await h.handler.submit(context(), submit_sm(f"m{i}".encode()))).ok
    h.step(passed=1, stepped=HOUR)
    assert (await h.handler.submit(context(), submit_sm(b"m50"))).status == \
        S.VENDOR_SUBSCRIBER_FLOOD


async def test_a_long_message_window_survives_a_step_forward() -> None:
    """Part 1, a step of an hour forward, the expiry pass, part 2: the message is whole
    (its window is 60 s of steady time), dated by the wall clock when part 1 came."""
    h = Stepped()
    first, second = long_parts("x" * 200)
    assert (await h.handler.submit(context(), first)).ok
    h.step(passed=5, stepped=HOUR)
    assert await h.handler.expire() == 0
    assert (await h.handler.submit(context(), second)).ok
    (message,) = h.sink.messages.values()
    assert message.submitted_at == T0
    assert h.sink.failures == []
    h2 = Stepped()
    assert (await h2.handler.submit(context(), first)).ok
    h2.step(passed=61, stepped=-HOUR)  # a minute really passed, the wall went back
    assert await h2.handler.expire() == 1


async def test_validity_and_schedule_land_on_steady_time() -> None:
    """A relative validity of 10 minutes ends 600 s after the submit on steady time; an
    absolute schedule time (a wall date) lands as far ahead on steady time; the submit
    date is the wall date."""
    h = Stepped()
    h.step(passed=100, stepped=HOUR)  # stepped before the submit: steady = wall - 1 h
    when = time.strftime("%y%m%d%H%M%S", time.gmtime(h.wall.now + 120)) + "000+"
    pdu = dataclasses.replace(submit_sm(b"later"), validity_period="000000001000000R",
                              schedule_delivery_time=when)
    assert (await h.handler.submit(context(), pdu)).ok
    (message,) = h.sink.messages.values()
    steady_now = h.clock.steady()
    assert message.submitted_at == h.wall.now
    assert message.expire_at == steady_now + 600
    assert message.schedule_at == steady_now + 120

