"""The SQLite store's receipts as history: receipts_of in every state, finished
receipts out of the outbox, the outbox queries on the indexes of pending receipts."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import pytest

from smppbridge.core.history import (
    ReceiptState,
    ReceiptView,
)
from smppbridge.store.sqlite.store import SqliteStore
from tests.store.sqlite.support import msg, rec


async def _plans(store: SqliteStore, call: Callable[[], Any]) -> list[str]:
    """The query plans of the statements the store ran for ``call()`` (on the writer
    and on the reader connection)."""
    seen: list[str] = []
    for on in (store._call, store._read):
        await on(lambda db: db.set_trace_callback(seen.append))
    try:
        await call()
    finally:
        for on in (store._call, store._read):
            await on(lambda db: db.set_trace_callback(None))
    db = sqlite3.connect(store.path)
    try:
        return [r[3] for sql in seen if not sql.startswith(("BEGIN", "COMMIT"))
                for r in db.execute("EXPLAIN QUERY PLAN " + sql)]
    finally:
        db.close()


async def test_outbox_queries_read_only_the_indexes_of_pending_receipts(
        store: SqliteStore) -> None:
    """The dispatcher's queries run on the partial indexes of pending receipts, covering
    where they were before, so finished receipts kept for the history neither slow them
    nor come back from them; the sender's due() reads only queued messages."""
    await store.add_receipts([rec("a")])
    await store.receipt_done([1], 10.0)
    assert await _plans(store, lambda: store.receipts_for("acme", 100.0, 10)) == [
        "SEARCH receipts USING INDEX receipts_due (account=? AND next_at<?)",
        "USE TEMP B-TREE FOR ORDER BY"]
    assert await _plans(store, lambda: store.accounts_with_receipts(100.0)) == [
        "SCAN receipts USING COVERING INDEX receipts_due"]
    assert await _plans(store, lambda: store.expire_receipts(100.0)) == [
        "SEARCH receipts USING INDEX receipts_expiry (expire_at<?)"]
    assert await _plans(store, store.count_receipts) == [
        "SCAN receipts USING COVERING INDEX receipts_expiry"]
    assert await _plans(store, lambda: store.count_receipts("acme")) == [
        "SEARCH receipts USING COVERING INDEX receipts_due (account=?)"]
    assert await _plans(store, lambda: store.due(100.0, 10)) == [
        "SEARCH messages USING INTEGER PRIMARY KEY (rowid=?)", "LIST SUBQUERY 1",
        "SEARCH messages USING INDEX messages_due (claimed=? AND next_at<?)"]


# --- a message's receipts ---------------------------------------------------------------

async def test_receipts_of_every_part_in_every_state(store: SqliteStore) -> None:
    """receipts_of a long message (by any part id) lists the receipts of all its parts
    in creation order: pending with its attempts and creation time, delivered and
    dropped with the time they were done with, expired at the end of its TTL (the
    sweep runs on steady time; the Redis store records the same)."""
    await store.accept(msg("R", parts=3, at=1000.0))
    await store.mark_sent("R-2", "sim", "P", "ENROUTE", 1020.0,
                          [rec("R-0", stat="ENROUTE", at=1020.0)])
    await store.mark_final("R-2", "DELIVRD", 0, 1040.0, [
        rec("R-0"), rec("R-1"), rec("R-2", expire_at=1100.0)])
    seqs = [r.seq for r in await store.receipts_for("acme", 1050.0, 10)]
    await store.receipt_done([seqs[0]], 1050.0)
    await store.receipt_done([seqs[1]], 1060.0, ReceiptState.DROPPED)
    await store.receipt_retry(seqs[2], 2000.0, 2)
    assert await store.expire_receipts(1200.0) == 1
    want = [
        ReceiptView("R-0", "acme", "ENROUTE", 0, ReceiptState.DELIVERED, 0, 1050.0),
        ReceiptView("R-0", "acme", "DELIVRD", 0, ReceiptState.DROPPED, 0, 1060.0),
        ReceiptView("R-1", "acme", "DELIVRD", 0, ReceiptState.PENDING, 2, 1040.0),
        ReceiptView("R-2", "acme", "DELIVRD", 0, ReceiptState.EXPIRED, 0, 1100.0),
    ]
    assert await store.receipts_of("R-1") == want
    assert await store.receipts_of("R-2") == want


async def test_finished_receipts_leave_the_outbox_for_good(store: SqliteStore) -> None:
    """Delivered, dropped and expired receipts are not counted, not due, and neither a
    release, a retry nor a second receipt_done brings them back or changes them."""
    await store.add_receipts([rec("a"), rec("b"), rec("c", expire_at=50.0), rec("d")])
    assert await store.expire_receipts(100.0) == 1
    a, b, d = await store.receipts_for("acme", 100.0, 10)
    assert d.message_id == "d"
    await store.receipt_done([a.seq], 110.0)
    await store.receipt_done([b.seq], 120.0, ReceiptState.DROPPED)
    assert await store.count_receipts() == await store.count_receipts("acme") == 1
    await store.release_receipts([a.seq, b.seq])
    await store.receipt_retry(a.seq, 0.0, 5)
    await store.receipt_done([b.seq], 130.0)
    assert [r.message_id for r in await store.receipts_for("acme", 9000.0, 10)] == ["d"]
    assert await store.accounts_with_receipts(9000.0) == ["acme"]
    assert await store.expire_receipts(99999.0) == 1  # d only: c is expired already
    assert [(v.part_id, v.state, v.attempts, v.at) for v in
            await store.receipts_of("a") + await store.receipts_of("b")] == [
        ("a", ReceiptState.DELIVERED, 0, 110.0), ("b", ReceiptState.DROPPED, 0, 120.0)]


async def test_receipt_done_refuses_pending(store: SqliteStore) -> None:
    """Done with means delivered or dropped: PENDING is a caller's mistake."""
    with pytest.raises(ValueError, match="pending"):
        await store.receipt_done([1], 1.0, ReceiptState.PENDING)


async def test_receipts_of_a_part_never_stored_whole(store: SqliteStore) -> None:
    """The REJECTD receipt of a part whose message never completed is found by the
    part's id (there is no message to find it by)."""
    await store.fail_parts(["9-0"], [rec("9-0", stat="REJECTD", at=1010.0)])
    assert await store.receipts_of("9-0") == [
        ReceiptView("9-0", "acme", "REJECTD", 0, ReceiptState.PENDING, 0, 1010.0)]
    assert await store.receipts_of("9-1") == []
