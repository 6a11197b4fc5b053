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

from smppbridge.core.accounts import FloodRules
from smppbridge.smpp.constants import CommandStatus
from smppbridge.store.redis.batching import redis_unavailable
from smppbridge.store.redis.flood_lua import FLOOD_CHECK

__all__ = ["RedisFloodState"]

#: Keys outlive their window by this much (ms) so a record is never dropped early.
_TTL_MARGIN_MS = 1000

# KEYS: streak hash, duplicate string; ARGV: flood_check's arguments from `now` on.
_CHECK = FLOOD_CHECK + """
return flood_check(KEYS[1], KEYS[2], unpack(ARGV))
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
                 checks: Callable[[list[list[Any]]], Awaitable[list[Any]]] | None = None
                 ) -> None:
        """``checks``: a function that runs checks (the arguments of ``flood_check`` in
        :mod:`.flood_lua`, keys without the prefix) in the store's next script call of
        them and returns their statuses; ``RedisStore.flood_state`` passes its merged
        ``flood_check``. A window of concurrent submits then costs one script call in
        one round trip instead of one pool connection, one round trip and one script
        call a check: those were 31 % of a cluster node's Python time (py-spy, one node
        at full load, ``benchmarks/cluster_scale.py --spy``)."""
        #: the client, or a function that gives the store's client once it is open (the
        #: node builds this state before it opens the store)
        self._client = client if isinstance(client, aioredis.Redis) else None
        self._get_client = client if not isinstance(client, aioredis.Redis) else None
        self.prefix = prefix
        # Scripts are run on the client given at each call (redis-py loads a script
        # that Redis forgot, after a restart or SCRIPT FLUSH, and retries).
        self._check = AsyncScript(None, _CHECK.encode())  # type: ignore[arg-type]
        self._release = AsyncScript(None, _RELEASE.encode())  # type: ignore[arg-type]
        self._checks = checks

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
        if self._checks is not None:
            with redis_unavailable():
                [status] = await self._checks(
                    [[key.removeprefix(self.prefix) for key in keys] + args])
            return int(status)
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
            return await script(keys=keys, args=args, client=self.client)

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
