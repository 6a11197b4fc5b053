"""`smppbridge send` text encoding and splitting."""

from __future__ import annotations

from smppbridge.text.encoding import gsm_decode
from smppbridge.tools.send import encode_parts


def test_short_gsm_text_is_one_part() -> None:
    """Text in the GSM alphabet goes as data_coding 0 in one part without UDH."""
    coding, parts, udhi = encode_parts("hi €", ref=1)
    assert (coding, udhi) == (0, False)
    assert gsm_decode(parts[0]) == "hi €"


def test_non_gsm_text_is_ucs2() -> None:
    """Cyrillic goes as UCS2 (data_coding 8)."""
    coding, parts, _ = encode_parts("Привет", ref=1)
    assert coding == 8
    assert parts[0].decode("utf-16-be") == "Привет"


def test_long_ucs2_never_cuts_a_surrogate_pair() -> None:
    """A long emoji text is split with 8-bit UDH; no part ends inside a surrogate pair."""
    text = "я" + "😀" * 100
    coding, parts, udhi = encode_parts(text, ref=7)
    assert coding == 8
    assert udhi
    assert len(parts) > 1
    bodies = []
    for i, p in enumerate(parts):
        assert p[:6] == bytes([5, 0, 3, 7, len(parts), i + 1])
        assert len(p) <= 140
        bodies.append(p[6:])
        p[6:].decode("utf-16-be")  # each part decodes alone: nothing was cut
    assert b"".join(bodies).decode("utf-16-be") == text


def test_long_gsm_never_splits_an_escape() -> None:
    """A GSM text of euro signs is split so each 0x1B stays with its character."""
    coding, parts, _ = encode_parts("€" * 100, ref=1)
    assert coding == 0
    for p in parts:
        assert gsm_decode(p[6:]) == "€" * (len(p[6:]) // 2)
