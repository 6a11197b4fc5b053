"""The SQLite store's callback outbox (tests/store/callback_cases.py), and its leases
ending with the process."""

from __future__ import annotations

from pathlib import Path

from smppbridge.store.sqlite.store import SqliteStore
from tests.store import callback_cases as cases
from tests.store.samples import sample_message


async def test_sent_then_final_in_order(store: SqliteStore) -> None:
    await cases.sent_then_final_in_order(store)


async def test_a_message_final_already_adds_no_event(store: SqliteStore) -> None:
    await cases.a_message_final_already_adds_no_event(store)


async def test_retry_waits_until_due(store: SqliteStore) -> None:
    await cases.retry_waits_until_due(store)


async def test_failed_and_expired_are_in_the_timeline(store: SqliteStore) -> None:
    await cases.failed_and_expired_are_in_the_timeline(store)


async def test_delivered_leaves_no_timeline_entry(store: SqliteStore) -> None:
    await cases.delivered_leaves_no_timeline_entry(store)


async def test_a_lease_ends_with_the_process(tmp_path: Path) -> None:
    """Events leased when the process stopped (kill -9 mid-attempt) are due again at
    the next open, with the same event_id."""
    path = str(tmp_path / "c.db")
    s = SqliteStore(path)
    await s.open()
    m = sample_message(7)
    await s.accept(m)
    ev = cases.event(m.message_id)
    await s.mark_final(m.message_id, "DELIVRD", 0, cases.T0, callbacks=[ev])
    assert [e.event_id for e in await s.callbacks_due(cases.T0, 10)] == [ev.event_id]
    await s.close()
    s = SqliteStore(path)
    await s.open()
    try:
        assert [e.event_id for e in await s.callbacks_due(cases.T0, 10)] == [ev.event_id]
    finally:
        await s.close()


async def test_an_mo_is_stored_final_with_its_deliver_sm_and_event(store: SqliteStore) -> None:
    await cases.an_mo_is_stored_final_with_its_deliver_sm_and_event(store)
