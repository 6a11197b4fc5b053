"""The status poller: asks providers for the status of the messages they took.

Theory of operation: every tracked message has a due time. The first poll
is ``poll_interval`` after sending; each poll that brings no final status doubles the
interval up to ``poll_max_interval`` (old messages are asked less often). Due messages
are grouped per provider and asked ``poll_batch`` ids per request. A message stops being
polled at its final status, or at its deadline: validity end + ``status_grace``, or
``max_status_age`` when it has no validity; then it ends EXPIRED (validity passed) or
UNKNOWN (we stopped waiting), err 003, so every message gets a final receipt.

A message sent to a provider that is no longer configured (removed by a reload, or
from the file a restarted node reads) cannot be asked: it is followed without polls and
ends at its deadline as above, by the default ``max_status_age``/``status_grace`` when
the provider's own are gone, so it is neither lost nor left ``sent`` for ever.

Each provider module maps its own API's statuses to the receipt's ``stat``/``err``
(docs/providers.md, *Status mapping*).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Final

import structlog

from smppbridge.core.clock import timer_for
from smppbridge.core.errors import ProviderError, StoreUnavailable
from smppbridge.core.outcomes import Err, StatusUpdate
from smppbridge.core.provider_settings import ProviderSettings
from smppbridge.observability.metrics import METRICS
from smppbridge.smpp.receipts import Stat

if TYPE_CHECKING:
    from smppbridge.core.ports import Provider

__all__ = ["OnUpdate", "OnUpdates", "StatusPoller"]

_log = structlog.get_logger()
#: seconds before a status that could not be written (store trouble) is asked again
STORE_RETRY = 2.0

# --- the poller ---------------------------------------------------------------------------

#: Called with the provider's name and an update (``message_id`` filled in when known).
OnUpdate = Callable[[str, StatusUpdate], Awaitable[None]]
#: The same for every update of one poll answer at once (one store transaction).
OnUpdates = Callable[[str, Sequence[StatusUpdate]], Awaitable[None]]


#: One message followed: a plain tuple ``(provider, provider_id, message_id, deadline,
#: validity, interval, due, last)``, replaced and never changed in place; ``last`` is the
#: (stat value, err) of the last status reported, or None. An exact tuple of plain values
#: is dropped from the garbage collector's lists after one look (a class instance, or
#: even a NamedTuple, is walked by every collection of its generation): thousands are
#: alive at once for a second or more, and were ~12 % of what each young collection
#: walked at 5,000 msg/s (docs/performance.md).
_Tracked = tuple[str, str, str, float, bool, float, float, "tuple[str, int] | None"]
_PROVIDER: Final = 0
_PROVIDER_ID: Final = 1
_MESSAGE_ID: Final = 2
_DEADLINE: Final = 3
_INTERVAL: Final = 5
_DUE: Final = 6
_LAST: Final = 7


class StatusPoller:
    """Asks providers for statuses until each message is final; see the module docstring.

    Deadlines and poll times are steady time (``timer``, core.clock), as are the
    validity ends and ``sent_at`` given to :meth:`track`; ``clock`` (wall time) dates
    the final status of a message given up on.
    """

    def __init__(self, providers: Mapping[str, Provider],
                 settings: Mapping[str, ProviderSettings], on_update: OnUpdate,
                 on_updates: OnUpdates | None = None, *,
                 clock: Callable[[], float] = time.time,
                 timer: Callable[[], float] | None = None) -> None:
        self.providers = providers
        self.settings = settings
        self.on_update = on_update
        #: optional batch form of on_update, used for the updates of one poll answer
        self.on_updates = on_updates
        self.clock = clock
        self.timer = timer_for(clock, timer)
        self._items: dict[tuple[str, str], _Tracked] = {}
        self._heap: list[tuple[float, int, tuple[str, str]]] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def track(self, provider: str, provider_id: str, message_id: str, *,
              sent_at: float | None = None, expire_at: float | None = None) -> None:
        """Start following a message the provider accepted."""
        s = self._settings(provider)
        sent = self.timer() if sent_at is None else sent_at
        deadline = (expire_at + s.status_grace if expire_at is not None
                    else sent + s.max_status_age)
        # A provider no longer configured cannot be asked: wait for the deadline only.
        interval = s.poll_interval if provider in self.providers else 0.0
        due = min(sent + interval, deadline) if interval > 0 else deadline
        item: _Tracked = (provider, provider_id, message_id, deadline, expire_at is not None,
                          interval, due, None)
        key = (provider, provider_id)
        known = self._items.get(key)
        if known is not None and known[_MESSAGE_ID] != message_id:
            self._conflict(known, message_id)
        self._items[key] = item
        self._push(item)

    def _settings(self, provider: str) -> ProviderSettings:
        """The provider's settings, or the defaults when it is no longer configured."""
        s = self.settings.get(provider)
        return s if s is not None else ProviderSettings(name=provider, type="gone")

    def _conflict(self, known: _Tracked, message_id: str) -> None:
        """A provider id already followed for another message (a provider that reused
        its ids). Its statuses now go to the newer message, said out loud; the older one
        is no longer polled — nothing would tell its statuses apart — and ends UNKNOWN
        err 003 at its deadline, as a message with no final status does."""
        provider, provider_id, older, deadline, validity, _, _, last = known
        METRICS.provider_id_conflicts.labels(provider).inc()
        _log.warning("provider.id_conflict", provider=provider, provider_id=provider_id,
                     message_id=message_id, other_message_id=older)
        parked: _Tracked = (provider, f"{provider_id}\x00{older}", older, deadline, validity,
                            0.0, deadline, last)
        self._items[(provider, parked[_PROVIDER_ID])] = parked
        self._push(parked)

    def forget(self, provider: str, provider_id: str) -> None:
        """Stop following (a webhook brought the final status)."""
        self._items.pop((provider, provider_id), None)

    def next_due(self) -> float | None:
        while self._heap:
            due, _, key = self._heap[0]
            item = self._items.get(key)
            if item is not None and item[_DUE] == due:
                return due
            heapq.heappop(self._heap)  # stale entry
        return None

    def _push(self, item: _Tracked) -> None:
        heapq.heappush(self._heap, (item[_DUE], next(self._seq),
                                    (item[_PROVIDER], item[_PROVIDER_ID])))
        self._wake.set()

    async def poll_due(self) -> int:
        """Poll every message due now; returns how many updates were reported."""
        now = self.timer()
        due: dict[str, list[_Tracked]] = {}
        while (when := self.next_due()) is not None and when <= now:
            _, _, key = heapq.heappop(self._heap)
            item = self._items[key]
            due.setdefault(item[_PROVIDER], []).append(item)
        counts = await asyncio.gather(*(self._poll_provider(name, items, now)
                                        for name, items in due.items()))
        return sum(counts)

    async def _poll_provider(self, name: str, items: list[_Tracked], now: float) -> int:
        s = self._settings(name)
        reported = 0
        #: statuses that could not be written: asked again soon, not on the schedule
        again: set[tuple[str, str]] = set()
        pollable = ([i for i in items if i[_INTERVAL] > 0 and i[_DEADLINE] > now]
                    if name in self.providers else [])
        for start in range(0, len(pollable), s.poll_batch):
            chunk = pollable[start:start + s.poll_batch]
            try:
                updates = await self.providers[name].poll([i[_PROVIDER_ID] for i in chunk])
            except ProviderError as exc:
                _log.warning("status.poll_failed", provider=name, error=str(exc),
                             ids=len(chunk))
                continue
            was: list[_Tracked] = []
            changed: list[StatusUpdate] = []
            for update in updates:
                item = self._items.get((name, update.provider_id))
                if item is not None and (u := self._note(item, update)) is not None:
                    was.append(item)
                    changed.append(u)
            if not changed:
                continue
            try:
                if self.on_updates is not None:
                    await self.on_updates(name, changed)
                else:
                    # Concurrently: each ends in store writes, and concurrent writes
                    # share one group commit (one by one, a commit per update capped
                    # receipts near 800/s).
                    await asyncio.gather(*(self.on_update(name, u) for u in changed))
            except StoreUnavailable as exc:
                # Not written (the store logs the episode): follow these messages as
                # they were, and ask the provider again shortly — the status is not
                # lost with the write.
                _log.debug("status.store_unavailable", provider=name, error=str(exc),
                           updates=len(changed))
                self._follow_again(was, now + STORE_RETRY)
                again.update((i[_PROVIDER], i[_PROVIDER_ID]) for i in was)
                continue
            reported += len(changed)
        for polled in items:
            key = (polled[_PROVIDER], polled[_PROVIDER_ID])
            item = self._items.get(key)  # the latest (a status may have replaced it)
            if item is None or key in again:
                continue
            p, pid, mid, deadline, validity, interval, _, last = item
            if now >= deadline:
                reported += await self._give_up(item)
            else:
                interval = min(interval * 2, s.poll_max_interval)
                later = (p, pid, mid, deadline, validity, interval,
                         min(now + interval, deadline), last)
                self._items[key] = later
                self._push(later)
        return reported

    def _note(self, item: _Tracked, update: StatusUpdate) -> StatusUpdate | None:
        """Record ``update`` of ``item``; the update to report (with its message id),
        or None when it repeats the last one."""
        update = dataclasses.replace(update, message_id=update.message_id or item[_MESSAGE_ID],
                                     source="poll")
        last = (update.stat.value, int(update.err))
        changed = item[_LAST] != last
        if update.final:
            self.forget(item[_PROVIDER], item[_PROVIDER_ID])
        elif changed:
            p, pid, mid, deadline, validity, interval, due, _ = item
            self._items[(p, pid)] = (p, pid, mid, deadline, validity, interval, due, last)
        return update if changed else None

    async def _give_up(self, item: _Tracked) -> int:
        provider, provider_id, message_id, _, validity, _, _, last = item
        self.forget(provider, provider_id)
        if last is not None and last[1] == Err.PARTLY_DELIVERED:
            stat, err = Stat.UNKNOWN, Err.PARTLY_DELIVERED
        else:
            stat = Stat.EXPIRED if validity else Stat.UNKNOWN
            err = Err.NO_FINAL_STATUS
        _log.debug("status.gave_up", provider=provider, provider_id=provider_id,
                   stat=stat.value)
        try:
            await self.on_update(provider, StatusUpdate(
                provider_id, stat, err, "no final status before the deadline",
                done_at=self.clock(), message_id=message_id, source="deadline"))
        except StoreUnavailable:
            self._follow_again([item], self.timer() + STORE_RETRY)
            return 0
        return 1

    def _follow_again(self, items: Sequence[_Tracked], due: float) -> None:
        """Track ``items`` again as they were, due at ``due`` (a status that could not
        be written)."""
        for p, pid, mid, deadline, validity, interval, _, last in items:
            again = (p, pid, mid, deadline, validity, interval, due, last)
            self._items[(p, pid)] = again
            self._push(again)

    async def run(self) -> None:
        """Poll forever (until cancelled), sleeping until the next due message."""
        while True:
            self._wake.clear()
            nxt = self.next_due()
            delay = None if nxt is None else max(0.0, nxt - self.timer())
            if delay is None or delay > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                continue
            try:
                await self.poll_due()
            except Exception:
                _log.exception("status.poll_crashed")


