"""The Lua scripts of the Redis store: every multi-key change is one script, atomic in
Redis (the key layout is in docs/cluster.md). The message history's reads and its
retention (timeline, receipts_of, search, purge) are in :mod:`.history_lua`; they share
the helpers defined here.

Size: just over 500 lines because it is one Lua program, its shared helpers and the
scripts of every state change together; the history's reads and the retention are
already in :mod:`.history_lua`.
"""

from __future__ import annotations

import hashlib

from smppbridge.store.redis.callbacks_lua import CALLBACK_COMMON, CALLBACK_LUA
from smppbridge.store.redis.history_lua import HISTORY_LUA

__all__ = ["BUCKET_SECONDS", "SCRIPTS", "SHAS"]

#: Idempotency tokens outlive any redis-py retry of the pipeline that carried them.
_TOKEN_TTL_MS = 120_000
#: Width of the ``ix:e:<n>`` buckets that list ended messages for :meth:`purge`.
BUCKET_SECONDS = 600

# --- Lua ---------------------------------------------------------------------------------
# Every script gets ARGV[1] = key prefix, ARGV[2] = consumer group, ARGV[3] = history
# cap; its own arguments follow. Keys are derived from the prefix inside the scripts,
# so the store needs a single Redis primary (or Sentinel), not Redis Cluster.
# Times and scores travel as Python repr() strings and are stored as given, so they
# round-trip exactly (Lua would print numbers with 14 significant digits).
#
# A message's timeline is mostly derived from its hash (accepted: submitted_at; sent:
# sat/sst/sd; final: done_at/stat/err/fd), so the usual accept -> sent -> final story
# writes no list at all. Only the rarer entries — retries, intermediate statuses, a
# second send — are "notes" in the list h:<id> (capped at CAP); the hash counts every
# note ever written (hn) and remembers where the derived entries sit among them (sp:
# the notes written before the send; fp: before the final status, set only when a note
# comes after it).
#
# A receipt is listed in its message's hash as field r:<seq> (its "view"):
#   pending:  p|<part>|<stat>|<err>|<created>[|<account>]
#   finished: <d|x|e>|<at>|<attempts>|<part>|<stat>|<err>|<created>[|<account>]
# (<part> percent-quoted, '' for the message's own id; <account> only where it differs
# from the message's; times with 3 decimals) so receipts_of shows it after it left the
# outbox, and it expires with the message.

