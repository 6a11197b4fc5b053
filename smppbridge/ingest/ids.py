"""Message ids: unique across restarts and nodes, with no store round trip per message."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from smppbridge.core.ports import Store
    from smppbridge.core.session import SessionContext

__all__ = ["IdAllocator"]


class IdAllocator:
    """Message ids from blocks reserved in the store: unique across restarts (and nodes,
    when the store is shared), with no store round trip per message.

    Decimal by default, hex per account; a v3.3 bind gets at most 8 characters (SMPP 3.4
    §3.4), so its ids repeat after 10^8 (decimal) or 16^8 (hex) messages.
    """

    def __init__(self, store: Store, block: int = 10_000) -> None:
        self.store = store
        self.block = block
        self._next = 0
        self._end = 0
        self._lock = asyncio.Lock()

    async def _number(self) -> int:
        if self._next >= self._end:
            async with self._lock:
                if self._next >= self._end:
                    self._next = await self.store.reserve_ids(self.block)
                    self._end = self._next + self.block
        n = self._next
        self._next += 1
        return n

    def take(self, ctx: SessionContext) -> str | Awaitable[str]:
        """The next id: at once while the reserved block lasts (no coroutine per
        message), else an awaitable that reserves the next block first."""
        if self._next < self._end:
            n = self._next
            self._next += 1
            return self._format(n, ctx)
        return self._take_reserving(ctx)

    async def _take_reserving(self, ctx: SessionContext) -> str:
        return self._format(await self._number(), ctx)

    @staticmethod
    def _format(n: int, ctx: SessionContext) -> str:
        hexa = ctx.account.message_id_format == "hex"
        if ctx.short_ids:
            return f"{n % 16**8:x}" if hexa else str(n % 10**8)
        return f"{n:x}" if hexa else str(n)
