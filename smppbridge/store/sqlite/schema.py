"""The SQLite store's schema: every migration in order, each with the reason it exists.
A database is migrated forward on open; one newer than this code is refused."""

from __future__ import annotations

import sqlite3

__all__ = ["RECEIPT_LEASED", "SCHEMA_VERSION", "migrate"]

SCHEMA_VERSION = 3
#: next_at of a receipt leased to the running process's dispatcher (never due by time)
RECEIPT_LEASED = 1e18

_MIGRATIONS: dict[int, str] = {
    1: """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    part_ids TEXT NOT NULL,
    source TEXT NOT NULL, source_ton INTEGER NOT NULL, source_npi INTEGER NOT NULL,
    dest TEXT NOT NULL, dest_ton INTEGER NOT NULL, dest_npi INTEGER NOT NULL,
    kind TEXT NOT NULL,
    content TEXT NOT NULL,
    registered_delivery INTEGER NOT NULL,
    schedule_at REAL, expire_at REAL,
    submitted_at REAL NOT NULL,
    service_type TEXT NOT NULL, data_coding INTEGER NOT NULL, extra TEXT NOT NULL,
    state TEXT NOT NULL,
    stat TEXT NOT NULL DEFAULT '', err INTEGER NOT NULL DEFAULT 0,
    provider TEXT NOT NULL DEFAULT '', provider_id TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0, next_at REAL NOT NULL DEFAULT 0,
    done_at REAL
);
CREATE INDEX messages_due ON messages (state, next_at);
CREATE INDEX messages_provider ON messages (provider, provider_id);
CREATE TABLE part_ids (part_id TEXT PRIMARY KEY, message_id TEXT NOT NULL);
CREATE TABLE history (
    message_id TEXT NOT NULL, at REAL NOT NULL, state TEXT NOT NULL,
    stat TEXT NOT NULL, err INTEGER NOT NULL, detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX history_message ON history (message_id);
CREATE TABLE parts (
    part_id TEXT PRIMARY KEY, account TEXT NOT NULL, key TEXT NOT NULL, pdu BLOB NOT NULL,
    arrived_at REAL NOT NULL, system_type TEXT NOT NULL, interface_version INTEGER NOT NULL
);
CREATE TABLE receipts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    account TEXT NOT NULL, message_id TEXT NOT NULL, body TEXT NOT NULL,
    expire_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL DEFAULT 0
);
CREATE INDEX receipts_due ON receipts (account, next_at, seq);
""",
    # 2: a queued message handed to the sender is "claimed", so that the sender's next
    # look for due work skips it without rescanning (and re-decoding) rows in flight.
    2: """
ALTER TABLE messages ADD COLUMN claimed INTEGER NOT NULL DEFAULT 0;
DROP INDEX messages_due;
CREATE INDEX messages_due ON messages (state, claimed, next_at);
""",
    # 3: the receipt TTL sweep deleted by a full scan of the outbox (39 % of a node's
    # CPU in an end-to-end run); an index makes it a range delete.
    3: """
CREATE INDEX receipts_expiry ON receipts (expire_at);
""",
}


def migrate(db: sqlite3.Connection) -> None:
    """Bring ``db`` to :data:`SCHEMA_VERSION`, one migration per transaction."""
    has_meta = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
    version = 0
    if has_meta:
        row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        version = int(row[0]) if row else 0
    if version > SCHEMA_VERSION:
        msg = f"store schema {version} is newer than this smppbridge ({SCHEMA_VERSION})"
        raise RuntimeError(msg)
    for v in range(version + 1, SCHEMA_VERSION + 1):
        db.execute("BEGIN IMMEDIATE")
        for stmt in _MIGRATIONS[v].split(";"):
            if stmt.strip():
                db.execute(stmt)
        db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(v),))
        db.execute("COMMIT")
