"""Writing through a store outage: an outcome that must not be lost (a send's result,
a callback's answer) is written again until the store takes it, backing off with
jitter so that the workers of a node (and the nodes of a cluster) do not retry in
step when the store comes back."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import structlog

from smppbridge.core.errors import StoreUnavailable

__all__ = ["FIRST_DELAY", "MAX_DELAY", "until_stored"]

_log = structlog.get_logger()
#: seconds before the first retry; each one doubles it up to MAX_DELAY
FIRST_DELAY = 0.1
MAX_DELAY = 5.0


async def until_stored(write: Callable[[], Awaitable[None]], event: str) -> None:
    """Await ``write()`` until it does not raise StoreUnavailable; each refusal is a
    debug line ``event`` (the store logs the episode itself, once)."""
    delay = FIRST_DELAY
    while True:
        try:
            await write()
            return
        except StoreUnavailable as exc:
            _log.debug(event, error=str(exc))
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(MAX_DELAY, delay * 2)
