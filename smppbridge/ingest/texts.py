"""Messages that arrive as text (the HTTP doors) rather than as submit_sm octets.

What an ESME does before it sends a long message — choose the data_coding, cut the
text into parts, one submit_sm (one message id) per part — is done here for a text
given over HTTP, so that the message continues down the same content stage as a
submit_sm: the same macros and comment rule, the same length limits, the same flood
rules and the same durable hand-over (:meth:`ContentHandler.submit_texts
<smppbridge.ingest.submit.ContentHandler.submit_texts>`). The parts are counted on the
whole text as given (comment and macro included), exactly as ``smppbridge send``
would cut it into submit_sm parts: an HTTP message gets as many ids as the same text
sent over SMPP would.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from smppbridge.core.message import Address
from smppbridge.smpp.constants import CommandStatus, DataCoding
from smppbridge.text.concat import split_text
from smppbridge.text.encoding import ContentError, MessageTooLong, choose_data_coding

__all__ = [
    "ENCODINGS",
    "TextMessage",
    "TextRefused",
    "TextResult",
    "count_parts",
    "data_coding_of",
]

#: the ``encoding`` names a text may ask for, and their data_coding (flash: class 0)
ENCODINGS: Mapping[str, tuple[int, int]] = {
    "gsm7": (DataCoding.DEFAULT, 0x10),
    "ucs2": (DataCoding.UCS2, 0x18),
    # Latin-1 has no message-class form (GSM 03.38 §4): a flash Latin-1 message keeps
    # data_coding 3, and its content says flash.
    "latin1": (DataCoding.LATIN1, DataCoding.LATIN1),
}


@dataclass(frozen=True, slots=True)
class TextMessage:
    """One message given as text. ``encoding`` is one of :data:`ENCODINGS` or None (GSM
    03.38 when every character fits, else UCS2); ``schedule_at`` is a wall date;
    ``validity`` seconds from submission; ``extra`` goes to the message's extras."""

    source: Address
    destination: Address
    text: str
    encoding: str | None = None
    flash: bool = False
    schedule_at: float | None = None
    validity: float | None = None
    registered_delivery: int = 0
    extra: Mapping[str, str] = field(default_factory=dict)


class TextRefused(ContentError):
    """A text refused before the content stage (its encoding cannot hold it, too many
    parts), naming the field at fault."""

    def __init__(self, message: str, *, status: int, field: str) -> None:
        super().__init__(message, status=status)
        self.field = field


@dataclass(frozen=True, slots=True)
class TextResult:
    """The verdict on one :class:`TextMessage`: ``status`` is the command_status a
    submit_sm of it would get; when ESME_ROK, ``message_id`` and ``parts``; when not,
    ``field`` (the field at fault, or "") and ``reason``."""

    status: int
    message_id: str = ""
    parts: int = 0
    field: str = ""
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status == CommandStatus.ESME_ROK


def data_coding_of(message: TextMessage) -> int:
    """The data_coding ``message`` is sent with."""
    if message.encoding is None:
        plain = choose_data_coding(message.text)
        return (0x10 if plain == DataCoding.DEFAULT else 0x18) if message.flash else plain
    plain, flash = ENCODINGS[message.encoding]
    return flash if message.flash else plain


def count_parts(message: TextMessage, data_coding: int, max_parts: int) -> int:
    """How many submit_sm parts the text takes in ``data_coding`` (TextRefused when the
    encoding cannot hold it or it takes more than ``max_parts``)."""
    try:
        parts = len(split_text(message.text, data_coding))
    except ContentError as exc:
        where = "encoding" if message.encoding is not None else "text"
        raise TextRefused(f"{where}: {exc}", status=exc.status, field=where) from None
    if parts > max_parts:
        msg = f"text: {parts} parts, at most {max_parts}"
        raise TextRefused(msg, status=MessageTooLong.status, field="text")
    return parts
