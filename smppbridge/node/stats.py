"""Per-second counts of this node's traffic for the last hour, in memory.

Theory of operation: once a second :meth:`NodeStats.tick` reads the node's cumulative
counters (the Prometheus counters of submits, sends, final statuses and receipts, and
each bind's and provider's own totals) and keeps the differences in a ring of one
entry per second. Nothing is counted twice and nothing on the hot path changes: the
counters exist anyway; the ring only takes their difference once a second. The
operator API's ``/stats`` and the console's chart read the ring; ``/binds`` and
``/providers`` read the per-bind and per-provider rates from the same ticks.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable

from prometheus_client import Counter

from smppbridge.core.cluster import Second
from smppbridge.observability.metrics import METRICS

__all__ = ["SECONDS_KEPT", "NodeStats"]

#: seconds of history kept (the API serves up to 60 minutes)
SECONDS_KEPT = 3600
#: the per-bind and per-provider rate windows
BIND_RATE_WINDOW = 60
PROVIDER_WINDOW = 300


def _totals(counter: Counter, label: str) -> dict[str, float]:
    """Cumulative value of a labelled counter per value of ``label`` (summed over the
    other labels)."""
    out: dict[str, float] = {}
    for metric in counter.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                key = sample.labels.get(label, "")
                out[key] = out.get(key, 0.0) + sample.value
    return out


class NodeStats:
    """The ring of per-second counts, and the rate windows of binds and providers.

    ``binds`` gives (bind id, cumulative submits) of the open binds; ``providers``
    (name, cumulative accepted, cumulative failed) of the providers.
    """

    def __init__(self, binds: Callable[[], Iterable[tuple[int, int]]],
                 providers: Callable[[], Iterable[tuple[str, int, int]]], *,
                 clock: Callable[[], float] = time.time) -> None:
        self._binds = binds
        self._providers = providers
        self.clock = clock
        self.seconds: deque[Second] = deque(maxlen=SECONDS_KEPT)
        self._last: dict[str, dict[str, float]] = {}
        #: per bind: its submit totals of the last minute, oldest first
        self._bind_window: dict[int, deque[int]] = {}
        #: per provider: (accepted, failed) totals of the last 5 minutes, oldest first
        self._provider_window: dict[str, deque[tuple[int, int]]] = {}
        # The baseline: what the process counted before this node (an earlier node of
        # the same process, in tests and tools) is not this node's traffic.
        self._last = self._read()

    def _read(self) -> dict[str, dict[str, float]]:
        return {"submits": _totals(METRICS.submits, "outcome"),
                "sent": _totals(METRICS.sent, "provider"),
                "finals": _totals(METRICS.finals, "stat"),
                "receipts": _totals(METRICS.receipts, "event")}

    def tick(self) -> Second:
        """Take this second's differences (call once a second)."""
        now = self._read()
        last = self._last or {k: {} for k in now}
        self._last = now

        def delta(family: str, key: str) -> int:
            return int(now[family].get(key, 0.0) - last[family].get(key, 0.0))

        sec = Second(at=int(self.clock()))
        sec.submitted = delta("submits", "accepted")
        for outcome in now["submits"]:
            if outcome != "accepted" and (d := delta("submits", outcome)) > 0:
                sec.refused[outcome] = d
        sec.sent = sum(delta("sent", p) for p in now["sent"])
        for stat in now["finals"]:
            d = delta("finals", stat)
            if stat == "DELIVRD":
                sec.delivered += d
            else:
                sec.failed += d
        sec.receipts_delivered = delta("receipts", "sent")
        self.seconds.append(sec)
        self._tick_windows()
        return sec

    def _tick_windows(self) -> None:
        seen: set[int] = set()
        for bind_id, submitted in self._binds():
            seen.add(bind_id)
            window = self._bind_window.get(bind_id)
            if window is None:
                window = self._bind_window[bind_id] = deque(maxlen=BIND_RATE_WINDOW + 1)
            window.append(submitted)
        for gone in set(self._bind_window) - seen:
            del self._bind_window[gone]
        for name, accepted, failed in self._providers():
            pwindow = self._provider_window.get(name)
            if pwindow is None:
                pwindow = self._provider_window[name] = deque(maxlen=PROVIDER_WINDOW + 1)
            pwindow.append((accepted, failed))

    def last(self, minutes: int) -> list[Second]:
        """The seconds of the last ``minutes`` minutes, oldest first."""
        keep = minutes * 60
        return list(self.seconds)[-keep:]

    def bind_rate(self, bind_id: int) -> float:
        """Submits per second of a bind over the last minute (or since it bound)."""
        window = self._bind_window.get(bind_id)
        if not window or len(window) < 2:
            return 0.0
        return (window[-1] - window[0]) / (len(window) - 1)

    def provider_counts(self, name: str) -> tuple[int, int]:
        """(sent, failed) by a provider over the last 5 minutes (or since start)."""
        window = self._provider_window.get(name)
        if not window:
            return 0, 0
        return window[-1][0] - window[0][0], window[-1][1] - window[0][1]


def percentile(samples: Iterable[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of ``samples`` by nearest rank; None when empty."""
    values = sorted(samples)
    if not values:
        return None
    index = min(len(values) - 1, max(0, round(q * (len(values) - 1))))
    return values[index]


def recent(samples: Iterable[tuple[float, float]], since: float) -> list[float]:
    """The values of (when, value) samples taken at ``since`` or later."""
    return [value for when, value in samples if when >= since]
