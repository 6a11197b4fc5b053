"""The Lua of the Redis store's status callback outbox (docs/cluster.md, key layout):

* ``cb:seq`` numbers events; an event is the hash ``cb:e:<seq>`` (``b`` its JSON, ``m``
  its message, ``n`` attempts, ``t`` next_at), expiring a while after its TTL;
* ``cb:m:<message id>`` lists the message's events in the outbox, oldest first; only
  the oldest is in ``cb:due`` (score = when due), so a message's events go one at a
  time, in order;
* ``callbacks_due`` *leases* what it returns by moving its score to the lease's end:
  no other node takes it meanwhile, and a node that dies lets the lease run out;
* ``cb:all`` (score = expire_at) counts the outbox (the depth gauge) without a SCAN.

:data:`CALLBACK_COMMON` is part of every script (``mark_sent`` and ``mark_final`` add
their events in the same script as the status); it uses ``P`` and ``note`` of
:mod:`.scripts`.
"""

from __future__ import annotations

__all__ = ["CALLBACK_COMMON", "CALLBACK_LUA"]

CALLBACK_COMMON = """
-- events from A[i] (A: ARGV or one entry of a batch): a count, then (body, ttl
-- seconds, next_at) per event of the message mid. Returns the index after them.
local function add_callbacks(A, i, mid)
  local n = tonumber(A[i] or '0')
  if n == 0 then return i + 1 end
  local mlist = P .. 'cb:m:' .. mid
  for k = 0, n - 1 do
    local b = i + 1 + 3 * k
    local body, ttl, next_at = A[b], tonumber(A[b + 1]), A[b + 2]
    local seq = redis.call('INCR', P .. 'cb:seq')
    local ekey = P .. 'cb:e:' .. seq
    redis.call('HSET', ekey, 'b', body, 'm', mid, 'n', 0, 't', next_at)
    redis.call('EXPIRE', ekey, ttl)
    if redis.call('RPUSH', mlist, seq) == 1 then
      redis.call('ZADD', P .. 'cb:due', next_at, seq)
    end
    redis.call('EXPIRE', mlist, ttl)
    redis.call('ZADD', P .. 'cb:all', cjson.decode(body)['expire_at'], seq)
  end
  return i + 1 + 3 * n
end

-- the event seq of message mid leaves the outbox; the next of the message is due
local function drop_callback(seq, mid)
  redis.call('DEL', P .. 'cb:e:' .. seq)
  redis.call('ZREM', P .. 'cb:due', seq)
  redis.call('ZREM', P .. 'cb:all', seq)
  if not mid then return end
  local mlist = P .. 'cb:m:' .. mid
  redis.call('LREM', mlist, 1, seq)
  local head = redis.call('LINDEX', mlist, 0)
  if head then
    local t = redis.call('HGET', P .. 'cb:e:' .. head, 't')
    if t then
      redis.call('ZADD', P .. 'cb:due', t, head)
    else
      redis.call('LPOP', mlist)  -- expired meanwhile (its TTL ran out)
      drop_callback(head, mid)
    end
  end
end
"""

CALLBACK_LUA: dict[str, str] = {
    # ARGV[4..]: tok, message id, events (add_callbacks)
    "add_callbacks": """
if replayed(ARGV[4]) then return 0 end
add_callbacks(ARGV, 6, ARGV[5])
return 1
""",
    # ARGV[4..]: now, limit, lease until, forget before. Returns seq, body, attempts,
    # next_at of each event taken, and leases them.
    "callbacks_due": """
local now, limit, lease, forget = ARGV[4], tonumber(ARGV[5]), ARGV[6], ARGV[7]
redis.call('ZREMRANGEBYSCORE', P .. 'cb:all', '-inf', forget)
local out = {}
for _, seq in ipairs(redis.call('ZRANGEBYSCORE', P .. 'cb:due', '-inf', now,
                                'LIMIT', 0, limit)) do
  local e = redis.call('HMGET', P .. 'cb:e:' .. seq, 'b', 'n', 't', 'm')
  if not e[1] then
    redis.call('ZREM', P .. 'cb:due', seq)
    redis.call('ZREM', P .. 'cb:all', seq)
  else
    redis.call('ZADD', P .. 'cb:due', lease, seq)
    out[#out + 1] = seq
    out[#out + 1] = e[1]
    out[#out + 1] = e[2]
    out[#out + 1] = e[3]
  end
end
return out
""",
    # ARGV[4..]: seq, message id, note ('' = none: delivered), at, final ttl
    "callback_done": """
local seq, mid, detail, at, ttl = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
if redis.call('EXISTS', P .. 'cb:e:' .. seq) == 0 then return 0 end
drop_callback(seq, mid)
if detail ~= '' then
  local mkey = P .. 'm:' .. mid
  local h = redis.call('HMGET', mkey, 'state', 'fp', 'hn', 'stat', 'err')
  if h[1] then
    if h[1] == 'final' and not h[2] then redis.call('HSET', mkey, 'fp', h[3] or 0) end
    note(mkey, mid, at, h[1], h[4] or '', h[5] or 0, detail)
    if h[1] == 'final' then redis.call('EXPIRE', P .. 'h:' .. mid, ttl) end
  end
end
return 1
""",
    # ARGV[4..]: seq, next_at, attempts
    "callback_retry": """
local seq, next_at, attempts = ARGV[4], ARGV[5], ARGV[6]
local ekey = P .. 'cb:e:' .. seq
if redis.call('EXISTS', ekey) == 0 then return 0 end
redis.call('HSET', ekey, 'n', attempts, 't', next_at)
redis.call('ZADD', P .. 'cb:due', next_at, seq)
return 1
""",
}
