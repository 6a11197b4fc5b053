"""The cluster store: the :class:`~smppbridge.core.ports.Store` on Redis.

Size: over 500 lines because it is the one class that fulfils the whole Store contract
on Redis (about fifty operations of a few lines each, the batch ones with the entries
their script takes); the Lua, the batcher, the merging of callers, the record layout,
the history's reading (``history.py``) and the flood windows are in their own modules
beside it.

Theory of operation
-------------------
All nodes of a cluster share one Redis (a primary, with replicas/Sentinel if wanted).
Every key starts with ``prefix`` (default ``smppbridge:``); the full layout is in
``docs/cluster.md``. In short:

* a message is a hash ``m:<id>`` (every :class:`OutboundMessage` field plus state,
  stat, err, provider, provider_id, attempts, next_at, done_at, the fields its timeline
  is derived from, and one ``r:<seq>`` line per receipt), with a capped list of
  timeline notes ``h:<id>`` (retries, intermediate statuses: only when there are any),
  for a long message one ``pid:<part id>`` string per part (query_sm/cancel_sm by any
  part id), and a ``prov:<provider>:<provider id>`` string (webhooks, polling). Once
  final, all of them expire after ``final_ttl``.
* the history (``history.py``): every message is in four time indexes (sorted sets
  scored by submitted_at: all, per account, per destination, per source) that
  :meth:`RedisStore.search` walks without ever scanning the keyspace; an ended message
  is listed in a bucket ``ix:e:<n>`` of its done_at, from which :meth:`RedisStore.purge`
  removes it and its index entries once its retention (``history_days``) is over.
* the work queue is the stream ``work`` read by the consumer group ``senders``; each
  node is one consumer (``node_id``). ``accept`` XADDs the message id, ``due`` reads new
  entries with XREADGROUP, and finishing a message (mark_sent / mark_retry / mark_final)
  XACKs and XDELs its entry, so the stream holds only unfinished work. Messages waiting
  for a schedule time or a retry sit in the sorted set ``sched`` (score ``next_at``);
  ``due`` moves those whose time has come into the stream first.
* **Dead nodes.** An entry delivered to a node stays in the group's pending list until
  acknowledged. A live node refreshes the idle time of the entries it holds every
  ``claim_after / 4`` seconds (XCLAIM ... JUSTID of its own entries); ``due`` on any node
  takes over entries idle for more than ``claim_after`` (XAUTOCLAIM). So a crashed node's
  messages are resent by another node after ``claim_after``; the provider's client-side
  id makes the resend harmless.
* receipts have a global sequence ``r:seq``; each is a hash ``r:<seq>``, listed in the
  account's ready set ``rq:<account>`` (score = seq, so creation order) or, while
  deferred, in ``rw:<account>`` (score = when it is due again). ``receipts_for`` *leases*
  what it returns: they move to ``rw`` with score ``now + receipt_lease``, so no other
  node delivers them meanwhile; ``receipt_done`` deletes them (their line in the
  message hash keeps the outcome), ``receipt_retry`` reschedules them, and a node that
  dies lets the lease run out.

Atomicity and throughput: every multi-key change is one Lua script (atomic in Redis),
and a batch of messages is one script call (``messages_lua.py``: accept, statuses,
sent, final; each message's part of it atomic, its writes to shared keys grouped into
one command per key). Callers that hand over one message at a time are merged into one
call per turn of the event loop (``merging.py``). All operations go through one
batcher: whatever is queued while its round trips are in progress is sent as the next
pipeline, so hundreds of concurrent ``accept`` calls cost one script call in one round
trip (and one AOF fsync with ``appendfsync always``): group commit, as in the SQLite
store. What each message costs Redis: docs/cluster.md, Batch paths.

Idempotency: redis-py re-sends a pipeline after a connection error, and a write whose
reply was lost would then run twice. Scripts that are not naturally idempotent carry a
random token: ``accept`` keeps it in the message hash (``tok``), ``mark_sent``,
``mark_retry`` and ``record_status`` keep the last one there (``op``), ``add_receipts``
and ``fail_parts`` (and ``record_status`` of a message no longer stored) in a
short-lived ``tok:<token>`` key, and a replay is a no-op. ``mark_final`` acts only on a
message not yet final, ``receipt_done``/``expire_receipts`` only on a receipt still in
the outbox, and ``purge`` pops what it removes, so their replays change nothing.

Durability is Redis's: a write is acknowledged once Redis executed it, and survives
what its AOF settings allow (``docs/cluster.md``); ``min_replicas`` adds a WAIT so a
write is acknowledged only once replicas have it too.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, cast
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
import structlog
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import (
    RedisError,
    ResponseError,
)

from smppbridge.core.callbacks import CallbackEvent, CallbackOutcome, callback_body
from smppbridge.core.errors import StoreUnavailable
from smppbridge.core.history import (
    DEFAULT_HISTORY_DAYS,
    MessagePage,
    MessageQuery,
    ReceiptState,
    ReceiptView,
    TimelineEntry,
)
from smppbridge.core.idempotency import IN_FLIGHT, IdempotentAnswer
from smppbridge.core.message import OutboundMessage
from smppbridge.core.ports import FinalEntry, Leased, SentEntry
from smppbridge.core.records import (
    DeliveryState,
    PartRecord,
    ReceiptRecord,
    StoredMessage,
)
from smppbridge.observability.metrics import METRICS
from smppbridge.store.redis.batching import Batcher, Pipelines, redis_unavailable
from smppbridge.store.redis.flood import RedisFloodState
from smppbridge.store.redis.history import (
    RECEIPT_CODES,
    receipts_from,
    search,
    timeline_from,
)
from smppbridge.store.redis.merging import Merger
from smppbridge.store.redis.records import (
    json_array,
    message_fields,
    num,
    pairs,
    receipt_args,
    to_stored,
    token,
)
from smppbridge.store.redis.registry import RedisRegistry
from smppbridge.store.redis.urls import STORE_OPTIONS

__all__ = ["MessageExists", "RedisStore"]

_log = structlog.get_logger("smppbridge")
#: Consumer group of the work stream; every node is one consumer of it.
_GROUP = "senders"
#: Receipts expired per script call: keeps one call short on a huge backlog.
_EXPIRE_BATCH = 1000
#: A consumer with nothing pending and idle this long is a node that is gone.
_STALE_CONSUMER_MS = 3_600_000
_STALE_SWEEP_INTERVAL = 300.0
#: A final message outlives its retention by this much, so that purge (which removes
#: it and its index entries, a bucket of BUCKET_SECONDS at a time) gets there before
#: the TTL does; the TTL is the safety net when nothing calls purge.
_FINAL_TTL_MARGIN = 3600.0
#: Messages one purge script call removes at most (~8 commands, ~60 µs each).
_PURGE_BATCH = 200
#: Messages one batch script call (accept, mark_sent, mark_final) takes at most: ~10
#: commands and ~40 us of Redis time each, so one call holds Redis for ~20 ms at most.
_BATCH = 500
#: The ``accept`` script's verdict for a message id already stored by another accept.
_ACCEPT_EXISTS = 2
#: The AOF fsync policies docs/cluster.md's durability section prescribes.
_DURABLE_FSYNC = ("always", "everysec")
_PRESCRIBED = "appendonly yes, appendfsync always (or everysec: up to ~1 s lost on power loss)"
_DURABILITY_DOCS = "docs/cluster.md#durability-redis-persistence-settings"


class MessageExists(Exception):
    """``accept`` of a message id that is already stored."""


class RedisStore:
    """The :class:`~smppbridge.core.ports.Store` on Redis; see the module docstring.

    ``url`` is ``redis://[user:password@]HOST:PORT/DB`` (``rediss://`` for TLS).
    ``node_id`` names this node's consumer in the work group (default hostname-pid, so a
    restarted process is a new consumer and its predecessor's work is claimed).
    ``claim_after``: seconds a taken message may go untouched before another node takes
    it over. ``history_days``: how long an ended message stays in the history (search,
    timeline, receipts); :meth:`purge` removes it after that. ``final_ttl``: seconds a
    final message's keys live at most (query_sm, late statuses) — by default
    ``history_days`` plus an hour, so purge normally gets there first and the TTL only
    bounds memory when nothing purges; a shorter ``final_ttl`` ends the history sooner
    (search skips index entries whose message expired, and purge still trims them).
    ``history_cap``: timeline notes kept per message. ``receipt_lease``: seconds a
    receipt handed to a node stays hidden from the others; it must exceed the longest
    deliver_sm round trip. ``retries`` and the timeouts configure redis-py's
    reconnection (exponential backoff with jitter). ``client``: a partition of the
    sharded store (:mod:`smppbridge.store.redis.sharded`) gets the client of the master
    that owns its prefix's slot from this function instead of connecting to ``url``.

    Memory stays bounded only if something calls :meth:`purge` regularly (the node's
    retention task, with ``ended_before = now - history_days``): the TTL removes a final
    message's own keys, but its entries in the search indexes and its bucket entry
    (~450 bytes, docs/cluster.md) go only with purge.
    """

    #: new messages go to the shared work stream, never to one node's sender directly
    claims_on_accept = False

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *,
                 prefix: str = "smppbridge:", node_id: str | None = None,
                 claim_after: float = 30.0, final_ttl: float | None = None,
                 history_days: float = DEFAULT_HISTORY_DAYS,
                 receipt_lease: float = 120.0, history_cap: int = 32,
                 callback_lease: float = 60.0,
                 min_replicas: int = 0, replica_timeout: float = 1.0,
                 retries: int = 3, connect_timeout: float = 1.0,
                 socket_timeout: float = 5.0, max_connections: int = 64,
                 client: Callable[[], aioredis.Redis] | None = None,
                 pipelines: Pipelines | None = None) -> None:
        if final_ttl is None:
            final_ttl = history_days * 86400.0 + _FINAL_TTL_MARGIN
        if (claim_after <= 0 or final_ttl < 1 or receipt_lease <= 0 or history_cap < 1
                or history_days <= 0):
            msg = ("claim_after, final_ttl, history_days, receipt_lease and history_cap "
                   "must be positive")
            raise ValueError(msg)
        self.url = url
        self.prefix = prefix
        self.node_id = node_id or f"{socket.gethostname()}-{os.getpid()}"
        self.claim_after = claim_after
        self.final_ttl = final_ttl
        self.history_days = history_days
        self.receipt_lease = receipt_lease
        #: seconds a status callback handed to a node stays hidden from the others;
        #: above the longest attempt (15 s)
        self.callback_lease = callback_lease
        self.history_cap = history_cap
        self.min_replicas = min_replicas
        self.replica_timeout = replica_timeout
        self.retries = retries
        self.connect_timeout = connect_timeout
        self.socket_timeout = socket_timeout
        self.max_connections = max_connections
        self._client: aioredis.Redis | None = None
        #: a partition of a sharded store: its router's client for this prefix's slot
        #: (the master that owns it now), asked again for every pipeline
        self._shared = client
        #: ``pipelines``: shared by the partitions of a sharded store (one pipeline per
        #: master a round trip, batching.py)
        self._batch = Batcher(lambda: self.client, (self.prefix, _GROUP, self.history_cap),
                              min_replicas=min_replicas, replica_timeout=replica_timeout,
                              pipelines=pipelines)
        self._heartbeat: asyncio.Task[None] | None = None
        #: the batch scripts' entries, merged across concurrent callers (merging.py)
        self._merged: dict[str, Merger] = {
            "accept": Merger(self._accept_entries),
            **{name: Merger(functools.partial(self._script_entries, name))
               for name in ("record_status", "mark_sent", "mark_final")},
            # not a durable write: a check lost with Redis is refused as RMSGQFUL
            "flood_check": Merger(functools.partial(self._script_entries, "flood_check",
                                                    durable=False))}
        #: message id -> stream entry id, for the messages this node is working on
        self._held: dict[str, str] = {}
        self._claim_cursor = "0-0"

    @classmethod
    def from_url(cls, url: str, *, history_days: float | None = None) -> RedisStore:
        """``redis://HOST:PORT/DB`` with optional query parameters ``prefix``,
        ``node_id``, ``claim_after``, ``final_ttl``, ``history_days``, ``receipt_lease``,
        ``min_replicas``, ``replica_timeout``; other parameters are left to redis-py.
        ``history_days`` (``[store] history_days``) applies unless the URL has one."""
        parts = urlsplit(url)
        ours: dict[str, str] = {}
        rest: list[tuple[str, str]] = []
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key in _URL_OPTIONS:
                ours[key] = value
            else:
                rest.append((key, value))
        kwargs: dict[str, Any] = {key: _URL_OPTIONS[key](value) for key, value in ours.items()}
        if history_days is not None:
            kwargs.setdefault("history_days", history_days)
        return cls(urlunsplit(parts._replace(query=urlencode(rest))), **kwargs)

    @property
    def client(self) -> aioredis.Redis:
        """The redis-py client (shared with :meth:`flood_state`)."""
        if self._client is None:
            msg = "store is not open"
            raise StoreUnavailable(msg)
        return self._client if self._shared is None else self._shared()

    @property
    def round_trips(self) -> int:
        """Pipelines sent (observability, tests)."""
        return self._batch.round_trips

    def flood_state(self) -> RedisFloodState:
        """A :class:`~smppbridge.store.redis.flood.RedisFloodState` on this store's
        connection pool and prefix (flood windows shared by all nodes), its checks sent
        in the store's pipelines; usable once the store is open."""
        return RedisFloodState(lambda: self.client, prefix=self.prefix,
                               checks=self._merged["flood_check"].add)

    def registry(self) -> RedisRegistry:
        """The cluster's nodes, on this store's connection pool and prefix."""
        return RedisRegistry(lambda: self.client, self.prefix)

    # --- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        self._batch.closing = False
        if self._shared is not None:
            # a partition of a sharded store: the router's client (it closes it)
            self._client = self._shared()
        else:
            self._client = open_client(self.url, max_connections=self.max_connections,
                                       connect_timeout=self.connect_timeout,
                                       socket_timeout=self.socket_timeout,
                                       retries=self.retries)
        try:
            await self._batch.load_scripts()
            await self._create_group()
        except Exception:
            if self._shared is None:
                await self._client.aclose()
            self._client = None
            raise
        if self._shared is None:  # a sharded store checks each of its masters
            await self._check_durability()
        self._heartbeat = asyncio.get_running_loop().create_task(
            self._touch_loop(), name=f"redis-store-heartbeat-{self.node_id}")

    async def _check_durability(self, clients: Sequence[aioredis.Redis] = ()) -> None:
        """Is Redis's persistence what docs/cluster.md prescribes (``appendonly yes``,
        ``appendfsync always`` or ``everysec``)? ``smppbridge_store_durable{store="redis"}``
        says 1 or 0, and when it is not, one warning ``store.redis_not_durable`` says what
        was found; a Redis that refuses ``CONFIG GET`` (managed services rename it) gives
        -1 and the warning that it could not be checked. Never fails the start.
        ``clients``: every master of a Redis Cluster (the worst one counts); default
        this store's client."""
        durable, what = 1, ""
        for client in clients or [self.client]:
            found: dict[str, str] = {}
            refused = "answered nothing"
            try:
                for name in ("appendonly", "appendfsync"):  # one pattern a call: Redis 6.2
                    reply = await client.config_get(name)
                    found.update((str(k), str(v)) for k, v in reply.items())
            except RedisError as exc:
                refused = f"refused ({exc})"
            aof, fsync = found.get("appendonly"), found.get("appendfsync")
            if aof is None or fsync is None:
                durable, what = -1, f"could not check: CONFIG GET {refused}"
            elif durable == 1 and not (aof == "yes" and fsync in _DURABLE_FSYNC):
                durable, what = 0, f"appendonly {aof}, appendfsync {fsync}"
        METRICS.store_durable.labels("redis").set(durable)
        if durable != 1:
            _log.warning("store.redis_not_durable", found=what, prescribed=_PRESCRIBED,
                         docs=_DURABILITY_DOCS)

    async def close(self) -> None:
        """Finish queued operations and disconnect. Messages still held (taken by
        ``due`` and not finished) stay pending: another node claims them after
        ``claim_after``, exactly as if this node had died."""
        if self._client is None:
            return
        for merger in self._merged.values():
            await merger.drain()
        self._batch.closing = True
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        await self._batch.drain()
        if self._shared is None:
            await self._client.aclose()
        self._client = None
        self._batch.closing = False
        self._held.clear()

    async def ready(self) -> bool:
        """True when Redis takes a write (a probe SET: Redis out of memory under
        ``noeviction``, or a read-only replica, makes it False)."""
        try:
            await self._batch.call(("SET", self._key("probe"), repr(time.time()), "EX", 60))
        except (StoreUnavailable, RedisError):
            return False
        return self._batch.health.trouble is None

    def trouble(self) -> str | None:
        """Why operations fail now (the batcher's open episode), or None."""
        return self._batch.health.trouble

    async def _create_group(self) -> None:
        with redis_unavailable():
            try:
                # id 0: a group created after messages were queued still sees them
                await self.client.xgroup_create(self._key("work"), _GROUP, id="0",
                                                mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    # --- the heartbeat -------------------------------------------------------------------

    async def _touch_loop(self) -> None:
        """Keep the entries this node holds from looking idle, so live nodes are never
        robbed; now and then, forget consumers of nodes long gone."""
        interval = self.claim_after / 4
        next_sweep = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            try:
                if self._held:
                    by_entry = {entry: mid for mid, entry in self._held.items()}
                    for entry in await self._batch.script("touch", self.node_id, *by_entry):
                        mid = by_entry[entry]
                        if self._held.get(mid) == entry:  # not finished meanwhile
                            del self._held[mid]
                            _log.warning("store.claim_lost", message_id=mid)
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + _STALE_SWEEP_INTERVAL
                    await self._batch.script("forget_consumers", self.node_id, _STALE_CONSUMER_MS)
            except (StoreUnavailable, RedisError) as exc:
                _log.warning("store.heartbeat_failed", error=repr(exc))
            except Exception:
                # keep beating: a dead heartbeat would let other nodes take our work
                _log.exception("store.heartbeat_crashed")

    # --- ids ---------------------------------------------------------------------------

    async def reserve_ids(self, count: int) -> int:
        last = int(await self._batch.call(("INCRBY", self._key("ids"), int(count)), durable=True))
        return last - count + 1

    # --- parts -------------------------------------------------------------------------

    async def save_part(self, part: PartRecord) -> None:
        body = json.dumps({
            "account": part.account, "key": part.key,
            "pdu": base64.b64encode(part.pdu).decode("ascii"),
            "arrived_at": part.arrived_at, "system_type": part.system_type,
            "interface_version": part.interface_version})
        await self._batch.call(("HSET", self._key("parts"), part.part_id, body), durable=True)

    async def load_parts(self) -> list[PartRecord]:
        raw = await self._batch.call(("HGETALL", self._key("parts")))
        parts = []
        for part_id, body in (raw.items() if isinstance(raw, dict) else pairs(raw).items()):
            d = json.loads(body)
            parts.append(PartRecord(part_id, d["account"], d["key"],
                                    base64.b64decode(d["pdu"]), d["arrived_at"],
                                    d["system_type"], d["interface_version"]))
        parts.sort(key=lambda p: (p.arrived_at, p.part_id))
        return parts

    async def fail_parts(self, part_ids: Sequence[str],
                         receipts: Sequence[ReceiptRecord]) -> None:
        await self._batch.script("fail_parts", token(), len(part_ids), *part_ids,
                                 *receipt_args(receipts), durable=True)

    # --- messages ----------------------------------------------------------------------

    async def accept(self, message: OutboundMessage, receipts: Sequence[ReceiptRecord] = (),
                     *, final_stat: str = "", final_err: int = 0) -> None:
        """One entry of the next ``accept`` call (:mod:`.messages_lua`), merged with the
        other accepts in flight (:mod:`.merging`)."""
        [error] = await self._merged["accept"].add(
            [self._accept_entry(message, receipts, final_stat, final_err)])
        if error is not None:
            raise error

    def _accept_entry(self, m: OutboundMessage, receipts: Sequence[ReceiptRecord] = (),
                      final_stat: str = "", final_err: int = 0) -> list[Any]:
        """One message of an ``accept`` batch: [tok, id, state, next_at, fields, part
        ids, receipts]."""
        final = bool(final_stat)
        state = DeliveryState.FINAL if final else DeliveryState.QUEUED
        fields = message_fields(m)
        fields.update(state=state.value, stat=str(final_stat), err=str(int(final_err)),
                      provider="", provider_id="", attempts="0",
                      next_at=num(m.schedule_at or 0.0),
                      done_at=num(m.submitted_at) if final else "")
        flat = [x for kv in fields.items() for x in kv]
        next_at = num(m.schedule_at) if m.schedule_at else ""
        return [token(), m.message_id, state.value, next_at, flat, list(m.part_ids),
                receipt_args(receipts, m.message_id)]

    async def accept_mo(self, message: OutboundMessage, receipts: Sequence[ReceiptRecord],
                        callbacks: Sequence[CallbackEvent], *, stat: str,
                        held: Sequence[str] = ()) -> None:
        """The record with its deliver_sm (the ``accept`` script, which also drops the
        held parts among its part_ids), its events (the ``add_callbacks`` script) and
        the other held parts dropped, queued together: one pipeline, not one
        transaction — an error in either raises, and the upstream sends the MO again
        (a possible duplicate record, never a loss)."""
        writes = [self.accept(message, receipts, final_stat=stat)]
        if callbacks:
            writes.append(self.add_callbacks(callbacks))
        rest = [p for p in held if len(message.part_ids) < 2 or p not in message.part_ids]
        if rest:
            writes.append(self._batch.call(("HDEL", self._key("parts"), *rest),
                                           durable=True))
        for outcome in await asyncio.gather(*writes, return_exceptions=True):
            if isinstance(outcome, BaseException):
                raise outcome

    async def accept_many(self, messages: Sequence[OutboundMessage], *,
                          claim: bool = False) -> list[Exception | None]:
        """One ``accept`` call for the batch (merged with the other accepts in flight),
        each message with its own verdict. ``claim`` is ignored: new work goes to the
        stream, shared by every node."""
        out: list[Exception | None] = await self._merged["accept"].add(
            [self._accept_entry(m) for m in messages])
        if out and all(isinstance(o, StoreUnavailable) for o in out):
            raise cast(StoreUnavailable, out[0])
        return out

    async def _accept_entries(self, entries: list[list[Any]]) -> list[Exception | None]:
        """``accept`` calls of ``_BATCH`` entries; a call that fails as a whole for another
        reason than an outage is tried again one entry per call with the same tokens
        (what it wrote before failing counts as written), so one bad message fails
        alone. Returns a verdict per entry: None, MessageExists or the error."""
        chunks = [entries[i:i + _BATCH] for i in range(0, len(entries), _BATCH)]
        replies = await asyncio.gather(*(self._accept_call(c) for c in chunks),
                                       return_exceptions=True)
        out: list[Exception | None] = []
        for chunk, reply in zip(chunks, replies, strict=True):
            if isinstance(reply, BaseException) and not isinstance(reply, Exception):
                raise reply  # cancelled
            if isinstance(reply, StoreUnavailable) or (
                    isinstance(reply, Exception) and len(chunk) == 1):
                out += [reply] * len(chunk)
            elif isinstance(reply, Exception):
                for one in await asyncio.gather(*(self._accept_call([e]) for e in chunk),
                                                return_exceptions=True):
                    if isinstance(one, BaseException) and not isinstance(one, Exception):
                        raise one
                    out += [one] if isinstance(one, Exception) else one
            else:
                out += reply
        return out

    async def _accept_call(self, entries: list[list[Any]]) -> list[Exception | None]:
        codes = await self._batch.script("accept", json_array(entries), self._ttl(),
                                         durable=True)
        return [MessageExists(f"EXISTS message id {e[1]}") if int(c) == _ACCEPT_EXISTS
                else None for e, c in zip(entries, codes, strict=True)]

    async def _script_entries(self, script: str, entries: list[list[Any]], *,
                              durable: bool = True) -> list[Any]:
        """``script`` of :mod:`.messages_lua` for ``entries``, ``_BATCH`` a call (all in
        one pipeline); raises the first failure once all have finished."""
        replies = await asyncio.gather(
            *(self._batch.script(script, json_array(entries[i:i + _BATCH]), self._ttl(),
                                 durable=durable)
              for i in range(0, len(entries), _BATCH)), return_exceptions=True)
        out: list[Any] = []
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
            out += reply
        return out

    async def due(self, now: float, limit: int) -> list[StoredMessage]:
        """Take queued messages whose time has come, oldest first: this node's share of
        new work, plus work idle longer than ``claim_after`` on a node presumed dead. A
        message is returned to one node only, until mark_retry releases it."""
        if limit <= 0:
            return []
        claim_ms = max(1, int(self.claim_after * 1000))
        try:
            out = await self._batch.script("due", self.node_id, num(now), limit, claim_ms,
                                     self._claim_cursor)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # the stream was lost (Redis restarted without persistence, or flushed)
            await self._create_group()
            out = await self._batch.script("due", self.node_id, num(now), limit, claim_ms, "0-0")
        self._claim_cursor = str(out[0])
        messages = []
        for i in range(1, len(out), 2):
            entry, stored = str(out[i]), to_stored(json.loads(out[i + 1]))
            self._held[stored.message.message_id] = entry
            messages.append(stored)
        messages.sort(key=lambda s: (s.next_at, s.message.submitted_at))
        return messages

    async def in_flight(self) -> list[StoredMessage]:
        ids = await self._batch.call(("SMEMBERS", self._key("sent")))
        raws = await asyncio.gather(*(self._batch.call(("HGETALL", self._key("m:", mid)))
                                      for mid in ids))
        return [to_stored(pairs(raw)) for raw in raws if raw]

    async def mark_sent(self, message_id: str, provider: str, provider_id: str,
                        stat: str, now: float,
                        receipts: Sequence[ReceiptRecord] = (), *,
                        callbacks: Sequence[CallbackEvent] = ()) -> None:
        """As in SQLite, except that a message another node finalised meanwhile (a
        cancel_sm racing the send) stays final; its provider id is still recorded."""
        await self.mark_sent_many([(message_id, provider, provider_id, stat, now, receipts)],
                                  callbacks=callbacks)

    async def mark_sent_many(self, sent: Sequence[SentEntry], *,
                             lease: bool = False,
                             callbacks: Sequence[CallbackEvent] = ()) -> Leased:
        """One ``mark_sent`` script call per ``_BATCH`` messages; receipts are never
        leased (every node's dispatcher reads them from Redis)."""
        events = _by_message(callbacks)
        entries: list[list[Any]] = []
        for mid, provider, provider_id, stat, now, receipts in sent:
            self._held.pop(mid, None)
            entries.append([token(), mid, provider, provider_id,
                            self._provider_key(provider, provider_id), str(stat), num(now),
                            receipt_args(receipts, mid),
                            _callback_args(events.get(mid, ()))])
        await self._merged["mark_sent"].add(entries)
        return []

    async def mark_retry(self, message_id: str, next_at: float, attempts: int,
                         detail: str = "") -> None:
        """Queue the message again for ``next_at``; its timeline note is dated by this
        node's clock (the call carries no ``now``)."""
        self._held.pop(message_id, None)
        await self._batch.script("mark_retry", token(), message_id, num(next_at),
                                 int(attempts), num(time.time()), detail, durable=True)

    async def record_status(self, message_id: str, stat: str, err: int, now: float,
                            detail: str, receipts: Sequence[ReceiptRecord] = ()) -> None:
        """A timeline note and the receipts; the message's ``stat``/``err`` become the
        status's (state unchanged). Ignored for a final message (no receipt either);
        for a message no longer stored only the receipts are added."""
        await self._merged["record_status"].add(
            [[token(), message_id, str(stat), int(err), num(now), detail,
              receipt_args(receipts, message_id)]])

    async def mark_final(self, message_id: str, stat: str, err: int, now: float,
                         receipts: Sequence[ReceiptRecord] = (), provider: str = "",
                         provider_id: str = "", detail: str = "",
                         callbacks: Sequence[CallbackEvent] = ()) -> None:
        self._held.pop(message_id, None)
        pkey = self._provider_key(provider, provider_id) if provider else ""
        # int()/str(): redis-py would send an IntEnum by its repr()
        entry = [message_id, str(stat), int(err), num(now), provider, provider_id, pkey,
                 detail, receipt_args(receipts, message_id), _callback_args(callbacks)]
        await self._merged["mark_final"].add([entry])

    async def mark_final_many(self, finals: Sequence[FinalEntry], *,
                              lease: bool = False,
                              callbacks: Sequence[CallbackEvent] = ()) -> Leased:
        """One ``mark_final`` script call per ``_BATCH`` messages; nothing is leased."""
        events = _by_message(callbacks)
        entries: list[list[Any]] = []
        for mid, stat, err, now, receipts, detail in finals:
            self._held.pop(mid, None)
            entries.append([mid, str(stat), int(err), num(now), "", "", "", detail,
                            receipt_args(receipts, mid), _callback_args(events.get(mid, ()))])
        await self._merged["mark_final"].add(entries)
        return []

    async def find(self, message_id: str) -> StoredMessage | None:
        raw = await self._batch.script("find", message_id)
        return to_stored(json.loads(raw)) if raw else None

    async def find_by_provider(self, provider: str, provider_id: str
                               ) -> StoredMessage | None:
        raw = await self._batch.script("find_by_provider",
                                 self._provider_key(provider, provider_id))
        return to_stored(json.loads(raw)) if raw else None

    # --- history -------------------------------------------------------------------------

    async def timeline(self, message_id: str) -> list[TimelineEntry]:
        """Accepted, sent and final (derived from the hash) with the notes between them
        (the last ``history_cap``), oldest first; one script, O(1) + the notes."""
        return timeline_from(await self._batch.script("timeline", message_id))

    async def receipts_of(self, message_id: str) -> list[ReceiptView]:
        """Every receipt listed in the message hash, in seq order; one script reading the
        hash, plus one HGET per receipt still pending (its attempts)."""
        return receipts_from(await self._batch.script("receipts_of", message_id))

    async def search(self, query: MessageQuery) -> MessagePage:
        """See :mod:`smppbridge.store.redis.history` for the indexes and what each query
        costs; no query SCANs the keyspace."""
        return await search(self._batch.script, self._key, query, self.find_by_provider)

    async def purge(self, ended_before: float, limit: int) -> int:
        """Remove up to ``limit`` messages that ended in a bucket of ``BUCKET_SECONDS``
        (600 s) wholly before ``ended_before``: their keys and pending receipts, and
        their entries in every search index (also for those whose keys the TTL already
        took). Returns how many; scripts of at most 200 messages (~8 commands, ~60 µs of
        Redis time each), so none holds Redis for long. A message ended just before
        ``ended_before`` may stay up to one bucket longer."""
        total = 0
        while total < limit:
            batch = min(_PURGE_BATCH, limit - total)
            n = int(await self._batch.script("purge", num(ended_before), batch,
                                             durable=True))
            total += n
            if n < batch:  # nothing more has ended that long ago
                break
        return total

    async def count_submitted(self, account: str, since: float) -> int:
        """ZCOUNT on the account's time index: O(log N)."""
        return int(await self._batch.call(("ZCOUNT", self._key("ix:a:", account),
                                           num(since), "+inf")))

    # --- idempotency keys ----------------------------------------------------------------

    async def claim_idempotency(self, account: str, key: str, request_hash: str,
                                now: float, ttl: float) -> IdempotentAnswer | None:
        """SET NX with the TTL: one claim wins; the others read the record there."""
        name = self._idempotency_key(account, key)
        placeholder = json.dumps([request_hash, IN_FLIGHT, ""])
        for _ in range(3):  # a record released between our SET and GET: claim again
            if await self._batch.call(("SET", name, placeholder, "NX", "PX",
                                       max(1, int(ttl * 1000))), durable=True):
                return None
            raw = await self._batch.call(("GET", name))
            if raw is not None:
                request, status, body = json.loads(raw)
                return IdempotentAnswer(str(request), int(status), str(body))
        msg = "idempotency key claimed and released over and over"
        raise StoreUnavailable(msg)

    async def save_idempotency(self, account: str, key: str, answer: IdempotentAnswer,
                               now: float, ttl: float) -> None:
        await self._batch.call(("SET", self._idempotency_key(account, key),
                                json.dumps([answer.request_hash, answer.status, answer.body]),
                                "PX", max(1, int(ttl * 1000))), durable=True)

    async def release_idempotency(self, account: str, key: str) -> None:
        await self._batch.call(("DEL", self._idempotency_key(account, key)), durable=True)

    async def count(self, state: DeliveryState) -> int:
        """Messages in ``state``. FINAL counts every message ever finalised (their hashes
        expire after ``final_ttl``, the count does not), like the SQLite rows."""
        if state is DeliveryState.SENT:
            return int(await self._batch.call(("SCARD", self._key("sent"))))
        if state is DeliveryState.FINAL:
            return int(await self._batch.call(("GET", self._key("finals"))) or 0)
        # unfinished stream entries (new or being sent) + waiting for a time
        stream, sched = await asyncio.gather(self._batch.call(("XLEN", self._key("work"))),
                                             self._batch.call(("ZCARD", self._key("sched"))))
        return int(stream) + int(sched)

    async def oldest_queued(self) -> float | None:
        """submitted_at of the oldest message waiting to be sent: the first entry of the
        work stream, and the first of the messages waiting for a time (retries,
        schedules) — two reads and two hash lookups at scrape time."""
        first = await self._batch.call(("XRANGE", self._key("work"), "-", "+", "COUNT", 1))
        waiting = await self._batch.call(("ZRANGE", self._key("sched"), 0, 0))
        # redis-py answers XRANGE as [(entry id, {field: value})]
        ids = [str(pairs(entry[1])["m"]) for entry in first or ()]
        ids += [str(m) for m in waiting or ()]
        times = [await self._batch.call(("HGET", self._key("m:", mid), "submitted_at"))
                 for mid in ids]
        found = [float(t) for t in times if t]
        return min(found) if found else None

    # --- receipts ----------------------------------------------------------------------

    async def add_receipts(self, receipts: Sequence[ReceiptRecord]) -> None:
        if receipts:
            await self._batch.script("add_receipts", token(), *receipt_args(receipts),
                               durable=True)

    async def receipts_for(self, account: str, now: float, limit: int
                           ) -> list[ReceiptRecord]:
        """Receipts of ``account`` due for (re)delivery, in creation order, leased to
        this node for ``receipt_lease`` seconds (unless done or retried before)."""
        out = await self._batch.script("receipts_for", account, num(now), limit,
                                 num(now + self.receipt_lease))
        records = []
        for i in range(0, len(out), 4):
            seq, body, attempts, next_at = out[i:i + 4]
            if body is None:  # pragma: no cover - hash and index change together
                continue
            fields = json.loads(body)
            fields.update(seq=int(seq), attempts=int(attempts), next_at=float(next_at))
            records.append(ReceiptRecord(**fields))
        return records

    async def receipt_done(self, seqs: Sequence[int], now: float,
                           state: ReceiptState = ReceiptState.DELIVERED) -> None:
        """Out of the outbox; the receipt's line in its message's hash keeps ``state``
        and ``now`` (two more commands a receipt than a plain delete)."""
        if seqs:
            await self._batch.script("receipt_done", RECEIPT_CODES[state], f"{now:.3f}",
                                     *(int(s) for s in seqs), durable=True)

    async def receipt_retry(self, seq: int, next_at: float, attempts: int) -> None:
        await self._batch.script("receipt_retry", int(seq), num(next_at), int(attempts),
                           durable=True)

    async def release_receipts(self, seqs: Sequence[int]) -> None:
        """Nothing to give back: this store leases receipts only through
        :meth:`receipts_for`, whose lease runs out by itself."""

    async def expire_receipts(self, now: float) -> int:
        """Receipts past their expire_at leave the outbox; their lines in the message
        hashes show them expired at that time."""
        total = 0
        while True:
            n = int(await self._batch.script("expire_receipts", num(now), _EXPIRE_BATCH))
            total += n
            if n < _EXPIRE_BATCH:
                return total

    async def accounts_with_receipts(self, now: float) -> list[str]:
        return [str(a) for a in await self._batch.script("accounts_with_receipts", num(now))]

    async def count_receipts(self, account: str | None = None) -> int:
        """The outbox only (delivered, dropped and expired receipts are history): all
        of it (ZCARD ``rexp``), or one account's ready and deferred sets."""
        if account is None:
            return int(await self._batch.call(("ZCARD", self._key("rexp"))))
        ready, deferred = await asyncio.gather(
            self._batch.call(("ZCARD", self._key("rq:", account))),
            self._batch.call(("ZCARD", self._key("rw:", account))))
        return int(ready) + int(deferred)

    # --- status callbacks (callbacks_lua.py) ---------------------------------------------

    async def add_callbacks(self, events: Sequence[CallbackEvent]) -> None:
        """Events added alone (not with a status): one script per message."""
        for mid, evs in _by_message(events).items():
            await self._batch.script("add_callbacks", token(), mid, *_callback_args(evs),
                                     durable=True)

    async def callbacks_due(self, now: float, limit: int) -> list[CallbackEvent]:
        """Events due at ``now``, the oldest of each message only, leased to this node
        for ``callback_lease`` seconds (until done or retried)."""
        out = await self._batch.script("callbacks_due", num(now), int(limit),
                                       num(now + self.callback_lease),
                                       num(now - _CALLBACK_TTL_MARGIN), durable=True)
        events = []
        for i in range(0, len(out), 4):
            seq, body, attempts, next_at = out[i:i + 4]
            fields = json.loads(body)
            fields.update(seq=int(seq), attempts=int(attempts), next_at=float(next_at))
            events.append(CallbackEvent(**fields))
        return events

    async def callback_done(self, event: CallbackEvent, at: float,
                            outcome: CallbackOutcome = CallbackOutcome.DELIVERED,
                            detail: str = "") -> None:
        note = "" if outcome is CallbackOutcome.DELIVERED else (detail or outcome.value)
        await self._batch.script("callback_done", int(event.seq), event.message_id, note,
                                 num(at), self._ttl(), durable=True)

    async def callback_retry(self, seq: int, next_at: float, attempts: int) -> None:
        await self._batch.script("callback_retry", int(seq), num(next_at), int(attempts),
                                 durable=True)

    async def count_callbacks(self) -> int:
        return int(await self._batch.call(("ZCARD", self._key("cb:all"))))

    # --- keys --------------------------------------------------------------------------

    def _key(self, *parts: str) -> str:
        return self.prefix + "".join(parts)

    def _provider_key(self, provider: str, provider_id: str) -> str:
        # two free-form parts: quote both so that "a:b"+"c" and "a"+"b:c" differ
        return self._key("prov:", quote(provider, safe=""), ":", quote(provider_id, safe=""))

    def _idempotency_key(self, account: str, key: str) -> str:
        # two free-form parts, quoted like a provider key's
        return self._key("idem:", quote(account, safe=""), ":", quote(key, safe=""))

    def _ttl(self) -> int:
        return max(1, int(self.final_ttl))


# --- helpers -----------------------------------------------------------------------------

_URL_OPTIONS = STORE_OPTIONS


def open_client(url: str, *, max_connections: int, connect_timeout: float,
                socket_timeout: float, retries: int) -> aioredis.Redis:
    """A redis-py client on ``url`` as the store uses one (also each master's client of
    a sharded store, :mod:`smppbridge.store.redis.cluster`).

    A blocking pool: with a window of submits in flight per bind, each running a
    flood-rule script, commands wait for a free connection instead of failing
    (redis-py's default pool raises MaxConnectionsError past 100, which under load
    turned into ESME_RMSGQFUL refusals). The wait is bounded by the connect timeout, so
    in an outage a submit is refused (RMSGQFUL) within seconds instead of hanging."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=connect_timeout,
        decode_responses=True,
        # lone surrogates (broken UCS2 pairs) survive a round trip, as in SQLite
        encoding_errors="surrogatepass",
        retry=Retry(ExponentialWithJitterBackoff(cap=1.0, base=0.05), retries),
        socket_connect_timeout=connect_timeout, socket_timeout=socket_timeout,
        health_check_interval=10)
    return aioredis.Redis.from_pool(pool)  # the client owns (and closes) it


#: an event's keys outlive its TTL by this much (then Redis drops what was left)
_CALLBACK_TTL_MARGIN = 3600.0


def _callback_args(events: Sequence[CallbackEvent]) -> list[Any]:
    """count, then (body, key ttl, next_at) per event (callbacks_lua.add_callbacks)."""
    args: list[Any] = [len(events)]
    for ev in events:
        ttl = max(60, int(ev.expire_at - ev.at + _CALLBACK_TTL_MARGIN))
        args += [json.dumps(callback_body(ev)), ttl, num(ev.next_at)]
    return args


def _by_message(events: Sequence[CallbackEvent]) -> dict[str, list[CallbackEvent]]:
    out: dict[str, list[CallbackEvent]] = {}
    for ev in events:
        out.setdefault(ev.message_id, []).append(ev)
    return out


async def _all(calls: Iterable[Awaitable[None]]) -> None:
    """Run the calls concurrently (one pipeline); raise the first failure once all
    have finished, so none is left running."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
