"""The Lua scripts of the Redis store: every multi-key change is one script, atomic in
Redis (the key layout is in docs/cluster.md). The batch scripts of a message's state
(accept, mark_sent, mark_final: one call per batch of messages) are in
:mod:`.messages_lua`, the message history's reads and its retention (timeline,
receipts_of, search, purge) in :mod:`.history_lua`, the status callbacks' in
:mod:`.callbacks_lua`; they all share the helpers defined here (among them
``later``/``flush``, which group a batch's writes to one key into one command).

Size: about 480 lines, under the 500 that need a reason since the batch scripts of a
message's state moved to :mod:`.messages_lua`; what is left is one Lua program: the
helpers every script shares and the scripts of the queue, the receipts and the reads.
"""

from __future__ import annotations

import hashlib

from smppbridge.store.redis.callbacks_lua import CALLBACK_COMMON, CALLBACK_LUA
from smppbridge.store.redis.flood_lua import FLOOD_LUA
from smppbridge.store.redis.history_lua import HISTORY_LUA
from smppbridge.store.redis.messages_lua import MESSAGE_LUA

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

-- Writes of one script call grouped by command and key: later({'ZADD', key}, score,
-- member) adds to one ZADD that flush() sends, so a batch of messages costs Redis one
-- command per key instead of one per message. Every script that calls later() ends
-- with flush(). (Within one script no member is both added and removed by later().)
local W, WO = {}, {}
local function later(head, ...)
  local id = table.concat(head, ' ')
  local w = W[id]
  if not w then
    w = {head = head, args = {}}
    W[id] = w
    WO[#WO + 1] = w
  end
  local a = w.args
  for k = 1, select('#', ...) do a[#a + 1] = select(k, ...) end
end
local function flush()
  for _, w in ipairs(WO) do
    local a = w.args
    for s = 1, #a, 1000 do  -- in chunks: a Lua call takes ~8000 arguments at most
      local cmd = {unpack(w.head)}
      for k = s, math.min(s + 999, #a) do cmd[#cmd + 1] = a[k] end
      redis.call(unpack(cmd))
    end
  end
  W, WO = {}, {}
end

-- Sequence numbers (receipts' r:seq) reserved for a whole batch with one INCRBY.
local SEQ = {}
local function reserve(key, n)
  if n > 0 then
    local last = redis.call('INCRBY', key, n)
    SEQ[key] = {last - n + 1, last}
  end
end
-- the receipts of a batch: entry[ri] of each is its receipt list (count first)
local function reserve_receipts(batch, ri)
  local n = 0
  for _, e in ipairs(batch) do n = n + tonumber(e[ri][1]) end
  reserve(P .. 'r:seq', n)
end
local function next_seq(key)
  local s = SEQ[key]
  if s and s[1] <= s[2] then
    s[1] = s[1] + 1
    return s[1] - 1
  end
  return redis.call('INCR', key)
end

-- receipts from A[i] (A: ARGV or one entry of a batch): a count, then (account, body,
-- expire_at, part id, view) per receipt; mid: their message ('' = find it by each
-- receipt's part id), macct its account (nil: look it up); f: the caller's pending
-- HSET of mid's hash, which takes the views of mid's own receipts (nil: an HSET of
-- their own). Returns the index after them.
local function add_receipts(A, i, mid, macct, f)
  local n = tonumber(A[i])
  if n == 0 then return i + 1 end
  if mid ~= '' and not macct then macct = redis.call('HGET', P .. 'm:' .. mid, 'account') end
  for k = 0, n - 1 do
    local b = i + 1 + 5 * k
    local acct, body, exp, part, view = A[b], A[b + 1], A[b + 2], A[b + 3], A[b + 4]
    local seq = next_seq(P .. 'r:seq')
    local rkey = P .. 'r:' .. seq
    local owner, oacct = mid, macct
    if owner == '' then
      owner = resolve(part)
      if owner then oacct = redis.call('HGET', P .. 'm:' .. owner, 'account') end
    end
    if owner and oacct then
      if acct ~= oacct then view = view .. '|' .. acct end
      if f and owner == mid then
        f[#f + 1] = 'r:' .. seq; f[#f + 1] = view
      else
        redis.call('HSET', P .. 'm:' .. owner, 'r:' .. seq, view)
      end
      redis.call('HSET', rkey, 'a', acct, 'b', body, 'n', 0, 't', '0', 'm', owner)
    else
      redis.call('HSET', rkey, 'a', acct, 'b', body, 'n', 0, 't', '0')
    end
    later({'ZADD', P .. 'rq:' .. acct}, seq, seq)
    later({'ZADD', P .. 'rexp'}, exp, seq)
    later({'SADD', P .. 'raccts'}, acct)
  end
  return i + 1 + 5 * n
end

-- a replay of a write whose reply was lost (redis-py retried the pipeline)?
local function replayed(tok)
  return not redis.call('SET', P .. 'tok:' .. tok, '1', 'NX', 'PX', TOKEN_TTL_MS)
end

-- take a message out of the work queue: its stream entry (the caller's HSET clears
-- the hash's 'entry') and its schedule, with the batch's others at flush()
local function unqueue(mid, entry)
  if entry and entry ~= '' then
    later({'XACK', WORK, G}, entry)
    later({'XDEL', WORK}, entry)
  end
  later({'ZREM', P .. 'sched'}, mid)
end

-- a timeline note (retry, intermediate status, second send); at is a repr string.
-- The hash counts it (hn): by HINCRBY, or, given f (the caller's pending HSET) and hn
-- (the count the caller read), in f.
local function note(mkey, mid, at, state, stat, err, detail, f, hn)
  local hkey = P .. 'h:' .. mid
  local len = redis.call('RPUSH', hkey, cjson.encode({at, state, stat, tonumber(err), detail}))
  if len > CAP then redis.call('LTRIM', hkey, -CAP, -1) end
  if f then
    f[#f + 1] = 'hn'; f[#f + 1] = (tonumber(hn) or 0) + 1
  else
    redis.call('HINCRBY', mkey, 'hn', 1)
  end
end

-- point the provider index at a message (old: the index key it had), dropping the
-- entry it replaces; the hash fields go into f, the caller's HSET. With ttl (a final
-- message) the key expires with the message; without, it is one MSET of the batch.
local function set_provider(f, mid, provider, provider_id, pkey, old, ttl)
  if old and old ~= '' and old ~= pkey then redis.call('DEL', old) end
  if ttl then redis.call('SET', pkey, mid, 'EX', ttl) else later({'MSET'}, pkey, mid) end
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
-- (one ZADD per index and batch, at flush())
local function index(mid, at, acct, dest, src)
  later({'ZADD', P .. 'ix:t'}, at, mid)
  later({'ZADD', P .. 'ix:a:' .. acct}, at, mid)
  later({'ZADD', P .. 'ix:d:' .. dest}, at, mid)
  later({'ZADD', P .. 'ix:s:' .. src}, at, mid)
end

-- a message just ended at done_at: list it in that time's bucket, for purge (one
-- RPUSH per bucket and batch, at flush())
local ENDED = {}
local function ended(mid, done_at, acct, dest, src)
  local b = string.format('%d', math.floor(tonumber(done_at) / BUCKET))
  later({'RPUSH', P .. 'ix:e:' .. b}, cjson.encode({mid, acct, dest, src}))
  if not ENDED[b] then
    ENDED[b] = true
    later({'ZADD', P .. 'ix:ends'}, b, b)
  end
end

-- a message hash as a table (nil: not stored)
local function hash_table(mkey)
  local h = redis.call('HGETALL', mkey)
  if #h == 0 then return nil end
  local t = {}
  for k = 1, #h, 2 do t[h[k]] = h[k + 1] end
  return t
end

-- a message hash as one JSON object: one reply element to parse instead of ~60
local function message_json(mkey)
  local t = hash_table(mkey)
  if not t then return '' end
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
-- (3 decimals): its view in its message's hash keeps the outcome; its index entries
-- and its hash go with the batch's others at flush()
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
  later({'ZREM', P .. 'rq:' .. r[1]}, seq)
  later({'ZREM', P .. 'rw:' .. r[1]}, seq)
  later({'ZREM', P .. 'rexp'}, seq)
  later({'DEL'}, rkey)
  return 1
end
""".replace("TOKEN_TTL_MS", str(_TOKEN_TTL_MS)).replace("BUCKET_SECONDS", str(BUCKET_SECONDS)) \
    + CALLBACK_COMMON

_LUA: dict[str, str] = {
    # ARGV[4..]: consumer, now, limit, min idle ms (-1: no claiming), claim cursor
    "due": """
local consumer, now, limit = ARGV[4], ARGV[5], tonumber(ARGV[6])
local sched = P .. 'sched'
local ready = redis.call('ZRANGEBYSCORE', sched, '-inf', now, 'LIMIT', 0, limit)
if #ready > 0 then redis.call('ZREM', sched, unpack(ready)) end
for _, mid in ipairs(ready) do
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
    local h = hash_table(P .. 'm:' .. mid)
    if h and h.state == 'queued' and h.entry == id then
      out[#out + 1] = id
      out[#out + 1] = cjson.encode(h)
      live = true
    end
  end
  if not live then  -- finished or cancelled meanwhile: a stale entry
    later({'XACK', WORK, G}, id)
    later({'XDEL', WORK}, id)
  end
end
flush()
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
    # ARGV[4..]: tok, message id, next_at, attempts, now, detail
    "mark_retry": """
local tok, mid, next_at, attempts, now, detail =
  ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local mkey = P .. 'm:' .. mid
local h = redis.call('HMGET', mkey, 'state', 'op', 'entry')
local state = h[1]
if not state or h[2] == tok then return 0 end
unqueue(mid, h[3])
flush()  -- its schedule is removed before it gets the new one
redis.call('HSET', mkey, 'next_at', next_at, 'attempts', attempts, 'op', tok, 'entry', '')
if state == 'queued' then redis.call('ZADD', P .. 'sched', next_at, mid) end
if state ~= 'final' then note(mkey, mid, now, state, '', 0, detail) end
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
add_receipts(ARGV, 6 + n, '')
flush()
return 1
""",
    # ARGV[4..]: tok, receipts
    "add_receipts": """
if replayed(ARGV[4]) then return 0 end
add_receipts(ARGV, 5, '')
flush()
return 1
""",
    # ARGV[4..]: account, now, limit, lease until. Returns seq, body, attempts, next_at
    # for each receipt taken, oldest first, and leases them.
    "receipts_for": """
local acct, now, limit, lease = ARGV[4], ARGV[5], tonumber(ARGV[6]), ARGV[7]
local rq, rw = P .. 'rq:' .. acct, P .. 'rw:' .. acct
-- deferred and lease-expired receipts due again: back to the ready set (one ZADD)
local back = redis.call('ZRANGEBYSCORE', rw, '-inf', now)
if #back > 0 then
  redis.call('ZREMRANGEBYSCORE', rw, '-inf', now)
  for _, seq in ipairs(back) do later({'ZADD', rq}, seq, seq) end
  flush()
end
local out = {}
if limit <= 0 then return out end
-- the oldest `limit`, leased: out of rq, into rw until the lease ends (one ZADD)
local popped = redis.call('ZPOPMIN', rq, limit)  -- seq, score, seq, score, ...
for k = 1, #popped, 2 do
  local seq = popped[k]
  later({'ZADD', rw}, lease, seq)
  local r = redis.call('HMGET', P .. 'r:' .. seq, 'b', 'n', 't')
  out[#out + 1] = seq
  out[#out + 1] = r[1]
  out[#out + 1] = r[2]
  out[#out + 1] = r[3]
end
flush()
return out
""",
    # ARGV[4..]: state code (d delivered, x dropped), at (3 decimals), seqs
    "receipt_done": """
local n = 0
for k = 6, #ARGV do n = n + finish_receipt(ARGV[k], ARGV[4], ARGV[5]) end
flush()
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
flush()
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
    **MESSAGE_LUA,
    **FLOOD_LUA,
    **HISTORY_LUA,
    **CALLBACK_LUA,
}

#: every script's full source, by name
SCRIPTS = {name: _LUA_COMMON + body for name, body in _LUA.items()}
#: the SHA-1 Redis names each script by (EVALSHA)
SHAS = {name: hashlib.sha1(src.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1
        for name, src in SCRIPTS.items()}
