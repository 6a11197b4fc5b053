"""The cluster store on a Redis Cluster: the :class:`~smppbridge.core.ports.Store` over
N partitions, each an ordinary :class:`~.store.RedisStore` (docs/cluster.md, *Running
on a Redis Cluster*).

Size: over 500 lines because it routes or fans out every operation of the Store
contract (about fifty, a few lines each) and merges what the fan-outs return; the
partitions' own work is the Redis store's, the slot layout is :mod:`.cluster`'s.

Theory of operation
-------------------
* **Partitions.** Partition ``i`` is a RedisStore whose prefix carries a hash tag,
  ``smppbridge:{p<i>.<j>}:`` (``j`` chosen so that the slot falls in the i-th N-th of
  the slot space: the even split ``redis-cli --cluster create`` makes gives every
  master its share of partitions). Redis hashes only what is inside the first ``{...}``,
  so all the keys of a partition — and of every script call, which names the prefix as
  ``KEYS[1]`` — are in one slot: no script crosses slots, and each partition keeps
  its atomicity exactly as on one Redis. Group commit is per master: the partitions
  share one :class:`~.batching.Pipelines`, so what all the partitions of one master
  queue during a round trip is one pipeline to it, with one ``WAIT`` (a plain,
  non-transactional pipeline may carry commands of several slots of its node).
* **Routing.** A message lives in the partition ``crc32(its id without the last two
  characters) % N``; so do its receipts, timeline and status callbacks. The ids a node
  hands out in a row (decimal or hex, from a block reserved in the store) thus share a
  partition 100 (256) at a time: a batch of accepts, statuses or finals is one or two
  script calls instead of one per partition (see ``_RUN``). find, query_sm,
  cancel_sm, every mark_* and the history of one message go to that partition alone.
  An id that is not there (a part id of a long message, or an unknown id) is looked
  for in every partition.
  A held part lives in the partition of its own id; accepting its message drops it
  there afterwards (two writes, not one: after a crash between them, load_parts drops
  the parts whose message is stored). Idempotency keys go by account and key, flood
  windows by account and destination (both flood keys of a check in one partition).
* **Home slot.** What is global lives in partition 0: the message-id counter and the
  node registry (heartbeats, traffic seconds, unbind requests).
* **Fan-out.** The work is claimed from every partition (``due``: each asked for its
  share of the limit, then the partitions that had more for what is left), and so are
  receipts of an account and status callbacks; counts, the oldest queued message,
  provider-id lookups, accounts with receipts, purge and receipt expiry ask every
  partition, in parallel. A search asks every partition for a full page and merges
  them newest first; where a partition's page stopped short (its budget spent, or a
  full page) the merged page ends at that partition's cursor, so no match is skipped.
* **Sequence numbers.** Receipts and callbacks are numbered per partition; the store
  hands them out as ``local * N + partition``, so receipt_done/receipt_retry/
  callback_retry find their partition from the number alone.
"""

from __future__ import annotations

import asyncio
import functools
import zlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from smppbridge.core.accounts import FloodRules
from smppbridge.core.callbacks import CallbackEvent, CallbackOutcome
from smppbridge.core.errors import StoreUnavailable
from smppbridge.core.history import (
    MAX_PAGE,
    Cursor,
    MessagePage,
    MessageQuery,
    ReceiptState,
    ReceiptView,
    TimelineEntry,
)
from smppbridge.core.idempotency import IdempotentAnswer
from smppbridge.core.message import OutboundMessage
from smppbridge.core.ports import FinalEntry, Leased, SentEntry
from smppbridge.core.records import (
    DeliveryState,
    PartRecord,
    ReceiptRecord,
    StoredMessage,
)
from smppbridge.store.redis.batching import Pipelines
from smppbridge.store.redis.cluster import ClusterRouter
from smppbridge.store.redis.flood import RedisFloodState
from smppbridge.store.redis.registry import RedisRegistry
from smppbridge.store.redis.store import RedisStore
from smppbridge.store.redis.urls import ClusterUrl, parse_cluster_url

__all__ = ["ShardedFloodState", "ShardedRedisStore", "partition_tags"]

T = TypeVar("T")
G = TypeVar("G")


