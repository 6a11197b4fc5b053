"""The node's two readings of time: wall time for dates, steady time for timers.

A date (submitted, sent, done, a timeline entry, the dates in a receipt's text, a
``query_sm`` final date) is *wall* time: what the machine's clock says now, so an NTP
correction shows at once on the wire. A timer (flood windows, long-message windows,
retries, schedule and validity ends, receipt TTLs and retries, leases, the poller's
deadlines) measures a duration, and is kept on *steady* time: the wall time when the
process started plus the monotonic time since. Steady time equals wall time until the
wall clock is stepped (NTP ``makestep``, an operator's ``date -s``); after a step of an
hour either way it is still an hour from "now + 1 h", so no timer fires early or late.

Timers written to the store are steady instants, so they survive a restart as numbers;
a restart re-anchors the steady clock on the wall clock, so a deadline written before a
step and read after a restart moves by the step, once. Nodes of a cluster share timers
through the store: their steady clocks differ by the steps each has seen since it
started (``smppbridge_clock_step_seconds`` shows it; docs/operations.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["CLOCK", "Clock", "StepWatch", "steady", "steady_of", "timer_for"]

#: A reading of time, in seconds.
Reading = Callable[[], float]


class Clock:
    """Wall and steady time from a wall clock and a monotonic clock (both injectable:
    a test steps ``wall`` and leaves ``monotonic`` running)."""

    __slots__ = ("_anchor", "_mono", "wall")

    def __init__(self, wall: Reading = time.time, monotonic: Reading = time.monotonic
                 ) -> None:
        self.wall: Reading = wall
        self._mono = monotonic
        self._anchor = wall() - monotonic()

    def steady(self) -> float:
        """Seconds on the steady timeline (UNIX seconds while the clock is not stepped)."""
        return self._anchor + self._mono()

    def step(self) -> float:
        """How far the wall clock has been stepped since this clock started (wall −
        steady; a few milliseconds of drift at most while nobody steps it)."""
        return self.wall() - self.steady()


class StepWatch:
    """Notices a step of ``clock``'s wall clock: :meth:`check` returns how far it moved
    since the last step seen (once per step), or None. ``tolerance``: drift that is not
    a step (NTP slews the wall clock a little faster or slower than the monotonic one)."""

    __slots__ = ("clock", "seen", "tolerance")

    def __init__(self, clock: Clock, tolerance: float = 1.0) -> None:
        self.clock = clock
        self.tolerance = tolerance
        self.seen = clock.step()

    def check(self) -> float | None:
        step = self.clock.step()
        moved = step - self.seen
        if abs(moved) <= self.tolerance:
            return None
        self.seen = step
        return moved


#: The process's clock: dates from ``time.time``, timers anchored when it was imported.
CLOCK = Clock()


def steady() -> float:
    """:meth:`Clock.steady` of :data:`CLOCK`."""
    return CLOCK.steady()


def timer_for(clock: Reading, timer: Reading | None) -> Reading:
    """The timer of a component given its wall ``clock``: ``timer`` if given; else
    steady time for the real wall clock, and ``clock`` itself for a test's fake clock
    (one fake timeline for both, as before the two were told apart)."""
    if timer is not None:
        return timer
    return steady if clock is time.time else clock


def steady_of(wall_at: float, wall_now: float, steady_now: float) -> float:
    """The steady instant of the wall date ``wall_at`` (an absolute schedule or validity
    time an ESME sent, a date read back from the store), given both readings of now."""
    return wall_at - wall_now + steady_now
