"""The Lua of a message's state changes, one script call per BATCH of messages:
``accept``, ``record_status``, ``mark_sent`` and ``mark_final`` take ARGV[4] = a JSON
array of entries
(one per message) and do each message's part in one loop; the writes every message of
the batch makes to the same key (the search indexes, the work stream's XACK/XDEL, the
``sent`` set, the receipts' ready sets, the ended bucket, the counters) are grouped by
``later``/``flush`` of :mod:`.scripts` into one command per key, and the receipts' seqs
are reserved with one INCRBY. A single message is a batch of one.

What it buys (``benchmarks/cluster_scale.py``, docs/performance.md): one EVALSHA per
batch instead of one per message on the node (redis-py packs and parses a command's
arguments in Python: that was half the node's time), and about half the commands a
message on the Redis side.

:mod:`.scripts` prepends its shared helpers (``add_receipts``, ``unqueue``,
``set_provider``, ``index``, ``ended``, ``expire_final``, ``note``, ``later``,
``flush``, ``reserve``) and :mod:`.callbacks_lua`'s ``add_callbacks`` to each.
Entries are JSON so that cjson decodes them in C (one argument to pack instead of ~15 a
message); times are strings in them, stored as given (exact repr floats).
"""

from __future__ import annotations

__all__ = ["MESSAGE_LUA"]

