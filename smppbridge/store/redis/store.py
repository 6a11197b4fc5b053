"""The cluster store: the :class:`~smppbridge.core.ports.Store` on Redis.

Size: over 500 lines because it is the one class that fulfils the whole Store contract
on Redis (about forty operations of a few lines each); the Lua, the batcher, the record
layout and the flood windows are in their own modules beside it.

Theory of operation
-------------------
All nodes of a cluster share one Redis (a primary, with replicas/Sentinel if wanted).
Every key starts with ``prefix`` (default ``smppbridge:``); the full layout is in
``docs/cluster.md``. In short:

* a message is a hash ``m:<id>`` (every :class:`OutboundMessage` field plus state,
  stat, err, provider, provider_id, attempts, next_at, done_at), with a capped status
  history list ``h:<id>``, for a long message one ``pid:<part id>`` string per part
  (query_sm/cancel_sm by any part id), and a ``prov:<provider>:<provider id>`` string
  (webhooks, polling). Once final, all of them expire after ``final_ttl``.
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
  node delivers them meanwhile; ``receipt_done`` deletes them, ``receipt_retry``
  reschedules them, and a node that dies lets the lease run out.

Atomicity and throughput: every multi-key change is one Lua script (atomic in Redis).
All operations go through one batcher: whatever is queued while a round trip is in
progress is sent as the next pipeline, so hundreds of concurrent ``accept`` calls cost one
round trip (and one AOF fsync with ``appendfsync always``): group commit, as in the
SQLite store.

Idempotency: redis-py re-sends a pipeline after a connection error, and a write whose
reply was lost would then run twice. Scripts that are not naturally idempotent carry a
random token: ``accept`` and ``mark_sent`` keep it in the message hash, ``add_receipts``
and ``fail_parts`` in a short-lived ``tok:<token>`` key, and a replay is a no-op.

Durability is Redis's: a write is acknowledged once Redis executed it, and survives
what its AOF settings allow (``docs/cluster.md``); ``min_replicas`` adds a WAIT so a
write is acknowledged only once replicas have it too.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
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

from smppbridge.core.errors import StoreUnavailable
from smppbridge.core.message import OutboundMessage
from smppbridge.core.ports import FinalEntry, Leased, SentEntry
from smppbridge.core.records import (
    DeliveryState,
    PartRecord,
    ReceiptRecord,
    StoredMessage,
)
from smppbridge.store.redis.batching import Batcher, redis_unavailable
from smppbridge.store.redis.flood import RedisFloodState
from smppbridge.store.redis.records import (
    history_entry,
    json_array,
    message_fields,
    num,
    pairs,
    receipt_args,
    to_stored,
    token,
)

__all__ = ["MessageExists", "RedisStore"]

_log = structlog.get_logger("smppbridge")
#: Consumer group of the work stream; every node is one consumer of it.
_GROUP = "senders"
#: Receipts expired per script call: keeps one call short on a huge backlog.
_EXPIRE_BATCH = 1000
#: A consumer with nothing pending and idle this long is a node that is gone.
_STALE_CONSUMER_MS = 3_600_000
_STALE_SWEEP_INTERVAL = 300.0
_DEFAULT_FINAL_TTL = 7 * 86400.0


class MessageExists(Exception):
    """``accept`` of a message id that is already stored."""


class RedisStore:
    """The :class:`~smppbridge.core.ports.Store` on Redis; see the module docstring.

    ``url`` is ``redis://[user:password@]HOST:PORT/DB`` (``rediss://`` for TLS).
    ``node_id`` names this node's consumer in the work group (default hostname-pid, so a
    restarted process is a new consumer and its predecessor's work is claimed).
    ``claim_after``: seconds a taken message may go untouched before another node takes
    it over. ``final_ttl``: seconds a final message stays findable (query_sm, late
    statuses). ``receipt_lease``: seconds a receipt handed to a node stays hidden from the
    others; it must exceed the longest deliver_sm round trip. ``retries`` and the
    timeouts configure redis-py's reconnection (exponential backoff with jitter).
    """

    #: new messages go to the shared work stream, never to one node's sender directly
    claims_on_accept = False

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *,
                 prefix: str = "smppbridge:", node_id: str | None = None,
                 claim_after: float = 30.0, final_ttl: float = _DEFAULT_FINAL_TTL,
                 receipt_lease: float = 120.0, history_cap: int = 32,
                 min_replicas: int = 0, replica_timeout: float = 1.0,
                 retries: int = 3, connect_timeout: float = 1.0,
                 socket_timeout: float = 5.0, max_connections: int = 64) -> None:
        if claim_after <= 0 or final_ttl < 1 or receipt_lease <= 0 or history_cap < 1:
            msg = "claim_after, final_ttl, receipt_lease and history_cap must be positive"
            raise ValueError(msg)
        self.url = url
        self.prefix = prefix
        self.node_id = node_id or f"{socket.gethostname()}-{os.getpid()}"
        self.claim_after = claim_after
        self.final_ttl = final_ttl
        self.receipt_lease = receipt_lease
        self.history_cap = history_cap
        self.min_replicas = min_replicas
        self.replica_timeout = replica_timeout
        self.retries = retries
        self.connect_timeout = connect_timeout
        self.socket_timeout = socket_timeout
        self.max_connections = max_connections
        self._client: aioredis.Redis | None = None
        self._batch = Batcher(lambda: self.client, (self.prefix, _GROUP, self.history_cap),
                              min_replicas=min_replicas, replica_timeout=replica_timeout)
        self._heartbeat: asyncio.Task[None] | None = None
        #: message id -> stream entry id, for the messages this node is working on
        self._held: dict[str, str] = {}
        self._claim_cursor = "0-0"

    @classmethod
    def from_url(cls, url: str) -> RedisStore:
        """``redis://HOST:PORT/DB`` with optional query parameters ``prefix``,
        ``node_id``, ``claim_after``, ``final_ttl``, ``receipt_lease``, ``min_replicas``,
        ``replica_timeout``; other parameters are left to redis-py."""
        parts = urlsplit(url)
        ours: dict[str, str] = {}
        rest: list[tuple[str, str]] = []
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key in _URL_OPTIONS:
                ours[key] = value
            else:
                rest.append((key, value))
        kwargs: dict[str, Any] = {key: _URL_OPTIONS[key](value) for key, value in ours.items()}
        return cls(urlunsplit(parts._replace(query=urlencode(rest))), **kwargs)

    @property
    def client(self) -> aioredis.Redis:
        """The redis-py client (shared with :meth:`flood_state`)."""
        if self._client is None:
            msg = "store is not open"
            raise StoreUnavailable(msg)
        return self._client

    @property
    def round_trips(self) -> int:
        """Pipelines sent (observability, tests)."""
        return self._batch.round_trips

    def flood_state(self) -> RedisFloodState:
        """A :class:`~smppbridge.store.redis.flood.RedisFloodState` on this store's
        connection pool and prefix (flood windows shared by all nodes); usable once the
        store is open."""
        return RedisFloodState(lambda: self.client, prefix=self.prefix)

    # --- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        self._batch.closing = False
        # A blocking pool: with a window of submits in flight per bind, each running a
        # flood-rule script, commands wait for a free connection instead of failing
        # (redis-py's default pool raises MaxConnectionsError past 100, which under
        # load turned into ESME_RMSGQFUL refusals). The wait is bounded by the connect
        # timeout, so in an outage a submit is refused (RMSGQFUL) within seconds
        # instead of hanging.
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url, max_connections=self.max_connections, timeout=self.connect_timeout,
            decode_responses=True,
            # lone surrogates (broken UCS2 pairs) survive a round trip, as in SQLite
            encoding_errors="surrogatepass",
            retry=Retry(ExponentialWithJitterBackoff(cap=1.0, base=0.05), self.retries),
            socket_connect_timeout=self.connect_timeout, socket_timeout=self.socket_timeout,
            health_check_interval=10)
        self._client = aioredis.Redis.from_pool(pool)  # the client owns (and closes) it
        try:
            await self._batch.load_scripts()
            await self._create_group()
        except Exception:
            await self._client.aclose()
            self._client = None
            raise
        self._heartbeat = asyncio.get_running_loop().create_task(
            self._touch_loop(), name=f"redis-store-heartbeat-{self.node_id}")

    async def close(self) -> None:
        """Finish queued operations and disconnect. Messages still held (taken by
        ``due`` and not finished) stay pending: another node claims them after
        ``claim_after``, exactly as if this node had died."""
        if self._client is None:
            return
        self._batch.closing = True
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        await self._batch.drain()
        await self._client.aclose()
        self._client = None
        self._batch.closing = False
        self._held.clear()

    async def ready(self) -> bool:
        try:
            await self._batch.call(("PING",))
        except (StoreUnavailable, RedisError):
            return False
        return True

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
        m = message
        final = bool(final_stat)
        state = DeliveryState.FINAL if final else DeliveryState.QUEUED
        fields = message_fields(m)
        fields.update(state=state.value, stat=str(final_stat), err=str(int(final_err)),
                      provider="", provider_id="", attempts="0",
                      next_at=num(m.schedule_at or 0.0),
                      done_at=num(m.submitted_at) if final else "")
        flat = [x for kv in fields.items() for x in kv]
        next_at = num(m.schedule_at) if m.schedule_at else ""
        try:
            await self._batch.script(
                "accept", token(), m.message_id, state.value, next_at, self._ttl(),
                history_entry(m.submitted_at, state.value, final_stat, final_err),
                json_array(flat), json_array(m.part_ids), *receipt_args(receipts),
                durable=True)
        except ResponseError as exc:
            if str(exc).startswith("EXISTS"):
                raise MessageExists(str(exc)) from exc
            raise

    async def accept_many(self, messages: Sequence[OutboundMessage], *,
                          claim: bool = False) -> list[Exception | None]:
        """One ``accept`` script per message, all in the same pipeline (the batcher
        sends what is queued together); each message gets its own verdict. ``claim`` is
        ignored: new work goes to the stream, shared by every node."""
        outcomes = await asyncio.gather(*(self.accept(m) for m in messages),
                                        return_exceptions=True)
        out: list[Exception | None] = []
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
                raise outcome  # cancelled
            out.append(outcome)
        if out and all(isinstance(o, StoreUnavailable) for o in out):
            raise cast(StoreUnavailable, out[0])
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
                        receipts: Sequence[ReceiptRecord] = ()) -> None:
        """As in SQLite, except that a message another node finalised meanwhile (a
        cancel_sm racing the send) stays final; its provider id is still recorded."""
        self._held.pop(message_id, None)
        await self._batch.script("mark_sent", token(), message_id, provider, provider_id,
                           self._provider_key(provider, provider_id), str(stat), self._ttl(),
                           history_entry(now, "sent", stat, 0, provider),
                           *receipt_args(receipts), durable=True)

    async def mark_sent_many(self, sent: Sequence[SentEntry], *,
                             lease: bool = False) -> Leased:
        """:meth:`mark_sent` for each, in one pipeline; receipts are never leased (every
        node's dispatcher reads them from Redis)."""
        await _all(self.mark_sent(*entry) for entry in sent)
        return []

    async def mark_retry(self, message_id: str, next_at: float, attempts: int) -> None:
        self._held.pop(message_id, None)
        await self._batch.script("mark_retry", message_id, num(next_at), int(attempts),
                           durable=True)

    async def mark_final(self, message_id: str, stat: str, err: int, now: float,
                         receipts: Sequence[ReceiptRecord] = (), provider: str = "",
                         provider_id: str = "") -> None:
        self._held.pop(message_id, None)
        pkey = self._provider_key(provider, provider_id) if provider else ""
        # int()/str(): redis-py would send an IntEnum by its repr()
        await self._batch.script("mark_final", message_id, str(stat), int(err), num(now),
                           self._ttl(),
                           history_entry(now, "final", stat, err), provider, provider_id, pkey,
                           *receipt_args(receipts), durable=True)

    async def mark_final_many(self, finals: Sequence[FinalEntry], *,
                              lease: bool = False) -> Leased:
        """:meth:`mark_final` for each, in one pipeline; nothing is leased."""
        await _all(self.mark_final(mid, stat, err, now, receipts)
                   for mid, stat, err, now, receipts in finals)
        return []

    async def find(self, message_id: str) -> StoredMessage | None:
        raw = await self._batch.script("find", message_id)
        return to_stored(json.loads(raw)) if raw else None

    async def find_by_provider(self, provider: str, provider_id: str
                               ) -> StoredMessage | None:
        raw = await self._batch.script("find_by_provider",
                                 self._provider_key(provider, provider_id))
        return to_stored(json.loads(raw)) if raw else None

    async def history(self, message_id: str) -> list[tuple[float, str, str, int, str]]:
        """The status history, oldest first: (at, state, stat, err, detail); the last
        ``history_cap`` entries are kept."""
        items = await self._batch.call(("LRANGE", self._key("h:", message_id), 0, -1))
        out = []
        for item in items:
            at, state, stat, err, detail = json.loads(item)
            out.append((float(at), str(state), str(stat), int(err), str(detail)))
        return out

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

    async def receipt_done(self, seqs: Sequence[int]) -> None:
        if seqs:
            await self._batch.script("receipt_done", *(int(s) for s in seqs), durable=True)

    async def receipt_retry(self, seq: int, next_at: float, attempts: int) -> None:
        await self._batch.script("receipt_retry", int(seq), num(next_at), int(attempts),
                           durable=True)

    async def release_receipts(self, seqs: Sequence[int]) -> None:
        """Nothing to give back: this store leases receipts only through
        :meth:`receipts_for`, whose lease runs out by itself."""

    async def expire_receipts(self, now: float) -> int:
        total = 0
        while True:
            n = int(await self._batch.script("expire_receipts", num(now), _EXPIRE_BATCH))
            total += n
            if n < _EXPIRE_BATCH:
                return total

    async def accounts_with_receipts(self, now: float) -> list[str]:
        return [str(a) for a in await self._batch.script("accounts_with_receipts", num(now))]

    async def count_receipts(self) -> int:
        return int(await self._batch.call(("ZCARD", self._key("rexp"))))

    # --- keys --------------------------------------------------------------------------

    def _key(self, *parts: str) -> str:
        return self.prefix + "".join(parts)

    def _provider_key(self, provider: str, provider_id: str) -> str:
        # two free-form parts: quote both so that "a:b"+"c" and "a"+"b:c" differ
        return self._key("prov:", quote(provider, safe=""), ":", quote(provider_id, safe=""))

    def _ttl(self) -> int:
        return max(1, int(self.final_ttl))


# --- helpers -----------------------------------------------------------------------------

_URL_OPTIONS: dict[str, Callable[[str], Any]] = {
    "prefix": str, "node_id": str, "claim_after": float, "final_ttl": float,
    "receipt_lease": float, "min_replicas": int, "replica_timeout": float,
}



async def _all(calls: Iterable[Awaitable[None]]) -> None:
    """Run the calls concurrently (one pipeline); raise the first failure once all
    have finished, so none is left running."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
