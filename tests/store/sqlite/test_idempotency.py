"""The SQLite store keeps Idempotency-Key answers (schema 7): claim, save, release,
expiry on the given (steady) time, and one winner among concurrent claims."""

from __future__ import annotations

import asyncio
from pathlib import Path

from smppbridge.core.idempotency import IdempotentAnswer
from smppbridge.store.sqlite.store import SqliteStore


async def test_a_claimed_key_is_in_flight_until_its_answer_is_saved(
        store: SqliteStore) -> None:
    """The first claim wins (None); a second sees the in-flight record, then the saved
    answer with the request's digest."""
    assert await store.claim_idempotency("acme", "k", "h1", 100.0, 60.0) is None
    seen = await store.claim_idempotency("acme", "k", "h1", 101.0, 60.0)
    assert seen is not None
    assert seen.in_flight
    await store.save_idempotency("acme", "k", IdempotentAnswer("h1", 202, '{"id":"1"}'),
                                 102.0, 60.0)
    assert await store.claim_idempotency("acme", "k", "h1", 103.0, 60.0) == \
        IdempotentAnswer("h1", 202, '{"id":"1"}')


async def test_keys_are_per_account_expire_and_can_be_released(store: SqliteStore) -> None:
    """Another account's same key is its own; past its TTL a key is claimed afresh;
    a released key too."""
    assert await store.claim_idempotency("acme", "k", "h", 0.0, 10.0) is None
    assert await store.claim_idempotency("other", "k", "h", 0.0, 10.0) is None
    assert await store.claim_idempotency("acme", "k", "h", 9.0, 10.0) is not None
    assert await store.claim_idempotency("acme", "k", "h", 10.5, 10.0) is None
    await store.release_idempotency("acme", "k")
    assert await store.claim_idempotency("acme", "k", "h", 11.0, 10.0) is None


async def test_concurrent_claims_have_one_winner(store: SqliteStore) -> None:
    """Twenty claims of one key at once: exactly one gets None."""
    got = await asyncio.gather(*(store.claim_idempotency("acme", "race", "h", 0.0, 60.0)
                                 for _ in range(20)))
    assert sum(1 for g in got if g is None) == 1


async def test_answers_survive_a_reopen_and_expired_rows_are_swept(tmp_path: Path) -> None:
    """A saved answer is there after the file is opened again; saving deletes rows
    that expired."""
    path = str(tmp_path / "i.db")
    store = SqliteStore(path)
    await store.open()
    await store.claim_idempotency("acme", "old", "h", 0.0, 1.0)
    await store.save_idempotency("acme", "k", IdempotentAnswer("h", 202, "{}"), 5.0, 100.0)
    await store.close()
    store = SqliteStore(path)
    await store.open()
    try:
        assert await store.claim_idempotency("acme", "k", "h", 6.0, 100.0) == \
            IdempotentAnswer("h", 202, "{}")
        rows = await store._read(lambda db: db.execute(
            "SELECT key FROM idempotency ORDER BY key").fetchall())
        assert rows == [("k",)]
    finally:
        await store.close()