MESSAGE_LUA: dict[str, str] = {
    # ARGV[4..]: JSON [[tok, message id, stat, err, now, detail, [receipts]], ...].
    # An intermediate status: a note, the message's stat, its receipts; a final
    # message ignores it; a message no longer stored (expired) still gets its receipts
    # out, as before. Returns per entry 1 (recorded) or 0 (ignored, or a replay).
    "record_status": """
local batch = cjson.decode(ARGV[4])
reserve_receipts(batch, 7)
local out = {}
for n, e in ipairs(batch) do
  local tok, mid, stat, err, now, detail = e[1], e[2], e[3], e[4], e[5], e[6]
  local mkey = P .. 'm:' .. mid
  local h = redis.call('HMGET', mkey, 'state', 'op', 'account', 'hn')
  local state = h[1]
  out[n] = 0
  if not state then
    if not replayed(tok) then
      add_receipts(e[7], 1, '', nil)
      out[n] = 1
    end
  elseif state ~= 'final' and h[2] ~= tok then
    local f = {'op', tok, 'stat', stat, 'err', err}
    add_receipts(e[7], 1, mid, h[3], f)
    note(mkey, mid, now, state, stat, err, detail, f, h[4])
    redis.call('HSET', mkey, unpack(f))
    out[n] = 1
  end
end
flush()
return out
""",
    # ARGV[4..]: JSON [[tok, message id, state, next_at ('' = due now), [field, value,
    # ...], [part id, ...], [receipts]], ...], final ttl. Returns per entry 1 (stored),
    # 0 (a replay of the same accept: its token) or 2 (that id is stored already, by
    # another accept).
    "accept": """
-- the writes of an accepted message that the call groups (part ids, indexes, its
-- schedule): idempotent, so a replay does them again, in case the call that stored the
-- hash failed before its flush() (such a call is re-sent an entry a call)
local function grouped(mid, v, parts, sched_at, sched_nx)
  if #parts > 1 then  -- a short message is found by its own id: no index key
    for _, pid in ipairs(parts) do
      later({'MSET'}, P .. 'pid:' .. pid, mid)
      later({'HDEL', P .. 'parts'}, pid)
    end
  end
  index(mid, v.submitted_at, v.account, v.dest, v.source)
  if sched_at ~= '' then
    later(sched_nx and {'ZADD', P .. 'sched', 'NX'} or {'ZADD', P .. 'sched'}, sched_at, mid)
  end
end

local batch, ttl = cjson.decode(ARGV[4]), ARGV[5]
reserve_receipts(batch, 7)
local out, finals, expiring = {}, 0, {}
for n, e in ipairs(batch) do
  local tok, mid, state, next_at = e[1], e[2], e[3], e[4]
  local mkey = P .. 'm:' .. mid
  local f = e[5]
  local v = {}
  for k = 1, #f, 2 do v[f[k]] = f[k + 1] end
  local old = redis.call('HMGET', mkey, 'tok', 'state', 'entry')
  if old[1] then
    out[n] = 2
    if old[1] == tok then  -- a replay: the same accept
      out[n] = 0
      -- rescheduled only if it never reached the stream, and never earlier (NX)
      local again = (old[2] == 'queued' and old[3] == '') and next_at or ''
      grouped(mid, v, e[6], again, true)
      -- (the ended bucket and the finals count are not idempotent: not again)
      if old[2] == 'final' and state == 'final' then expiring[#expiring + 1] = mid end
    end
  else
    local entry = ''
    if state ~= 'final' and next_at == '' then entry = redis.call('XADD', WORK, '*', 'm', mid) end
    f[#f + 1] = 'tok'; f[#f + 1] = tok
    f[#f + 1] = 'entry'; f[#f + 1] = entry
    f[#f + 1] = 'pkey'; f[#f + 1] = ''
    if state == 'final' then f[#f + 1] = 'af'; f[#f + 1] = '1' end
    add_receipts(e[7], 1, mid, v.account, f)
    redis.call('HSET', mkey, unpack(f))
    grouped(mid, v, e[6], state ~= 'final' and next_at or '', false)
    if state == 'final' then
      finals = finals + 1
      ended(mid, v.done_at, v.account, v.dest, v.source)
      expiring[#expiring + 1] = mid
    end
    out[n] = 1
  end
end
flush()
-- after flush(): the part id keys exist now
for _, mid in ipairs(expiring) do
  expire_final(P .. 'm:' .. mid, mid, ttl, redis.call('HGET', P .. 'm:' .. mid, 'part_ids'),
               '', false)
end
if finals > 0 then redis.call('INCRBY', P .. 'finals', finals) end
return out
""",
    # ARGV[4..]: JSON [[tok, message id, provider, provider id, provider key, stat,
    # now, [receipts], [callbacks]], ...], final ttl. Returns per entry 1 (sent) or 0
    # (not stored, a replay, or final meanwhile).
    "mark_sent": """
local batch, ttl = cjson.decode(ARGV[4]), ARGV[5]
reserve_receipts(batch, 8)
local out = {}
for n, e in ipairs(batch) do
  local tok, mid, provider, pid, pkey, stat, now = e[1], e[2], e[3], e[4], e[5], e[6], e[7]
  local mkey = P .. 'm:' .. mid
  local h = redis.call('HMGET', mkey, 'state', 'op', 'sat', 'hn', 'provider', 'provider_id',
                       'entry', 'pkey', 'fp', 'sd', 'attempts', 'account')
  local state = h[1]
  out[n] = 0
  if state and h[2] ~= tok then
    unqueue(mid, h[7])
    local f = {'op', tok, 'entry', ''}
    local words = 'sent to ' .. provider .. ' as ' .. pid
    if state == 'final' then
      -- finalised (cancelled) by another node while this one was sending: it stays
      -- final; the send is a note after the final entry
      set_provider(f, mid, provider, pid, pkey, h[8], ttl)
      if not h[9] then f[#f + 1] = 'fp'; f[#f + 1] = h[4] or 0 end
      redis.call('HSET', mkey, unpack(f))
      note(mkey, mid, now, 'final', stat, 0, words)
      redis.call('EXPIRE', P .. 'h:' .. mid, ttl)
    else
      set_provider(f, mid, provider, pid, pkey, h[8])
      f[#f + 1] = 'state'; f[#f + 1] = 'sent'
      f[#f + 1] = 'stat'; f[#f + 1] = stat
      f[#f + 1] = 'attempts'; f[#f + 1] = (tonumber(h[11]) or 0) + 1
      local again = h[3] and true
      if again then
        -- sent before (a claim race): the first send keeps its words, this one is a note
        if not h[10] then f[#f + 1] = 'sd'; f[#f + 1] = 'sent to ' .. h[5] .. ' as ' .. h[6] end
      else
        f[#f + 1] = 'sat'; f[#f + 1] = now
        if stat ~= 'ENROUTE' then f[#f + 1] = 'sst'; f[#f + 1] = stat end
        if h[4] then f[#f + 1] = 'sp'; f[#f + 1] = h[4] end
      end
      add_receipts(e[8], 1, mid, h[12], f)
      redis.call('HSET', mkey, unpack(f))
      if again then note(mkey, mid, now, 'sent', stat, 0, words) end
      later({'SADD', P .. 'sent'}, mid)
      add_callbacks(e[9], 1, mid)
      out[n] = 1
    end
  end
end
flush()
return out
""",
    # ARGV[4..]: JSON [[message id, stat, err, now, provider, provider id, provider
    # key, detail, [receipts], [callbacks]], ...], final ttl. Returns per entry 1 (made
    # final) or 0 (not stored, or final already).
    "mark_final": """
local batch, ttl = cjson.decode(ARGV[4]), ARGV[5]
reserve_receipts(batch, 9)
local out, finals, expiring = {}, 0, {}
for n, e in ipairs(batch) do
  local mid, stat, err, now, provider, pid, pkey, detail =
    e[1], e[2], e[3], e[4], e[5], e[6], e[7], e[8]
  local mkey = P .. 'm:' .. mid
  local h = redis.call('HMGET', mkey, 'state', 'entry', 'pkey', 'account', 'dest', 'source',
                       'part_ids', 'hn')
  local state = h[1]
  out[n] = 0
  if state == 'final' then
    if provider ~= '' then
      local f = {}
      set_provider(f, mid, provider, pid, pkey, h[3], ttl)
      redis.call('HSET', mkey, unpack(f))
    end
    -- idempotent, in case the call that made it final failed before its flush()
    later({'SREM', P .. 'sent'}, mid)
    later({'ZREM', P .. 'sched'}, mid)
  elseif state then
    local f = {'entry', ''}
    if provider ~= '' then set_provider(f, mid, provider, pid, pkey, h[3]) else pkey = h[3] end
    unqueue(mid, h[2])
    later({'SREM', P .. 'sent'}, mid)
    f[#f + 1] = 'state'; f[#f + 1] = 'final'
    f[#f + 1] = 'stat'; f[#f + 1] = stat
    f[#f + 1] = 'err'; f[#f + 1] = err
    f[#f + 1] = 'done_at'; f[#f + 1] = now
    if detail ~= '' then f[#f + 1] = 'fd'; f[#f + 1] = detail end
    add_receipts(e[9], 1, mid, h[4], f)
    redis.call('HSET', mkey, unpack(f))
    add_callbacks(e[10], 1, mid)
    finals = finals + 1
    ended(mid, now, h[4], h[5], h[6])
    expiring[#expiring + 1] = {mkey, mid, h[7], pkey, h[8]}
    out[n] = 1
  end
end
flush()
-- after flush(): a provider key set in this batch exists now
for _, x in ipairs(expiring) do expire_final(x[1], x[2], ttl, x[3], x[4], x[5]) end
if finals > 0 then redis.call('INCRBY', P .. 'finals', finals) end
return out
""",
}