_LUA_COMMON = """
local P, G, CAP = ARGV[1], ARGV[2], tonumber(ARGV[3])
local WORK = P .. 'work'
local BUCKET = BUCKET_SECONDS

-- a message id or any part id -> the message id (false: not stored)
local function resolve(id)
  if redis.call('EXISTS', P .. 'm:' .. id) == 1 then return id end
  return redis.call('GET', P .. 'pid:' .. id)
end

-- receipts from ARGV[i]: a count, then (account, body, expire_at, part id, view) per
-- receipt; mid: their message ('' = find it by each receipt's part id), macct its
-- account (nil: look it up). Returns the index after them.
local function add_receipts(i, mid, macct)
  local n = tonumber(ARGV[i])
  if n == 0 then return i + 1 end
  if mid ~= '' and not macct then macct = redis.call('HGET', P .. 'm:' .. mid, 'account') end
  for k = 0, n - 1 do
    local b = i + 1 + 5 * k
    local acct, body, exp, part, view = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4]
    local seq = redis.call('INCR', P .. 'r:seq')
    local rkey = P .. 'r:' .. seq
    local owner, oacct = mid, macct
    if owner == '' then
      owner = resolve(part)
      if owner then oacct = redis.call('HGET', P .. 'm:' .. owner, 'account') end
    end
    if owner and oacct then
      if acct ~= oacct then view = view .. '|' .. acct end
      redis.call('HSET', P .. 'm:' .. owner, 'r:' .. seq, view)
      redis.call('HSET', rkey, 'a', acct, 'b', body, 'n', 0, 't', '0', 'm', owner)
    else
      redis.call('HSET', rkey, 'a', acct, 'b', body, 'n', 0, 't', '0')
    end
    redis.call('ZADD', P .. 'rq:' .. acct, seq, seq)
    redis.call('ZADD', P .. 'rexp', exp, seq)
    redis.call('SADD', P .. 'raccts', acct)
  end
  return i + 1 + 5 * n
end

-- a replay of a write whose reply was lost (redis-py retried the pipeline)?
local function replayed(tok)
  return not redis.call('SET', P .. 'tok:' .. tok, '1', 'NX', 'PX', TOKEN_TTL_MS)
end

-- take a message out of the work queue: its stream entry (the caller's HSET clears
-- the hash's 'entry') and its schedule
local function unqueue(mid, entry)
  if entry and entry ~= '' then
    redis.call('XACK', WORK, G, entry)
    redis.call('XDEL', WORK, entry)
  end
  redis.call('ZREM', P .. 'sched', mid)
end

-- a timeline note (retry, intermediate status, second send); at is a repr string
local function note(mkey, mid, at, state, stat, err, detail)
  local hkey = P .. 'h:' .. mid
  local len = redis.call('RPUSH', hkey, cjson.encode({at, state, stat, tonumber(err), detail}))
  if len > CAP then redis.call('LTRIM', hkey, -CAP, -1) end
  redis.call('HINCRBY', mkey, 'hn', 1)
end

-- point the provider index at a message (old: the index key it had), dropping the
-- entry it replaces; the hash fields go into f, the caller's HSET
local function set_provider(f, mid, provider, provider_id, pkey, old)
  if old and old ~= '' and old ~= pkey then redis.call('DEL', old) end
  redis.call('SET', pkey, mid)
  f[#f + 1] = 'provider'; f[#f + 1] = provider
  f[#f + 1] = 'provider_id'; f[#f + 1] = provider_id
  f[#f + 1] = 'pkey'; f[#f + 1] = pkey
end

-- a final message and everything that finds it expire together (part_ids: its JSON,
-- pkey: its provider key or '', notes: whether it has an h: list)
local function expire_final(mkey, mid, ttl, part_ids, pkey, notes)
  redis.call('EXPIRE', mkey, ttl)
  if notes then redis.call('EXPIRE', P .. 'h:' .. mid, ttl) end
  local parts = cjson.decode(part_ids)
  if #parts > 1 then
    for _, pid in ipairs(parts) do redis.call('EXPIRE', P .. 'pid:' .. pid, ttl) end
  end
  if pkey and pkey ~= '' then redis.call('EXPIRE', pkey, ttl) end
end

-- a new message in the search indexes: newest first by (submitted_at, id), globally,
-- per account, per destination and per source (docs/cluster.md, Key layout)
local function index(mid, at, acct, dest, src)
  redis.call('ZADD', P .. 'ix:t', at, mid)
  redis.call('ZADD', P .. 'ix:a:' .. acct, at, mid)
  redis.call('ZADD', P .. 'ix:d:' .. dest, at, mid)
  redis.call('ZADD', P .. 'ix:s:' .. src, at, mid)
end

-- a message just ended at done_at: list it in that time's bucket, for purge
local function ended(mid, done_at, acct, dest, src)
  local b = string.format('%d', math.floor(tonumber(done_at) / BUCKET))
  local key = P .. 'ix:e:' .. b
  if redis.call('RPUSH', key, cjson.encode({mid, acct, dest, src})) == 1 then
    redis.call('ZADD', P .. 'ix:ends', b, b)
  end
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

-- a receipt leaves the outbox as delivered (d), dropped (x) or expired (e) at `at`
-- (3 decimals): its view in its message's hash keeps the outcome
local function finish_receipt(seq, code, at)
  local rkey = P .. 'r:' .. seq
  local r = redis.call('HMGET', rkey, 'a', 'm', 'n')
  if not r[1] then return 0 end
  if r[2] then
    local mkey, f = P .. 'm:' .. r[2], 'r:' .. seq
    local v = redis.call('HGET', mkey, f)
    if v and string.sub(v, 1, 2) == 'p|' then
      redis.call('HSET', mkey, f, code .. '|' .. at .. '|' .. r[3] .. string.sub(v, 2))
    end
  end
  redis.call('ZREM', P .. 'rq:' .. r[1], seq)
  redis.call('ZREM', P .. 'rw:' .. r[1], seq)
  redis.call('ZREM', P .. 'rexp', seq)
  redis.call('DEL', rkey)
  return 1
end
""".replace("TOKEN_TTL_MS", str(_TOKEN_TTL_MS)).replace("BUCKET_SECONDS", str(BUCKET_SECONDS)) \
    + CALLBACK_COMMON

