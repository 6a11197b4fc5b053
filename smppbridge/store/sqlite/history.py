"""The SQLite store's history: search, timelines, a message's receipts, retention.

Theory of operation
-------------------
A message's timeline is mostly its own row: ``accepted`` at ``submitted_at``, ``sent to
<provider> as <provider_id>`` at ``sent_at``, its final status at ``done_at`` with
``final_detail``. The ``history`` table holds only what a row cannot: each retry and
each intermediate status. So the happy path writes no history rows at all
(schema.py, migration 4).

Search: each filter has an index ending in ``(submitted_at, id)``, the page order, so a
page is one range read of one index, newest first, stopping after ``limit + 1`` rows;
a cursor is a seek into that range (keyset pagination, never OFFSET). The index is
chosen here, by a fixed order of selectivity (:data:`_DRIVERS`), and named with
``INDEXED BY``: a query the index cannot serve fails to prepare instead of silently
scanning the table. The other filters of a query are checked on the rows of that range.

``ANALYZE`` is never run (and ``PRAGMA optimize`` neither). The only choice a planner
would make here is between the indexes of two filters, and ``sqlite_stat1`` knows only
the average rows per value of a column (this SQLite has no STAT4 samples), which ranks
the filters much as :data:`_DRIVERS` does; every other query of the store has one index that
fits it. Statistics would cost a read of every index (seconds at 1,000,000 messages, on
the writer) and, once stale, could only move plans away from these.

Everything here is a plain function of a connection; :class:`SqliteStore` runs reads
on its reader connection and :func:`purge` on the writer.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from smppbridge.core.history import (
    Cursor,
    MessagePage,
    MessageQuery,
    ReceiptState,
    ReceiptView,
    TimelineEntry,
)
from smppbridge.core.records import DeliveryState
from smppbridge.store.sqlite.rows import COLUMNS, receipt_stat, row_to_message
from smppbridge.store.sqlite.schema import ACCEPTED

__all__ = ["choose_index", "purge", "receipts_of", "search", "search_sql", "timeline"]

#: (query field, column, index): the index that drives a search with that filter, most
#: selective first. A provider id names one message (or a few); a destination a
#: handful; a source is one sender of one account; an account is ~1/50 of the
#: traffic; a stat, a state or a provider a large share of it.
_DRIVERS: tuple[tuple[str, str, str], ...] = (
    ("provider_id", "provider_id", "messages_provider_id"),
    ("destination", "dest", "messages_dest"),
    ("source", "source", "messages_source"),
    ("account", "account", "messages_account"),
    ("stat", "stat", "messages_stat"),
    ("state", "state", "messages_state"),
    ("provider", "provider", "messages_provider"),
)
#: Columns empty until a message is sent: their indexes hold only rows where they are
#: set (schema.py), so such an index drives a search only for a value that is not
#: empty, and the query says so in the words of the index (``col != ''``).
_PARTIAL = frozenset({"provider_id", "stat", "provider"})
#: No filter but the time range (or none at all).
_TIME_INDEX = "messages_time"
_PAGE_ORDER = "ORDER BY submitted_at DESC, id DESC"


def _value(query: MessageQuery, field: str) -> Any:
    value = getattr(query, field)
    return value.value if field == "state" and value is not None else value


#: Stats the stat index leaves out (migration 5): the statuses of most messages.
_COMMON_STATS = frozenset({"", "ENROUTE", "ACCEPTD", "DELIVRD"})
#: Stats of messages not final: found through the state index (state != 'final').
_MOVING_STATS = frozenset({"ENROUTE", "ACCEPTD"})
#: the condition of each partial index, as a search must state it to use it
_INDEX_TERMS = {
    "messages_provider_id": "provider_id != ''",
    "messages_provider": "provider != ''",
    "messages_state": "state != 'final'",
    "messages_stat": "stat NOT IN ('', 'ENROUTE', 'ACCEPTD', 'DELIVRD')",
}


def _can_drive(query: MessageQuery, field: str, column: str) -> bool:
    value = _value(query, field)
    if value is None:
        return False
    if column in _PARTIAL and value == "":
        return False
    if field == "state":
        return bool(value != "final")  # final rows are not in the state index
    if field == "stat":
        return value not in _COMMON_STATS
    return True


def _driver(query: MessageQuery) -> tuple[str, str]:
    for field, column, index in _DRIVERS:
        if _can_drive(query, field, column):
            return column, index
    if query.stat in _MOVING_STATS:
        # ENROUTE and ACCEPTD are never final: the few messages not final hold them
        return "state", "messages_state"
    return "", _TIME_INDEX


def choose_index(query: MessageQuery) -> str:
    """The index a search runs on: that of its most selective filter."""
    return _driver(query)[1]


def search_sql(query: MessageQuery) -> tuple[str, list[Any]]:
    """The SELECT of one page of ``query`` and its parameters. Only column and index
    names from this module are put in the text; every value is a bound parameter."""
    _, index = _driver(query)
    terms: list[str] = [_INDEX_TERMS[index]] if index in _INDEX_TERMS else []
    params: list[Any] = []
    if index == "messages_state" and query.state is None:
        # an ENROUTE or ACCEPTD search: those stats belong to sent messages only
        # (mark_sent sets ENROUTE; a queued message has none, a final one a final one)
        terms.append("state = ?")
        params.append(DeliveryState.SENT.value)
    for field, column, _ in _DRIVERS:
        value = _value(query, field)
        if value is not None:
            terms.append(f"{column} = ?")
            params.append(value)
    if query.since is not None:
        terms.append("submitted_at >= ?")
        params.append(query.since)
    # One upper bound, the tighter: the index range ends there. (With both, SQLite
    # bounds the range by one and filters by the other: a deep page of a time range
    # would read every row between ``until`` and the cursor.) Either implies the other
    # when it is the tighter, so the rows are the same.
    after = query.after
    if after is not None and (query.until is None or after.submitted_at < query.until):
        # strictly after the last item of the previous page, in page order
        terms.append("(submitted_at, id) < (?, ?)")
        params += [after.submitted_at, after.message_id]
    elif query.until is not None:
        terms.append("submitted_at < ?")
        params.append(query.until)
    where = f" WHERE {' AND '.join(terms)}" if terms else ""
    sql = (f"SELECT {COLUMNS} FROM messages INDEXED BY {index}{where} "
           f"{_PAGE_ORDER} LIMIT ?")
    params.append(query.limit + 1)  # one more: is there a next page?
    return sql, params


def search(db: sqlite3.Connection, query: MessageQuery) -> MessagePage:
    if query.limit < 1:
        return MessagePage([], None)
    sql, params = search_sql(query)
    rows = db.execute(sql, params).fetchall()
    items = [row_to_message(r) for r in rows[:query.limit]]
    more = len(rows) > query.limit
    last = items[-1].message if more else None
    return MessagePage(items, Cursor(last.submitted_at, last.message_id) if last else None)


def _owner(db: sqlite3.Connection, message_id: str) -> str | None:
    """The id of the message that ``message_id`` is, or is a part of."""
    row = db.execute("SELECT id FROM messages WHERE id=?", (message_id,)).fetchone()
    if row is None:
        row = db.execute("SELECT message_id FROM part_ids WHERE part_id=?",
                         (message_id,)).fetchone()
    return row[0] if row else None


#: The order a message goes through. The writes make it the order in time too (a
#: retry only while queued, the sent entry only before final, a status only before
#: final), so entries are sorted by it, then by when they were written; times from
#: different clocks (a retry's is the store's own) cannot reorder them.
#: _AFTER: a note written once the message was final (a status callback failed)
_ACCEPTED, _RETRY, _SENT, _STATUS, _FINAL, _AFTER = range(6)


def timeline(db: sqlite3.Connection, message_id: str) -> list[TimelineEntry]:
    owner = _owner(db, message_id)
    if owner is None:
        return []
    (submitted_at, state, stat, err, provider, provider_id, sent_at, done_at,
     final_detail) = db.execute(
        "SELECT submitted_at, state, stat, err, provider, provider_id, sent_at, done_at, "
        "final_detail FROM messages WHERE id=?", (owner,)).fetchone()
    ranked: list[tuple[int, int, TimelineEntry]] = []
    if state == "final" and final_detail == ACCEPTED:
        # stored already final (refused after a partial ack): one entry
        ranked.append((_ACCEPTED, 0, TimelineEntry(submitted_at, "final", stat, err,
                                                   ACCEPTED)))
    else:
        ranked.append((_ACCEPTED, 0, TimelineEntry(submitted_at, "queued", "", 0, ACCEPTED)))
        if state == "final":
            ranked.append((_FINAL, 0, TimelineEntry(done_at, "final", stat, err, final_detail)))
    if sent_at is not None:
        ranked.append((_SENT, 0, TimelineEntry(
            sent_at, "sent", "ENROUTE", 0, f"sent to {provider} as {provider_id}")))
    for n, (at, h_state, h_stat, h_err, detail) in enumerate(db.execute(
            "SELECT at, state, stat, err, detail FROM history WHERE message_id=? "
            "ORDER BY rowid", (owner,))):
        rank = (_RETRY if h_state == "queued" else _AFTER if h_state == "final"
                else _STATUS)
        ranked.append((rank, n, TimelineEntry(at, h_state, h_stat, h_err, detail)))
    ranked.sort(key=lambda r: r[:2])
    return [r[2] for r in ranked]


def receipts_of(db: sqlite3.Connection, message_id: str) -> list[ReceiptView]:
    owner = _owner(db, message_id)
    if owner is None:
        # parts of a message never stored whole (incomplete, refused): their own
        part_ids: Sequence[str] = (message_id,)
    else:
        part_ids = json.loads(db.execute("SELECT part_ids FROM messages WHERE id=?",
                                         (owner,)).fetchone()[0])
    marks = ",".join("?" * len(part_ids))
    rows = db.execute(f"SELECT message_id, account, body, state, attempts, done_at "
                      f"FROM receipts WHERE message_id IN ({marks}) ORDER BY seq",
                      list(part_ids)).fetchall()
    out = []
    for part_id, account, body, state, attempts, done_at in rows:
        stat, err, done_date = receipt_stat(body)
        # a pending receipt's time is its creation: the status time it reports
        at = done_date if done_at is None else done_at
        out.append(ReceiptView(part_id, account, stat, err, ReceiptState(state), attempts,
                               at))
    return out


def purge(db: sqlite3.Connection, ended_before: float, limit: int) -> int:
    """Delete up to ``limit`` final messages that ended before ``ended_before``, with
    their part index rows, history rows and receipts; then up to ``limit`` finished
    receipts owned by no message (parts of messages never stored whole) that ended
    before it, oldest first. Returns how many messages."""
    rows = db.execute("SELECT id, part_ids FROM messages INDEXED BY messages_ended "
                      "WHERE state='final' AND done_at < ? ORDER BY done_at LIMIT ?",
                      (ended_before, limit)).fetchall()
    ids = [(r[0],) for r in rows]
    parts = [(p,) for mid, part_ids in rows for p in json.loads(part_ids)]
    extra_parts = [(p,) for mid, part_ids in rows for p in json.loads(part_ids) if p != mid]
    db.executemany("DELETE FROM messages WHERE id=?", ids)
    db.executemany("DELETE FROM part_ids WHERE part_id=?", extra_parts)
    db.executemany("DELETE FROM history WHERE message_id=?", ids)
    db.executemany("DELETE FROM receipts WHERE message_id=?", parts)
    _purge_orphan_receipts(db, ended_before, limit)
    return len(rows)


def _purge_orphan_receipts(db: sqlite3.Connection, ended_before: float, limit: int) -> None:
    """Receipts no message owns go when they are the oldest left: walk the outbox from
    its lowest seq and stop at the first receipt still pending, too recent, or owned by
    a message (which takes it along when it is purged). The walk reads a row or two
    when there is nothing to do."""
    doomed: list[tuple[int]] = []
    oldest = db.execute("SELECT seq, message_id, state, done_at FROM receipts "
                        "ORDER BY seq LIMIT ?", (limit,))
    try:
        for seq, part_id, state, done_at in oldest:
            if state == ReceiptState.PENDING.value or done_at >= ended_before:
                break
            if _owner(db, part_id) is not None:
                break
            doomed.append((seq,))
    finally:
        oldest.close()  # no read left open on the table the delete changes
    db.executemany("DELETE FROM receipts WHERE seq=?", doomed)
