"""The cluster store: the :class:`~smppbridge.store.base.Store` on Redis.

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
import hashlib
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
import structlog
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import (
    BusyLoadingError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from smppbridge.message import Address, OutboundMessage
from smppbridge.observability.metrics import METRICS
from smppbridge.store.base import (
    MessageState,
    PartRecord,
    ReceiptRecord,
    StoredMessage,
    StoreUnavailable,
    content_from_json,
    content_to_json,
    receipt_body,
    settle,
)

if TYPE_CHECKING:
    from smppbridge.bridge.flood_redis import RedisFloodState

__all__ = ["MessageExists", "RedisStore", "StoreUnavailable", "redis_unavailable"]

_log = structlog.get_logger("smppbridge")
_WRITE_LATENCY = METRICS.store_write

#: Most operations sent in one pipeline; bounds one round trip's size and latency.
_MAX_BATCH = 1000
#: Consumer group of the work stream; every node is one consumer of it.
_GROUP = "senders"
#: Idempotency tokens outlive any redis-py retry of the pipeline that carried them.
_TOKEN_TTL_MS = 120_000
#: Receipts expired per script call: keeps one call short on a huge backlog.
_EXPIRE_BATCH = 1000
#: A consumer with nothing pending and idle this long is a node that is gone.
_STALE_CONSUMER_MS = 3_600_000
_STALE_SWEEP_INTERVAL = 300.0
_DEFAULT_FINAL_TTL = 7 * 86400.0


class MessageExists(Exception):
    """``accept`` of a message id that is already stored."""


# --- Lua ---------------------------------------------------------------------------------
# Every script gets ARGV[1] = key prefix, ARGV[2] = consumer group, ARGV[3] = history
# cap; its own arguments follow. Keys are derived from the prefix inside the scripts,
# so the store needs a single Redis primary (or Sentinel), not Redis Cluster.
# Times and scores travel as Python repr() strings and are stored as given, so they
# round-trip exactly (Lua would print numbers with 14 significant digits).

_LUA_COMMON = """
local P, G, CAP = ARGV[1], ARGV[2], tonumber(ARGV[3])
local WORK = P .. 'work'

-- receipts from ARGV[i]: a count, then (account, body, expire_at) per receipt
local function add_receipts(i)
  local n = tonumber(ARGV[i])
  for k = 0, n - 1 do
    local acct, body, exp = ARGV[i + 1 + 3 * k], ARGV[i + 2 + 3 * k], ARGV[i + 3 + 3 * k]
    local seq = redis.call('INCR', P .. 'r:seq')
    redis.call('HSET', P .. 'r:' .. seq, 'a', acct, 'b', body, 'n', 0, 't', '0')
    redis.call('ZADD', P .. 'rq:' .. acct, seq, seq)
    redis.call('ZADD', P .. 'rexp', exp, seq)
    redis.call('SADD', P .. 'raccts', acct)
  end
  return i + 1 + 3 * n
end

-- a replay of a write whose reply was lost (redis-py retried the pipeline)?
local function replayed(tok)
  return not redis.call('SET', P .. 'tok:' .. tok, '1', 'NX', 'PX', TOKEN_TTL_MS)
end

-- take a message out of the work queue: its stream entry and its schedule
local function unqueue(mkey, mid)
  local entry = redis.call('HGET', mkey, 'entry')
  if entry and entry ~= '' then
    redis.call('XACK', WORK, G, entry)
    redis.call('XDEL', WORK, entry)
    redis.call('HSET', mkey, 'entry', '')
  end
  redis.call('ZREM', P .. 'sched', mid)
end

local function history(mid, item)
  local hkey = P .. 'h:' .. mid
  redis.call('RPUSH', hkey, item)
  redis.call('LTRIM', hkey, -CAP, -1)
end

-- point the provider index at a message, dropping the index entry it replaces
local function set_provider(mkey, mid, provider, provider_id, pkey)
  local old = redis.call('HGET', mkey, 'pkey')
  if old and old ~= '' and old ~= pkey then redis.call('DEL', old) end
  redis.call('HSET', mkey, 'provider', provider, 'provider_id', provider_id, 'pkey', pkey)
  redis.call('SET', pkey, mid)
end

