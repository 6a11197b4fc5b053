"""Sample records shared by the store tests (SQLite and Redis run the same cases)."""

from __future__ import annotations

from smppbridge.core.message import Address, OutboundMessage
from smppbridge.core.records import ReceiptRecord
from smppbridge.text.content import Content, Kind


def sample_message(i: int, parts: int = 1) -> OutboundMessage:
    """Message ``i`` (ids ``i-0`` … ``i-(parts-1)``), a Viber message with every field."""
    ids = tuple(f"{i}-{p}" for p in range(parts))
    return OutboundMessage(
        message_id=ids[-1], part_ids=ids, account="acme", source=Address("src", 5, 0),
        destination=Address(f"7900{i:07d}", 1, 1),
        content=Content(Kind.VIBER, f"text {i}", button_caption="Go",
                        button_url="https://x", comment="c"),
        registered_delivery=1, submitted_at=1000.0 + i, expire_at=2000.0)


def sample_receipt(mid: str, account: str = "acme", expire_at: float = 9999.0
                   ) -> ReceiptRecord:
    """A DELIVRD receipt for ``mid``."""
    return ReceiptRecord(account=account, message_id=mid, stat="DELIVRD", err=0,
                         submit_date=1.0, done_date=2.0, text="hello", source_addr="7900",
                         source_ton=1, source_npi=1, dest_addr="src", dest_ton=5, dest_npi=0,
                         expire_at=expire_at)
