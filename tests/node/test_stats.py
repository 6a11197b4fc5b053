"""The per-second ring of a node's traffic (node/stats.py), read from the process-wide
Prometheus counters."""

from __future__ import annotations

from smppbridge.node.stats import NodeStats
from smppbridge.observability.metrics import METRICS
from smppbridge.smpp.constants import CommandStatus


def _stats() -> NodeStats:
    return NodeStats(lambda: [], lambda: [], clock=lambda: 1_000.0)


def test_counts_from_before_the_node_are_not_its_traffic() -> None:
    """The counters are process-wide: a node started after others (in one test process,
    or a tool) begins from zero, not from what the process counted before it."""
    METRICS.submit("stats-a", CommandStatus.ESME_ROK).inc(40)
    stats = _stats()
    assert stats.tick().submitted == 0


def test_each_tick_holds_that_seconds_differences() -> None:
    """Submits accepted, refusals by status name, sends and finals: each second holds
    what changed since the tick before."""
    stats = _stats()
    METRICS.submit("stats-b", CommandStatus.ESME_ROK).inc(3)
    METRICS.submit("stats-b", CommandStatus.ESME_RTHROTTLED).inc(2)
    METRICS.sent.labels("stats-p").inc(3)
    METRICS.finals.labels("DELIVRD").inc(2)
    METRICS.finals.labels("UNDELIV").inc(1)
    first = stats.tick()
    assert (first.submitted, first.refused, first.sent, first.delivered, first.failed) == (
        3, {"ESME_RTHROTTLED": 2}, 3, 2, 1)
    METRICS.submit("stats-b", CommandStatus.ESME_ROK).inc()
    second = stats.tick()
    assert (second.submitted, second.refused, second.sent) == (1, {}, 0)
    assert [s.submitted for s in stats.last(1)] == [3, 1]