_LUA: dict[str, str] = {
    # ARGV[4..]: tok, message id, state, next_at ('' = due now), final ttl, JSON [field,
    # value, ...], JSON [part id, ...], receipts. (Two JSON arguments rather than ~40
    # plain ones: packing arguments is most of a submit's cost in redis-py.)
    "accept": """
local tok, mid, state, next_at, ttl = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local mkey = P .. 'm:' .. mid
local old = redis.call('HGET', mkey, 'tok')
if old then
  if old == tok then return 0 end
  return redis.error_reply('EXISTS message id ' .. mid)
end
local f = cjson.decode(ARGV[9])
local v = {}
for k = 1, #f, 2 do v[f[k]] = f[k + 1] end
local entry = ''
if state ~= 'final' and next_at == '' then entry = redis.call('XADD', WORK, '*', 'm', mid) end
f[#f + 1] = 'tok'; f[#f + 1] = tok
f[#f + 1] = 'entry'; f[#f + 1] = entry
f[#f + 1] = 'pkey'; f[#f + 1] = ''
if state == 'final' then f[#f + 1] = 'af'; f[#f + 1] = '1' end
redis.call('HSET', mkey, unpack(f))
local parts = cjson.decode(ARGV[10])
if #parts > 1 then  -- a short message is found by its own id: no index key
  for _, pid in ipairs(parts) do
    redis.call('SET', P .. 'pid:' .. pid, mid)
    redis.call('HDEL', P .. 'parts', pid)
  end
end
index(mid, v.submitted_at, v.account, v.dest, v.source)
if state == 'final' then
  redis.call('INCR', P .. 'finals')
  ended(mid, v.done_at, v.account, v.dest, v.source)
  expire_final(mkey, mid, ttl, v.part_ids, '', false)
elseif next_at ~= '' then
  redis.call('ZADD', P .. 'sched', next_at, mid)
end
add_receipts(11, mid, v.account)
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
    # now, receipts
    "mark_sent": """
local tok, mid, provider, pid, pkey, stat, ttl, now =
  ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11]
local mkey = P .. 'm:' .. mid
local h = redis.call('HMGET', mkey, 'state', 'op', 'sat', 'hn', 'provider', 'provider_id',
                     'entry', 'pkey', 'fp', 'sd')
