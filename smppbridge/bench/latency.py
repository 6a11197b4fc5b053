"""A log-bucketed latency histogram: bounded memory however long the run.

A soak at tens of thousands of submits per second would keep millions of samples; the
histogram keeps one counter per 1 % step instead, so percentiles are within 1 % of the
exact value while the count, mean and maximum stay exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["LatencyHistogram", "LatencySummary"]

#: Relative width of a bucket: percentiles are reported within this factor.
_STEP = 1.01
_K = 1.0 / math.log(_STEP)
#: Buckets up to 1000 s in microseconds (log(1e9) / log(1.01) ≈ 2083); longer samples
#: land in the last bucket (the maximum is still exact).
_BUCKETS = int(math.log(1e9) * _K) + 2


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Milliseconds."""

    count: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float


class LatencyHistogram:
    """Record seconds with :meth:`record`; read percentiles with :meth:`percentile`."""

    __slots__ = ("_buckets", "count", "max", "min", "total")

    def __init__(self) -> None:
        self._buckets = [0] * _BUCKETS
        self.count = 0
        self.total = 0.0
        self.max = 0.0
        self.min = math.inf

    def record(self, seconds: float) -> None:
        us = seconds * 1e6
        index = int(math.log(us) * _K) if us > 1.0 else 0
        if index >= _BUCKETS:
            index = _BUCKETS - 1
        self._buckets[index] += 1
        self.count += 1
        self.total += seconds
        self.max = max(self.max, seconds)
        self.min = min(self.min, seconds)

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (0-100) in seconds, by nearest rank; 0 when empty.

        The value is the geometric middle of its bucket, clamped to the exact minimum
        and maximum.
        """
        if not self.count:
            return 0.0
        rank = max(1, math.ceil(q / 100.0 * self.count))
        seen = 0
        for index, n in enumerate(self._buckets):
            seen += n
            if seen >= rank:
                if index == _BUCKETS - 1:
                    return self.max  # the overflow bucket has no upper edge
                value = math.exp((index + 0.5) / _K) / 1e6 if index else 1e-6
                return min(max(value, self.min), self.max)
        return self.max

    def merge(self, other: LatencyHistogram) -> None:
        """Add ``other``'s samples to this histogram."""
        for i, n in enumerate(other._buckets):
            if n:
                self._buckets[i] += n
        self.count += other.count
        self.total += other.total
        self.max = max(self.max, other.max)
        self.min = min(self.min, other.min)

    def summary(self) -> LatencySummary:
        ms = 1000.0
        return LatencySummary(
            count=self.count,
            mean_ms=self.total / self.count * ms if self.count else 0.0,
            p50_ms=self.percentile(50) * ms,
            p90_ms=self.percentile(90) * ms,
            p99_ms=self.percentile(99) * ms,
            max_ms=self.max * ms,
        )
