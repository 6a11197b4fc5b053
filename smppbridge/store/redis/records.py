"""How the Redis store lays records out: a message as a hash of strings, times as exact
``repr`` floats, receipts as JSON, a receipt's line in its message's history as a short
``|``-separated view (docs/cluster.md); and the idempotency tokens of writes that
redis-py may re-send."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from smppbridge.core.message import Address, OutboundMessage
from smppbridge.core.records import (
    DeliveryState,
    ReceiptRecord,
    StoredMessage,
    content_from_json,
    content_to_json,
    receipt_body,
)

__all__ = ["json_array", "message_fields", "num", "opt", "pairs", "receipt_args", "to_stored",
           "token"]


def token() -> str:
    """A write's idempotency token: 64 random bits, compared only with the token of the
    same message's last write (or kept 120 s), so 16 hex digits are plenty — and every
    message hash keeps two of them."""
    return secrets.token_hex(8)


def num(x: float | None) -> str:
    """A time as Redis stores it: repr round-trips every float exactly."""
    return "" if x is None else repr(float(x))


def opt(s: str) -> float | None:
    return float(s) if s else None


def pairs(raw: Any) -> dict[str, str]:
    """A flat [k1, v1, k2, v2, ...] reply (Lua HGETALL) as a dict."""
    if isinstance(raw, dict):
        return {str(k): v for k, v in raw.items()}
    it = iter(raw or ())
    return {str(k): v for k, v in zip(it, it, strict=True)}


def json_array(items: Sequence[Any]) -> str:
    """Strings (or nested lists of them: a batch script's entries) for a script to
    cjson.decode. Non-ASCII goes as raw UTF-8, not as
    backslash-u escapes: cjson would reject an escaped lone surrogate, while raw bytes pass
    through it untouched, exactly as in a plain argument."""
    return json.dumps(list(items), ensure_ascii=False)


def message_fields(m: OutboundMessage) -> dict[str, str]:
    return {
        "id": m.message_id, "account": m.account, "part_ids": json.dumps(list(m.part_ids)),
        "source": m.source.addr, "source_ton": str(int(m.source.ton)),
        "source_npi": str(int(m.source.npi)), "dest": m.destination.addr,
        "dest_ton": str(int(m.destination.ton)), "dest_npi": str(int(m.destination.npi)),
        "kind": m.content.kind.value, "content": content_to_json(m.content),
        "registered_delivery": str(int(m.registered_delivery)),
        "schedule_at": num(m.schedule_at), "expire_at": num(m.expire_at),
        "submitted_at": num(m.submitted_at), "service_type": m.service_type,
        "data_coding": str(int(m.data_coding)), "extra": json.dumps(m.extra),
    }


def to_stored(h: Mapping[str, str]) -> StoredMessage:
    msg = OutboundMessage(
        message_id=h["id"], account=h["account"], part_ids=tuple(json.loads(h["part_ids"])),
        source=Address(h["source"], int(h["source_ton"]), int(h["source_npi"])),
        destination=Address(h["dest"], int(h["dest_ton"]), int(h["dest_npi"])),
        content=content_from_json(h["content"]), registered_delivery=int(h["registered_delivery"]),
        schedule_at=opt(h["schedule_at"]), expire_at=opt(h["expire_at"]),
        submitted_at=float(h["submitted_at"]), service_type=h["service_type"],
        data_coding=int(h["data_coding"]), extra=json.loads(h["extra"]))
    return StoredMessage(msg, DeliveryState(h["state"]), h["stat"], int(h["err"]),
                         h["provider"], h["provider_id"], int(h["attempts"]),
                         float(h["next_at"]), opt(h["done_at"]))


def receipt_args(receipts: Sequence[ReceiptRecord], message_id: str = "") -> list[Any]:
    """A script's receipt arguments: the count, then per receipt its account, body,
    expire_at, part id and pending view ``p|<part>|<stat>|<err>|<created>`` (``<part>``
    empty for ``message_id`` itself; the script appends the account where it differs
    from the message's)."""
    args: list[Any] = [len(receipts)]
    for rec in receipts:
        part = "" if rec.message_id == message_id else quote(rec.message_id, safe="")
        view = f"p|{part}|{rec.stat}|{int(rec.err)}|{rec.done_date:.3f}"
        args += [rec.account, json.dumps(receipt_body(rec)), num(rec.expire_at),
                 rec.message_id, view]
    return args

