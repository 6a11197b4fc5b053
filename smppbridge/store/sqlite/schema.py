"""The SQLite store's schema: every migration in order, each with the reason it exists.
A database is migrated forward on open; one newer than this code is refused."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["ACCEPTED", "MIGRATIONS", "RECEIPT_LEASED", "SCHEMA_VERSION", "migrate"]

SCHEMA_VERSION = 8
#: next_at of a receipt leased to the running process's dispatcher (never due by time)
RECEIPT_LEASED = 1e18
#: ``final_detail`` of a message stored already final by ``accept(final_stat=...)``:
#: its ``accepted`` timeline entry is its final one
ACCEPTED = "accepted"

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
    # 4: message history and search (the operator API: search, timeline, receipts_of,
    # purge for retention).
    # (a) Fewer writes a message: its accepted, sent and final timeline entries come
    # from its own row (submitted_at; sent_at with provider and provider_id; done_at
    # with final_detail) instead of three history rows; history keeps only what a row
    # cannot hold (retries, intermediate statuses). The rows it had are folded into
    # the new columns, then deleted.
    # (b) Finished receipts stay as rows with a state (delivered, dropped, expired):
    # an UPDATE instead of a DELETE. The outbox indexes become partial (pending only,
    # with state as a column, else SQLite reads each row to check it), so the
    # dispatcher's queries cost what they did; receipts_message finds a message's.
    # (c) One search index per filter, each ending in (submitted_at, id), the page
    # order: a filter, its time range and a cursor are one range read, newest first.
    # Columns empty until a message is sent (provider, provider_id, stat) are indexed
    # only once set, so accept, on the path of every submit_sm_resp, writes no entry
    # for them. messages_provider_id replaces (provider, provider_id): an id is found
    # with or without its provider. messages_ended serves purge(); messages_due holds
    # only queued rows (final ones were 99 % of it).
    4: """
ALTER TABLE messages ADD COLUMN sent_at REAL;
ALTER TABLE messages ADD COLUMN final_detail TEXT NOT NULL DEFAULT '';
UPDATE messages SET sent_at = (
    SELECT max(h.at) FROM history h WHERE h.message_id = messages.id AND h.state = 'sent')
  WHERE state != 'queued' AND provider != '';
UPDATE messages SET final_detail = 'accepted'
  WHERE state = 'final' AND NOT EXISTS (
    SELECT 1 FROM history h WHERE h.message_id = messages.id AND h.state = 'queued');
DELETE FROM history;
DROP INDEX messages_due;
CREATE INDEX messages_due ON messages (claimed, next_at) WHERE state = 'queued';
DROP INDEX messages_provider;
CREATE INDEX messages_provider_id ON messages (provider_id, provider)
  WHERE provider_id != '';
CREATE INDEX messages_time ON messages (submitted_at, id);
CREATE INDEX messages_account ON messages (account, submitted_at, id);
CREATE INDEX messages_dest ON messages (dest, submitted_at, id);
CREATE INDEX messages_source ON messages (source, submitted_at, id);
CREATE INDEX messages_state ON messages (state, submitted_at, id);
CREATE INDEX messages_stat ON messages (stat, submitted_at, id) WHERE stat != '';
CREATE INDEX messages_provider ON messages (provider, submitted_at, id) WHERE provider != '';
CREATE INDEX messages_ended ON messages (done_at) WHERE state = 'final';
ALTER TABLE receipts ADD COLUMN state TEXT NOT NULL DEFAULT 'pending';
ALTER TABLE receipts ADD COLUMN done_at REAL;
DROP INDEX receipts_due;
CREATE INDEX receipts_due ON receipts (account, next_at, seq, state) WHERE state = 'pending';
DROP INDEX receipts_expiry;
CREATE INDEX receipts_expiry ON receipts (expire_at, state) WHERE state = 'pending';
CREATE INDEX receipts_message ON receipts (message_id);
""",
    # 5: the state and stat indexes hold only the rows a search needs them for: the
    # messages not final (queued, sent: a few thousand, however long the history) and
    # the failures (a stat other than ENROUTE, ACCEPTD, DELIVRD). A message no longer
    # moves through them on its way to DELIVRD: about 4 B-tree writes a message less,
    # each on a random page of a large index (writes per message 12.1 KB -> see
    # docs/store.md). Searches for final or DELIVRD messages, the bulk of any history,
    # read the time index (or a more selective one) and check the column.
    5: """
DROP INDEX messages_state;
CREATE INDEX messages_state ON messages (state, submitted_at, id) WHERE state != 'final';
DROP INDEX messages_stat;
CREATE INDEX messages_stat ON messages (stat, submitted_at, id)
  WHERE stat NOT IN ('', 'ENROUTE', 'ACCEPTD', 'DELIVRD');
""",
    # 6: the status callback outbox (docs/http.md, Status callbacks). An event is
    # written in the transaction of the status it reports and deleted once delivered,
    # failed or expired (the last two leave a history row in the message's timeline).
    # callbacks_due holds the events not leased, by due time; callbacks_message finds
    # the oldest event of a message (one event of a message is sent at a time, in
    # order). A lease is this process's (leased=1), cleared on open.
    6: """
CREATE TABLE callbacks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL, account TEXT NOT NULL, body TEXT NOT NULL,
    expire_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL DEFAULT 0, leased INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX callbacks_due ON callbacks (next_at, seq) WHERE leased = 0;
CREATE INDEX callbacks_message ON callbacks (message_id, seq);
""",
    # 7: the answers kept for the HTTP submit API's Idempotency-Key, a day each: a
    # retry with the same key gets the first answer and never makes a second message,
    # across a restart. status 0 marks a key whose first request is being answered;
    # expires_at is steady time (core.clock), and an index on it lets the writer delete
    # expired rows a few at a time.
    7: """
CREATE TABLE idempotency (
    account TEXT NOT NULL, key TEXT NOT NULL, request_hash TEXT NOT NULL,
    status INTEGER NOT NULL, body TEXT NOT NULL, expires_at REAL NOT NULL,
    PRIMARY KEY (account, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_expiry ON idempotency (expires_at);
""",
    # 8: a receipt's body is a JSON array of its fields in a fixed order (rows.py,
    # receipt_json), no longer an object naming every field and repeating the row's
    # account, message_id and expire_at: 450 -> ~220 bytes a receipt (the receipts
    # table was the largest, twice the messages), and the writer's CPU a lifecycle
    # 72 -> 63-66 us (benchmarks/store_lifecycle.py). Rows written before stay objects
    # and read as before; the version bump keeps an older smppbridge, which would not
    # read the arrays, from opening the file.
    8: """
INSERT OR REPLACE INTO meta VALUES ('receipt_body', 'array')
""",
}
#: Every migration's SQL by version (read-only; tests build old files from it).
MIGRATIONS: Mapping[int, str] = MappingProxyType(_MIGRATIONS)


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
