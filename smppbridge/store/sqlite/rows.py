"""How the SQLite store lays records out in rows, and reads them back."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from smppbridge.core.message import Address, OutboundMessage
from smppbridge.core.records import (
    DeliveryState,
    ReceiptRecord,
    StoredMessage,
    content_from_json,
    content_to_json,
)
from smppbridge.store.sqlite.schema import ACCEPTED, RECEIPT_LEASED

__all__ = ["COLUMNS", "INSERT_MESSAGE", "index_parts", "insert_receipts", "mark_final_rows",
           "mark_sent_rows", "message_row",
           "receipt_from_row", "receipt_json", "receipt_stat", "row_to_message"]

COLUMNS = ("id, account, part_ids, source, source_ton, source_npi, dest, dest_ton, dest_npi,"
            " content, registered_delivery, schedule_at, expire_at, submitted_at, service_type,"
            " data_coding, extra, state, stat, err, provider, provider_id, attempts, next_at,"
            " done_at")


INSERT_MESSAGE = (
    "INSERT INTO messages (id, account, part_ids, source, source_ton, source_npi,"
    " dest, dest_ton, dest_npi, kind, content, registered_delivery, schedule_at,"
    " expire_at, submitted_at, service_type, data_coding, extra, state, stat, err,"
    " next_at, done_at, claimed, final_detail)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)")


def message_row(m: OutboundMessage, state: DeliveryState, final_stat: str, final_err: int,
                 claimed: bool) -> tuple[Any, ...]:
    return (m.message_id, m.account, _json_ids(m.part_ids), m.source.addr,
            m.source.ton, m.source.npi, m.destination.addr, m.destination.ton,
            m.destination.npi, m.content.kind.value, content_to_json(m.content),
            m.registered_delivery, m.schedule_at, m.expire_at, m.submitted_at,
            m.service_type, m.data_coding, json.dumps(m.extra) if m.extra else "{}",
            state.value, final_stat,
            final_err, m.schedule_at or 0.0, m.submitted_at if final_stat else None,
            int(claimed), ACCEPTED if final_stat else "")


def _json_ids(ids: tuple[str, ...]) -> str:
    # Our ids are digits or hex: the JSON of one is just quoted (no encoder call).
    if len(ids) == 1 and ids[0].isalnum() and ids[0].isascii():
        return f'["{ids[0]}"]'
    return json.dumps(list(ids))


def index_parts(db: sqlite3.Connection, m: OutboundMessage) -> None:
    # Single-part messages are found by their own id; only the other parts of a long
    # message need the part → message index. Their held copies are done with.
    db.executemany("INSERT OR REPLACE INTO part_ids VALUES (?,?)",
                   [(p, m.message_id) for p in m.part_ids if p != m.message_id])
    db.executemany("DELETE FROM parts WHERE part_id=?", [(p,) for p in m.part_ids])


#: rows of one batch UPDATE (5 parameters each, well under SQLite's 32,766)
_UPDATE_CHUNK = 500


def mark_final_rows(db: sqlite3.Connection,
                    finals: Sequence[tuple[str, str, int, float, str]]) -> set[str]:
    """Mark messages final, each (message_id, stat, err, done_at, detail); a message
    already final keeps its first final status. Returns the ids marked here.

    One ``UPDATE ... FROM (VALUES ...) RETURNING`` a chunk instead of an UPDATE a
    message: the writer's Python calls per batch, not per message (mark_final_many was
    the writer's largest share, 15 % of a node's samples in issue 21's profile). An id
    given twice counts once, with its first entry, as one UPDATE after another would.
    """
    first: dict[str, tuple[str, str, int, float, str]] = {}
    for entry in finals:
        first.setdefault(entry[0], entry)
    return _update_returning(db, "state='final', stat=v.column2, err=v.column3, "
                             "done_at=v.column4, final_detail=v.column5",
                             list(first.values()))


_MARK_SENT = ("UPDATE messages SET state='sent', provider=?, provider_id=?, stat=?, "
              "sent_at=?, attempts=attempts+1 WHERE id=? AND state!='final'")


def mark_sent_rows(db: sqlite3.Connection,
                   sent: Sequence[tuple[str, str, str, str, float]]) -> set[str]:
    """Mark messages sent, each (message_id, provider, provider_id, stat, sent_at); a
    message final meanwhile (cancelled, or a webhook faster than this write) stays
    final. Returns the ids marked here. One statement a chunk, as mark_final_rows; a
    batch naming an id twice (a resend of a message in the same batch) runs an UPDATE
    an entry, in order, so that the last wins and each counts an attempt."""
    if len({e[0] for e in sent}) != len(sent):
        return {e[0] for e in sent
                if db.execute(_MARK_SENT, (e[1], e[2], e[3], e[4], e[0])).rowcount}
    return _update_returning(db, "state='sent', provider=v.column2, provider_id=v.column3, "
                             "stat=v.column4, sent_at=v.column5, attempts=attempts+1", sent)


def _update_returning(db: sqlite3.Connection, assignments: str,
                      rows: Sequence[tuple[str, Any, Any, Any, Any]]) -> set[str]:
    """``UPDATE messages SET <assignments>`` from rows (id first, then the values the
    assignments read as v.column2..5) for messages not final; the ids updated."""
    done: set[str] = set()
    for start in range(0, len(rows), _UPDATE_CHUNK):
        chunk = rows[start:start + _UPDATE_CHUNK]
        values = ",".join(["(?,?,?,?,?)"] * len(chunk))
        done.update(r[0] for r in db.execute(
            f"UPDATE messages SET {assignments} FROM (VALUES {values}) AS v "
            "WHERE messages.id=v.column1 AND messages.state!='final' RETURNING messages.id",
            [x for r in chunk for x in r]))
    return done


def row_to_message(r: Any) -> StoredMessage:
    msg = OutboundMessage(
        message_id=r[0], account=r[1], part_ids=tuple(json.loads(r[2])),
        source=Address(r[3], r[4], r[5]), destination=Address(r[6], r[7], r[8]),
        content=content_from_json(r[9]), registered_delivery=r[10], schedule_at=r[11],
        expire_at=r[12], submitted_at=r[13], service_type=r[14], data_coding=r[15],
        extra=json.loads(r[16]))
    return StoredMessage(msg, DeliveryState(r[17]), r[18], r[19], r[20], r[21], r[22], r[23],
                         r[24])


#: The fields of a receipt's ``body`` (schema 8): a JSON array in this order. Fixed
#: here, not read off ReceiptRecord, so that a field added later goes at the end and
#: older rows still read (the missing tail takes the dataclass defaults). account,
#: message_id and expire_at are columns of the row, and seq, attempts and next_at the
#: outbox's own. A body written before schema 8 is a JSON object of every field.
_BODY = ("stat", "err", "submit_date", "done_date", "text", "source_addr", "source_ton",
         "source_npi", "dest_addr", "dest_ton", "dest_npi", "intermediate", "hlr_fields",
         "extra")


def receipt_json(rec: ReceiptRecord) -> str:
    """The ``body`` of a receipt row. An array, not an object of every field: the row is
    ~220 bytes instead of ~450 (receipts were the largest table, twice the messages)
    and the encoding a third cheaper; the writer encodes one per message (schema.py, 8)."""
    return json.dumps([rec.stat, rec.err, rec.submit_date, rec.done_date, rec.text,
                       rec.source_addr, rec.source_ton, rec.source_npi, rec.dest_addr,
                       rec.dest_ton, rec.dest_npi, rec.intermediate, rec.hlr_fields,
                       rec.extra])


def _fields(body: str) -> dict[str, Any]:
    value = json.loads(body)
    if isinstance(value, dict):  # written before schema 8: every field by name
        return value
    return dict(zip(_BODY, value, strict=False))


def receipt_from_row(account: str, message_id: str, body: str, expire_at: float, *,
                     seq: int, attempts: int, next_at: float) -> ReceiptRecord:
    """The receipt of an outbox row (either body format)."""
    fields = _fields(body)
    fields.update(account=account, message_id=message_id, expire_at=expire_at, seq=seq,
                  attempts=attempts, next_at=next_at)
    return ReceiptRecord(**fields)


def receipt_stat(body: str) -> tuple[str, int, float]:
    """(stat, err, done_date) of a receipt row's body (either format)."""
    fields = _fields(body)
    return fields["stat"], fields["err"], fields["done_date"]


