"""What both stores share: settling the futures of callers waiting for a batch."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["settle"]


def settle(fut: asyncio.Future[Any], value: Any, err: BaseException | None) -> None:
    """Resolve ``fut`` with ``value`` or ``err`` unless it is done (cancelled) already."""
    if fut.done():
        return
    if err is not None:
        fut.set_exception(err)
    else:
        fut.set_result(value)
