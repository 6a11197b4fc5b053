"""The SQLite store's status callback outbox (schema migration 6): plain functions of
the writer's connection, run inside the store's transactions.

One event of a message is handed out at a time, the oldest (``sent`` before the final
status): an event added behind another of its message waits, due at :data:`BLOCKED`
(never by time), until :func:`finish` of the one before makes it due at once; so the
due index holds only what may go, and :func:`lease_due` reads nothing else (it checks
for an older event all the same). A lease is a flag of this process, cleared when the
store opens (a process killed mid-attempt sends those events again, same event_id).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Sequence

from smppbridge.core.callbacks import CallbackEvent, CallbackOutcome, callback_body

__all__ = ["BLOCKED", "count", "finish", "insert", "lease_due", "reschedule"]

#: next_at of an event waiting behind an older one of its message
BLOCKED = 1e18


def insert(db: sqlite3.Connection, events: Sequence[CallbackEvent],
           only: Collection[str] | None = None) -> None:
    """Add events to the outbox (those of messages in ``only`` when given)."""
    rows = []
    queued: set[str] = set()
    for ev in events:
        mid = ev.message_id
        if only is not None and mid not in only:
            continue
        behind = mid in queued or db.execute(
            "SELECT 1 FROM callbacks INDEXED BY callbacks_message WHERE message_id=? "
            "LIMIT 1", (mid,)).fetchone() is not None
        queued.add(mid)
        rows.append((mid, ev.account, json.dumps(callback_body(ev)), ev.expire_at,
                     BLOCKED if behind else ev.next_at))
    if rows:
        db.executemany("INSERT INTO callbacks (message_id, account, body, expire_at, "
                       "next_at) VALUES (?,?,?,?,?)", rows)


def lease_due(db: sqlite3.Connection, now: float, limit: int) -> list[CallbackEvent]:
    """Lease up to ``limit`` events due at ``now`` (steady time), each the oldest of its
    message in the outbox; by due time, then creation."""
    rows = db.execute(
        "UPDATE callbacks SET leased=1 WHERE seq IN (SELECT c.seq FROM callbacks c "
        "INDEXED BY callbacks_due WHERE c.leased=0 AND c.next_at<=? AND NOT EXISTS "
        "(SELECT 1 FROM callbacks o INDEXED BY callbacks_message "
        "WHERE o.message_id=c.message_id AND o.seq<c.seq) "
        "ORDER BY c.next_at, c.seq LIMIT ?) RETURNING seq, body, attempts, next_at",
        (now, limit)).fetchall()
    out = []
    for seq, body, attempts, next_at in rows:
        fields = json.loads(body)
        fields.update(seq=seq, attempts=attempts, next_at=next_at)
        out.append(CallbackEvent(**fields))
    out.sort(key=lambda ev: (ev.next_at, ev.seq))
    return out


def finish(db: sqlite3.Connection, ev: CallbackEvent, outcome: CallbackOutcome,
           at: float, detail: str) -> None:
    """The event leaves the outbox; a failed or expired one is a timeline entry of its
    message at the wall date ``at``."""
    cur = db.execute("DELETE FROM callbacks WHERE seq=?", (ev.seq,))
    if cur.rowcount:
        # the next event of the message is due now
        db.execute("UPDATE callbacks SET next_at=0 WHERE seq=(SELECT min(seq) FROM "
                   "callbacks INDEXED BY callbacks_message WHERE message_id=?) "
                   "AND next_at>=?", (ev.message_id, BLOCKED))
    if cur.rowcount and outcome is not CallbackOutcome.DELIVERED:
        db.execute("INSERT INTO history SELECT id, ?, state, stat, err, ? FROM messages "
                   "WHERE id=?", (at, detail, ev.message_id))


def reschedule(db: sqlite3.Connection, seq: int, next_at: float, attempts: int) -> None:
    """Back to the outbox, due at ``next_at`` (steady time), the lease ended."""
    db.execute("UPDATE callbacks SET leased=0, next_at=?, attempts=? WHERE seq=?",
               (next_at, attempts, seq))


def count(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT count(*) FROM callbacks").fetchone()[0])
