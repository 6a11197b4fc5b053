"""The nodes of a cluster, in the Redis they share (the :class:`NodeRegistry` port).

Keys (``prefix`` as the store's):

* ``nodes`` — sorted set: node id → when its last heartbeat expires (ms, Redis's clock);
* ``node:<id>`` — its last report (JSON: when, binds), expiring with it;
* ``stats:<id>`` — list of its last ``SECONDS_KEPT`` seconds of traffic (JSON each);
* ``unbind:<id>`` — list of bind numbers other nodes asked it to unbind.

A heartbeat is one Lua script (atomic): refresh the node's entry, push its second, take
its unbind requests, and drop nodes whose heartbeat expired. Expiry uses Redis's own
clock (``TIME``), so nodes' clocks may disagree without a live node looking dead. No
operation scans the keyspace: live nodes are a range of ``nodes``.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from smppbridge.core.cluster import BindInfo, NodeReport, Second
from smppbridge.store.redis.batching import redis_unavailable

__all__ = ["SECONDS_KEPT", "RedisRegistry"]

#: seconds of each node's traffic kept (the API serves up to 60 minutes)
SECONDS_KEPT = 3600
#: unbind requests for a node that never takes them are dropped after this (ms)
_REQUEST_TTL_MS = 60_000

# KEYS: nodes, node:<id>, stats:<id>, unbind:<id>. ARGV: id, report, second ('' none),
# ttl ms, seconds kept.
_PUBLISH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ttl)
if ARGV[3] ~= '' then
  redis.call('RPUSH', KEYS[3], ARGV[3])
  redis.call('LTRIM', KEYS[3], -tonumber(ARGV[5]), -1)
end
redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[5]) * 1000)
local asked = redis.call('LRANGE', KEYS[4], 0, -1)
redis.call('DEL', KEYS[4])
return asked
"""

# KEYS: nodes. ARGV: prefix.
_REPORTS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
local out = {}
for _, id in ipairs(ids) do
  local report = redis.call('GET', ARGV[1] .. 'node:' .. id)
  if report then table.insert(out, report) end
end
return out
"""


class RedisRegistry:
    """The :class:`~smppbridge.core.ports.NodeRegistry` on the store's Redis."""

    def __init__(self, client: Callable[[], aioredis.Redis], prefix: str) -> None:
        self._client = client
        self.prefix = prefix
        self._publish = AsyncScript(None, _PUBLISH.encode())  # type: ignore[arg-type]
        self._reports = AsyncScript(None, _REPORTS.encode())  # type: ignore[arg-type]

    def _key(self, *parts: str) -> str:
        return self.prefix + "".join(parts)

    async def publish(self, report: NodeReport, second: Second | None, ttl: float
                      ) -> list[int]:
        node = report.node_id
        body = json.dumps({"node_id": node, "at": report.at,
                           "binds": [b.as_dict() for b in report.binds]})
        with redis_unavailable():
            asked = await self._publish(
                keys=[self._key("nodes"), self._key("node:", node), self._key("stats:", node),
                      self._key("unbind:", node)],
                args=[node, body, json.dumps(second.as_dict()) if second else "",
                      max(1, int(ttl * 1000)), SECONDS_KEPT],
                client=self._client())
        return [int(n) for n in asked if str(n).isdigit()]

    async def reports(self) -> list[NodeReport]:
        with redis_unavailable():
            raw = await self._reports(keys=[self._key("nodes")], args=[self.prefix],
                                      client=self._client())
        out = []
        for item in raw:
            d = json.loads(item)
            out.append(NodeReport(str(d["node_id"]), float(d["at"]),
                                  tuple(BindInfo.of(b) for b in d["binds"])))
        return sorted(out, key=lambda r: r.node_id)

    async def seconds(self, node_id: str, count: int) -> list[Second]:
        with redis_unavailable():
            raw = await self._client().lrange(self._key("stats:", node_id), -count, -1)
        return [Second.of(json.loads(item)) for item in raw]

    async def request_unbind(self, node_id: str, number: int) -> None:
        key = self._key("unbind:", node_id)
        with redis_unavailable():
            pipe = self._client().pipeline(transaction=True)
            pipe.rpush(key, int(number))
            pipe.pexpire(key, _REQUEST_TTL_MS)
            await pipe.execute()
