"""Mobile-originated (MO) messages: what one is when it arrives, the ``[[mo_routes]]``
that give it to an account, and the JSON its ``mo_url`` callback carries
(docs/providers.md, *Mobile-originated messages*). Sans-IO.

An MO is kept as a message record of its own (``extra["direction"] == "mo"``), final at
once: stat ACCEPTD when a route gave it to an account, REJECTD (err 0, account "") when
none did (unroutable). Its delivery goes through the receipt outbox (a deliver_sm to
the account's receivers, :data:`MO_RECORD` in the record's extra) and/or the callback
outbox (an event of kind ``mo``) — written in the same store operation as the record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from smppbridge.core.message import Address
from smppbridge.text.encoding import choose_data_coding, encode_text

__all__ = ["DIRECTION", "MO_CHANNELS", "MO_KIND", "MO_PARTS", "MO_RECORD", "InboundMo", "MoRoute",
           "mo_channels", "mo_of_text", "mo_payload", "route_mo"]

#: ``OutboundMessage.extra`` key of an MO record, and its value
DIRECTION = "direction"
#: the callback event kind of an MO posted to ``mo_url``
MO_KIND = "mo"
#: ``ReceiptRecord.extra`` key marking an outbox record as an MO deliver_sm (its value:
#: the data_coding); the other keys are below
MO_RECORD = "mo_data_coding"
#: where an account's MO go: deliver_sm to its binds, POST to its mo_url, or both
MO_CHANNELS = ("smpp", "http", "both")
#: what becomes of a long MO: one MO once every part is in, or each part on its own
MO_PARTS = ("join", "parts")


@dataclass(frozen=True, slots=True)
class MoRoute:
    """One ``[[mo_routes]]`` table: destinations (exact ``to`` or ``prefix``; both empty
    match any) and an optional first word (``keywords``, upper case) → ``account``."""

    account: str
    to: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()
    keywords: frozenset[str] = frozenset()

    def matches(self, destination: str, text: str) -> bool:
        dest = destination.lstrip("+")
        if (self.to or self.prefixes) and not (
                dest in self.to or (self.prefixes and dest.startswith(self.prefixes))):
            return False
        if self.keywords:
            words = text.split(maxsplit=1)
            return bool(words) and words[0].upper() in self.keywords
        return True


def route_mo(routes: Sequence[MoRoute], destination: str, text: str) -> str | None:
    """The account of the first route (file order) matching, or None (unroutable)."""
    for route in routes:
        if route.matches(destination, text):
            return route.account
    return None


@dataclass(frozen=True, slots=True)
class InboundMo:
    """One MO as a provider received it. ``payload`` is the user data without UDH, in
    its original encoding (``data_coding``); ``text`` its decoding ("" for binary);
    ``concat`` (reference, total, seq) when it is one part of a long MO."""

    provider: str
    source: Address
    destination: Address
    data_coding: int
    payload: bytes
    text: str
    received_at: float
    concat: tuple[int, int, int] | None = None
    encoding: str = "gsm7"


def mo_of_text(provider: str, source: str, destination: str, text: str,
               received_at: float) -> InboundMo:
    """An MO given as text (an HTTP provider's, the simulator's): kept as GSM 7-bit
    when it fits, else UCS2 — the data_coding of its deliver_sm."""
    coding = int(choose_data_coding(text))
    return InboundMo(provider=provider, source=Address(source, 1, 1),
                     destination=Address(destination), data_coding=coding,
                     payload=encode_text(text, coding), text=text, received_at=received_at,
                     encoding="gsm7" if coding == 0 else "ucs2")


def mo_channels(mo: str, mo_url: str) -> tuple[bool, bool]:
    """(by SMPP, by HTTP) for an account's ``mo`` and ``mo_url``."""
    return mo in ("smpp", "both"), mo in ("http", "both") and bool(mo_url)


def mo_payload(*, event_id: str, attempt: int, mo_id: str, account: str, source: str,
               destination: str, text: str, extra: dict[str, str], received_at: str | None
               ) -> dict[str, Any]:
    """The JSON body POSTed to an account's ``mo_url`` (docs/http.md, *MO callbacks*)."""
    body: dict[str, Any] = {
        "event_id": event_id, "attempt": attempt, "type": "mo", "mo_id": mo_id,
        "account": account, "from": source, "to": destination, "text": text,
        "encoding": extra.get("mo_encoding", ""),
        "data_coding": int(extra.get("mo_coding", "0") or 0),
        "payload_hex": extra.get("mo_payload", ""),
        "provider": extra.get("mo_provider", ""), "received_at": received_at,
        "part": None, "parts": int(extra.get("mo_parts", "1") or 1),
    }
    if extra.get("mo_total"):
        body["part"] = {"reference": int(extra["mo_ref"]), "total": int(extra["mo_total"]),
                        "number": int(extra["mo_seq"])}
    return body