-- a final message and everything that finds it expire together
local function expire_final(mkey, mid, ttl)
  redis.call('EXPIRE', mkey, ttl)
  redis.call('EXPIRE', P .. 'h:' .. mid, ttl)
  for _, pid in ipairs(cjson.decode(redis.call('HGET', mkey, 'part_ids'))) do
    redis.call('EXPIRE', P .. 'pid:' .. pid, ttl)
  end
  local pkey = redis.call('HGET', mkey, 'pkey')
  if pkey and pkey ~= '' then redis.call('EXPIRE', pkey, ttl) end
end

-- a message hash as one JSON object: one reply element to parse instead of ~60
local function message_json(mkey)
  local h = redis.call('HGETALL', mkey)
  if #h == 0 then return '' end
  local t = {}
  for k = 1, #h, 2 do t[h[k]] = h[k + 1] end
  return cjson.encode(t)
end

local function drop_receipt(seq)
  local rkey = P .. 'r:' .. seq
  local acct = redis.call('HGET', rkey, 'a')
  if not acct then return 0 end
  redis.call('ZREM', P .. 'rq:' .. acct, seq)
  redis.call('ZREM', P .. 'rw:' .. acct, seq)
  redis.call('ZREM', P .. 'rexp', seq)
  redis.call('DEL', rkey)
  return 1
end
""".replace("TOKEN_TTL_MS", str(_TOKEN_TTL_MS))

_LUA: dict[str, str] = {
    # ARGV[4..]: tok, message id, state, next_at ('' = due now), final ttl, history item,
    # JSON [field, value, ...], JSON [part id, ...], receipts. (Two JSON arguments rather
    # than ~40 plain ones: packing arguments is most of a submit's cost in redis-py.)
    "accept": """
local tok, mid, state, next_at, ttl, item = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local mkey = P .. 'm:' .. mid
local old = redis.call('HGET', mkey, 'tok')
if old then
  if old == tok then return 0 end
  return redis.error_reply('EXISTS message id ' .. mid)
end
redis.call('HSET', mkey, 'tok', tok, 'entry', '', 'pkey', '', unpack(cjson.decode(ARGV[10])))
local parts = cjson.decode(ARGV[11])
if #parts > 1 then  -- a short message is found by its own id: no index key
  for _, pid in ipairs(parts) do
    redis.call('SET', P .. 'pid:' .. pid, mid)
    redis.call('HDEL', P .. 'parts', pid)
  end
end
history(mid, item)
if state == 'final' then
  redis.call('INCR', P .. 'finals')
  expire_final(mkey, mid, ttl)
elseif next_at ~= '' then
  redis.call('ZADD', P .. 'sched', next_at, mid)
else
  redis.call('HSET', mkey, 'entry', redis.call('XADD', WORK, '*', 'm', mid))
end
add_receipts(12)
return 1
""",
    # ARGV[4..]: consumer, now, limit, min idle ms (-1: no claiming), claim cursor
    "due": """
local consumer, now, limit = ARGV[4], ARGV[5], tonumber(ARGV[6])
local sched = P .. 'sched'
for _, mid in ipairs(redis.call('ZRANGEBYSCORE', sched, '-inf', now, 'LIMIT', 0, limit)) do
  redis.call('ZREM', sched, mid)
  local mkey = P .. 'm:' .. mid
  if redis.call('HGET', mkey, 'state') == 'queued' then
    redis.call('HSET', mkey, 'entry', redis.call('XADD', WORK, '*', 'm', mid))
  end
