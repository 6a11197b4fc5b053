"""Helpers of the SQLite history tests: messages, receipts, page ids, row counts."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from typing import Any

from smppbridge.core.message import Address, OutboundMessage
from smppbridge.core.records import ReceiptRecord
from smppbridge.text.content import Content, Kind
from tests.store.samples import sample_receipt


def msg(mid: str, *, account: str = "acme", dest: str = "79001", source: str = "src",
        at: float = 1000.0, parts: int = 1) -> OutboundMessage:
    """Message ``mid`` (parts ``mid-0`` … when long), submitted at ``at``."""
    ids = tuple(f"{mid}-{p}" for p in range(parts)) if parts > 1 else (mid,)
    return OutboundMessage(
        message_id=ids[-1], part_ids=ids, account=account, source=Address(source, 5, 0),
        destination=Address(dest, 1, 1), content=Content(Kind.SMS, f"text {mid}"),
        registered_delivery=1, submitted_at=at)


def rec(part_id: str, *, stat: str = "DELIVRD", at: float = 1040.0,
        expire_at: float = 9999.0) -> ReceiptRecord:
    """A receipt of ``part_id`` created at ``at`` (its done date)."""
    return replace(sample_receipt(part_id, expire_at=expire_at), stat=stat, done_date=at)


def page_ids(page_items: list[Any]) -> list[str]:
    """The message ids of a page's items, in order."""
    return [m.message.message_id for m in page_items]


def count_rows(path: str, sql: str, *args: Any) -> int:
    """One count(*) read from the file at ``path``."""
    db = sqlite3.connect(path)
    try:
        return int(db.execute(sql, args).fetchone()[0])
    finally:
        db.close()