def partition_tags(n: int) -> list[str]:
    """The hash tag of each of ``n`` partitions: ``p<i>.<j>`` with the smallest ``j``
    whose slot is in the i-th n-th of the slot space (deterministic: every node
    computes the same)."""
    tags = []
    for i in range(n):
        lo = i * REDIS_CLUSTER_HASH_SLOTS // n
        hi = (i + 1) * REDIS_CLUSTER_HASH_SLOTS // n
        j = 0
        while not lo <= key_slot(f"p{i}.{j}".encode()) < hi:
            j += 1
        tags.append(f"p{i}.{j}")
    return tags


#: the last characters of a message id left out of its partition's hash, so that a run
#: of consecutive ids (a node's batch) is in one partition: a batch of 100 accepts over
#: 16 partitions was ~16 script calls of ~6 messages; now one or two. Measured
#: (benchmarks/redis_cluster.py, 3 masters, 16 partitions): 31.3 -> 27.2 Redis
#: commands and ~296 -> ~261 us of Redis CPU a message, +17-30 % acks/s. Still a
#: function of the id alone (no lookup), and spread evenly over time.
_RUN = 2


def _message_id(item: ReceiptRecord | CallbackEvent) -> str:
    return item.message_id


def _first(entry: SentEntry | FinalEntry) -> str:
    return entry[0]


def _crc(*parts: str) -> int:
    return zlib.crc32("\0".join(parts).encode("utf-8", "surrogatepass"))


