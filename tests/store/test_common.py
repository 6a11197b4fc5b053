"""StoreHealth: an episode of store trouble is logged once when it starts and once when
it ends, counted by kind, and ends only after a quiet spell (no flapping)."""

from __future__ import annotations

from structlog.testing import capture_logs

from smppbridge.observability.metrics import METRICS
from smppbridge.store.common import StoreHealth
from tests.providers.helpers import FakeClock


def _errors(kind: str) -> float:
    return METRICS.store_errors.labels(kind).collect()[0].samples[0].value


def test_an_episode_is_two_log_lines_however_many_failures() -> None:
    """100 failures and a success in between log one store.failing; the episode stays
    open until a success comes settle_after seconds after the last failure, then one
    store.recovered with the count; every failure is counted by kind."""
    clock = FakeClock()
    health = StoreHealth("sqlite", clock, settle_after=3.0)
    before = _errors("disk_full")
    with capture_logs() as logs:
        for i in range(100):
            health.failed("disk_full", "database or disk is full")
            if i == 50:
                health.succeeded()  # a write that still fitted: not the end
            clock.advance(0.01)
        assert health.trouble == "disk_full: database or disk is full"
        clock.advance(1)
        health.succeeded()
        assert health.trouble is not None  # too soon after the last failure
        clock.advance(3)
        health.succeeded()
        assert health.trouble is None
        health.succeeded()
    assert [e["event"] for e in logs] == ["store.failing", "store.recovered"]
    assert logs[1]["failed_operations"] == 100
    assert _errors("disk_full") - before == 100
    assert METRICS.store_failing.collect()[0].samples[0].value == 0
