"""The latency histogram: bounded memory, percentiles within its 1 % step."""

from __future__ import annotations

import pytest

from smppbridge.bench.latency import LatencyHistogram


def test_percentiles_are_within_one_percent():
    """p50/p99 of 1..10,000 ms are reported within 1 % and max exactly."""
    h = LatencyHistogram()
    for ms in range(1, 10_001):
        h.record(ms / 1000)
    s = h.summary()
    assert s.count == 10_000
    assert s.p50_ms == pytest.approx(5000, rel=0.01)
    assert s.p99_ms == pytest.approx(9900, rel=0.01)
    assert s.max_ms == 10_000
    assert s.mean_ms == pytest.approx(5000.5)


def test_empty_and_extreme_samples():
    """An empty histogram reports zeros; sub-microsecond samples read as at most 1 µs,
    and a sample past the last bucket still reads back as the exact max."""
    h = LatencyHistogram()
    assert h.summary().p99_ms == 0.0
    h.record(1e-9)
    h.record(5000.0)
    assert h.percentile(100) == 5000.0
    assert h.percentile(1) <= 1e-6


def test_merge_adds_samples():
    """merge() combines counts, totals and extremes of two histograms."""
    a, b = LatencyHistogram(), LatencyHistogram()
    a.record(0.001)
    b.record(0.003)
    a.merge(b)
    assert a.count == 2
    assert a.max == 0.003
    assert a.min == 0.001
