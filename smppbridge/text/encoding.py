"""data_coding: bytes of a short message to text and back (SMPP 3.4 §5.2.19, GSM 03.38).

Theory of operation
-------------------
:func:`parse_data_coding` turns the data_coding octet into a :class:`Coding` — which
alphabet the octets are in and, for the GSM 03.38 coding groups, the message class
(class 0 is a *flash* SMS). :func:`decode` then turns the octets into text, or keeps them
as bytes when the message is binary. Decoding is strict: octets that cannot be text in
the announced alphabet are refused with :class:`InvalidDataCoding` rather than guessed,
because a wrong guess sends garbage to the subscriber and the ESME never learns why.

The values we accept (docs/content.md, Encodings):

* 0 — GSM 03.38 default alphabet, *unpacked* (one septet per octet, as SMPP links carry
  it), with the extension table reached by escape 0x1B; Latin-1 instead when the bind's
  system_type is ``ISO`` or the account says so (``iso``).
* 1 — IA5 / ASCII; 3 — ISO-8859-1.
* 2, 4 — 8-bit: ISO-8859-1 text for this service (the SMS Center convention
  "data_coding = coding × 4", coding 1 = 8-bit ISO-8859-1), or binary when the caller
  says the message is addressed to an application port (see ``binary`` of :func:`decode`).
* 8 — UCS2, read as UTF-16BE so that surrogate pairs (emoji) survive.
* 0x10-0x1F and 0xF0-0xFF — the GSM 03.38 §4 coding groups (alphabet and class bits).

Everything else is :class:`InvalidDataCoding` (status ``VENDOR_INVALID_DATA_CODING``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from smppbridge.smpp.constants import CommandStatus, DataCoding

__all__ = [
    "GSM_ESCAPE",
    "Alphabet",
    "Coding",
    "ContentError",
    "Decoded",
    "InvalidDataCoding",
    "MessageTooLong",
    "UnencodableText",
    "choose_data_coding",
    "decode",
    "encode_text",
    "gsm_decode",
    "gsm_encodable",
    "gsm_encode",
    "parse_data_coding",
]


# --- errors ------------------------------------------------------------------------------


class ContentError(Exception):
    """A message the content layer refuses; ``status`` is the submit_sm_resp command_status.

    Like the SMPP errors (``smppbridge.smpp.errors``), the class says how to answer:
    each status has its own subclass, so callers can catch exactly what they handle.
    """

    #: an int rather than CommandStatus: flood statuses are configurable per account and
    #: may be any vendor code (0x400-0x4FF, SMPP 3.4 Table 5-2).
    status: int = CommandStatus.ESME_RSUBMITFAIL

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class MessageTooLong(ContentError):
    """Text longer than the limit for its kind, or more parts than we reassemble."""

    status = CommandStatus.VENDOR_MESSAGE_TOO_LONG


class InvalidDataCoding(ContentError):
    """A data_coding we do not accept, or octets that are not text in it.

    SMPP 3.4 has no status for this (ESME_RINVDCS 0x104 only exists from SMPP v5.0), so
    we answer with our vendor code from the 0x400-0x4FF range (Table 5-2).
    """

    status = CommandStatus.VENDOR_INVALID_DATA_CODING


class UnencodableText(InvalidDataCoding):
    """Text that the requested alphabet cannot represent (our own encoders)."""


# --- the GSM 03.38 default alphabet ------------------------------------------------------

#: Escape to the extension table (GSM 03.38 §6.2.1.1).
GSM_ESCAPE = 0x1B

# GSM 03.38 §6.2.1, read row by row (0x00-0x7F). Position 0x1B is the escape; it never
# stands for itself, so the table holds a placeholder that no text maps back to it.
_GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
assert len(_GSM_BASIC) == 0x80

# GSM 03.38 §6.2.1.1, the extension table: escape 0x1B followed by one of these codes.
_GSM_EXTENSION = {
    0x0A: "\f",  # page break (form feed)
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}

_GSM_ENCODE: dict[str, bytes] = {
    ch: bytes([code]) for code, ch in enumerate(_GSM_BASIC) if code != GSM_ESCAPE
}
_GSM_ENCODE.update({ch: bytes([GSM_ESCAPE, code]) for code, ch in _GSM_EXTENSION.items()})

#: Highest value of an unpacked septet.
_SEPTET_MAX = 0x7F


def gsm_decode(octets: bytes) -> str:
    """Unpacked GSM 03.38 septets (one per octet) to text.

    An octet above 0x7F cannot be a septet: the ESME almost certainly sent Latin-1 or
    UTF-8 labelled data_coding 0, so we refuse it (the fix is system_type ``ISO`` or the
    account's ``iso_default``) rather than send mangled text.

    Escapes follow GSM 03.38 §6.2.1.1: an escape followed by a code the extension table
    does not define is shown as the main-table character of that code ("the MS shall
    display … the character shown in the main GSM 7 bit default alphabet table"); escape
    followed by escape, and an escape that ends the message, are shown as a space (the
    code is "reserved for the extension to another extension table … displayed as a
    space"). Being lenient here matches what handsets do and loses nothing.
    """
    if GSM_ESCAPE not in octets and (not octets or max(octets) <= _SEPTET_MAX):
        # No escapes, every octet a septet (nearly every message): one table lookup per
        # character in C instead of this loop (~8 µs for 40 characters).
        return octets.decode("latin-1").translate(_GSM_BASIC)
    out: list[str] = []
    i = 0
    n = len(octets)
    while i < n:
        code = octets[i]
        if code > _SEPTET_MAX:
            msg = f"octet 0x{code:02X} at {i} is not a GSM 03.38 septet"
            raise InvalidDataCoding(msg)
        if code != GSM_ESCAPE:
            out.append(_GSM_BASIC[code])
            i += 1
            continue
        if i + 1 >= n:
            out.append(" ")
            break
        ext = octets[i + 1]
        if ext > _SEPTET_MAX:
            msg = f"octet 0x{ext:02X} at {i + 1} is not a GSM 03.38 septet"
            raise InvalidDataCoding(msg)
        if ext == GSM_ESCAPE:
            out.append(" ")
        else:
            out.append(_GSM_EXTENSION.get(ext, _GSM_BASIC[ext]))
        i += 2
    return "".join(out)


def gsm_encode(text: str) -> bytes:
    """Text to unpacked GSM 03.38 septets; extension characters become two octets.

    Raises :class:`UnencodableText` for a character outside the default alphabet and its
    extension table — no silent substitution (``ç`` is not ``Ç``).
    """
    try:
        return b"".join(_GSM_ENCODE[ch] for ch in text)
    except KeyError as exc:
        msg = f"{exc.args[0]!r} is not in the GSM 03.38 default alphabet"
        raise UnencodableText(msg) from None


def gsm_encodable(text: str) -> bool:
    """True when every character of ``text`` is in the GSM 03.38 alphabet or extension."""
    return all(ch in _GSM_ENCODE for ch in text)


# --- data_coding -------------------------------------------------------------------------


class Alphabet(StrEnum):
    """How the octets of a short message are to be read."""

    GSM7 = "gsm7"  # unpacked septets (or Latin-1 for ISO binds)
    ASCII = "ascii"  # IA5
    LATIN1 = "latin1"
    OCTET = "octet"  # 8-bit: Latin-1 text here, or binary
    UCS2 = "ucs2"  # UTF-16BE


@dataclass(frozen=True, slots=True)
class Coding:
    """What a data_coding value says: its alphabet and, if meaningful, its message class.

    ``message_class`` is None when the value carries no class (0-8, or a 0x1x group
    with bit 4 clear). Class 0 is the "immediate display" flash SMS (GSM 03.38 §4).
    """

    data_coding: int
    alphabet: Alphabet
    message_class: int | None = None

    @property
    def flash(self) -> bool:
        return self.message_class == 0


_SIMPLE_CODINGS = {
    DataCoding.DEFAULT: Alphabet.GSM7,
    DataCoding.IA5: Alphabet.ASCII,
    DataCoding.BINARY_2: Alphabet.OCTET,
    DataCoding.LATIN1: Alphabet.LATIN1,
    DataCoding.BINARY: Alphabet.OCTET,
    DataCoding.UCS2: Alphabet.UCS2,
}

# GSM 03.38 §4 "General Data Coding indication", coding group 00xx: 0x00-0x3F. We take
# only 0x10-0x1F from it (0x00-0x0F are SMPP's own values, §5.2.19) and refuse
# 0x20-0x3F: bit 5 set means compressed text, which no peer we know produces.
_GENERAL_GROUP_LOW = 0x10
_GENERAL_GROUP_HIGH = 0x1F
_GENERAL_COMPRESSED = 0x20
_GENERAL_CLASS_MEANINGFUL = 0x10
_GENERAL_ALPHABET_SHIFT = 2
_GENERAL_ALPHABETS = {0b00: Alphabet.GSM7, 0b01: Alphabet.OCTET, 0b10: Alphabet.UCS2}
# GSM 03.38 §4 "Data coding/message class", group 1111: bit 3 reserved (0), bit 2
# alphabet (0 GSM7, 1 8-bit), bits 1-0 class.
_CLASS_GROUP = 0xF0
_CLASS_GROUP_MASK = 0xF0
_CLASS_GROUP_8BIT = 0x04
_CLASS_BITS = 0x03


def parse_data_coding(data_coding: int) -> Coding:
    """The alphabet and message class of ``data_coding``, or :class:`InvalidDataCoding`.

    SMPP 3.4 §5.2.19 marks 0x0F-0xBF reserved, but ESMEs send GSM 03.38 §4 coding-group
    values there (Kannel's ``dcs_to_fields`` decodes them the same way), so we accept
    0x10-0x1F and 0xF0-0xFF. Refused: 0x05-0x07 and 0x09-0x0E (JIS, ISO-8859-5/8,
    pictograms, Kanji, KS C 5601 — no provider takes them), 0x0F and 0x20-0xEF (reserved,
    compressed, message-waiting groups whose "text" is not for the subscriber), and the
    0x1x group's reserved alphabet 11.
    """
    known = _PARSED.get(data_coding)
    if known is not None:
        return known
    coding = _parse_data_coding(data_coding)
    if 0 <= data_coding <= 0xFF:
        _PARSED[data_coding] = coding  # at most 256 entries; Coding is immutable
    return coding


#: data_coding values parsed before (every submit_sm asks; an IntEnum lookup each time
#: was ~1 µs of the submit path)
_PARSED: dict[int, Coding] = {}


def _parse_data_coding(data_coding: int) -> Coding:
    if data_coding in _SIMPLE_CODINGS:
        return Coding(data_coding, _SIMPLE_CODINGS[DataCoding(data_coding)])
    if _GENERAL_GROUP_LOW <= data_coding <= _GENERAL_GROUP_HIGH:
        bits = (data_coding >> _GENERAL_ALPHABET_SHIFT) & 0b11
        alphabet = _GENERAL_ALPHABETS.get(bits)
        if alphabet is None:
            msg = f"data_coding 0x{data_coding:02X}: reserved alphabet (GSM 03.38 §4)"
            raise InvalidDataCoding(msg)
        klass = data_coding & _CLASS_BITS if data_coding & _GENERAL_CLASS_MEANINGFUL else None
        return Coding(data_coding, alphabet, klass)
    if data_coding & _CLASS_GROUP_MASK == _CLASS_GROUP:
        alphabet = Alphabet.OCTET if data_coding & _CLASS_GROUP_8BIT else Alphabet.GSM7
        return Coding(data_coding, alphabet, data_coding & _CLASS_BITS)
    if data_coding & _GENERAL_COMPRESSED and data_coding < _CLASS_GROUP:
        msg = f"data_coding 0x{data_coding:02X}: compressed or reserved coding group"
        raise InvalidDataCoding(msg)
    msg = f"data_coding 0x{data_coding:02X} is not supported"
    raise InvalidDataCoding(msg)


# Not frozen, to be treated as immutable: made for every message (see message.Address).
@dataclass(slots=True, unsafe_hash=True)
class Decoded:
    """A decoded payload: exactly one of ``text`` and ``binary`` is set."""

    coding: Coding
    text: str | None = None
    binary: bytes | None = None

    @property
    def is_binary(self) -> bool:
        return self.binary is not None


def decode(
    payload: bytes, data_coding: int, *, iso: bool = False, binary: bool = False
) -> Decoded:
    """Decode a whole (already reassembled, UDH-stripped) payload.

    ``iso``: read GSM 7-bit values as ISO-8859-1 — the bind's system_type is ``ISO`` or
    the account's ``iso_default`` is on. It applies to every GSM 7-bit value (0, 0x10-
    0x13, 0xF0-0xF3): an ESME that writes Latin-1 for "default alphabet" does so for
    flash messages too.

    ``binary``: the message is addressed to an application port (GSM 03.40 §9.2.3.24.3/4
    port IE, or SMPP's destination_port TLV). For an 8-bit alphabet the octets are then
    kept as bytes; text alphabets ignore the hint (their octets are text by definition).

    Raises :class:`InvalidDataCoding` for an unsupported value or undecodable octets.
    """
    coding = parse_data_coding(data_coding)
    alphabet = coding.alphabet
    if alphabet is Alphabet.OCTET and binary:
        return Decoded(coding, binary=bytes(payload))
    if alphabet is Alphabet.GSM7:
        text = payload.decode("latin-1") if iso else gsm_decode(payload)
    elif alphabet is Alphabet.ASCII:
        text = _strict(payload, "ascii", "IA5")
    elif alphabet is Alphabet.UCS2:
        # Python's strict UTF-16 decoder refuses an odd length and a lone surrogate,
        # and joins a surrogate pair into one code point — exactly the rule we want.
        text = _strict(payload, "utf-16-be", "UCS2/UTF-16BE")
    else:  # LATIN1, and OCTET as Latin-1 text ("coding 1 × 4" of the SMS Center API)
        text = payload.decode("latin-1")
    return Decoded(coding, text=text)


def _strict(payload: bytes, codec: str, label: str) -> str:
    try:
        return payload.decode(codec)
    except UnicodeDecodeError as exc:
        msg = f"not valid {label}: {exc.reason} at octet {exc.start}"
        raise InvalidDataCoding(msg) from None


def encode_text(text: str, data_coding: int, *, iso: bool = False) -> bytes:
    """Text to the octets of ``data_coding`` — the inverse of :func:`decode` for text.

    Used for receipt texts, by ``smppbridge send`` and by tests. Raises
    :class:`UnencodableText` when the alphabet cannot hold the text, and
    :class:`InvalidDataCoding` for a value :func:`parse_data_coding` refuses.
    """
    alphabet = parse_data_coding(data_coding).alphabet
    if alphabet is Alphabet.GSM7 and not iso:
        return gsm_encode(text)
    codec = {
        Alphabet.GSM7: "latin-1",
        Alphabet.ASCII: "ascii",
        Alphabet.LATIN1: "latin-1",
        Alphabet.OCTET: "latin-1",
        Alphabet.UCS2: "utf-16-be",
    }[alphabet]
    try:
        return text.encode(codec)
    except UnicodeEncodeError as exc:
        msg = f"{exc.object[exc.start:exc.end]!r} cannot be encoded as {alphabet.value}"
        raise UnencodableText(msg) from None


def choose_data_coding(text: str) -> int:
    """The data_coding to send ``text`` with: GSM 03.38 (0) if it fits, else UCS2 (8).

    GSM 7-bit gives 160 characters per SMS against 70 for UCS2, so it is preferred
    whenever every character is in the default alphabet or its extension table.
    """
    return DataCoding.DEFAULT if gsm_encodable(text) else DataCoding.UCS2
