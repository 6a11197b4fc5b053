"""The Lua of the message history: its reads (``timeline``, ``receipts_of``, ``search``)
and its retention (``purge``). :mod:`.scripts` prepends its shared helpers (``resolve``,
``message_json``, ``drop_receipt``, the key prefix ``P``, the bucket width
``BUCKET``) to each, as to every script.

What each costs in Redis is written above each script; :mod:`.history` (the Python
side) turns their replies into the core's history types.
"""

from __future__ import annotations

__all__ = ["HISTORY_LUA"]

HISTORY_LUA: dict[str, str] = {
    # ARGV[4]: the message id or any part id. Returns the hash fields the derived
    # entries come from, then the notes (oldest first). O(1) + the notes (<= CAP).
    "timeline": """
local mid = resolve(ARGV[4])
if not mid then return {} end
local mkey = P .. 'm:' .. mid
local out = redis.call('HMGET', mkey, 'submitted_at', 'state', 'stat', 'err', 'done_at',
                       'sat', 'sst', 'sp', 'sd', 'fd', 'fp', 'af', 'hn', 'provider',
                       'provider_id')
if not out[1] then return {} end
for _, item in ipairs(redis.call('LRANGE', P .. 'h:' .. mid, 0, -1)) do
  out[#out + 1] = item
end
return out
""",
    # ARGV[4]: the message id or any part id. Returns message id, account, then (seq,
    # view, attempts or '') per receipt listed in the hash. O(fields of the hash) + one
    # HGET per receipt still pending.
    "receipts_of": """
local mid = resolve(ARGV[4])
if not mid then return {} end
local h = redis.call('HGETALL', P .. 'm:' .. mid)
local out = {mid, ''}
for k = 1, #h, 2 do
  local f, v = h[k], h[k + 1]
  if f == 'account' then out[2] = v end
  local seq = string.match(f, '^r:(%d+)$')
  if seq then
    out[#out + 1] = seq
    out[#out + 1] = v
    if string.sub(v, 1, 2) == 'p|' then
      out[#out + 1] = redis.call('HGET', P .. 'r:' .. seq, 'n') or '0'
    else
      out[#out + 1] = ''
    end
  end
end
return out
""",
    # ARGV[4]: JSON {keys: [[index key, the filter it implies], ...], limit, budget,
    # after_t, after_id, since, until, filters: {hash field: value}} (absent = any).
    # Walks the smallest of the given time indexes newest first, from just after the
    # cursor, checking the filters that index does not imply on each message's hash.
    # Returns more (1: the index has unexamined entries in range), the score and id of
    # the last entry examined, then the JSON of each match. Cost: O(log N) to find the
    # start (ties at the cursor's time walked only when the cursor's own entry is gone),
    # then per entry examined one HMGET of the fields still to check (none when the
    # index implies every filter: ~5 us) and, per match, one HGETALL and its JSON
    # (~25 us); at most `budget` entries and `limit` matches per call.
    "search": """
local function bytes_gt(a, b)  -- a > b in byte order (Lua's < follows the locale)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x > y end
  end
  return #a > #b
end

-- members scored exactly t that sort after id, newest first (REV): those before it
local function ties_before(key, t, id)
  local n, off = 0, 0
  while true do
    local chunk = redis.call('ZRANGE', key, t, t, 'BYSCORE', 'REV', 'LIMIT', off, 100)
    for _, m in ipairs(chunk) do
      if not bytes_gt(m, id) then return n end
      n = n + 1
    end
    if #chunk < 100 then return n end
    off = off + 100
  end
end

local q = cjson.decode(ARGV[4])
local limit, budget = tonumber(q.limit), tonumber(q.budget)
local key, size, implied = nil, nil, nil
for _, k in ipairs(q.keys) do
  local n = redis.call('ZCARD', k[1])
  if size == nil or n < size then key, size, implied = k[1], n, k[2] end
end
if size == 0 then return {0, '', ''} end
local pos = 0
if q['until'] then pos = redis.call('ZCOUNT', key, q['until'], '+inf') end
if q.after_t then
  local start
  local r = redis.call('ZREVRANK', key, q.after_id)
  if r and tonumber(redis.call('ZSCORE', key, q.after_id)) == tonumber(q.after_t) then
    start = r + 1
  else
    start = redis.call('ZCOUNT', key, '(' .. q.after_t, '+inf')
            + ties_before(key, q.after_t, q.after_id)
  end
  if start > pos then pos = start end
end
local stop = size
if q.since then stop = redis.call('ZCOUNT', key, q.since, '+inf') end
local fields, want = {}, {}
for f, v in pairs(q.filters) do
  if f ~= implied then fields[#fields + 1] = f; want[#want + 1] = v end
end
local out = {}
local examined, last_s, last_m = 0, '', ''
while pos < stop and #out < limit and examined < budget do
  local n = math.min(100, stop - pos, budget - examined)
  local chunk = redis.call('ZRANGE', key, pos, pos + n - 1, 'REV', 'WITHSCORES')
  if #chunk == 0 then break end
  for k = 1, #chunk, 2 do
    local mid = chunk[k]
    examined = examined + 1
    pos = pos + 1
    last_m, last_s = mid, chunk[k + 1]
    local mkey = P .. 'm:' .. mid
    local ok = true
    if #fields > 0 then  -- a hash gone (expired before purge trimmed) matches nothing
      local h = redis.call('HMGET', mkey, unpack(fields))
      for i = 1, #fields do
        if h[i] ~= want[i] then ok = false; break end
      end
    end
    if ok then
      local m = message_json(mkey)  -- '' when the hash is gone
      if m ~= '' then
        out[#out + 1] = m
        if #out >= limit then break end
      end
    end
  end
end
local more = 0
if pos < stop then more = 1 end
return {more, last_s, last_m, unpack(out)}
""",
    # ARGV[4..]: ended_before, limit. Empties, oldest first, the buckets of messages
    # that ended in a bucket wholly before ended_before: each message's keys are
    # deleted (hash, notes, part and provider index, receipts still pending) and its
    # entries leave the four search indexes, whether or not its hash has expired
    # already (the bucket entry names the indexes). Returns how many entries it took.
    # Cost: O(log N) per index entry removed, ~8 commands per message, <= limit.
    "purge": """
local function forget(mid, acct, dest, src)
  local mkey = P .. 'm:' .. mid
  local h = redis.call('HGETALL', mkey)
  if #h > 0 then
    local t = {}
    for k = 1, #h, 2 do t[h[k]] = h[k + 1] end
    if t.state ~= 'final' then return end  -- an id stored again since: not ours
    for f, v in pairs(t) do
      local seq = string.match(f, '^r:(%d+)$')
      if seq and string.sub(v, 1, 2) == 'p|' then drop_receipt(seq) end
    end
    local parts = cjson.decode(t.part_ids)
    if #parts > 1 then
      for _, pid in ipairs(parts) do
        local pkey = P .. 'pid:' .. pid
        if redis.call('GET', pkey) == mid then redis.call('DEL', pkey) end
      end
    end
    if t.pkey and t.pkey ~= '' and redis.call('GET', t.pkey) == mid then
      redis.call('DEL', t.pkey)
    end
    redis.call('DEL', mkey, P .. 'h:' .. mid)
  end
  redis.call('ZREM', P .. 'ix:t', mid)
  redis.call('ZREM', P .. 'ix:a:' .. acct, mid)
  redis.call('ZREM', P .. 'ix:d:' .. dest, mid)
  redis.call('ZREM', P .. 'ix:s:' .. src, mid)
end

local before, limit = tonumber(ARGV[4]), tonumber(ARGV[5])
local last = math.floor(before / BUCKET) - 1
local n = 0
for _, b in ipairs(redis.call('ZRANGEBYSCORE', P .. 'ix:ends', '-inf', last)) do
  if n >= limit then break end
  local key = P .. 'ix:e:' .. b
  local items = redis.call('LPOP', key, limit - n)
  if items then
    for _, e in ipairs(items) do
      local m = cjson.decode(e)
      forget(m[1], m[2], m[3], m[4])
      n = n + 1
    end
  end
  if redis.call('EXISTS', key) == 0 then redis.call('ZREM', P .. 'ix:ends', b) end
end
return n
""",
}
