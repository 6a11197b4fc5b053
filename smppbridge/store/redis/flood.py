"""Flood windows in Redis, shared by every node of a cluster (docs/content.md, docs/cluster.md).

Theory of operation
-------------------
The same rules as :class:`~smppbridge.ingest.flood.MemoryFloodState` (read its module
docstring), in one Lua script so that a check and its record are one atomic step on the
Redis server: two nodes getting the same message at once cannot both accept it, and the
51st message of a streak is refused whichever node takes it.

Keys (``prefix`` default ``smppbridge:``; free-form parts percent-quoted so that two
different tuples never share a key):

* ``flood:s:<account>:<destination>`` — hash {last, count}: the current streak.
* ``flood:d:<account>:<source>:<destination>:<digest hex>`` — string: when the first
  accepted copy was recorded (the duplicate window runs from it).

Times are the callers' ``now``: each node's steady time (core.clock: its wall clock
when it started plus the monotonic time since, so a step of one node's wall clock moves
no window; the nodes' clocks must be NTP-synced when they start); Redis's
own clock is used only to garbage-collect keys whose window has passed (a TTL a second
longer than the window). Expiry can therefore only forget a window that is over, never
refuse a message wrongly.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from smppbridge.core.accounts import FloodRules
from smppbridge.smpp.constants import CommandStatus
from smppbridge.store.redis.batching import redis_unavailable

__all__ = ["RedisFloodState"]

#: Keys outlive their window by this much (ms) so a record is never dropped early.
_TTL_MARGIN_MS = 1000

# KEYS: streak hash, duplicate string.
# ARGV: now, flood_gap, flood_limit, duplicate_window, duplicate_status, flood_status,
# streak ttl ms, duplicate ttl ms. `now` is stored as given (a Python repr), so release()
# can match it exactly.
_CHECK = """
local now, gap = tonumber(ARGV[1]), tonumber(ARGV[2])
local limit, window = tonumber(ARGV[3]), tonumber(ARGV[4])
local s = redis.call('HMGET', KEYS[1], 'last', 'count')
local count = 1
-- only a pause of flood_gap or more ends a streak; refused attempts count too
if s[1] and now - tonumber(s[1]) < gap then count = tonumber(s[2]) + 1 end
redis.call('HSET', KEYS[1], 'last', ARGV[1], 'count', count)
redis.call('PEXPIRE', KEYS[1], ARGV[7])
if window > 0 then
  local first = redis.call('GET', KEYS[2])
  if first and now - tonumber(first) < window then return tonumber(ARGV[5]) end
end
if limit > 0 and count > limit then return tonumber(ARGV[6]) end
if window > 0 then redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[8]) end
return 0
"""

# KEYS: duplicate string. ARGV: recorded_at.
_RELEASE = """
local first = redis.call('GET', KEYS[1])
if first and tonumber(first) == tonumber(ARGV[1]) then redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisFloodState:
    """:class:`~smppbridge.core.ports.FloodState` in Redis; see the module docstring.

    Takes a redis-py asyncio client (e.g. ``RedisStore.client``, or one from
    :meth:`from_url`); raises :class:`~smppbridge.core.errors.StoreUnavailable` when
    Redis cannot be reached, so a submit is answered ESME_RMSGQFUL (temporary).
    """

    #: every check is a round trip to Redis (ContentHandler checks them concurrently)
    immediate = False

    def __init__(self, client: aioredis.Redis | Callable[[], aioredis.Redis], *,
                 prefix: str = "smppbridge:",
                 send: Callable[[tuple[Any, ...]], Awaitable[Any]] | None = None) -> None:
        """``send``: a function that sends one command in the store's next pipeline
        (``RedisStore.flood_state`` passes its batcher's): a window of concurrent checks
        then costs one round trip instead of one pool connection and one round trip a
        check. That was 31 % of a cluster node's Python time (py-spy, one node at full
        load, ``benchmarks/cluster_scale.py --spy``)."""
        #: the client, or a function that gives the store's client once it is open (the
        #: node builds this state before it opens the store)
        self._client = client if isinstance(client, aioredis.Redis) else None
        self._get_client = client if not isinstance(client, aioredis.Redis) else None
        self.prefix = prefix
        # Scripts are run on the client given at each call (redis-py loads a script
        # that Redis forgot, after a restart or SCRIPT FLUSH, and retries).
        self._check = AsyncScript(None, _CHECK.encode())  # type: ignore[arg-type]
        self._release = AsyncScript(None, _RELEASE.encode())  # type: ignore[arg-type]
        self._send = send

    @property
    def client(self) -> aioredis.Redis:
        if self._client is not None:
            return self._client
        assert self._get_client is not None
        return self._get_client()

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "smppbridge:") -> RedisFloodState:
        return cls(aioredis.Redis.from_url(url, decode_responses=True), prefix=prefix)

    async def aclose(self) -> None:
        """Close the client (only for a state made by :meth:`from_url`)."""
        await self.client.aclose()

    async def check_and_record(
        self,
        *,
        account: str,
        source: str,
        destination: str,
        text_digest: bytes,
        now: float,
        rules: FloodRules,
    ) -> int:
        if not rules.enabled:
            return CommandStatus.ESME_ROK
        keys = [self._streak_key(account, destination),
                self._duplicate_key(account, source, destination, text_digest)]
        # int(): statuses may be IntEnum members, which redis-py would send by repr()
        args = [repr(float(now)), repr(float(rules.flood_gap)), int(rules.flood_limit),
                repr(float(rules.duplicate_window)), int(rules.duplicate_status),
                int(rules.flood_status), _ttl_ms(rules.flood_gap),
                _ttl_ms(rules.duplicate_window)]
        return int(await self._run(self._check, keys, args))

    async def release(
        self, *, account: str, source: str, destination: str, text_digest: bytes,
        recorded_at: float,
    ) -> None:
        await self._run(self._release,
                        [self._duplicate_key(account, source, destination, text_digest)],
                        [repr(float(recorded_at))])

    async def _run(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        with redis_unavailable():
            if self._send is None:
                return await script(keys=keys, args=args, client=self.client)
            command = ("EVALSHA", script.sha, len(keys), *keys, *args)
            try:
                return await self._send(command)
            except NoScriptError:  # Redis forgot it (a restart, SCRIPT FLUSH): load, again
                await self.client.script_load(script.script)
                return await self._send(command)

    def _streak_key(self, account: str, destination: str) -> str:
        return f"{self.prefix}flood:s:{_q(account)}:{_q(destination)}"

    def _duplicate_key(self, account: str, source: str, destination: str,
                       digest: bytes) -> str:
        return (f"{self.prefix}flood:d:{_q(account)}:{_q(source)}:{_q(destination)}:"
                f"{digest.hex()}")


def _q(part: str) -> str:
    return quote(part, safe="", errors="surrogatepass")


def _ttl_ms(window: float) -> int:
    return max(1, math.ceil(window * 1000)) + _TTL_MARGIN_MS
