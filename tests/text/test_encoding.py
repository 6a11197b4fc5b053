"""data_coding decoding and encoding (SMPP 3.4 §5.2.19, GSM 03.38)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smppbridge.smpp.constants import CommandStatus
from smppbridge.text.encoding import (
    Alphabet,
    ContentError,
    InvalidDataCoding,
    UnencodableText,
    choose_data_coding,
    decode,
    encode_text,
    gsm_decode,
    gsm_encodable,
    gsm_encode,
    parse_data_coding,
)

# Every character of the GSM 03.38 default alphabet (minus the escape) and its extension.
GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENDED = "€{}[]~^\\|\f"
SPECIALS = "€ { } [ ] ~ ^ \\ |"
CYRILLIC = "Привет, мир"
ARABIC = "مرحبا بالعالم"
EMOJI = "Hi 😀👍🏽"


# --- decoding, table per data_coding -----------------------------------------------------

DECODE_CASES = [
    # (data_coding, iso, payload, text)
    (0x00, False, bytes.fromhex("1b65201b28201b29201b3c201b3e201b3d201b14201b2f201b40"), SPECIALS),
    (0x00, False, b"Hello", "Hello"),
    (0x00, False, bytes([0x00, 0x01, 0x02, 0x03, 0x11, 0x1F]), "@£$¥_É"),
    (0x00, False, bytes([0x1B, 0x0A]), "\f"),
    (0x00, True, SPECIALS.replace("€", "").encode("latin-1"), SPECIALS.replace("€", "")),
    (0x00, True, "café".encode("latin-1"), "café"),
    (0x01, False, b"{[]}~^\\|", "{[]}~^\\|"),
    (0x03, False, "{[]}~^\\| ñ é ¤".encode("latin-1"), "{[]}~^\\| ñ é ¤"),
    (0x04, False, "{[]}~^\\| ñ".encode("latin-1"), "{[]}~^\\| ñ"),
    (0x02, False, b"plain", "plain"),
    (0x08, False, SPECIALS.encode("utf-16-be"), SPECIALS),
    (0x08, False, CYRILLIC.encode("utf-16-be"), CYRILLIC),
    (0x08, False, ARABIC.encode("utf-16-be"), ARABIC),
    (0x08, False, EMOJI.encode("utf-16-be"), EMOJI),
    (0x10, False, gsm_encode("Flash €"), "Flash €"),
    (0x11, False, b"class1", "class1"),
    (0x14, False, "8bit ñ".encode("latin-1"), "8bit ñ"),
    (0x18, False, CYRILLIC.encode("utf-16-be"), CYRILLIC),
    (0x1B, False, EMOJI.encode("utf-16-be"), EMOJI),
    (0x00, False, bytes([0x1B]), " "),
    (0xF0, False, gsm_encode("{flash}"), "{flash}"),
    (0xF1, False, b"ME", "ME"),
    (0xF5, False, "octet ö".encode("latin-1"), "octet ö"),
]


@pytest.mark.parametrize(("data_coding", "iso", "payload", "text"), DECODE_CASES)
def test_decode_table(data_coding: int, iso: bool, payload: bytes, text: str) -> None:
    """Each accepted data_coding decodes its alphabet, including € { } [ ] ~ ^ \\ |."""
    decoded = decode(payload, data_coding, iso=iso)
    assert decoded.text == text
    assert not decoded.is_binary


ENCODE_CASES = [
    (0x00, SPECIALS),
    (0x00, GSM_BASIC + GSM_EXTENDED),
    (0x01, "{[]}~^\\|"),
    (0x03, "{[]}~^\\| ñ"),
    (0x04, "{[]}~^\\| ñ"),
    (0x08, SPECIALS),
    (0x08, CYRILLIC),
    (0x08, ARABIC),
    (0x08, EMOJI),
    (0x10, "flash €"),
    (0x18, EMOJI),
    (0xF0, "[x]"),
]


@pytest.mark.parametrize(("data_coding", "text"), ENCODE_CASES)
def test_encode_then_decode_is_identity(data_coding: int, text: str) -> None:
    """encode_text is the inverse of decode for every text alphabet."""
    assert decode(encode_text(text, data_coding), data_coding).text == text


@pytest.mark.parametrize(
    ("data_coding", "text"),
    [(0x00, CYRILLIC), (0x00, EMOJI), (0x01, "é"), (0x03, CYRILLIC), (0x03, "€"),
     (0x04, ARABIC), (0x10, "ç")],
)
def test_encode_refuses_what_the_alphabet_cannot_hold(data_coding: int, text: str) -> None:
    """Encoders never substitute: a character outside the alphabet is an error."""
    with pytest.raises(UnencodableText) as info:
        encode_text(text, data_coding)
    assert info.value.status == CommandStatus.VENDOR_INVALID_DATA_CODING


def test_gsm_extension_characters_take_two_septets() -> None:
    """GSM 03.38 §6.2.1.1: € { } [ ] ~ ^ \\ | and form feed are escape + code."""
    assert gsm_encode("€") == b"\x1b\x65"
    assert gsm_encode("{}") == b"\x1b\x28\x1b\x29"
    assert gsm_encode("[~]") == b"\x1b\x3c\x1b\x3d\x1b\x3e"
    assert gsm_encode("^\\|") == b"\x1b\x14\x1b\x2f\x1b\x40"
    assert gsm_encode("\f") == b"\x1b\x0a"
    assert gsm_encode("@") == b"\x00"


def test_iso_flag_reads_gsm_codings_as_latin1() -> None:
    """system_type ISO: data_coding 0 (and the GSM 7-bit groups) carry ISO-8859-1."""
    payload = "Grüße {€?}".replace("€", "¤").encode("latin-1")
    assert decode(payload, 0x00, iso=True).text == "Grüße {¤?}"
    assert decode(payload, 0x10, iso=True).text == "Grüße {¤?}"
    assert encode_text("ñ{", 0x00, iso=True) == "ñ{".encode("latin-1")


# --- refusals -----------------------------------------------------------------------------

REFUSED_CODINGS = [0x05, 0x06, 0x07, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F,
                   0x1C, 0x1D, 0x1E, 0x1F,  # general group, reserved alphabet 11
                   0x20, 0x24, 0x28, 0x30, 0x3F,  # compressed
                   0x40, 0x7F, 0x80, 0xBF, 0xC0, 0xC8, 0xD0, 0xDF, 0xE0, 0xEF]


@pytest.mark.parametrize("data_coding", REFUSED_CODINGS)
def test_unsupported_data_coding_is_refused(data_coding: int) -> None:
    """Values outside docs/content.md's table → InvalidDataCoding with the vendor status."""
    with pytest.raises(InvalidDataCoding) as info:
        parse_data_coding(data_coding)
    assert info.value.status == CommandStatus.VENDOR_INVALID_DATA_CODING
    assert isinstance(info.value, ContentError)