class ShardedRedisStore:
    """The Store on a Redis Cluster; see the module docstring. ``url`` is
    ``redis-cluster://HOST:PORT[,HOST:PORT...]/?partitions=N&...`` (:mod:`.urls`);
    every other keyword is the RedisStore's, for every partition."""

    claims_on_accept = False

    def __init__(self, url: str | ClusterUrl, *, history_days: float | None = None,
                 refresh_interval: float = 5.0, **kwargs: Any) -> None:
        self.settings = parse_cluster_url(url) if isinstance(url, str) else url
        options = dict(self.settings.options)
        options.update(kwargs)
        if history_days is not None:
            options.setdefault("history_days", history_days)
        base = str(options.pop("prefix", "smppbridge:"))
        self.router = ClusterRouter(
            self.settings, refresh_interval=refresh_interval,
            **{k: options[k] for k in ("max_connections", "connect_timeout",
                                       "socket_timeout", "retries") if k in options})
        self.n = self.settings.partitions
        #: the partitions' operations queue per master: one pipeline a master a round
        #: trip, whatever the number of partitions it serves (docs/cluster.md)
        self.pipelines = Pipelines()
        self.parts: list[RedisStore] = []
        for tag in partition_tags(self.n):
            prefix = f"{base}{{{tag}}}:"
            slot = key_slot(prefix.encode())
            self.parts.append(RedisStore(
                "", prefix=prefix, client=functools.partial(self.router.client_for, slot),
                pipelines=self.pipelines, **options))
        self.home = self.parts[0]
        self.node_id = self.home.node_id
        self.min_replicas = self.home.min_replicas
        self._turn = 0  # which partition gets the first share next (_shares)

    @classmethod
    def from_url(cls, url: str, *, history_days: float | None = None) -> ShardedRedisStore:
        return cls(url, history_days=history_days)

    # --- routing -----------------------------------------------------------------------

    def index(self, message_id: str) -> int:
        """The partition of a message (or part) id."""
        return _crc(message_id[:-_RUN] or message_id) % self.n

    def part(self, message_id: str) -> RedisStore:
        return self.parts[self.index(message_id)]

    async def _guard(self, call: Awaitable[T]) -> T:
        """``call``; a store failure also tells the router to read the layout again."""
        try:
            return await call
        except StoreUnavailable:
            self.router.stale()
            raise

    async def _each(self, call: Callable[[RedisStore], Awaitable[T]],
                    parts: Iterable[RedisStore] | None = None) -> list[T]:
        """``call`` on every partition (or ``parts``) at once; the first failure is
        raised once all have finished."""
        return await self._gather(
            [self._guard(call(p)) for p in (self.parts if parts is None else parts)])

    async def _shares(self, take: Callable[[RedisStore, int], Awaitable[list[T]]],
                      limit: int) -> list[tuple[int, T]]:
        """Up to ``limit`` items taken (claimed, leased) from all partitions: each asked
        for its share, then the partitions that filled theirs for what is left; never
        more than ``limit`` asked for in all, so nothing taken is left unreturned. The
        remainder of an uneven split goes to the partitions after the last call's.
        (partition, item) pairs."""
        out: list[tuple[int, T]] = []
        failure: Exception | None = None
        ask = list(range(self.n))
        while ask and len(out) < limit:
            room = limit - len(out)
            start = self._turn % len(ask)
            self._turn += 1
            order = ask[start:] + ask[:start]
            shares = {i: room // len(order) + (k < room % len(order))
                      for k, i in enumerate(order)}
            asked = [i for i in order if shares[i] > 0]
            got = await asyncio.gather(*(self._guard(take(self.parts[i], shares[i]))
                                         for i in asked), return_exceptions=True)
            full = []
            for i, items in zip(asked, got, strict=True):
                if isinstance(items, BaseException):
                    # what the other partitions handed over is returned all the same
                    # (a claimed message left unreturned would be held by nobody)
                    if not isinstance(items, Exception):
                        raise items  # cancelled
                    failure = failure or items
                    continue
                out.extend((i, item) for item in items)
                if len(items) >= shares[i]:
                    full.append(i)
            ask = sorted(full)
        if failure is not None and not out:
            raise failure
        return out

    def _global(self, seq: int, i: int) -> int:
        return seq * self.n + i

    def _local(self, seq: int) -> tuple[RedisStore, int]:
        local, i = divmod(int(seq), self.n)
        return self.parts[i], local

    def _group(self, items: Iterable[G], message_id: Callable[[G], str]
               ) -> dict[int, list[G]]:
        """``items`` by the partition of their message id."""
        out: dict[int, list[G]] = {}
        for item in items:
            out.setdefault(self.index(message_id(item)), []).append(item)
        return out

    def _by_part(self, ids: Iterable[str]) -> dict[int, list[str]]:
        return self._group(ids, str)

    async def _on(self, groups: dict[int, list[G]],
                  call: Callable[[int, list[G]], Awaitable[object]]) -> None:
        """``call(partition, its items)`` for each partition in ``groups``, at once; the
        first failure is raised once all have finished."""
        await self._gather([self._guard(call(i, items)) for i, items in groups.items()])

    @staticmethod
    async def _gather(calls: Sequence[Awaitable[T]]) -> list[T]:
        results = await asyncio.gather(*calls, return_exceptions=True)
        out: list[T] = []
        for result in results:
            if isinstance(result, BaseException):
                raise result
            out.append(result)
        return out

    # --- the Store: lifecycle ------------------------------------------------------------

    @property
    def round_trips(self) -> int:
        """Pipelines sent, to all masters."""
        return self.pipelines.round_trips

    async def open(self) -> None:
        await self.router.open()
        try:
            await self._each(lambda p: p.open())
        except BaseException:
            await self._each(lambda p: p.close())
            await self.router.close()
            raise
        await self.home._check_durability(self.router.masters())

    async def close(self) -> None:
        await self._each(lambda p: p.close())
        await self.router.close()

    async def ready(self) -> bool:
        return all(await asyncio.gather(*(p.ready() for p in self.parts)))

    def trouble(self) -> str | None:
        return next((t for t in (p.trouble() for p in self.parts) if t), None)

    def flood_state(self) -> ShardedFloodState:
        return ShardedFloodState(self)

    def registry(self) -> RedisRegistry:
        """The nodes, in the home partition's slot (every registry key there)."""
        return self.home.registry()

    async def reserve_ids(self, count: int) -> int:
        return await self._guard(self.home.reserve_ids(count))

    # --- parts -------------------------------------------------------------------------

    async def save_part(self, part: PartRecord) -> None:
        await self._guard(self.part(part.part_id).save_part(part))

    async def load_parts(self) -> list[PartRecord]:
        """Every partition's parts, except those whose message is stored (a crash
        between accepting a message and dropping its parts elsewhere): those are
        dropped now."""
        held = [p for got in await self._each(lambda s: s.load_parts()) for p in got]
        found = await asyncio.gather(*(self.find(p.part_id) for p in held))
        stale = [p.part_id for p, f in zip(held, found, strict=True) if f is not None]
        if stale:
            await self._drop_parts(stale)
        kept = [p for p, f in zip(held, found, strict=True) if f is None]
        kept.sort(key=lambda p: (p.arrived_at, p.part_id))
        return kept

    async def _drop_parts(self, part_ids: Iterable[str], skip: int = -1) -> None:
        groups = self._by_part(part_ids)
        groups.pop(skip, None)
        await self._on(groups, lambda i, ids: self.parts[i].fail_parts(ids, ()))

    async def fail_parts(self, part_ids: Sequence[str],
                         receipts: Sequence[ReceiptRecord]) -> None:
        """Each partition drops its parts and adds the receipts of its ids."""
        groups = self._by_part(part_ids)
        rgroups = self._group(receipts, _message_id)
        await self._on({i: [] for i in {*groups, *rgroups}},
                       lambda i, _: self.parts[i].fail_parts(groups.get(i, []),
                                                             rgroups.get(i, [])))

    # --- messages ----------------------------------------------------------------------

    async def accept(self, message: OutboundMessage, receipts: Sequence[ReceiptRecord] = (),
                     *, final_stat: str = "", final_err: int = 0) -> None:
        i = self.index(message.message_id)
        await self._guard(self.parts[i].accept(message, receipts, final_stat=final_stat,
                                               final_err=final_err))
        if len(message.part_ids) > 1:
            await self._drop_parts(message.part_ids, skip=i)

    async def accept_mo(self, message: OutboundMessage, receipts: Sequence[ReceiptRecord],
                        callbacks: Sequence[CallbackEvent], *, stat: str,
                        held: Sequence[str] = ()) -> None:
        i = self.index(message.message_id)
        await self._guard(self.parts[i].accept_mo(message, receipts, callbacks, stat=stat,
                                                  held=held))
        await self._drop_parts({*held, *message.part_ids} - {message.message_id}, skip=i)

    async def accept_many(self, messages: Sequence[OutboundMessage], *,
                          claim: bool = False) -> list[Exception | None]:
        """Each partition's messages in its own accept_many, all at once; the verdicts
        in order. Raises StoreUnavailable when none could be stored."""
        groups: dict[int, list[int]] = {}
        for k, m in enumerate(messages):
            groups.setdefault(self.index(m.message_id), []).append(k)
        order = sorted(groups)
        results = await asyncio.gather(
            *(self.parts[i].accept_many([messages[k] for k in groups[i]]) for i in order),
            return_exceptions=True)
        out: list[Exception | None] = [None] * len(messages)
        for i, result in zip(order, results, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, Exception):
                raise result  # cancelled
            for j, k in enumerate(groups[i]):
                out[k] = result if isinstance(result, Exception) else result[j]
        if any(isinstance(o, StoreUnavailable) for o in out):
            self.router.stale()
        if out and all(isinstance(o, StoreUnavailable) for o in out):
            raise next(o for o in out if isinstance(o, StoreUnavailable))
        long = [m for k, m in enumerate(messages) if out[k] is None and len(m.part_ids) > 1]
        if long:
            await asyncio.gather(*(self._drop_parts(m.part_ids, skip=self.index(m.message_id))
                                   for m in long))
        return out

    async def due(self, now: float, limit: int) -> list[StoredMessage]:
        got = await self._shares(lambda p, share: p.due(now, share), limit)
        messages = [m for _, m in got]
        messages.sort(key=lambda s: (s.next_at, s.message.submitted_at))
        return messages

    async def in_flight(self) -> list[StoredMessage]:
        return [m for got in await self._each(lambda p: p.in_flight()) for m in got]

    async def mark_sent(self, message_id: str, provider: str, provider_id: str,
                        stat: str, now: float,
                        receipts: Sequence[ReceiptRecord] = (), *,
                        callbacks: Sequence[CallbackEvent] = ()) -> None:
        await self._guard(self.part(message_id).mark_sent(
            message_id, provider, provider_id, stat, now, receipts, callbacks=callbacks))

    async def mark_sent_many(self, sent: Sequence[SentEntry], *, lease: bool = False,
                             callbacks: Sequence[CallbackEvent] = ()) -> Leased:
        events = self._group(callbacks, _message_id)
        await self._on(self._group(sent, _first), lambda i, entries: self.parts[i]
                       .mark_sent_many(entries, callbacks=events.get(i, ())))
        return []

    async def mark_retry(self, message_id: str, next_at: float, attempts: int,
                         detail: str = "") -> None:
        await self._guard(self.part(message_id).mark_retry(message_id, next_at, attempts,
                                                           detail))

    async def record_status(self, message_id: str, stat: str, err: int, now: float,
                            detail: str, receipts: Sequence[ReceiptRecord] = ()) -> None:
        await self._guard(self.part(message_id).record_status(message_id, stat, err, now,
                                                              detail, receipts))

    async def mark_final(self, message_id: str, stat: str, err: int, now: float,
                         receipts: Sequence[ReceiptRecord] = (), provider: str = "",
                         provider_id: str = "", detail: str = "",
                         callbacks: Sequence[CallbackEvent] = ()) -> None:
        await self._guard(self.part(message_id).mark_final(
            message_id, stat, err, now, receipts, provider, provider_id, detail, callbacks))

    async def mark_final_many(self, finals: Sequence[FinalEntry], *, lease: bool = False,
                              callbacks: Sequence[CallbackEvent] = ()) -> Leased:
        events = self._group(callbacks, _message_id)
        await self._on(self._group(finals, _first), lambda i, entries: self.parts[i]
                       .mark_final_many(entries, callbacks=events.get(i, ())))
        return []

    async def _first(self, message_id: str,
                     read: Callable[[RedisStore], Awaitable[T]]) -> T:
        """``read`` on the id's partition; where it finds nothing (a part id, an
        unknown id), the first answer of the other partitions that found something."""
        i = self.index(message_id)
        found = await self._guard(read(self.parts[i]))
        if found:
            return found
        others = await self._each(read, [p for k, p in enumerate(self.parts) if k != i])
        return next((o for o in others if o), found)

    async def find(self, message_id: str) -> StoredMessage | None:
        return await self._first(message_id, lambda p: p.find(message_id))

    async def find_by_provider(self, provider: str, provider_id: str
                               ) -> StoredMessage | None:
        """Asked of every partition (a provider id says nothing of the message id)."""
        found = await self._each(lambda p: p.find_by_provider(provider, provider_id))
        return next((f for f in found if f is not None), None)

    # --- history -------------------------------------------------------------------------

    async def timeline(self, message_id: str) -> list[TimelineEntry]:
        return await self._first(message_id, lambda p: p.timeline(message_id))

    async def receipts_of(self, message_id: str) -> list[ReceiptView]:
        return await self._first(message_id, lambda p: p.receipts_of(message_id))

    async def search(self, query: MessageQuery) -> MessagePage:
        """Every partition's page, merged newest first (see the module docstring)."""
        limit = min(query.limit, MAX_PAGE)
        pages = await self._each(lambda p: p.search(query))
        # a partition whose page has a cursor is complete only down to that cursor
        ends = [(c.submitted_at, c.message_id) for c in (pg.next for pg in pages) if c]
        floor = max(ends) if ends else None
        items = sorted((m for pg in pages for m in pg.items),
                       key=lambda s: (s.message.submitted_at, s.message.message_id),
                       reverse=True)
        if floor is not None:
            # every partition is complete down to the floor, the floor included (a
            # partition's cursor is the last message it returned, or scanned): the next
            # page starts below it
            items = [m for m in items
                     if (m.message.submitted_at, m.message.message_id) >= floor]
        if len(items) > limit:
            items = items[:limit]
            last = items[-1].message
            return MessagePage(items, Cursor(last.submitted_at, last.message_id))
        if floor is None or limit <= 0:
            return MessagePage(items, None)
        return MessagePage(items, Cursor(*floor))

    async def purge(self, ended_before: float, limit: int) -> int:
        """Partition after partition, until ``limit`` (a background task)."""
        total = 0
        for p in self.parts:
            if total >= limit:
                break
            total += await self._guard(p.purge(ended_before, limit - total))
        return total

    async def count(self, state: DeliveryState) -> int:
        return sum(await self._each(lambda p: p.count(state)))

    async def oldest_queued(self) -> float | None:
        found = [t for t in await self._each(lambda p: p.oldest_queued()) if t is not None]
        return min(found) if found else None

    async def count_submitted(self, account: str, since: float) -> int:
        return sum(await self._each(lambda p: p.count_submitted(account, since)))

    # --- idempotency keys ----------------------------------------------------------------

    def _idem(self, account: str, key: str) -> RedisStore:
        return self.parts[_crc(account, key) % self.n]

    async def claim_idempotency(self, account: str, key: str, request_hash: str,
                                now: float, ttl: float) -> IdempotentAnswer | None:
        return await self._guard(self._idem(account, key).claim_idempotency(
            account, key, request_hash, now, ttl))

    async def save_idempotency(self, account: str, key: str, answer: IdempotentAnswer,
                               now: float, ttl: float) -> None:
        await self._guard(self._idem(account, key).save_idempotency(account, key, answer,
                                                                    now, ttl))

    async def release_idempotency(self, account: str, key: str) -> None:
        await self._guard(self._idem(account, key).release_idempotency(account, key))

    # --- receipts ----------------------------------------------------------------------

    async def add_receipts(self, receipts: Sequence[ReceiptRecord]) -> None:
        await self._on(self._group(receipts, _message_id),
                       lambda i, rs: self.parts[i].add_receipts(rs))

    async def receipts_for(self, account: str, now: float, limit: int
                           ) -> list[ReceiptRecord]:
        """Leased from every partition (each its share, then more from those that had
        more), oldest first by creation time."""
        got = await self._shares(lambda p, share: p.receipts_for(account, now, share),
                                 limit)
        out = [replace(r, seq=self._global(r.seq, i)) for i, r in got]
        out.sort(key=lambda r: (r.done_date, r.seq))
        return out

    async def receipt_done(self, seqs: Sequence[int], now: float,
                           state: ReceiptState = ReceiptState.DELIVERED) -> None:
        groups: dict[int, list[int]] = {}
        for seq in seqs:
            local, i = divmod(int(seq), self.n)
            groups.setdefault(i, []).append(local)
        await self._on(groups, lambda i, local: self.parts[i].receipt_done(local, now, state))

    async def receipt_retry(self, seq: int, next_at: float, attempts: int) -> None:
        part, local = self._local(seq)
        await self._guard(part.receipt_retry(local, next_at, attempts))

    async def release_receipts(self, seqs: Sequence[int]) -> None:
        """Nothing to give back (receipts are leased only by receipts_for)."""

    async def expire_receipts(self, now: float) -> int:
        return sum(await self._each(lambda p: p.expire_receipts(now)))

    async def accounts_with_receipts(self, now: float) -> list[str]:
        found = await self._each(lambda p: p.accounts_with_receipts(now))
        return sorted({a for got in found for a in got})

    async def count_receipts(self, account: str | None = None) -> int:
        return sum(await self._each(lambda p: p.count_receipts(account)))

    # --- status callbacks ----------------------------------------------------------------

    async def add_callbacks(self, events: Sequence[CallbackEvent]) -> None:
        await self._on(self._group(events, _message_id),
                       lambda i, evs: self.parts[i].add_callbacks(evs))

    async def callbacks_due(self, now: float, limit: int) -> list[CallbackEvent]:
        got = await self._shares(lambda p, share: p.callbacks_due(now, share), limit)
        out = [replace(ev, seq=self._global(ev.seq, i)) for i, ev in got]
        out.sort(key=lambda ev: (ev.next_at, ev.seq))
        return out

    async def callback_done(self, event: CallbackEvent, at: float,
                            outcome: CallbackOutcome = CallbackOutcome.DELIVERED,
                            detail: str = "") -> None:
        part, local = self._local(event.seq)
        await self._guard(part.callback_done(replace(event, seq=local), at, outcome, detail))

    async def callback_retry(self, seq: int, next_at: float, attempts: int) -> None:
        part, local = self._local(seq)
        await self._guard(part.callback_retry(local, next_at, attempts))

    async def count_callbacks(self) -> int:
        return sum(await self._each(lambda p: p.count_callbacks()))


class ShardedFloodState:
    """The flood windows of a sharded store: each (account, destination) in the
    partition ``crc32(account, destination) % N``, so that a check's two keys (its
    streak and its duplicate record) are in one slot and one script."""

    immediate = False

    def __init__(self, store: ShardedRedisStore) -> None:
        self._store = store
        self._states = [p.flood_state() for p in store.parts]

    def _state(self, account: str, destination: str) -> RedisFloodState:
        return self._states[_crc(account, destination) % self._store.n]

    async def check_and_record(self, *, account: str, source: str, destination: str,
                               text_digest: bytes, now: float, rules: FloodRules) -> int:
        return await self._store._guard(self._state(account, destination).check_and_record(
            account=account, source=source, destination=destination,
            text_digest=text_digest, now=now, rules=rules))

    async def release(self, *, account: str, source: str, destination: str,
                      text_digest: bytes, recorded_at: float) -> None:
        await self._store._guard(self._state(account, destination).release(
            account=account, source=source, destination=destination,
            text_digest=text_digest, recorded_at=recorded_at))
