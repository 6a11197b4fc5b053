"""Flood rules per account: duplicates and subscriber floods (docs/content.md).

Theory of operation
-------------------
Two rules from the SMS Center API (docs/content.md, Flood rules), applied to
every whole message (after reassembly, macros and comment), before it is stored:

* **Duplicate.** A message with the same account, source, destination and full decoded
  text (comment included: two orders with the same SMS but different comments are two
  requests) within ``duplicate_window`` seconds of the *first* accepted one is refused.
  The window runs from the first accepted copy; refused copies do not extend it.
* **Subscriber flood.** Messages to one destination of the account form a *streak* while
  each comes less than ``flood_gap`` seconds after the previous one. Attempts beyond
  ``flood_limit`` in a streak are refused; only a pause of ``flood_gap`` or more ends the
  streak. Every attempt counts and moves "previous" forward — including refused ones
  (a client that keeps hammering stays blocked) and refused *duplicates* (a looping
  client re-sending the same text is exactly the flood the rule is for).

A message refused by the flood rule is not recorded as a duplicate candidate, so
re-sending it after the pause is accepted. When a later stage refuses a message the
rules accepted (no route, store down), :meth:`FloodState.release` forgets its duplicate
record so the ESME's retry is not refused as a duplicate of a message never sent.

State sits behind the :class:`FloodState` protocol because it must be shared by all
nodes of a cluster (the Redis implementation); :class:`MemoryFloodState` is the
single-node one. Texts are kept as a BLAKE2b digest, never in full.
"""

from __future__ import annotations

import hashlib
from typing import Any

from smppbridge.core.accounts import FloodRules
from smppbridge.smpp.constants import CommandStatus
from smppbridge.text.encoding import ContentError

__all__ = [
    "DuplicateMessage",
    "MemoryFloodState",
    "SubscriberFlood",
    "flood_error",
    "text_digest",
]

_DIGEST_SIZE = 16  # 128 bits: collisions between two texts are not a practical concern


class DuplicateMessage(ContentError):
    """Same message again within the duplicate window."""

    status = CommandStatus.VENDOR_DUPLICATE


class SubscriberFlood(ContentError):
    """Too many messages to one destination without a pause."""

    status = CommandStatus.VENDOR_SUBSCRIBER_FLOOD


def text_digest(text: str) -> bytes:
    """The key of a text for the duplicate rule (``surrogatepass``: any str hashes)."""
    return hashlib.blake2b(
        text.encode("utf-8", "surrogatepass"), digest_size=_DIGEST_SIZE
    ).digest()


def flood_error(status: int, rules: FloodRules) -> ContentError | None:
    """The exception for a :meth:`FloodState.check_and_record` result (None for OK)."""
    if status == CommandStatus.ESME_ROK:
        return None
    if status == rules.duplicate_status:
        return DuplicateMessage("duplicate message within the duplicate window", status=status)
    return SubscriberFlood("too many messages to this destination", status=status)


#: The in-process records are plain numbers under bytes and str keys: the garbage
#: collector never tracks a dict of those (no container inside), so neither young nor
#: full collections walk the hundreds of thousands of records a busy window holds.
#: Objects or tuples as records made every full collection longer (pauses of hundreds
#: of ms in a soak at 1,000 msg/s) and cost ~450 bytes a message at 5,000/s.


