"""The SQLite store: durability across reopen, group commit, ids, parts, receipts."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from smppbridge.core.records import DeliveryState, PartRecord, ReceiptRecord
from smppbridge.store.sqlite.schema import SCHEMA_VERSION
from smppbridge.store.sqlite.store import SqliteStore
from tests.store.samples import sample_message, sample_receipt

_msg = sample_message
_receipt = sample_receipt



async def test_accepted_message_survives_reopen(tmp_path: Path) -> None:
    """A message accepted then the store closed is found, whole, after reopening."""
    path = str(tmp_path / "s.db")
    s = SqliteStore(path)
    await s.open()
    await s.accept(_msg(1, parts=3))
    await s.close()
    s2 = SqliteStore(path)
    await s2.open()
    try:
        found = await s2.find("1-0")  # any part id finds the message
        assert found is not None
        assert found.message == _msg(1, parts=3)
        assert found.state is DeliveryState.QUEUED
    finally:
        await s2.close()


async def test_concurrent_writes_share_commits(store: SqliteStore) -> None:
    """Hundreds of concurrent accepts are committed in far fewer transactions."""
    before = store.commits
    await asyncio.gather(*(store.accept(_msg(i)) for i in range(500)))
    assert await store.count(DeliveryState.QUEUED) == 500
    assert store.commits - before < 100


async def test_failed_op_does_not_sink_its_batch(store: SqliteStore) -> None:
    """A duplicate id fails alone; the other writes of the same transaction commit."""
    await store.accept(_msg(1))
    results = await asyncio.gather(store.accept(_msg(1)), store.accept(_msg(2)),
                                   return_exceptions=True)
    assert isinstance(results[0], sqlite3.IntegrityError)
    assert results[1] is None
    assert await store.find("2-0") is not None


async def test_reserved_ids_never_repeat_across_reopen(tmp_path: Path) -> None:
    """Id blocks reserved before a restart are never handed out again."""
    path = str(tmp_path / "s.db")
    s = SqliteStore(path)
    await s.open()
    a = await s.reserve_ids(100)
    b = await s.reserve_ids(100)
    await s.close()
    s = SqliteStore(path)
    await s.open()
    c = await s.reserve_ids(100)
    await s.close()
    assert a + 100 <= b
    assert b + 100 <= c


async def test_due_sent_final_lifecycle(store: SqliteStore) -> None:
    """queued → due → sent (found by provider id) → final, with its timeline."""
    await store.accept(_msg(1))
    (due,) = await store.due(now=5000.0, limit=10)
    assert due.message.message_id == "1-0"
    await store.mark_sent("1-0", "sim", "P1", "ENROUTE", 5001.0)
    assert await store.due(now=5000.0, limit=10) == []
    sent = await store.find_by_provider("sim", "P1")
    assert sent is not None
    assert sent.state is DeliveryState.SENT
    assert [m.message.message_id for m in await store.in_flight()] == ["1-0"]
    await store.mark_final("1-0", "DELIVRD", 0, 5002.0, receipts=[_receipt("1-0")])
    await store.mark_final("1-0", "UNDELIV", 1, 5003.0, receipts=[_receipt("1-0")])
    final = await store.find("1-0")
    assert final is not None
    assert (final.state, final.stat, final.done_at) == (DeliveryState.FINAL, "DELIVRD", 5002.0)
    # the second final status is ignored, and so is its receipt
    assert len(await store.receipts_for("acme", 9000.0, 10)) == 1
    assert [e.state for e in await store.timeline("1-0")] == ["queued", "sent", "final"]


async def test_scheduled_message_waits(store: SqliteStore) -> None:
    """A message with a schedule time is not due before it."""
    await store.accept(replace(_msg(1), schedule_at=3000.0))
    assert await store.due(now=2999.0, limit=10) == []
    assert len(await store.due(now=3000.0, limit=10)) == 1


async def test_retry_moves_next_attempt(store: SqliteStore) -> None:
    """mark_retry hides a message until its next attempt time."""
    await store.accept(_msg(1))
    await store.mark_retry("1-0", next_at=6000.0, attempts=1)
    assert await store.due(now=5999.0, limit=10) == []
    (due,) = await store.due(now=6000.0, limit=10)
    assert due.attempts == 1


async def test_parts_kept_until_message_whole(store: SqliteStore) -> None:
    """Parts are durable until their message is accepted, then dropped."""
    for p in range(2):
        await store.save_part(PartRecord(f"1-{p}", "acme", "k", b"\x01\x02", 10.0 + p))
    assert [p.part_id for p in await store.load_parts()] == ["1-0", "1-1"]
    await store.accept(_msg(1, parts=3))
    assert await store.load_parts() == []


async def test_failed_parts_leave_receipts(store: SqliteStore) -> None:
    """fail_parts drops the parts and stores their REJECTD receipts in one step."""
    await store.save_part(PartRecord("9-0", "acme", "k", b"x", 1.0))
    await store.fail_parts(["9-0"], [_receipt("9-0")])
    assert await store.load_parts() == []
    (r,) = await store.receipts_for("acme", 100.0, 10)
    assert r.message_id == "9-0"


async def test_receipts_in_order_per_account_with_retry_and_expiry(store: SqliteStore) -> None:
    """Receipts come back per account in creation order; retry defers; TTL expires."""
    await store.add_receipts([_receipt("a"), _receipt("b"), _receipt("x", account="other"),
                              _receipt("old", expire_at=50.0)])
    assert await store.expire_receipts(now=100.0) == 1
    got = await store.receipts_for("acme", 100.0, 10)
    assert [r.message_id for r in got] == ["a", "b"]
    await store.receipt_retry(got[0].seq, next_at=200.0, attempts=1)
    assert [r.message_id for r in await store.receipts_for("acme", 150.0, 10)] == ["b"]
    await store.receipt_done([got[1].seq], 160.0)
    assert sorted(await store.accounts_with_receipts(300.0)) == ["acme", "other"]
    (again,) = await store.receipts_for("acme", 300.0, 10)
    assert (again.message_id, again.attempts) == ("a", 1)


async def test_schema_is_versioned(tmp_path: Path, store: SqliteStore) -> None:
    """The schema version is recorded; a newer file is refused by an older program."""
    path = str(tmp_path / "v.db")
    s = SqliteStore(path)
    await s.open()
    await s.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == \
        str(SCHEMA_VERSION)
    db.execute("UPDATE meta SET value='999' WHERE key='schema_version'")
    db.commit()
    db.close()
    with pytest.raises(RuntimeError, match="newer"):
        await SqliteStore(path).open()


async def test_ready(store: SqliteStore) -> None:
    """ready() is True on an open store."""
    assert await store.ready()


async def test_due_claims_messages_until_retry_or_restart(tmp_path: Path) -> None:
    """A message returned by due() is not returned again while it is being sent; a retry
    releases it, and so does a restart (whatever was in flight is due again)."""
    path = str(tmp_path / "c.db")
    s = SqliteStore(path)
    await s.open()
    await s.accept(_msg(1))
    await s.accept(_msg(2))
    assert len(await s.due(5000.0, 10)) == 2
    assert await s.due(5000.0, 10) == []
    await s.mark_retry("1-0", next_at=5000.0, attempts=1)
    assert [m.message.message_id for m in await s.due(5000.0, 10)] == ["1-0"]
    await s.close()
    assert await _due_after_reopen(path) == ["1-0", "2-0"]


async def _due_after_reopen(path: str) -> list[str]:
    """The ids due in the store at ``path`` once it is opened again (claims reset)."""
    s = SqliteStore(path)
    await s.open()
    try:
        return sorted(m.message.message_id for m in await s.due(5000.0, 10))
    finally:
        await s.close()


async def test_accept_many_stores_queued_messages(store: SqliteStore) -> None:
    """accept_many stores every message queued, whole (any part id finds a long one),
    with its timeline; unclaimed, they are due."""
    await store.accept_many([_msg(1), _msg(2, parts=2)])
    for part_id, message in (("1-0", _msg(1)), ("2-0", _msg(2, parts=2))):
        found = await store.find(part_id)
        assert found is not None
        assert found.message == message
        assert found.state is DeliveryState.QUEUED
    assert [e.state for e in await store.timeline("2-1")] == ["queued"]
    assert sorted(m.message.message_id for m in await store.due(5000.0, 10)) == ["1-0", "2-1"]


async def test_accept_many_is_all_or_none(store: SqliteStore) -> None:
    """One message of the batch cannot be stored (its id exists): none of it is."""
    await store.accept(_msg(1))
    with pytest.raises(sqlite3.IntegrityError):
        await store.accept_many([_msg(2), _msg(1)])
    assert await store.find("2-0") is None


async def test_accept_many_claimed_is_not_due_until_reopen(tmp_path: Path) -> None:
    """claim=True: stored (find() returns them) but already claimed, so due() does not
    return them; claims end with the process, so after reopening they are due."""
    path = str(tmp_path / "m.db")
    s = SqliteStore(path)
    await s.open()
    await s.accept_many([_msg(1), _msg(2)], claim=True)
    found = await s.find("1-0")
    assert found is not None
    assert found.state is DeliveryState.QUEUED
    assert await s.due(5000.0, 10) == []
    await s.close()
    assert await _due_after_reopen(path) == ["1-0", "2-0"]


async def test_mark_final_many_keeps_a_first_final_status(store: SqliteStore) -> None:
    """mark_final_many ends several messages with their receipts in one transaction; a
    message already final keeps its first stat and gets no second receipt."""
    for i in (1, 2, 3):
        await store.accept(_msg(i))
    await store.mark_final("3-0", "REJECTD", 101, 5000.0, receipts=[_receipt("3-0")])
    before = store.commits
    await store.mark_final_many([
        ("1-0", "DELIVRD", 0, 5001.0, [_receipt("1-0")], "status from poll"),
        ("2-0", "UNDELIV", 1, 5002.0, [_receipt("2-0")], "status from poll"),
        ("3-0", "DELIVRD", 0, 5003.0, [_receipt("3-0")], "status from poll"),
    ])
    assert store.commits == before + 1
    ends = []
    for mid in ("1-0", "2-0", "3-0"):
        found = await store.find(mid)
        assert found is not None
        ends.append((found.state, found.stat, found.err, found.done_at))
    assert ends == [(DeliveryState.FINAL, "DELIVRD", 0, 5001.0),
                    (DeliveryState.FINAL, "UNDELIV", 1, 5002.0),
                    (DeliveryState.FINAL, "REJECTD", 101, 5000.0)]
    receipts = await store.receipts_for("acme", 9000.0, 10)
    assert [r.message_id for r in receipts] == ["3-0", "1-0", "2-0"]
    assert [(e.state, e.stat) for e in await store.timeline("3-0")] == [
        ("queued", ""), ("final", "REJECTD")]


async def test_mark_final_many_with_an_id_twice_takes_its_first_entry(
        store: SqliteStore) -> None:
    """A message twice in one mark_final_many batch (two statuses in one poll answer)
    ends with the first entry's status and that entry's receipts, once; the batch is
    one statement for all (rows.mark_final_rows), as if the updates ran in order."""
    for i in (1, 2):
        await store.accept(_msg(i))
    await store.mark_final_many([
        ("1-0", "UNDELIV", 1, 5001.0, [_receipt("1-0")], ""),
        ("2-0", "DELIVRD", 0, 5002.0, [_receipt("2-0")], ""),
        ("1-0", "DELIVRD", 0, 5003.0, [_receipt("1-0"), _receipt("1-0")], ""),
    ])
    found = await store.find("1-0")
    assert found is not None
    assert (found.stat, found.err, found.done_at) == ("UNDELIV", 1, 5001.0)
    receipts = await store.receipts_for("acme", 9000.0, 10)
    assert [r.message_id for r in receipts] == ["1-0", "2-0"]


async def test_mark_sent_many_leaves_final_messages_and_applies_repeats_in_order(
        store: SqliteStore) -> None:
    """mark_sent_many (one statement a batch) moves queued messages to sent and leaves
    a final one final; a batch naming a message twice applies both in order: the last
    provider id wins and each counts an attempt."""
    for i in (1, 2, 3):
        await store.accept(_msg(i))
    await store.mark_final("3-0", "REJECTD", 101, 5000.0)
    await store.mark_sent_many([("1-0", "sim", "P1", "ENROUTE", 5001.0, ()),
                                ("3-0", "sim", "P3", "ENROUTE", 5001.0, ())])
    await store.mark_sent_many([("2-0", "sim", "P2", "ENROUTE", 5002.0, ()),
                                ("2-0", "sim", "P2b", "ENROUTE", 5003.0, ())])
    got = {}
    for mid in ("1-0", "2-0", "3-0"):
        found = await store.find(mid)
        assert found is not None
        got[mid] = (found.state, found.provider_id, found.attempts)
    assert got == {"1-0": (DeliveryState.SENT, "P1", 1),
                   "2-0": (DeliveryState.SENT, "P2b", 2),
                   "3-0": (DeliveryState.FINAL, "", 0)}


# --- receipt leases (receipts handed to this process's dispatcher in memory) -----------

async def _final_leased(store: SqliteStore, *ids: int) -> list[tuple[int, ReceiptRecord]]:
    """Accept messages ``ids`` and end them DELIVRD in one mark_final_many(lease=True)."""
    for i in ids:
        await store.accept(_msg(i))
    return await store.mark_final_many(
        [(f"{i}-0", "DELIVRD", 0, 5000.0 + i, [_receipt(f"{i}-0")], "status from poll")
         for i in ids], lease=True)


async def test_leased_receipts_are_numbered_and_hidden_until_released(
        store: SqliteStore) -> None:
    """mark_final_many(lease=True) returns (seq, receipt) of each receipt added, numbered
    as their rows (receipt_done on a seq takes that row out of the outbox); receipts_for and
    accounts_with_receipts skip leased receipts until release_receipts makes them due."""
    leased = await _final_leased(store, 1, 2, 3)
    assert [r.message_id for _, r in leased] == ["1-0", "2-0", "3-0"]
    assert await store.receipts_for("acme", 9000.0, 10) == []
    assert await store.accounts_with_receipts(9000.0) == []
    assert await store.count_receipts() == 3
    await store.receipt_done([leased[1][0]], 9000.0)
    assert await store.count_receipts() == 2
    await store.release_receipts([seq for seq, _ in leased])
    got = await store.receipts_for("acme", 9000.0, 10)
    assert [(r.seq, r.message_id) for r in got] == [(leased[0][0], "1-0"),
                                                     (leased[2][0], "3-0")]


async def test_leases_end_when_the_store_is_reopened(tmp_path: Path) -> None:
    """A lease belongs to the process that took it: after close and reopen the leased
    receipts are due again, with the seqs they were leased under."""
    path = str(tmp_path / "lease.db")
    s = SqliteStore(path)
    await s.open()
    leased = await _final_leased(s, 1, 2)
    await s.close()
    s = SqliteStore(path)
    await s.open()
    try:
        got = await s.receipts_for("acme", 9000.0, 10)
        assert [(r.seq, r.message_id) for r in got] == [(seq, r.message_id)
                                                         for seq, r in leased]
    finally:
        await s.close()


async def test_lease_seqs_stay_unique_among_autoincrement_inserts(store: SqliteStore) -> None:
    """Leased seqs come from the table's AUTOINCREMENT sequence: lease batches after
    ordinary inserts, after the newest receipt was done with (its seq is not reused), and
    written concurrently all get fresh seqs, and every receipt keeps its own row."""
    first = await _final_leased(store, 1)
    await store.add_receipts([_receipt("x")])
    second = await _final_leased(store, 2, 3)
    await store.receipt_done([second[-1][0]], 9000.0)
    third, fourth = await asyncio.gather(_final_leased(store, 4), _final_leased(store, 5))
    await store.add_receipts([_receipt("y")])
    kept = first + second[:1] + third + fourth
    assert min(seq for seq, _ in third + fourth) > second[-1][0]
    await store.release_receipts([seq for seq, _ in kept])
    got = await store.receipts_for("acme", 9000.0, 10)
    assert len({r.seq for r in got}) == len(got) == 6
    by_seq = {r.seq: r.message_id for r in got}
    assert {seq: by_seq.get(seq) for seq, _ in kept} == {seq: r.message_id for seq, r in kept}
    assert sorted(by_seq.values()) == ["1-0", "2-0", "4-0", "5-0", "x", "y"]


async def test_mark_sent_many_can_lease_its_receipts(store: SqliteStore) -> None:
    """mark_sent_many(lease=True) returns its (ENROUTE) receipts with their seqs, hidden
    from receipts_for until released; without lease it returns nothing and they are due."""
    for i in (1, 2):
        await store.accept(_msg(i))
    enroute = replace(_receipt("1-0"), stat="ENROUTE", intermediate=True)
    leased = await store.mark_sent_many(
        [("1-0", "sim", "P1", "ENROUTE", 5001.0, [enroute])], lease=True)
    ((seq, rec),) = leased
    assert (rec.message_id, rec.stat) == ("1-0", "ENROUTE")
    assert await store.receipts_for("acme", 9000.0, 10) == []
    assert await store.mark_sent_many(
        [("2-0", "sim", "P2", "ENROUTE", 5002.0, [_receipt("2-0")])]) == []
    assert [r.message_id for r in await store.receipts_for("acme", 9000.0, 10)] == ["2-0"]
    await store.release_receipts([seq])
    got = await store.receipts_for("acme", 9000.0, 10)
    assert len(got) == 2
    assert (got[0].seq, got[0].message_id, got[0].stat) == (seq, "1-0", "ENROUTE")
    sent = await store.find_by_provider("sim", "P1")
    assert sent is not None
    assert sent.state is DeliveryState.SENT


# --- counts the operator API reads ------------------------------------------------------

async def test_count_submitted_counts_one_accounts_messages_since(store: SqliteStore) -> None:
    """count_submitted: the messages of one account submitted at ``since`` or later,
    whatever their state."""
    await store.accept_many([replace(_msg(i), account="a" if i % 2 else "b")
                             for i in range(1, 7)])  # submitted at 1000 + i
    await store.mark_final("3-0", "DELIVRD", 0, 2000.0)
    assert await store.count_submitted("a", 1003.0) == 2  # 3 and 5
    assert await store.count_submitted("a", 1003.5) == 1
    assert await store.count_submitted("b", 0.0) == 3
    assert await store.count_submitted("nobody", 0.0) == 0


async def test_count_receipts_of_one_account_counts_its_outbox(store: SqliteStore) -> None:
    """count_receipts(account): that account's receipts still in the outbox (due,
    deferred or leased), not those delivered or expired, nor other accounts'."""
    leased = await _final_leased(store, 1)
    await store.add_receipts([_receipt("a"), _receipt("b"), _receipt("old", expire_at=50.0),
                              _receipt("x", account="other")])
    await store.expire_receipts(100.0)
    a, b = (r for r in await store.receipts_for("acme", 100.0, 10) if r.message_id in ("a", "b"))
    await store.receipt_retry(a.seq, 500.0, 1)
    await store.receipt_done([b.seq], 110.0)
    assert leased
    assert await store.count_receipts("acme") == 2  # the leased one and a
    assert await store.count_receipts("other") == 1
    assert await store.count_receipts() == 3


async def test_one_node_shares_nothing(store: SqliteStore) -> None:
    """A SQLite file belongs to one node: no shared flood windows, no node registry."""
    assert store.flood_state() is None
    assert store.registry() is None


async def test_oldest_queued_is_the_oldest_message_waiting(store: SqliteStore) -> None:
    """oldest_queued gives the submit time of the oldest queued message, None when
    nothing waits; a sent or final message does not count."""
    assert await store.oldest_queued() is None
    await store.accept(_msg(2))
    await store.accept(_msg(1))
    assert await store.oldest_queued() == _msg(1).submitted_at
    await store.mark_final(_msg(1).message_id, "DELIVRD", 0, 5000.0)
    assert await store.oldest_queued() == _msg(2).submitted_at
