"""The SQLite operations behind the HTTP submit API's ``Idempotency-Key`` (schema 7),
run on the store's writer connection (one at a time, so a claim is atomic)."""

from __future__ import annotations

import sqlite3

from smppbridge.core.idempotency import IN_FLIGHT, IdempotentAnswer

__all__ = ["claim", "release", "save"]

#: expired rows deleted per save (a few at a time, on the writer: no long transaction)
_SWEEP = 100


def claim(db: sqlite3.Connection, account: str, key: str, request_hash: str,
          now: float, ttl: float) -> IdempotentAnswer | None:
    row = db.execute("SELECT request_hash, status, body, expires_at FROM idempotency "
                     "WHERE account=? AND key=?", (account, key)).fetchone()
    if row is not None and row[3] > now:
        return IdempotentAnswer(row[0], int(row[1]), row[2])
    db.execute("INSERT OR REPLACE INTO idempotency VALUES (?,?,?,?,?,?)",
               (account, key, request_hash, IN_FLIGHT, "", now + ttl))
    return None


def save(db: sqlite3.Connection, account: str, key: str, answer: IdempotentAnswer,
         now: float, ttl: float) -> None:
    db.execute("INSERT OR REPLACE INTO idempotency VALUES (?,?,?,?,?,?)",
               (account, key, answer.request_hash, answer.status, answer.body, now + ttl))
    db.execute("DELETE FROM idempotency WHERE (account, key) IN (SELECT account, key FROM "
               "idempotency INDEXED BY idempotency_expiry WHERE expires_at < ? LIMIT ?)",
               (now, _SWEEP))


def release(db: sqlite3.Connection, account: str, key: str) -> None:
    db.execute("DELETE FROM idempotency WHERE account=? AND key=?", (account, key))
