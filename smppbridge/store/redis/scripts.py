"""The Lua scripts of the Redis store: every multi-key change is one script, atomic in
Redis (the key layout is in docs/cluster.md)."""

from __future__ import annotations

import hashlib

__all__ = ["SCRIPTS", "SHAS"]

#: Idempotency tokens outlive any redis-py retry of the pipeline that carried them.
_TOKEN_TTL_MS = 120_000

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

#: every script's full source, by name
SCRIPTS = {name: _LUA_COMMON + body for name, body in _LUA.items()}
#: the SHA-1 Redis names each script by (EVALSHA)
SHAS = {name: hashlib.sha1(src.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1
        for name, src in SCRIPTS.items()}