def insert_receipts(db: sqlite3.Connection, receipts: Sequence[ReceiptRecord], *,
                     lease: bool = False) -> list[tuple[int, ReceiptRecord]]:
    """Add receipts to the outbox; with ``lease``, leased and numbered here, returned
    as (seq, receipt), so that the caller can deliver them from memory."""
    if not receipts:
        return []
    if not lease:
        db.executemany("INSERT INTO receipts (account, message_id, body, expire_at) "
                       "VALUES (?,?,?,?)",
                       [(rec.account, rec.message_id, receipt_json(rec),
                         rec.expire_at) for rec in receipts])
        return []
    # AUTOINCREMENT keeps the last seq ever given in sqlite_sequence; this thread is the
    # only writer, so the next ones are ours to number.
    row = db.execute("SELECT seq FROM sqlite_sequence WHERE name='receipts'").fetchone()
    first = (row[0] if row else 0) + 1
    seqs = list(range(first, first + len(receipts)))
    db.executemany("INSERT INTO receipts (seq, account, message_id, body, expire_at, "
                   "next_at) VALUES (?,?,?,?,?,?)",
                   [(seq, rec.account, rec.message_id, receipt_json(rec),
                     rec.expire_at, RECEIPT_LEASED) for seq, rec in zip(seqs, receipts,
                                                                         strict=True)])
    return list(zip(seqs, receipts, strict=True))
