"""Message ids from store-reserved blocks: unique, decimal or hex, short for v3.3."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from smppbridge.core.accounts import Account
from smppbridge.core.session import BindType, SessionContext
from smppbridge.ingest.ids import IdAllocator
from smppbridge.store.sqlite.store import SqliteStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(str(tmp_path / "ids.db"))
    await s.open()
    yield s
    await s.close()


async def _take(ids: IdAllocator, ctx: SessionContext) -> str:
    got = ids.take(ctx)
    return got if isinstance(got, str) else await got


async def test_ids_are_unique_and_formatted(store: SqliteStore) -> None:
    """Ids come from store blocks: decimal, hex by option, ≤ 8 chars for v3.3."""
    ids = IdAllocator(store, block=3)
    acct = Account("acme", "pw")
    ctx = SessionContext(1, acct, BindType.TRANSMITTER, "", 0x34, "x")
    got = [await _take(ids, ctx) for _ in range(7)]
    assert len(set(got)) == 7
    assert all(g.isdigit() for g in got)
    hex_ctx = replace(ctx, account=replace(acct, message_id_format="hex"))
    assert all(c in "0123456789abcdef" for c in await _take(ids, hex_ctx))
    ids._next = 10**12
    ids._end = 10**12 + 5
    v33 = replace(ctx, interface_version=0x33)
    assert len(await _take(ids, v33)) <= 8


def test_ids_within_a_reserved_block_need_no_await() -> None:
    """While the reserved block lasts, take() answers at once with a str (the submit
    path pays no coroutine per message); past it, an awaitable that reserves."""
    ids = IdAllocator(None, block=3)  # type: ignore[arg-type]
    ctx = SessionContext(1, Account("acme", "pw"), BindType.TRANSMITTER, "", 0x34, "x")
    ids._next, ids._end = 5, 7
    assert [ids.take(ctx), ids.take(ctx)] == ["5", "6"]
    pending = ids.take(ctx)
    assert not isinstance(pending, str)
    pending.close()  # type: ignore[attr-defined]
