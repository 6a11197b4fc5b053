"""The SQLite store's retention (purge) and the migration of a schema-3 file to the
history schema."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from smppbridge.core.history import (
    MessageQuery,
    ReceiptState,
    TimelineEntry,
)
from smppbridge.core.message import OutboundMessage
from smppbridge.core.records import (
    DeliveryState,
    ReceiptRecord,
    content_to_json,
    receipt_body,
)
from smppbridge.store.sqlite import store as store_module
from smppbridge.store.sqlite.schema import MIGRATIONS, SCHEMA_VERSION
from smppbridge.store.sqlite.store import SqliteStore
from tests.store.sqlite.support import count_rows, msg, page_ids, rec

# --- retention --------------------------------------------------------------------------

async def test_purge_removes_only_final_messages_ended_before_with_all_they_own(
        store: SqliteStore) -> None:
    """purge deletes final messages that ended before the cutoff, with their part index
    rows, history rows and receipts of every state; messages final later, sent or
    queued stay whole."""
    old = msg("old", parts=2, at=1000.0)
    await store.accept(old)
    await store.mark_retry("old-1", 1001.0, 1, "retry 1: x")
    await store.mark_sent("old-1", "sim", "P1", "ENROUTE", 1002.0)
    await store.record_status("old-1", "ACCEPTD", 0, 1003.0, "status from webhook",
                              [rec("old-0", stat="ACCEPTD")])
    await store.mark_final("old-1", "DELIVRD", 0, 1500.0, [rec("old-0"), rec("old-1")])
    done = (await store.receipts_for("acme", 2000.0, 1))[0].seq
    await store.receipt_done([done], 1600.0)
    await store.accept(msg("old2", at=1100.0))
    await store.mark_final("old2", "EXPIRED", 3, 1999.0)
    await store.accept(msg("late", at=1200.0))
    await store.mark_final("late", "DELIVRD", 0, 2000.0, [rec("late")])
    await store.accept(msg("sent", at=900.0))
    await store.mark_sent("sent", "sim", "P2", "ENROUTE", 901.0)
    await store.accept(msg("queued", at=800.0))

    assert await store.purge(2000.0, 100) == 2
    for mid in ("old", "old-0", "old-1", "old2"):
        assert await store.find(mid) is None
        assert await store.timeline(mid) == []
        assert await store.receipts_of(mid) == []
    path = store.path
    assert count_rows(path, "SELECT count(*) FROM part_ids") == 0
    assert count_rows(path, "SELECT count(*) FROM history") == 0
    assert count_rows(path, "SELECT count(*) FROM receipts WHERE message_id LIKE 'old%'") == 0
    for mid, last in (("late", "final"), ("sent", "sent"), ("queued", "queued")):
        assert (await store.timeline(mid))[-1].state == last
    assert [v.part_id for v in await store.receipts_of("late")] == ["late"]
    assert await store.purge(2000.0, 100) == 0


async def test_purge_deletes_at_most_limit_oldest_first(store: SqliteStore) -> None:
    """purge deletes at most ``limit`` messages, those that ended first, and says how
    many; a limit above one writer chunk is met across chunks."""
    n = store_module._PURGE_CHUNK + 50
    await store.accept_many([msg(f"p{i:03d}", at=1000.0 + i) for i in range(n)])
    await store.mark_final_many([(f"p{i:03d}", "DELIVRD", 0, 5000.0 - i, (), "")
                                 for i in range(n)])
    assert await store.purge(9000.0, 2) == 2
    assert await store.find(f"p{n - 1:03d}") is None  # ended first
    assert await store.find(f"p{n - 3:03d}") is not None
    assert await store.purge(9000.0, store_module._PURGE_CHUNK + 10) == \
        store_module._PURGE_CHUNK + 10
    assert await store.count(DeliveryState.FINAL) == n - store_module._PURGE_CHUNK - 12
    assert await store.purge(9000.0, 10_000) == n - store_module._PURGE_CHUNK - 12
    assert await store.count(DeliveryState.FINAL) == 0


async def test_purge_takes_old_receipts_no_message_owns(store: SqliteStore) -> None:
    """Finished receipts of parts never stored whole go with the oldest history;
    a pending one stays (it is still owed), and so does everything after it."""
    await store.fail_parts(["f-0"], [rec("f-0", stat="REJECTD")])
    await store.fail_parts(["g-0"], [rec("g-0", stat="REJECTD")])
    await store.fail_parts(["h-0"], [rec("h-0", stat="REJECTD")])
    f, g, h = await store.receipts_for("acme", 9000.0, 10)
    await store.receipt_done([f.seq], 1500.0)
    await store.receipt_done([h.seq], 1500.0)
    assert await store.purge(2000.0, 100) == 0
    assert await store.receipts_of("f-0") == []
    assert [v.state for v in await store.receipts_of("g-0")] == [ReceiptState.PENDING]
    assert [v.state for v in await store.receipts_of("h-0")] == [ReceiptState.DELIVERED]
    await store.receipt_done([g.seq], 1600.0)
    await store.purge(2000.0, 100)
    assert await store.receipts_of("g-0") == await store.receipts_of("h-0") == []


# --- migration from schema 3 ------------------------------------------------------------

_V3_INSERT = (
    "INSERT INTO messages (id, account, part_ids, source, source_ton, source_npi,"
    " dest, dest_ton, dest_npi, kind, content, registered_delivery, schedule_at,"
    " expire_at, submitted_at, service_type, data_coding, extra, state, stat, err,"
    " next_at, done_at, claimed) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)")


def _v3_accept(db: sqlite3.Connection, m: OutboundMessage, final_stat: str = "",
               final_err: int = 0) -> None:
    """What schema-3 code wrote on accept: the row, the part index, a history row."""
    state = "final" if final_stat else "queued"
    db.execute(_V3_INSERT, (
        m.message_id, m.account, json.dumps(list(m.part_ids)), m.source.addr, m.source.ton,
        m.source.npi, m.destination.addr, m.destination.ton, m.destination.npi,
        m.content.kind.value, content_to_json(m.content), m.registered_delivery,
        m.schedule_at, m.expire_at, m.submitted_at, m.service_type, m.data_coding, "{}",
        state, final_stat, final_err, m.schedule_at or 0.0,
        m.submitted_at if final_stat else None, 0))
    db.executemany("INSERT OR REPLACE INTO part_ids VALUES (?,?)",
                   [(p, m.message_id) for p in m.part_ids if p != m.message_id])
    db.execute("INSERT INTO history VALUES (?,?,?,?,?,'')",
               (m.message_id, m.submitted_at, state, final_stat, final_err))


def _v3_sent(db: sqlite3.Connection, mid: str, provider: str, pid: str, at: float) -> None:
    db.execute("UPDATE messages SET state='sent', provider=?, provider_id=?, stat=?, "
               "attempts=attempts+1 WHERE id=? AND state!='final'",
               (provider, pid, "ENROUTE", mid))
    db.execute("INSERT INTO history VALUES (?,?,'sent',?,0,?)", (mid, at, "ENROUTE", provider))


def _v3_final(db: sqlite3.Connection, mid: str, stat: str, err: int, at: float,
              receipts: list[ReceiptRecord]) -> None:
    db.execute("UPDATE messages SET state='final', stat=?, err=?, done_at=? WHERE id=? AND "
               "state!='final'", (stat, err, at, mid))
    db.execute("INSERT INTO history VALUES (?,?,'final',?,?,'')", (mid, at, stat, err))
    db.executemany("INSERT INTO receipts (account, message_id, body, expire_at) "
                   "VALUES (?,?,?,?)", [(r.account, r.message_id, json.dumps(receipt_body(r)),
                                         r.expire_at) for r in receipts])


def _v3_file(path: str) -> None:
    """A schema-3 database as the old code left it: migrations 1-3, then a final long
    message with a pending receipt, a sent one, a queued one, one stored final."""
    db = sqlite3.connect(path, isolation_level=None)
    for v in (1, 2, 3):
        db.executescript(MIGRATIONS[v])
        db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(v),))
    _v3_accept(db, msg("A", parts=2, account="a", dest="7901", at=1000.0))
    _v3_sent(db, "A-1", "sim", "P1", 1001.0)
    _v3_final(db, "A-1", "DELIVRD", 0, 1002.0, [rec("A-0", at=1002.0), rec("A-1", at=1002.0)])
    _v3_accept(db, msg("B", account="a", dest="7902", at=1010.0))
    _v3_sent(db, "B", "sim", "P2", 1011.0)
    _v3_accept(db, msg("C", account="b", dest="7901", at=1020.0))
    _v3_accept(db, msg("D", account="b", dest="7903", at=1030.0), "REJECTD", 69)
    db.close()


async def test_schema_3_file_keeps_its_messages_findable_with_their_timelines(
        tmp_path: Path) -> None:
    """A database written by the schema-3 code, opened by this one: every message is
    found by search and by id, its timeline is what its old history rows said (the
    sent entry now names the provider id), a message stored final has its one entry,
    old receipts are pending in the outbox, and the queued message is still due."""
    path = str(tmp_path / "v3.db")
    _v3_file(path)
    s = SqliteStore(path)
    await s.open()
    try:
        assert count_rows(path, "SELECT value FROM meta WHERE key='schema_version'") \
            == SCHEMA_VERSION
        assert [(e.at, e.state, e.stat, e.detail) for e in await s.timeline("A-0")] == [
            (1000.0, "queued", "", "accepted"), (1001.0, "sent", "ENROUTE", "sent to sim as P1"),
            (1002.0, "final", "DELIVRD", "")]
        assert [(e.state, e.detail) for e in await s.timeline("B")] == [
            ("queued", "accepted"), ("sent", "sent to sim as P2")]
        assert [(e.state, e.detail) for e in await s.timeline("C")] == [("queued", "accepted")]
        assert await s.timeline("D") == [TimelineEntry(1030.0, "final", "REJECTD", 69,
                                                       "accepted")]
        assert page_ids((await s.search(MessageQuery())).items) == ["D", "C", "B", "A-1"]
        assert page_ids((await s.search(MessageQuery(account="a"))).items) == ["B", "A-1"]
        assert page_ids((await s.search(MessageQuery(destination="7901"))).items) == ["C", "A-1"]
        assert page_ids((await s.search(MessageQuery(state=DeliveryState.SENT))).items) == ["B"]
        assert page_ids((await s.search(MessageQuery(stat="DELIVRD"))).items) == ["A-1"]
        assert page_ids((await s.search(MessageQuery(provider="sim", provider_id="P2"))).items) \
            == ["B"]
        found = await s.find_by_provider("sim", "P1")
        assert found is not None
        assert found.message == msg("A", parts=2, account="a", dest="7901", at=1000.0)
        assert [(v.part_id, v.state) for v in await s.receipts_of("A-1")] == [
            ("A-0", ReceiptState.PENDING), ("A-1", ReceiptState.PENDING)]
        assert len(await s.receipts_for("acme", 9000.0, 10)) == 2
        assert [m.message.message_id for m in await s.due(5000.0, 10)] == ["C"]
        assert await s.purge(2000.0, 10) == 2  # A (ended 1002) and D (stored final)
        assert page_ids((await s.search(MessageQuery())).items) == ["C", "B"]
    finally:
        await s.close()
