"""The SQLite store's receipt rows (schema 8): the body as a compact array, and a
schema-7 file whose bodies are objects, opened by this code."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path

from smppbridge.core.history import ReceiptState
from smppbridge.core.records import receipt_body
from smppbridge.store.sqlite.rows import receipt_from_row, receipt_json
from smppbridge.store.sqlite.schema import MIGRATIONS, SCHEMA_VERSION
from smppbridge.store.sqlite.store import SqliteStore
from tests.store.sqlite.support import count_rows, rec


def test_array_body_restores_every_field_of_a_receipt() -> None:
    """A receipt written as an array reads back equal, with the row's columns and the
    outbox's own fields (an intermediate one with HLR fields and extra TLVs too)."""
    r = replace(rec("M1", stat="ENROUTE", at=1234.5678), intermediate=True,
                hlr_fields="imsi:1", extra={"network": "x"})
    body = receipt_json(r)
    assert json.loads(body)[0] == "ENROUTE"
    assert "message_id" not in body
    back = receipt_from_row(r.account, r.message_id, body, r.expire_at, seq=7, attempts=2,
                            next_at=3.0)
    assert back == replace(r, seq=7, attempts=2, next_at=3.0)


async def test_schema_7_file_keeps_its_receipts_readable(tmp_path: Path) -> None:
    """A schema-7 database with a pending receipt as the old code wrote it (an object
    of every field), opened by this code: migrated to the current version, the old
    receipt is due with all its fields and listed by receipts_of, and a new receipt is
    stored as an array beside it."""
    path = str(tmp_path / "v7.db")
    old = rec("OLD", at=1002.0)
    db = sqlite3.connect(path, isolation_level=None)
    for v in range(1, 8):
        db.executescript(MIGRATIONS[v])
        db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(v),))
    db.execute("INSERT INTO receipts (account, message_id, body, expire_at) VALUES "
               "(?,?,?,?)", (old.account, old.message_id, json.dumps(receipt_body(old)),
                             old.expire_at))
    db.close()
    s = SqliteStore(path)
    await s.open()
    try:
        assert count_rows(path, "SELECT value FROM meta WHERE key='schema_version'") \
            == SCHEMA_VERSION
        new = rec("NEW", stat="UNDELIV", at=1003.0)
        await s.add_receipts([new])
        got = await s.receipts_for(old.account, 5000.0, 10)
        assert got == [replace(old, seq=1), replace(new, seq=2)]
        assert [(v.part_id, v.stat, v.state, v.at) for v in await s.receipts_of("OLD")] == [
            ("OLD", "DELIVRD", ReceiptState.PENDING, 1002.0)]
        assert [(v.stat, v.at) for v in await s.receipts_of("NEW")] == [("UNDELIV", 1003.0)]
    finally:
        await s.close()
    assert count_rows(path, "SELECT count(*) FROM receipts WHERE body LIKE '[%'") == 1
