"""Text macros and comments (SMS Center SMPP API; docs/content.md)."""

from __future__ import annotations

import pytest

from smppbridge.smpp.constants import CommandStatus
from smppbridge.text.content import Content, Kind
from smppbridge.text.encoding import MessageTooLong
from smppbridge.text.macros import (
    DEFAULT_VOICE,
    VOICES,
    ContentLimits,
    InvalidMacro,
    parse_content,
    split_comment,
)

# --- comments -----------------------------------------------------------------------------


def test_comment_is_split_off() -> None:
    """`\\n~~~\\n` ends the text sent; the rest is the comment, never sent."""
    c = parse_content("Your code is 1234\n~~~\norder 42")
    assert c == Content(Kind.SMS, "Your code is 1234", comment="order 42")


def test_only_the_first_separator_counts() -> None:
    """Everything after the first separator is comment, later separators included."""
    assert split_comment("a\n~~~\nb\n~~~\nc") == ("a", "b\n~~~\nc")


def test_crlf_separator_is_accepted() -> None:
    """Windows line ends around the tildes are a separator too."""
    assert split_comment("a\r\n~~~\r\nb") == ("a", "b")


@pytest.mark.parametrize("text", ["a ~~~ b", "a\n~~~", "~~~\nb", "a\n~~\nb", "a\n~~~~\nb"])
def test_near_separators_are_text(text: str) -> None:
    """Only the exact `\\n~~~\\n` separates; anything else stays in the text."""
    assert split_comment(text) == (text, None)


def test_empty_comment_is_kept_as_empty() -> None:
    """A separator at the very end gives an empty (not absent) comment."""
    assert parse_content("hi\n~~~\n").comment == ""


# --- plain SMS ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["say __VIBER__: hello", "hello __HLR__", "__viber__: lower case", "__SMS__: unknown",
     "_VIBER_: one underscore", ""],
)
def test_text_that_is_not_a_macro_is_sms(text: str) -> None:
    """A macro mentioned later, an unknown or lower-case name: plain SMS, text untouched."""
    assert parse_content(text) == Content(Kind.SMS, text)


def test_flash_is_carried() -> None:
    """The data_coding class 0 flag ends up in Content.flash."""
    assert parse_content("hi", flash=True).flash


# --- each macro ---------------------------------------------------------------------------


def test_viber_minimal() -> None:
    """`__VIBER__: <text>` → a Viber message."""
    assert parse_content("__VIBER__: Hello") == Content(Kind.VIBER, "Hello")


def test_leading_spaces_before_a_macro_are_tolerated() -> None:
    """Spaces/tabs before the macro name do not turn it into text."""
    assert parse_content("  \t__VIBER__: Hello").kind is Kind.VIBER


def test_viber_with_all_options() -> None:
    """button, image and sms fallback lines after the text (our syntax)."""
    c = parse_content(
        "__VIBER__: Sale!\nSecond line\nbutton:Open|https://ex.com/s?a=1\n"
        "image:https://ex.com/i.png\nsms:Sale! ex.com\nsee site\n~~~\ncampaign 7")
    assert c == Content(Kind.VIBER, "Sale!\nSecond line", button_caption="Open",
                        button_url="https://ex.com/s?a=1", image_url="https://ex.com/i.png",
                        fallback_text="Sale! ex.com\nsee site", comment="campaign 7")


def test_viber_image_only() -> None:
    """An image without text is a valid Viber message (SMS-fly v2.04 configurations)."""
    c = parse_content("__VIBER__: image:https://ex.com/i.png")
    assert c.kind is Kind.VIBER
    assert c.text == ""
    assert c.image_url == "https://ex.com/i.png"


def test_viber_options_in_any_order() -> None:
    """image before button is fine; sms: must be last."""
    c = parse_content("__VIBER__: t\nimage:http://a/b\nbutton:B|http://c/d")
    assert (c.image_url, c.button_caption, c.button_url) == ("http://a/b", "B", "http://c/d")


def test_hlr() -> None:
    """`__HLR__` → HLR lookup with no text."""
    assert parse_content("__HLR__") == Content(Kind.HLR, "")
    assert parse_content("__HLR__  ").kind is Kind.HLR


def test_ping() -> None:
    """`__PING__` → silent SMS, comment allowed."""
    assert parse_content("__PING__\n~~~\nc") == Content(Kind.PING, "", comment="c")


def test_mms() -> None:
    """`__MMS__: <message>\\nsubj:<subject>`."""
    c = parse_content("__MMS__: Look\nat this\nsubj:Photo")
    assert c == Content(Kind.MMS, "Look\nat this", subject="Photo")


def test_mms_subject_is_optional() -> None:
    """MMS without a subj line is accepted (the MMS Subject header is optional)."""
    assert parse_content("__MMS__: Look") == Content(Kind.MMS, "Look")


def test_mail() -> None:
    """`__MAIL__: <message>\\nsubj:<subject>`."""
    c = parse_content("__MAIL__: Dear client,\nhello.\nsubj:Invoice 7")
    assert c == Content(Kind.MAIL, "Dear client,\nhello.", subject="Invoice 7")