@pytest.mark.parametrize(
    ("data_coding", "payload"),
    [
        (0x00, b"caf\xe9"),  # Latin-1 labelled GSM: 0xE9 is not a septet
        (0x00, b"\x1b\x80"),  # escape followed by a non-septet
        (0x01, b"caf\xe9"),  # IA5 is 7-bit
        (0x08, b"\x00a\x00"),  # odd length
        (0x08, b"\xd8\x3d"),  # lone high surrogate at the end
        (0x08, b"\xd8\x3d\x00a"),  # high surrogate followed by a normal character
        (0x08, b"\xde\x00\x00a"),  # lone low surrogate
        (0x18, b"\xdc\x00"),  # same rule in the general coding group
    ],
)
def test_undecodable_octets_are_refused(data_coding: int, payload: bytes) -> None:
    """Octets that are not text in the announced alphabet → VENDOR_INVALID_DATA_CODING."""
    with pytest.raises(InvalidDataCoding) as info:
        decode(payload, data_coding)
    assert info.value.status == CommandStatus.VENDOR_INVALID_DATA_CODING


def test_unmapped_escape_falls_back_to_the_main_table() -> None:
    """GSM 03.38 §6.2.1.1: escape + undefined code shows the main-table character;
    escape + escape and a trailing escape show a space."""
    assert gsm_decode(b"\x1b\x41") == "A"
    assert gsm_decode(b"a\x1b\x1bb") == "a b"
    assert gsm_decode(b"ab\x1b") == "ab "


