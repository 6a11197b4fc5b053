"""What both stores share: settling the futures of callers waiting for a batch, and the
record of an episode of store trouble.

Theory of operation (:class:`StoreHealth`): every failed store operation is counted by
kind (``smppbridge_store_errors_total{kind}``); the first failure opens an *episode* —
one log event ``store.failing`` with the kind and reason, and
``smppbridge_store_failing`` set to 1 — and a success at least ``settle_after`` seconds
after the last failure closes it — one ``store.recovered`` with how long it lasted and
how many operations failed meanwhile. The wait is what a full disk needs: some writes
still fit in freed pages while most fail, and without it the episode (and ``/readyz``)
would flap on every one. So a full disk under load logs two lines, not a traceback per
message, and ``/readyz`` reads :attr:`StoreHealth.trouble`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog

from smppbridge.observability.metrics import METRICS

__all__ = ["StoreHealth", "settle"]

_log = structlog.get_logger("smppbridge.store")
#: seconds without a failure after which a success ends an episode of store trouble
SETTLE_AFTER = 3.0


def settle(fut: asyncio.Future[Any], value: Any, err: BaseException | None) -> None:
    """Resolve ``fut`` with ``value`` or ``err`` unless it is done (cancelled) already."""
    if fut.done():
        return
    if err is not None:
        fut.set_exception(err)
    else:
        fut.set_result(value)


class StoreHealth:
    """Counts store failures by kind and logs each episode once (see the module
    docstring). ``clock`` is monotonic: an episode's length is a duration."""

    def __init__(self, store: str, clock: Any = time.monotonic, *,
                 settle_after: float = SETTLE_AFTER) -> None:
        self.store = store
        self.clock = clock
        self.settle_after = settle_after
        #: why the store refuses writes now ("disk_full: database or disk is full"), or
        #: None while it accepts them
        self.trouble: str | None = None
        self._since = 0.0
        self._last_failure = 0.0
        self._failed = 0

    def failed(self, kind: str, reason: str, count: int = 1) -> None:
        METRICS.store_errors.labels(kind).inc(count)
        self._failed += count
        self._last_failure = self.clock()
        if self.trouble is None:
            self.trouble = f"{kind}: {reason}"
            self._since = self._last_failure
            METRICS.store_failing.set(1)
            _log.error("store.failing", store=self.store, kind=kind, reason=reason)

    def succeeded(self) -> None:
        if self.trouble is None or self.clock() - self._last_failure < self.settle_after:
            return
        _log.warning("store.recovered", store=self.store, trouble=self.trouble,
                     failed_operations=self._failed,
                     seconds=round(self.clock() - self._since, 3))
        self.trouble = None
        self._failed = 0
        METRICS.store_failing.set(0)