def test_call_default_voice_and_param() -> None:
    """`__CALL__: <message>`: voice defaults to m4; the comment is the call's param."""
    c = parse_content("__CALL__: Your code is 1 2 3\n~~~\nrepeat=2")
    assert c == Content(Kind.CALL, "Your code is 1 2 3", voice=DEFAULT_VOICE, param="repeat=2",
                        comment="repeat=2")
    assert DEFAULT_VOICE == "m4"


@pytest.mark.parametrize("voice", VOICES)
def test_call_every_voice(voice: str) -> None:
    """Each documented voice (m, m2, m3, m4, w, w2, w3, w4) is accepted."""
    assert parse_content(f"__CALL__: hi\nvoice:{voice}").voice == voice


def test_soc() -> None:
    """`__SOC__: <message>`."""
    assert parse_content("__SOC__: Hi there") == Content(Kind.SOC, "Hi there")


def test_crlf_macro_lines() -> None:
    """Windows line ends before subj:/voice: do not leak a \\r into the text."""
    c = parse_content("__MAIL__: body\r\nsubj:S\r\n")
    assert (c.text, c.subject) == ("body", "S")


# --- macro errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("__VIBER__ no colon", "colon required"),
        ("__VIBER__:", "empty text"),
        ("__VIBER__:   ", "blank text"),
        ("__VIBER__: \nbutton:Go|https://x.y", "button without text"),
        ("__VIBER__: t\nbutton:Go", "button without url"),
        ("__VIBER__: t\nbutton:|https://x.y", "button without caption"),
        ("__VIBER__: t\nbutton:Go|ftp://x.y", "button url not http(s)"),
        ("__VIBER__: t\nimage:not a url", "image not a url"),
        ("__VIBER__: t\nimage:http://a/b\nimage:http://a/c", "image twice"),
        ("__VIBER__: t\nimage:http://a/b\nmore text", "text after options"),
        ("__VIBER__: t\nsms:", "empty fallback"),
        ("__HLR__: something", "HLR takes no text"),
        ("__PING__ now", "PING takes no text"),
        ("__MMS__: \nsubj:x", "MMS without message"),
        ("__MMS__: m\nsubj:x\nmore", "subj not last"),
        ("__MAIL__: body", "MAIL without subject"),
        ("__MAIL__: body\nsubj:", "MAIL with empty subject"),
        ("__MAIL__: subj:x", "MAIL without message"),
        ("__CALL__: hi\nvoice:robot", "unknown voice"),
        ("__CALL__: hi\nvoice:", "empty voice"),
        ("__CALL__: hi\nvoice:M4", "voices are lower case"),
        ("__CALL__:", "CALL without message"),
        ("__SOC__:  ", "SOC without message"),
    ],
)
def test_invalid_macro(text: str, why: str) -> None:
    """A macro with a missing or malformed part → VENDOR_INVALID_MACRO."""
    with pytest.raises(InvalidMacro) as info:
        parse_content(text)
    assert info.value.status == CommandStatus.VENDOR_INVALID_MACRO, why


# --- limits -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "limits"),
    [
        ("x" * 11, ContentLimits(sms=10)),
        ("__VIBER__: " + "x" * 11, ContentLimits(viber=10)),
        ("__VIBER__: t\nbutton:" + "c" * 31 + "|http://u", ContentLimits()),
        ("__VIBER__: t\nsms:" + "x" * 11, ContentLimits(sms=10)),
        ("__MMS__: " + "x" * 11, ContentLimits(mms=10)),
        ("__MAIL__: m\nsubj:" + "s" * 11, ContentLimits(subject=10)),
        ("__MAIL__: " + "x" * 11 + "\nsubj:s", ContentLimits(mail=10)),
        ("__CALL__: " + "x" * 11, ContentLimits(call=10)),
        ("__SOC__: " + "x" * 11, ContentLimits(soc=10)),
        ("__VIBER__: image:http://" + "u" * 20, ContentLimits(url=20)),
    ],
)
def test_limits_per_kind(text: str, limits: ContentLimits) -> None:
    """Text or field longer than the kind's limit → VENDOR_MESSAGE_TOO_LONG."""
    with pytest.raises(MessageTooLong) as info:
        parse_content(text, limits=limits)
    assert info.value.status == CommandStatus.VENDOR_MESSAGE_TOO_LONG


def test_limit_is_inclusive_and_excludes_the_comment() -> None:
    """Exactly the limit is fine; the comment does not count toward it."""
    c = parse_content("x" * 10 + "\n~~~\n" + "c" * 100, limits=ContentLimits(sms=10))
    assert c.text == "x" * 10


def test_default_limits() -> None:
    """Documented defaults: SMS 1530, Viber 1000, button caption 30."""
    d = ContentLimits()
    assert (d.sms, d.viber, d.button_caption) == (1530, 1000, 30)
    assert d.text_limit(Kind.HLR) == 0
