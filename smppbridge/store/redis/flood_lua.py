"""The Lua of the flood rules (:mod:`.flood`): one check-and-record as a function, run
either by a script of its own with the two keys as KEYS (a ``RedisFloodState`` on a
client of its own) or by ``flood_check``, which takes the checks of a whole batch of
submits (a ``RedisFloodState`` of a ``RedisStore``: its checks merged like the store's
writes, :mod:`.merging`) and builds each key from the prefix ``P`` of :mod:`.scripts`.
"""

from __future__ import annotations

__all__ = ["FLOOD_CHECK", "FLOOD_LUA"]

# skey: streak hash, dkey: duplicate string; then now, flood_gap, flood_limit,
# duplicate_window, duplicate_status, flood_status, streak ttl ms, duplicate ttl ms.
# `now` is stored as given (a Python repr), so release() can match it exactly.
FLOOD_CHECK = """
local function flood_check(skey, dkey, now_s, gap_s, limit_s, window_s, dup_status,
                           flood_status, streak_ttl, dup_ttl)
  local now, gap = tonumber(now_s), tonumber(gap_s)
  local limit, window = tonumber(limit_s), tonumber(window_s)
  local s = redis.call('HMGET', skey, 'last', 'count')
  local count = 1
  -- only a pause of flood_gap or more ends a streak; refused attempts count too
  if s[1] and now - tonumber(s[1]) < gap then count = tonumber(s[2]) + 1 end
  redis.call('HSET', skey, 'last', now_s, 'count', count)
  redis.call('PEXPIRE', skey, streak_ttl)
  if window > 0 then
    local first = redis.call('GET', dkey)
    if first and now - tonumber(first) < window then return tonumber(dup_status) end
  end
  if limit > 0 and count > limit then return tonumber(flood_status) end
  if window > 0 then redis.call('SET', dkey, now_s, 'PX', dup_ttl) end
  return 0
end
"""

FLOOD_LUA: dict[str, str] = {
    # ARGV[4]: JSON [[streak key, duplicate key (both after the prefix), now, ...the
    # arguments of flood_check], ...], checked in order. Returns a status per check.
    "flood_check": FLOOD_CHECK + """
local out = {}
for n, c in ipairs(cjson.decode(ARGV[4])) do
  out[n] = flood_check(P .. c[1], P .. c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10])
end
return out
""",
}