class MemoryFloodState:
    """In-process :class:`FloodState` with bounded memory.

    Entries are swept once their window has passed (every ``sweep_interval`` seconds of
    the callers' clock), and when more than ``max_entries`` remain the oldest are
    dropped — which can only let a message through, never refuse one wrongly.
    Safe under asyncio: no method awaits between reading and writing the state.
    """

    #: check_and_record never suspends: callers may check a batch in order without a
    #: task each (ContentHandler.submit_many)
    immediate = True

    def __init__(self, *, max_entries: int = 1_000_000, sweep_interval: float = 10.0) -> None:
        self.max_entries = max_entries
        self.sweep_interval = sweep_interval
        #: duplicate window -> {duplicate key: first accepted at}, oldest first. One
        #: 16-byte key and one float an entry (see _duplicate_key); the window at
        #: recording time is the dict's, so the forget time is ``first + window``.
        self._duplicates: dict[float, dict[bytes, float]] = {}
        #: flood gap -> {streak key: last attempt at}, least recently updated first;
        #: the gap at recording time is the dict's (forget at ``last + gap``)
        self._streaks: dict[float, dict[str, float]] = {}
        #: streak key -> attempts in the streak, only for streaks of two or more
        self._counts: dict[str, int] = {}
        self._next_sweep = float("-inf")

    def __len__(self) -> int:
        return (sum(map(len, self._duplicates.values()))
                + sum(map(len, self._streaks.values())))

    async def check_and_record(
        self,
        *,
        account: str,
        source: str,
        destination: str,
        text_digest: bytes,
        now: float,
        rules: FloodRules,
    ) -> int:
        if not rules.enabled:
            return CommandStatus.ESME_ROK
        self._sweep(now)
        skey = f"{len(account)}:{account}{destination}"
        last = None
        for lasts in self._streaks.values():  # one dict unless gaps differ
            last = lasts.pop(skey, None)
            if last is not None:
                break
        # Only a pause of flood_gap or more ends a streak (SMS Center rule).
        if last is None or now - last >= rules.flood_gap:
            count = 1
            self._counts.pop(skey, None)
        else:
            count = self._counts.get(skey, 1) + 1
            self._counts[skey] = count
        self._streaks.setdefault(rules.flood_gap, {})[skey] = now
        dkey = _duplicate_key(account, source, destination, text_digest)
        window = rules.duplicate_window
        first = self._first_accepted(dkey) if window > 0 else None
        if first is not None and now - first < window:
            status = rules.duplicate_status
        elif rules.flood_limit > 0 and count > rules.flood_limit:
            status = rules.flood_status
        else:
            status = CommandStatus.ESME_ROK
            if window > 0:
                for firsts in self._duplicates.values():  # re-insert: oldest first
                    firsts.pop(dkey, None)
                self._duplicates.setdefault(window, {})[dkey] = now
        self._trim()
        return status

    async def release(
        self, *, account: str, source: str, destination: str, text_digest: bytes,
        recorded_at: float,
    ) -> None:
        dkey = _duplicate_key(account, source, destination, text_digest)
        for entries in self._duplicates.values():
            if entries.get(dkey) == recorded_at:
                del entries[dkey]

    def _first_accepted(self, dkey: bytes) -> float | None:
        """When the message of ``dkey`` was first accepted (None: not recorded)."""
        for entries in self._duplicates.values():  # one dict unless windows differ
            first = entries.get(dkey)
            if first is not None:
                return first
        return None

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.sweep_interval
        # Both dicts are oldest-first (an entry is re-inserted when renewed), so the
        # expired ones are at the front: drop from there and stop at the first live one.
        # A scan of every entry stalled the event loop for tens of ms every sweep at
        # 3,000 msg/s (180,000 duplicate records in a 60 s window). An entry with a
        # longer window than the ones after it (accounts differ) only holds those back
        # until it expires itself: memory, never a verdict — checks compare the times.
        for window, firsts in self._duplicates.items():
            _drop_expired(firsts, window, now)
        for gap, lasts in self._streaks.items():
            for key in _drop_expired(lasts, gap, now):
                self._counts.pop(key, None)

    def _trim(self) -> None:
        for entries in self._duplicates.values():
            while len(entries) > self.max_entries:
                del entries[next(iter(entries))]
        for lasts in self._streaks.values():
            while len(lasts) > self.max_entries:
                key = next(iter(lasts))
                del lasts[key]
                self._counts.pop(key, None)


def _duplicate_key(account: str, source: str, destination: str, digest: bytes) -> bytes:
    """The duplicate rule's key: 16 bytes of BLAKE2b over the account, source,
    destination (each length-prefixed) and the text's digest.

    One bytes object instead of a tuple of three strings and a digest, against the
    records piling up: at 5,000 msg/s the 60-s window holds 300,000 of them. The dict
    of bytes -> float is also one the garbage collector never tracks (no container
    inside), so full collections no longer walk it. Figures: docs/performance.md,
    Sustained load on one node."""
    head = f"{len(account)}:{account}{len(source)}:{source}{destination}"
    return hashlib.blake2b(head.encode("utf-8", "surrogatepass") + digest,
                           digest_size=_DIGEST_SIZE).digest()


def _drop_expired(entries: dict[Any, float], window: float, now: float) -> list[Any]:
    """Drop the entries from the front of an oldest-first dict of times while
    ``time + window`` has passed; the keys dropped."""
    # One pass, then the deletes: next(iter(...)) after each delete would walk the
    # deleted slots at the front again (quadratic in the expired count).
    expired = []
    for key, at in entries.items():
        if at + window > now:
            break
        expired.append(key)
    for key in expired:
        del entries[key]
    return expired