local state = h[1]
if not state or h[2] == tok then return 0 end
unqueue(mid, h[7])
local f = {'op', tok, 'entry', ''}
set_provider(f, mid, provider, pid, pkey, h[8])
local words = 'sent to ' .. provider .. ' as ' .. pid
if state == 'final' then
  -- finalised (cancelled) by another node while this one was sending: it stays final;
  -- the send is a note after the final entry
  if not h[9] then f[#f + 1] = 'fp'; f[#f + 1] = h[4] or 0 end
  redis.call('HSET', mkey, unpack(f))
  note(mkey, mid, now, 'final', stat, 0, words)
  redis.call('EXPIRE', pkey, ttl)
  redis.call('EXPIRE', P .. 'h:' .. mid, ttl)
  return 0
end
f[#f + 1] = 'state'; f[#f + 1] = 'sent'
f[#f + 1] = 'stat'; f[#f + 1] = stat
if h[3] then
  -- sent before (a claim race): the first send keeps its words, this one is a note
  if not h[10] then f[#f + 1] = 'sd'; f[#f + 1] = 'sent to ' .. h[5] .. ' as ' .. h[6] end
  redis.call('HSET', mkey, unpack(f))
  note(mkey, mid, now, 'sent', stat, 0, words)
else
  f[#f + 1] = 'sat'; f[#f + 1] = now
  if stat ~= 'ENROUTE' then f[#f + 1] = 'sst'; f[#f + 1] = stat end
  if h[4] then f[#f + 1] = 'sp'; f[#f + 1] = h[4] end
  redis.call('HSET', mkey, unpack(f))
end
redis.call('HINCRBY', mkey, 'attempts', 1)
redis.call('SADD', P .. 'sent', mid)
add_callbacks(add_receipts(12, mid, nil), mid)
return 1
""",
    # ARGV[4..]: tok, message id, next_at, attempts, now, detail
    "mark_retry": """
local tok, mid, next_at, attempts, now, detail =
  ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local mkey = P .. 'm:' .. mid
local h = redis.call('HMGET', mkey, 'state', 'op', 'entry')
local state = h[1]
if not state or h[2] == tok then return 0 end
unqueue(mid, h[3])
redis.call('HSET', mkey, 'next_at', next_at, 'attempts', attempts, 'op', tok, 'entry', '')
if state == 'queued' then redis.call('ZADD', P .. 'sched', next_at, mid) end
if state ~= 'final' then note(mkey, mid, now, state, '', 0, detail) end
return 1
""",
    # ARGV[4..]: tok, message id, stat, err, now, detail, receipts. An intermediate
    # status: a note, the message's stat, its receipts; a final message ignores it.
    "record_status": """
local tok, mid, stat, err, now, detail =
  ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local mkey = P .. 'm:' .. mid
local h = redis.call('HMGET', mkey, 'state', 'op')
local state = h[1]
if not state then  -- not stored (expired): the receipts still go out, as before
  if replayed(tok) then return 0 end
  add_receipts(10, '', nil)
  return 1
end
if state == 'final' or h[2] == tok then return 0 end
redis.call('HSET', mkey, 'op', tok, 'stat', stat, 'err', err)
note(mkey, mid, now, state, stat, err, detail)
add_receipts(10, mid, nil)
return 1
""",
    # ARGV[4..]: message id, stat, err, now, final ttl, provider, provider id, provider
    # key, detail, receipts
    "mark_final": """
local mid, stat, err, now, ttl, provider, pid, pkey, detail =
  ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12]
local mkey = P .. 'm:' .. mid
local h = redis.call('HMGET', mkey, 'state', 'entry', 'pkey', 'account', 'dest', 'source',
                     'part_ids', 'hn')
local state = h[1]
if not state then return 0 end
local f = {'entry', ''}
if provider ~= '' then set_provider(f, mid, provider, pid, pkey, h[3]) else pkey = h[3] end
if state == 'final' then
  if provider ~= '' then
    redis.call('HSET', mkey, 'provider', provider, 'provider_id', pid, 'pkey', pkey)
    redis.call('EXPIRE', pkey, ttl)
  end
  return 0
end
unqueue(mid, h[2])
redis.call('SREM', P .. 'sent', mid)
f[#f + 1] = 'state'; f[#f + 1] = 'final'
f[#f + 1] = 'stat'; f[#f + 1] = stat
f[#f + 1] = 'err'; f[#f + 1] = err
f[#f + 1] = 'done_at'; f[#f + 1] = now
if detail ~= '' then f[#f + 1] = 'fd'; f[#f + 1] = detail end
redis.call('HSET', mkey, unpack(f))
add_callbacks(add_receipts(13, mid, h[4]), mid)
redis.call('INCR', P .. 'finals')
ended(mid, now, h[4], h[5], h[6])
expire_final(mkey, mid, ttl, h[7], pkey, h[8])
return 1
""",
    # ARGV[4]: the message id or any part id
    "find": """
local mid = resolve(ARGV[4])
if not mid then return '' end
return message_json(P .. 'm:' .. mid)
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
add_receipts(6 + n, '')
return 1
""",
    # ARGV[4..]: tok, receipts
    "add_receipts": """
if replayed(ARGV[4]) then return 0 end
add_receipts(5, '')
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
    # ARGV[4..]: state code (d delivered, x dropped), at (3 decimals), seqs
    "receipt_done": """
local n = 0
for k = 6, #ARGV do n = n + finish_receipt(ARGV[k], ARGV[4], ARGV[5]) end
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
    # ARGV[4..]: now, batch. Receipts past their TTL leave the outbox as expired (at
    # their expire_at).
    "expire_receipts": """
local n = 0
local exp = redis.call('ZRANGEBYSCORE', P .. 'rexp', '-inf', ARGV[4], 'WITHSCORES',
                       'LIMIT', 0, ARGV[5])
for k = 1, #exp, 2 do
  local seq = exp[k]
  if finish_receipt(seq, 'e', string.format('%.3f', tonumber(exp[k + 1]))) == 0 then
    redis.call('ZREM', P .. 'rexp', seq)
  end
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
    **HISTORY_LUA,
    **CALLBACK_LUA,
}

#: every script's full source, by name
SCRIPTS = {name: _LUA_COMMON + body for name, body in _LUA.items()}
#: the SHA-1 Redis names each script by (EVALSHA)
SHAS = {name: hashlib.sha1(src.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1
        for name, src in SCRIPTS.items()}
