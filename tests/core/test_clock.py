"""core.clock: wall time for dates, steady time for timers."""

from __future__ import annotations

import time

import pytest

from smppbridge.core.clock import CLOCK, Clock, StepWatch, steady, steady_of, timer_for


class Hand:
    """A clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_steady_time_follows_the_monotonic_clock_through_wall_steps() -> None:
    """Steady time starts at the wall time and then moves only with the monotonic clock;
    ``step`` says how far the wall clock was stepped."""
    wall, mono = Hand(1_700_000_000.0), Hand(50.0)
    clock = Clock(wall, mono)
    assert clock.steady() == 1_700_000_000.0
    assert clock.step() == 0.0
    mono.now += 10
    wall.now += 10 + 3600  # ten seconds pass, and NTP steps the clock an hour forward
    assert clock.steady() == 1_700_000_010.0
    assert clock.wall() == 1_700_003_610.0
    assert clock.step() == 3600.0
    mono.now += 5
    wall.now -= 7200 - 5  # and two hours back
    assert clock.steady() == 1_700_000_015.0
    assert clock.step() == -3600.0


def test_a_wall_date_converts_to_the_same_instant_on_steady_time() -> None:
    """An absolute date (a schedule_delivery_time) lands as far after steady now as it
    is after wall now."""
    assert steady_of(1_000_600.0, 1_000_000.0, 400_000.0) == 400_600.0


def test_the_process_clock_is_the_machine_clock_until_stepped() -> None:
    assert abs(CLOCK.step()) < 1.0
    assert abs(steady() - time.time()) < 1.0


def test_a_fake_wall_clock_times_its_own_timers() -> None:
    """Components given a test's clock and no timer keep one fake timeline; the real
    wall clock gets steady time."""
    fake = Hand(5.0)
    timer = Hand(7.0)
    assert timer_for(fake, None) is fake
    assert timer_for(fake, timer) is timer
    assert timer_for(time.time, None) is steady


def test_a_step_is_noticed_once_and_drift_is_not_a_step() -> None:
    """StepWatch reports a step of the wall clock once, with its size, and ignores the
    sub-second drift of a clock NTP slews."""
    wall, mono = Hand(1_000.0), Hand(0.0)
    watch = StepWatch(Clock(wall, mono))
    mono.now, wall.now = 10.0, 1_010.4  # drift
    assert watch.check() is None
    wall.now += 3600
    assert watch.check() == pytest.approx(3600.4)  # the drift so far comes with it
    assert watch.check() is None
    wall.now -= 7200
    assert watch.check() == pytest.approx(-7200.0)
