"""What a message carries once its text is parsed: :class:`Kind` (decided by the text
macro) and :class:`Content` (what is sent, plus the comment and the macro's fields).

:func:`smppbridge.text.macros.parse_content` makes one from decoded text; the core's
:class:`~smppbridge.core.message.OutboundMessage` carries it to the providers.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Content", "Kind"]


class Kind(StrEnum):
    """What a message is, decided by its text macro (docs/content.md, Text macros)."""

    SMS = "sms"
    VIBER = "viber"
    HLR = "hlr"
    MMS = "mms"
    MAIL = "mail"
    CALL = "call"
    SOC = "soc"
    PING = "ping"


# Not frozen, to be treated as immutable (hashable by value all the same): a frozen
# dataclass sets every field through object.__setattr__ (Content 1.55 µs against 0.34 µs),
# and one is made for every message.
@dataclass(slots=True, unsafe_hash=True)
class Content:
    """What the subscriber gets, parsed from the decoded text (macros and comment applied).

    ``text`` is what is sent; ``comment`` is what followed ``\\n~~~\\n`` (for CALL it is
    also the call's ``param``). ``flash`` comes from the data_coding message class 0.
    """

    kind: Kind
    text: str
    subject: str | None = None
    voice: str | None = None
    param: str | None = None
    button_caption: str | None = None
    button_url: str | None = None
    image_url: str | None = None
    fallback_text: str | None = None
    flash: bool = False
    comment: str | None = None