# --- coding groups ------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("data_coding", "alphabet", "message_class"),
    [
        (0x00, Alphabet.GSM7, None),
        (0x01, Alphabet.ASCII, None),
        (0x02, Alphabet.OCTET, None),
        (0x03, Alphabet.LATIN1, None),
        (0x04, Alphabet.OCTET, None),
        (0x08, Alphabet.UCS2, None),
        (0x10, Alphabet.GSM7, 0),
        (0x11, Alphabet.GSM7, 1),
        (0x12, Alphabet.GSM7, 2),
        (0x13, Alphabet.GSM7, 3),
        (0x14, Alphabet.OCTET, 0),
        (0x17, Alphabet.OCTET, 3),
        (0x18, Alphabet.UCS2, 0),
        (0x1B, Alphabet.UCS2, 3),
        (0xF0, Alphabet.GSM7, 0),
        (0xF3, Alphabet.GSM7, 3),
        (0xF4, Alphabet.OCTET, 0),
        (0xF6, Alphabet.OCTET, 2),
        (0xF8, Alphabet.GSM7, 0),  # bit 3 is reserved; read as GSM 03.38 says, ignored
        (0xFF, Alphabet.OCTET, 3),
    ],
)
def test_coding_group_bits(data_coding: int, alphabet: Alphabet,
                           message_class: int | None) -> None:
    """GSM 03.38 §4: alphabet from bits 3-2 (0x1x) or bit 2 (0xFx), class from bits 1-0."""
    coding = parse_data_coding(data_coding)
    assert coding.alphabet is alphabet
    assert coding.message_class == message_class
    assert coding.flash == (message_class == 0)


def test_general_group_without_class_bit_has_no_class() -> None:
    """0x0x values carry no message class: the SMPP values 0-8 are never flash."""
    assert not parse_data_coding(0x00).flash
    assert parse_data_coding(0x08).message_class is None


# --- binary -------------------------------------------------------------------------------

@pytest.mark.parametrize("data_coding", [0x02, 0x04, 0x14, 0xF4, 0xF6])
def test_port_addressed_8bit_is_binary(data_coding: int) -> None:
    """An 8-bit payload addressed to an application port stays bytes, not text."""
    payload = bytes(range(256))
    decoded = decode(payload, data_coding, binary=True)
    assert decoded.is_binary
    assert decoded.binary == payload
    assert decoded.text is None


def test_binary_hint_is_ignored_for_text_alphabets() -> None:
    """GSM, IA5, Latin-1 and UCS2 octets are text whatever the UDH says."""
    assert decode(b"abc", 0x00, binary=True).text == "abc"
    assert decode(b"abc", 0x03, binary=True).text == "abc"
    assert decode("é".encode("utf-16-be"), 0x08, binary=True).text == "é"


# --- choosing a data_coding ---------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "data_coding"),
    [("Hello {world} €5", 0), (GSM_BASIC, 0), ("", 0), (CYRILLIC, 8), (EMOJI, 8),
     (ARABIC, 8), ("ça", 8)],
)
def test_choose_data_coding(text: str, data_coding: int) -> None:
    """GSM 03.38 when every character fits, UCS2 otherwise."""
    assert choose_data_coding(text) == data_coding
    assert gsm_encodable(text) == (data_coding == 0)


# --- properties ---------------------------------------------------------------------------

@given(st.text(alphabet=GSM_BASIC + GSM_EXTENDED))
def test_gsm_round_trip(text: str) -> None:
    """Any text of the GSM 03.38 alphabet and extension survives encode → decode."""
    encoded = gsm_encode(text)
    assert all(b <= 0x7F for b in encoded)
    assert gsm_decode(encoded) == text


@given(st.text())
def test_ucs2_round_trip_any_text(text: str) -> None:
    """Any Unicode text without lone surrogates survives UCS2 (UTF-16BE) both ways."""
    try:
        encoded = encode_text(text, 0x08)
    except UnencodableText:
        return  # lone surrogates in the generated str cannot be encoded
    assert decode(encoded, 0x08).text == text


@given(st.binary())
def test_decode_never_raises_anything_but_content_errors(payload: bytes) -> None:
    """Fuzz: any octets decode or raise InvalidDataCoding, for every accepted value."""
    for dc in (0x00, 0x01, 0x03, 0x04, 0x08, 0x10, 0x18, 0xF0):
        try:
            decoded = decode(payload, dc)
        except InvalidDataCoding:
            continue
        assert decoded.text is not None
