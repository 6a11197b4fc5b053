"""Upstream message ids ↔ our messages, and receipts ↔ statuses; pure (time is a
parameter), one per smpp provider.

* :meth:`Correlator.sent` registers the id a submit_sm_resp gave one part of a message,
  under :func:`~smppbridge.smpp.receipts.id_keys` (the exact normalised id first, then
  its hex/decimal readings), and returns the status of any receipt that was waiting
  for it.
* :meth:`Correlator.receipt` turns a receipt into our status when its id is known; a
  receipt for an id not known yet is *held* (an upstream may send the receipt before
  the submit_sm_resp) in a map bounded in size and time.
* :meth:`Correlator.expire` gives back the held receipts whose time is up: the provider
  hands them to the store lookup (a message sent before a restart), where an unknown
  id ends as counted and logged.

A message of several parts gets its final status once every part's final receipt is
in: DELIVRD when all parts were delivered, else the first part's that was not.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from smppbridge.core.outcomes import StatusUpdate
from smppbridge.smpp.receipts import Stat, UpstreamReceipt, id_keys, normalise_id

__all__ = ["Correlator", "Tracked"]


@dataclass(slots=True)
class Tracked:
    """One of our messages sent upstream, waiting for its parts' receipts."""

    message_id: str
    parts: int
    #: the first part's normalised upstream id: the message's provider_id in the store
    provider_id: str = ""
    finals: list[tuple[Stat, int] | None] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)


class Correlator:
    """See the module docstring. ``sent_max``: messages followed at once (the oldest
    are dropped beyond it; their receipts then go to the store lookup)."""

    def __init__(self, *, early_ttl: float = 10.0, early_max: int = 100_000,
                 sent_max: int = 1_000_000) -> None:
        self.early_ttl = early_ttl
        self.early_max = early_max
        self.sent_max = sent_max
        self._by_key: dict[str, tuple[Tracked, int]] = {}
        self._tracked: OrderedDict[int, Tracked] = OrderedDict()
        self._early: OrderedDict[str, tuple[UpstreamReceipt, float]] = OrderedDict()
        self.matched = 0
        self.matched_early = 0
        self.held = 0

    @property
    def following(self) -> int:
        return len(self._tracked)

    @property
    def holding(self) -> int:
        return len(self._early)

    def track(self, message_id: str, parts: int) -> Tracked:
        t = Tracked(message_id, parts, finals=[None] * parts)
        self._tracked[id(t)] = t
        while len(self._tracked) > self.sent_max:
            _, old = self._tracked.popitem(last=False)
            self._forget(old)
        return t

    def sent(self, t: Tracked, part: int, upstream_id: str, now: float
             ) -> list[tuple[StatusUpdate | None, str]]:
        """Part ``part`` of ``t`` got ``upstream_id``; the held receipt now matched
        (usually none), as (status or None, the key it was held under)."""
        keys = id_keys(upstream_id)
        if part == 0:
            t.provider_id = keys[0]
        # The exact reading wins over another id's alternative reading.
        self._by_key[keys[0]] = (t, part)
        t.keys.append(keys[0])
        for k in keys[1:]:
            if k not in self._by_key:
                self._by_key[k] = (t, part)
                t.keys.append(k)
        for k in keys:
            waiting = self._early.pop(k, None)
            if waiting is not None:
                self.matched_early += 1
                return [(self._apply(t, part, waiting[0]), k)]
        return []

    def abandon(self, t: Tracked) -> None:
        """The message was not (wholly) accepted upstream: stop following it."""
        self._tracked.pop(id(t), None)
        self._forget(t)

    def receipt(self, r: UpstreamReceipt, now: float) -> StatusUpdate | None:
        """Our status for receipt ``r``, or None (held, or a part of a message whose
        other parts are still due)."""
        for k in id_keys(r.message_id):
            hit = self._by_key.get(k)
            if hit is not None:
                self.matched += 1
                return self._apply(hit[0], hit[1], r)
        self.held += 1
        key = normalise_id(r.message_id)
        self._early.pop(key, None)
        self._early[key] = (r, now + self.early_ttl)
        return None

    def is_held(self, message_id: str) -> bool:
        return normalise_id(message_id) in self._early

    def expire(self, now: float) -> list[UpstreamReceipt]:
        """Held receipts whose time is up, or beyond ``early_max``, oldest first."""
        out: list[UpstreamReceipt] = []
        early = self._early
        while early:
            key, (r, deadline) = next(iter(early.items()))
            if deadline > now and len(early) <= self.early_max:
                break
            del early[key]
            out.append(r)
        return out

    def next_expiry(self) -> float | None:
        if not self._early:
            return None
        return next(iter(self._early.values()))[1]

    def _apply(self, t: Tracked, part: int, r: UpstreamReceipt) -> StatusUpdate | None:
        if not r.stat.final:
            if t.parts == 1:
                return StatusUpdate(t.provider_id, r.stat, r.err, "upstream receipt",
                                    message_id=t.message_id, source="receipt")
            return None
        t.finals[part] = (r.stat, r.err)
        if any(f is None for f in t.finals):
            return None
        self._tracked.pop(id(t), None)
        self._forget(t)
        finals = [f for f in t.finals if f is not None]
        stat, err = next((f for f in finals if f[0] is not Stat.DELIVRD), finals[0])
        detail = "upstream receipt" if t.parts == 1 else f"upstream receipts of {t.parts} parts"
        return StatusUpdate(t.provider_id, stat, err, detail, message_id=t.message_id,
                            source="receipt")

    def _forget(self, t: Tracked) -> None:
        for k in t.keys:
            hit = self._by_key.get(k)
            if hit is not None and hit[0] is t:
                del self._by_key[k]
        t.keys.clear()