end
local entries = {}
local cursor = '0-0'
if tonumber(ARGV[7]) >= 0 then
  local c = redis.call('XAUTOCLAIM', WORK, G, consumer, ARGV[7], ARGV[8], 'COUNT', limit)
  cursor = c[1]
  for _, e in ipairs(c[2]) do entries[#entries + 1] = e end
end
if #entries < limit then
  local r = redis.call('XREADGROUP', 'GROUP', G, consumer, 'COUNT', limit - #entries,
                       'STREAMS', WORK, '>')
  if r then for _, e in ipairs(r[1][2]) do entries[#entries + 1] = e end end
end
local out = {cursor}
for _, e in ipairs(entries) do
  local id, f = e[1], e[2]
  local mid = f and f[2]
  local live = false
  if mid then
    local mkey = P .. 'm:' .. mid
    local h = redis.call('HMGET', mkey, 'state', 'entry')
    if h[1] == 'queued' and h[2] == id then
      out[#out + 1] = id
      out[#out + 1] = message_json(mkey)
      live = true
    end
  end
  if not live then  -- finished or cancelled meanwhile: a stale entry
    redis.call('XACK', WORK, G, id)
    redis.call('XDEL', WORK, id)
  end
end
return out
""",
    # ARGV[4..]: consumer, entry ids held. Refreshes their idle time if still ours.
    "touch": """
local consumer = ARGV[4]
local lost = {}
for k = 5, #ARGV do
  local p = redis.call('XPENDING', WORK, G, ARGV[k], ARGV[k], 1, consumer)
  if #p > 0 then
    redis.call('XCLAIM', WORK, G, consumer, 0, ARGV[k], 'JUSTID')
  else
    lost[#lost + 1] = ARGV[k]
  end
end
return lost
""",
    # ARGV[4..]: this consumer, idle ms. Deletes other consumers with nothing pending
    # that have been idle that long (processes long gone); atomic, so a consumer cannot
    # take work between the check and the delete.
    "forget_consumers": """
local n = 0
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', WORK, G)) do
  local info = {}
  for k = 1, #c, 2 do info[c[k]] = c[k + 1] end
  if info['name'] ~= ARGV[4] and info['pending'] == 0
      and info['idle'] > tonumber(ARGV[5]) then
    redis.call('XGROUP', 'DELCONSUMER', WORK, G, info['name'])
    n = n + 1
  end
end
return n
""",
    # ARGV[4..]: tok, message id, provider, provider id, provider key, stat, final ttl,
    # history item, receipts
    "mark_sent": """
local tok, mid, provider, pid, pkey, stat, ttl, item =
  ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11]
local mkey = P .. 'm:' .. mid
local state = redis.call('HGET', mkey, 'state')
if not state or redis.call('HGET', mkey, 'op') == tok then return 0 end
redis.call('HSET', mkey, 'op', tok)
unqueue(mkey, mid)
set_provider(mkey, mid, provider, pid, pkey)
history(mid, item)
if state == 'final' then
  -- finalised (cancelled) by another node while this one was sending: it stays final
  redis.call('EXPIRE', pkey, ttl)
  return 0
end
redis.call('HSET', mkey, 'state', 'sent', 'stat', stat)
redis.call('HINCRBY', mkey, 'attempts', 1)
redis.call('SADD', P .. 'sent', mid)
add_receipts(12)
return 1
""",
    # ARGV[4..]: message id, next_at, attempts
    "mark_retry": """
local mid, next_at, attempts = ARGV[4], ARGV[5], ARGV[6]
local mkey = P .. 'm:' .. mid
local state = redis.call('HGET', mkey, 'state')
if not state then return 0 end
unqueue(mkey, mid)
redis.call('HSET', mkey, 'next_at', next_at, 'attempts', attempts)
if state == 'queued' then redis.call('ZADD', P .. 'sched', next_at, mid) end
return 1
""",
    # ARGV[4..]: message id, stat, err, now, final ttl, history item, provider,
    # provider id, provider key, receipts
    "mark_final": """
local mid, stat, err, now, ttl, item, provider, pid, pkey =
  ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12]
local mkey = P .. 'm:' .. mid
local state = redis.call('HGET', mkey, 'state')
if not state then return 0 end
if provider ~= '' then set_provider(mkey, mid, provider, pid, pkey) end
if state == 'final' then
  if provider ~= '' then redis.call('EXPIRE', pkey, ttl) end
  return 0
end
unqueue(mkey, mid)
redis.call('SREM', P .. 'sent', mid)
redis.call('HSET', mkey, 'state', 'final', 'stat', stat, 'err', err, 'done_at', now)
history(mid, item)
add_receipts(13)
redis.call('INCR', P .. 'finals')
expire_final(mkey, mid, ttl)
return 1
""",
    # ARGV[4]: the message id or any part id
    "find": """
local mkey = P .. 'm:' .. ARGV[4]
if redis.call('EXISTS', mkey) == 0 then
  local mid = redis.call('GET', P .. 'pid:' .. ARGV[4])
  if not mid then return '' end
  mkey = P .. 'm:' .. mid
end
return message_json(mkey)
""",
    # ARGV[4]: provider key
    "find_by_provider": """
local mid = redis.call('GET', ARGV[4])
if not mid then return '' end
return message_json(P .. 'm:' .. mid)
""",
    # ARGV[4..]: tok, part count, part ids, receipts
    "fail_parts": """
if replayed(ARGV[4]) then return 0 end
local n = tonumber(ARGV[5])
for k = 6, 5 + n do redis.call('HDEL', P .. 'parts', ARGV[k]) end
add_receipts(6 + n)
return 1
""",
    # ARGV[4..]: tok, receipts
    "add_receipts": """
if replayed(ARGV[4]) then return 0 end
add_receipts(5)
return 1
""",
    # ARGV[4..]: account, now, limit, lease until. Returns seq, body, attempts, next_at
    # for each receipt taken, oldest first, and leases them.
    "receipts_for": """
local acct, now, limit, lease = ARGV[4], ARGV[5], tonumber(ARGV[6]), ARGV[7]
local rq, rw = P .. 'rq:' .. acct, P .. 'rw:' .. acct
for _, seq in ipairs(redis.call('ZRANGEBYSCORE', rw, '-inf', now)) do
  redis.call('ZREM', rw, seq)
  redis.call('ZADD', rq, seq, seq)
end
local out = {}
if limit <= 0 then return out end
for _, seq in ipairs(redis.call('ZRANGE', rq, 0, limit - 1)) do
  redis.call('ZREM', rq, seq)
  redis.call('ZADD', rw, lease, seq)
  local r = redis.call('HMGET', P .. 'r:' .. seq, 'b', 'n', 't')
  out[#out + 1] = seq
  out[#out + 1] = r[1]
  out[#out + 1] = r[2]
  out[#out + 1] = r[3]
end
return out
""",
    # ARGV[4..]: seqs
    "receipt_done": """
local n = 0
for k = 4, #ARGV do n = n + drop_receipt(ARGV[k]) end
return n
""",
    # ARGV[4..]: seq, next_at, attempts
    "receipt_retry": """
local seq, next_at, attempts = ARGV[4], ARGV[5], ARGV[6]
local rkey = P .. 'r:' .. seq
local acct = redis.call('HGET', rkey, 'a')
if not acct then return 0 end
redis.call('HSET', rkey, 'n', attempts, 't', next_at)
redis.call('ZREM', P .. 'rq:' .. acct, seq)
redis.call('ZADD', P .. 'rw:' .. acct, next_at, seq)
return 1
""",
    # ARGV[4..]: now, batch
    "expire_receipts": """
local n = 0
local exp = redis.call('ZRANGEBYSCORE', P .. 'rexp', '-inf', ARGV[4], 'LIMIT', 0, ARGV[5])
for _, seq in ipairs(exp) do
  drop_receipt(seq)
  redis.call('ZREM', P .. 'rexp', seq)
  n = n + 1
end
return n
""",
    # ARGV[4]: now. Accounts left with no receipts at all are forgotten.
    "accounts_with_receipts": """
local out = {}
for _, acct in ipairs(redis.call('SMEMBERS', P .. 'raccts')) do
  local rq, rw = P .. 'rq:' .. acct, P .. 'rw:' .. acct
  if redis.call('ZCARD', rq) > 0
      or #redis.call('ZRANGEBYSCORE', rw, '-inf', ARGV[4], 'LIMIT', 0, 1) > 0 then
    out[#out + 1] = acct
  elseif redis.call('ZCARD', rw) == 0 then
    redis.call('SREM', P .. 'raccts', acct)
  end
end
return out
""",
}

_SCRIPTS = {name: _LUA_COMMON + body for name, body in _LUA.items()}
_SHAS = {name: hashlib.sha1(src.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1
         for name, src in _SCRIPTS.items()}


@dataclass(slots=True)
class _Op:
    """One command waiting for the next pipeline."""

    command: tuple[Any, ...]
    future: asyncio.Future[Any]
    script: str | None = None
    #: with ``min_replicas``: fail unless the replicas acknowledged the batch
    durable: bool = False
    attempts: int = 0

    def args(self) -> tuple[Any, ...]:
        if self.script is None:
            return self.command
        return ("EVALSHA", _SHAS[self.script], 0, *self.command)


class RedisStore:
    """The :class:`~smppbridge.store.base.Store` on Redis; see the module docstring.

    ``url`` is ``redis://[user:password@]HOST:PORT/DB`` (``rediss://`` for TLS).
    ``node_id`` names this node's consumer in the work group (default hostname-pid, so a
    restarted process is a new consumer and its predecessor's work is claimed).
    ``claim_after``: seconds a taken message may go untouched before another node takes
    it over. ``final_ttl``: seconds a final message stays findable (query_sm, late
    statuses). ``receipt_lease``: seconds a receipt handed to a node stays hidden from the
    others; it must exceed the longest deliver_sm round trip. ``retries`` and the
    timeouts configure redis-py's reconnection (exponential backoff with jitter).
    """

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
        self.round_trips = 0  # pipelines sent (observability, tests)
        self._client: aioredis.Redis | None = None
        self._pending: list[_Op] = []
        self._flusher: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        #: message id -> stream entry id, for the messages this node is working on
        self._held: dict[str, str] = {}
        self._claim_cursor = "0-0"
        self._closing = False

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

    def flood_state(self) -> RedisFloodState:
        """A :class:`~smppbridge.bridge.flood_redis.RedisFloodState` on this store's
        connection pool and prefix (flood windows shared by all nodes)."""
        from smppbridge.bridge.flood_redis import RedisFloodState

        return RedisFloodState(self.client, prefix=self.prefix)

    # --- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        self._closing = False
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
            await self._load_scripts()
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
        self._closing = True
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        if self._flusher is not None:
            await asyncio.shield(self._flusher)
        await self._client.aclose()
        self._client = None
        self._closing = False
        self._held.clear()

    async def ready(self) -> bool:
        try:
            await self._call(("PING",))
        except (StoreUnavailable, RedisError):
            return False
        return True

    async def _load_scripts(self) -> None:
        client = self.client
        with redis_unavailable():
            for name, src in _SCRIPTS.items():
                sha = await client.script_load(src)
                if sha != _SHAS[name]:  # pragma: no cover - Redis hashes what we hash
                    msg = f"script {name}: Redis named it {sha}, expected {_SHAS[name]}"
                    raise RuntimeError(msg)

    async def _create_group(self) -> None:
        with redis_unavailable():
            try:
                # id 0: a group created after messages were queued still sees them
                await self.client.xgroup_create(self._key("work"), _GROUP, id="0",
                                                mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    # --- the batcher -------------------------------------------------------------------

    def _submit(self, op: _Op) -> None:
        if self._client is None or self._closing:
            msg = "store is not open"
            raise StoreUnavailable(msg)
        self._pending.append(op)
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _call(self, command: tuple[Any, ...], *, durable: bool = False) -> Any:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._submit(_Op(command, fut, durable=durable))
        return await fut

    async def _script(self, name: str, *args: Any, durable: bool = False) -> Any:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        base = (self.prefix, _GROUP, self.history_cap)
        self._submit(_Op((*base, *args), fut, script=name, durable=durable))
        return await fut

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch = self._pending[:_MAX_BATCH]
                del self._pending[:_MAX_BATCH]
                try:
                    await self._run(batch)
                except Exception as exc:
                    # an unexpected failure fails its batch; no caller is left waiting
                    _log.exception("store.batch_failed")
                    for op in batch:
                        settle(op.future, None, _map_error(exc))
        finally:
            self._flusher = None

    async def _run(self, batch: list[_Op]) -> None:
        """One round trip for ``batch``; a script Redis forgot (restart, SCRIPT FLUSH) is
        loaded again and only the commands that met NOSCRIPT are re-sent."""
        while batch:
            started = time.monotonic()
            pipe = self.client.pipeline(transaction=False)
            for op in batch:
                pipe.execute_command(*op.args())
            wait = self.min_replicas > 0
            if wait:
                pipe.execute_command("WAIT", self.min_replicas,
                                     max(1, int(self.replica_timeout * 1000)))
            self.round_trips += 1
            try:
                results = await pipe.execute(raise_on_error=False)
            except Exception as exc:
                error = _map_error(exc)
                _log.warning("store.redis_unavailable", error=repr(exc))
                for op in batch:
                    settle(op.future, None, error)
                return
            _WRITE_LATENCY.observe(time.monotonic() - started)
            replicated = True
            if wait:
                acked = results.pop()
                replicated = isinstance(acked, int) and acked >= self.min_replicas
            again: list[_Op] = []
            for op, result in zip(batch, results, strict=True):
                if isinstance(result, NoScriptError) and op.attempts == 0:
                    op.attempts += 1
                    again.append(op)
                elif isinstance(result, Exception):
                    settle(op.future, None, _map_error(result))
                elif op.durable and not replicated:
                    settle(op.future, None, StoreUnavailable(
                        f"fewer than {self.min_replicas} replicas acknowledged the write"))
                else:
                    settle(op.future, result, None)
            if again:
                try:
                    await self._load_scripts()
                except StoreUnavailable as exc:
                    for op in again:
                        settle(op.future, None, exc)
                    return
            batch = again

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
                    for entry in await self._script("touch", self.node_id, *by_entry):
                        mid = by_entry[entry]
                        if self._held.get(mid) == entry:  # not finished meanwhile
                            del self._held[mid]
                            _log.warning("store.claim_lost", message_id=mid)
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + _STALE_SWEEP_INTERVAL
                    await self._script("forget_consumers", self.node_id, _STALE_CONSUMER_MS)
            except (StoreUnavailable, RedisError) as exc:
                _log.warning("store.heartbeat_failed", error=repr(exc))
            except Exception:
                # keep beating: a dead heartbeat would let other nodes take our work
                _log.exception("store.heartbeat_crashed")

    # --- ids ---------------------------------------------------------------------------

    async def reserve_ids(self, count: int) -> int:
        last = int(await self._call(("INCRBY", self._key("ids"), int(count)), durable=True))
        return last - count + 1

    # --- parts -------------------------------------------------------------------------

    async def save_part(self, part: PartRecord) -> None:
        body = json.dumps({
            "account": part.account, "key": part.key,
            "pdu": base64.b64encode(part.pdu).decode("ascii"),
            "arrived_at": part.arrived_at, "system_type": part.system_type,
            "interface_version": part.interface_version})
        await self._call(("HSET", self._key("parts"), part.part_id, body), durable=True)

    async def load_parts(self) -> list[PartRecord]:
        raw = await self._call(("HGETALL", self._key("parts")))
        parts = []
        for part_id, body in (raw.items() if isinstance(raw, dict) else _pairs(raw).items()):
            d = json.loads(body)
            parts.append(PartRecord(part_id, d["account"], d["key"],
                                    base64.b64decode(d["pdu"]), d["arrived_at"],
                                    d["system_type"], d["interface_version"]))
        parts.sort(key=lambda p: (p.arrived_at, p.part_id))
        return parts

    async def fail_parts(self, part_ids: Sequence[str],
                         receipts: Sequence[ReceiptRecord]) -> None:
        await self._script("fail_parts", _token(), len(part_ids), *part_ids,
                           *_receipt_args(receipts), durable=True)

    # --- messages ----------------------------------------------------------------------

    async def accept(self, message: OutboundMessage, receipts: Sequence[ReceiptRecord] = (),
                     *, final_stat: str = "", final_err: int = 0) -> None:
        m = message
        final = bool(final_stat)
        state = MessageState.FINAL if final else MessageState.QUEUED
        fields = _message_fields(m)
        fields.update(state=state.value, stat=str(final_stat), err=str(int(final_err)),
                      provider="", provider_id="", attempts="0",
                      next_at=_num(m.schedule_at or 0.0),
                      done_at=_num(m.submitted_at) if final else "")
        flat = [x for kv in fields.items() for x in kv]
        next_at = _num(m.schedule_at) if m.schedule_at else ""
        try:
            await self._script(
                "accept", _token(), m.message_id, state.value, next_at, self._ttl(),
                _history(m.submitted_at, state.value, final_stat, final_err),
                _json_array(flat), _json_array(m.part_ids), *_receipt_args(receipts),
                durable=True)
        except ResponseError as exc:
            if str(exc).startswith("EXISTS"):
                raise MessageExists(str(exc)) from exc
            raise

    async def due(self, now: float, limit: int) -> list[StoredMessage]:
        """Take queued messages whose time has come, oldest first: this node's share of
        new work, plus work idle longer than ``claim_after`` on a node presumed dead. A
        message is returned to one node only, until mark_retry releases it."""
        if limit <= 0:
            return []
        claim_ms = max(1, int(self.claim_after * 1000))
        try:
            out = await self._script("due", self.node_id, _num(now), limit, claim_ms,
                                     self._claim_cursor)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # the stream was lost (Redis restarted without persistence, or flushed)
            await self._create_group()
            out = await self._script("due", self.node_id, _num(now), limit, claim_ms, "0-0")
        self._claim_cursor = str(out[0])
        messages = []
        for i in range(1, len(out), 2):
            entry, stored = str(out[i]), _to_stored(json.loads(out[i + 1]))
            self._held[stored.message.message_id] = entry
            messages.append(stored)
        messages.sort(key=lambda s: (s.next_at, s.message.submitted_at))
        return messages

    async def in_flight(self) -> list[StoredMessage]:
        ids = await self._call(("SMEMBERS", self._key("sent")))
        raws = await asyncio.gather(*(self._call(("HGETALL", self._key("m:", mid)))
                                      for mid in ids))
        return [_to_stored(_pairs(raw)) for raw in raws if raw]

    async def mark_sent(self, message_id: str, provider: str, provider_id: str,
                        stat: str, now: float,
                        receipts: Sequence[ReceiptRecord] = ()) -> None:
        """As in SQLite, except that a message another node finalised meanwhile (a
        cancel_sm racing the send) stays final; its provider id is still recorded."""
        self._held.pop(message_id, None)
        await self._script("mark_sent", _token(), message_id, provider, provider_id,
                           self._provider_key(provider, provider_id), str(stat), self._ttl(),
                           _history(now, "sent", stat, 0, provider),
                           *_receipt_args(receipts), durable=True)

    async def mark_retry(self, message_id: str, next_at: float, attempts: int) -> None:
        self._held.pop(message_id, None)
        await self._script("mark_retry", message_id, _num(next_at), int(attempts),
                           durable=True)

    async def mark_final(self, message_id: str, stat: str, err: int, now: float,
                         receipts: Sequence[ReceiptRecord] = (), provider: str = "",
                         provider_id: str = "") -> None:
        self._held.pop(message_id, None)
        pkey = self._provider_key(provider, provider_id) if provider else ""
        # int()/str(): redis-py would send an IntEnum by its repr()
        await self._script("mark_final", message_id, str(stat), int(err), _num(now),
                           self._ttl(),
                           _history(now, "final", stat, err), provider, provider_id, pkey,
                           *_receipt_args(receipts), durable=True)

    async def find(self, message_id: str) -> StoredMessage | None:
        raw = await self._script("find", message_id)
        return _to_stored(json.loads(raw)) if raw else None

    async def find_by_provider(self, provider: str, provider_id: str
                               ) -> StoredMessage | None:
        raw = await self._script("find_by_provider",
                                 self._provider_key(provider, provider_id))
        return _to_stored(json.loads(raw)) if raw else None

    async def history(self, message_id: str) -> list[tuple[float, str, str, int, str]]:
        """The status history, oldest first: (at, state, stat, err, detail); the last
        ``history_cap`` entries are kept."""
        items = await self._call(("LRANGE", self._key("h:", message_id), 0, -1))
        out = []
        for item in items:
            at, state, stat, err, detail = json.loads(item)
            out.append((float(at), str(state), str(stat), int(err), str(detail)))
        return out

    async def count(self, state: MessageState) -> int:
        """Messages in ``state``. FINAL counts every message ever finalised (their hashes
        expire after ``final_ttl``, the count does not), like the SQLite rows."""
        if state is MessageState.SENT:
            return int(await self._call(("SCARD", self._key("sent"))))
        if state is MessageState.FINAL:
            return int(await self._call(("GET", self._key("finals"))) or 0)
        # unfinished stream entries (new or being sent) + waiting for a time
        stream, sched = await asyncio.gather(self._call(("XLEN", self._key("work"))),
                                             self._call(("ZCARD", self._key("sched"))))
        return int(stream) + int(sched)

    # --- receipts ----------------------------------------------------------------------

    async def add_receipts(self, receipts: Sequence[ReceiptRecord]) -> None:
        if receipts:
            await self._script("add_receipts", _token(), *_receipt_args(receipts),
                               durable=True)

    async def receipts_for(self, account: str, now: float, limit: int
                           ) -> list[ReceiptRecord]:
        """Receipts of ``account`` due for (re)delivery, in creation order, leased to
        this node for ``receipt_lease`` seconds (unless done or retried before)."""
        out = await self._script("receipts_for", account, _num(now), limit,
                                 _num(now + self.receipt_lease))
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
            await self._script("receipt_done", *(int(s) for s in seqs), durable=True)

    async def receipt_retry(self, seq: int, next_at: float, attempts: int) -> None:
        await self._script("receipt_retry", int(seq), _num(next_at), int(attempts),
                           durable=True)

    async def expire_receipts(self, now: float) -> int:
        total = 0
        while True:
            n = int(await self._script("expire_receipts", _num(now), _EXPIRE_BATCH))
            total += n
            if n < _EXPIRE_BATCH:
                return total

    async def accounts_with_receipts(self, now: float) -> list[str]:
        return [str(a) for a in await self._script("accounts_with_receipts", _num(now))]

    async def count_receipts(self) -> int:
        return int(await self._call(("ZCARD", self._key("rexp"))))

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



@contextlib.contextmanager
def redis_unavailable() -> Iterator[None]:
    """Turn "cannot reach Redis" (and the other temporary Redis states of
    :func:`_map_error`) into :class:`StoreUnavailable`."""
    try:
        yield
    except Exception as exc:
        mapped = _map_error(exc)
        if mapped is exc:
            raise
        raise mapped from exc


def _map_error(exc: Exception) -> Exception:
    """Redis unreachable, loading, read-only (a failover in progress) or out of memory:
    temporary for the caller (a submit is answered ESME_RMSGQFUL)."""
    if isinstance(exc, StoreUnavailable):
        return exc
    if isinstance(exc, RedisConnectionError | RedisTimeoutError | BusyLoadingError
                  | ReadOnlyError | OutOfMemoryError | ConnectionError | TimeoutError):
        mapped = StoreUnavailable(f"redis unavailable: {exc}")
        mapped.__cause__ = exc
        return mapped
    return exc




def _token() -> str:
    return uuid.uuid4().hex


def _num(x: float | None) -> str:
    """A time as Redis stores it: repr round-trips every float exactly."""
    return "" if x is None else repr(float(x))


def _opt(s: str) -> float | None:
    return float(s) if s else None


def _pairs(raw: Any) -> dict[str, str]:
    """A flat [k1, v1, k2, v2, ...] reply (Lua HGETALL) as a dict."""
    if isinstance(raw, dict):
        return {str(k): v for k, v in raw.items()}
    it = iter(raw or ())
    return {str(k): v for k, v in zip(it, it, strict=True)}


def _json_array(items: Sequence[str]) -> str:
    """Strings for a script to cjson.decode. Non-ASCII goes as raw UTF-8, not as
    backslash-u escapes: cjson would reject an escaped lone surrogate, while raw bytes pass
    through it untouched, exactly as in a plain argument."""
    return json.dumps(list(items), ensure_ascii=False)


def _history(at: float, state: str, stat: str, err: int, detail: str = "") -> str:
    return json.dumps([at, state, stat, err, detail])




def _message_fields(m: OutboundMessage) -> dict[str, str]:
    return {
        "id": m.message_id, "account": m.account, "part_ids": json.dumps(list(m.part_ids)),
        "source": m.source.addr, "source_ton": str(int(m.source.ton)),
        "source_npi": str(int(m.source.npi)), "dest": m.destination.addr,
        "dest_ton": str(int(m.destination.ton)), "dest_npi": str(int(m.destination.npi)),
        "kind": m.content.kind.value, "content": content_to_json(m.content),
        "registered_delivery": str(int(m.registered_delivery)),
        "schedule_at": _num(m.schedule_at), "expire_at": _num(m.expire_at),
        "submitted_at": _num(m.submitted_at), "service_type": m.service_type,
        "data_coding": str(int(m.data_coding)), "extra": json.dumps(m.extra),
    }


def _to_stored(h: Mapping[str, str]) -> StoredMessage:
    msg = OutboundMessage(
        message_id=h["id"], account=h["account"], part_ids=tuple(json.loads(h["part_ids"])),
        source=Address(h["source"], int(h["source_ton"]), int(h["source_npi"])),
        destination=Address(h["dest"], int(h["dest_ton"]), int(h["dest_npi"])),
        content=content_from_json(h["content"]), registered_delivery=int(h["registered_delivery"]),
        schedule_at=_opt(h["schedule_at"]), expire_at=_opt(h["expire_at"]),
        submitted_at=float(h["submitted_at"]), service_type=h["service_type"],
        data_coding=int(h["data_coding"]), extra=json.loads(h["extra"]))
    return StoredMessage(msg, MessageState(h["state"]), h["stat"], int(h["err"]),
                         h["provider"], h["provider_id"], int(h["attempts"]),
                         float(h["next_at"]), _opt(h["done_at"]))


def _receipt_args(receipts: Sequence[ReceiptRecord]) -> list[Any]:
    args: list[Any] = [len(receipts)]
    for rec in receipts:
        args += [rec.account, json.dumps(receipt_body(rec)), _num(rec.expire_at)]
    return args

