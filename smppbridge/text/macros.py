"""Text macros and comments: a decoded message text to one :class:`Content`.

Theory of operation
-------------------
The SMS Center SMPP API (docs/content.md, Where the rules come from) carries more than SMS in
submit_sm: the text may start with a macro naming another kind of message, and may end
with a comment for the sender's history. :func:`parse_content` applies, in order:

1. **Comment.** The first ``\\n~~~\\n`` ends the text; what follows is the comment,
   stored and never sent (for ``__CALL__`` it is also the call's ``param``). ``\\r\\n``
   line ends are accepted around the tildes, because Windows ESMEs send them.
2. **Macro.** Only at the very start of the text (leading spaces and tabs tolerated),
   spelled in capitals: ``__VIBER__:``, ``__MMS__:``, ``__MAIL__:``, ``__CALL__:``,
   ``__SOC__:`` take a text after the colon (spaces after the colon are skipped);
   ``__HLR__`` and ``__PING__`` take nothing. A text that mentions a macro later, or
   starts with an unknown ``__WORD__``, is a plain SMS.
3. **Limits.** :class:`ContentLimits`, per kind.

What each macro requires (anything missing or malformed → :class:`InvalidMacro`,
``VENDOR_INVALID_MACRO``):

* ``__VIBER__: <text>`` then optional lines ``button:<caption>|<url>``,
  ``image:<url>``, ``sms:<fallback SMS text>`` (our syntax). The options start at the
  first line that begins with one of those keys; ``button`` and ``image`` take one line
  each, at most once; ``sms:`` must come last and runs to the end (it may span lines).
  Text or image is required (SMS-fly v2.04 allows text, image, text+button,
  text+button+image); a button needs text, a caption and a URL; URLs are http(s).
* ``__MMS__: <message>[\\nsubj:<subject>]`` — message required, subject optional (the
  MMS Subject header is optional).
* ``__MAIL__: <message>\\nsubj:<subject>`` — message and subject required.
* ``__CALL__: <message>[\\nvoice:<voice>]`` — message required; voice one of m, m2, m3,
  m4 (the default), w, w2, w3, w4.
* ``__SOC__: <message>`` — message required.
* ``__HLR__``, ``__PING__`` — nothing may follow but spaces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from smppbridge.smpp.constants import CommandStatus
from smppbridge.text.content import Content, Kind
from smppbridge.text.encoding import ContentError, MessageTooLong

__all__ = [
    "COMMENT_SEPARATOR",
    "DEFAULT_VOICE",
    "VOICES",
    "ContentLimits",
    "InvalidMacro",
    "parse_content",
    "split_comment",
]


class InvalidMacro(ContentError):
    """A macro with a missing or malformed part, or an unknown voice."""

    status = CommandStatus.VENDOR_INVALID_MACRO


#: Ends the text sent; the rest is the comment (SMS Center API, "Comments in SMS").
COMMENT_SEPARATOR = "\n~~~\n"
_COMMENT_RE = re.compile(r"\r?\n~~~\r?\n")

#: Voices of ``__CALL__`` (SMS Center API, "Sending a voice message").
VOICES = ("m", "m2", "m3", "m4", "w", "w2", "w3", "w4")
DEFAULT_VOICE = "m4"

_MACRO_RE = re.compile(r"[ \t]*__(VIBER|HLR|MMS|MAIL|CALL|SOC|PING)__(.*)\Z", re.DOTALL)
_NO_TEXT = frozenset({Kind.HLR, Kind.PING})
_HSPACE = " \t"
_SUBJ = "subj:"
_VOICE = "voice:"
_BUTTON = "button:"
_IMAGE = "image:"
_SMS = "sms:"
_VIBER_KEYS = (_BUTTON, _IMAGE, _SMS)
_URL_RE = re.compile(r"https?://\S+\Z")


@dataclass(frozen=True, slots=True)
class ContentLimits:
    """Longest text per kind, in characters (code points), and of the macro fields.

    Defaults: SMS 1530 (ten concatenated GSM 7-bit parts of 153, docs/smpp.md,
    Concatenated-part capacities);
    Viber 1000 and button caption 30 (SMS-fly API v2.04, ``text string[1-1000]``,
    ``caption string[30]``); MMS, MAIL 4000 and CALL, SOC 1000 (what fits the default
    32 reassembled parts with room to spare); subject 255 and URL 2048 (what mail
    headers and browsers handle everywhere).
    """

    sms: int = 1530
    viber: int = 1000
    mms: int = 4000
    mail: int = 4000
    call: int = 1000
    soc: int = 1000
    button_caption: int = 30
    subject: int = 255
    url: int = 2048

    def text_limit(self, kind: Kind) -> int:
        """The longest ``text`` of ``kind`` (HLR and PING carry none: 0)."""
        if kind is Kind.SMS:
            return self.sms  # every plain message asks: no dict built for it
        return {
            Kind.VIBER: self.viber,
            Kind.MMS: self.mms,
            Kind.MAIL: self.mail,
            Kind.CALL: self.call,
            Kind.SOC: self.soc,
        }.get(kind, 0)


def split_comment(text: str) -> tuple[str, str | None]:
    """``(text to send, comment)``; the comment is None when there is no separator."""
    parts = _COMMENT_RE.split(text, maxsplit=1)
    if len(parts) == 1:
        return text, None
    return parts[0], parts[1]


def parse_content(
    text: str, *, flash: bool = False, limits: ContentLimits | None = None
) -> Content:
    """The :class:`Content` of a whole decoded message text (see the module docstring).

    Raises :class:`InvalidMacro` or :class:`MessageTooLong`.
    """
    limits = limits or ContentLimits()
    body, comment = split_comment(text)
    match = _MACRO_RE.match(body)
    if match is None:
        content = Content(Kind.SMS, body, flash=flash, comment=comment)
    else:
        kind = Kind(match.group(1).lower())
        content = _parse_macro(kind, match.group(2), flash=flash, comment=comment)
    _check_limits(content, limits)
    return content


def _parse_macro(kind: Kind, rest: str, *, flash: bool, comment: str | None) -> Content:
    name = f"__{kind.value.upper()}__"
    if kind in _NO_TEXT:
        if rest.removeprefix(":").strip():
            msg = f"{name} takes no text"
            raise InvalidMacro(msg)
        return Content(kind, "", flash=flash, comment=comment)
    if not rest.startswith(":"):
        msg = f"{name} must be followed by ':' and the message"
        raise InvalidMacro(msg)
    body = rest[1:].lstrip(_HSPACE)
    if kind is Kind.VIBER:
        return _viber(body, flash=flash, comment=comment)
    if kind in (Kind.MMS, Kind.MAIL):
        message, subject = _trailer(body, _SUBJ)
        if kind is Kind.MAIL and not subject:
            msg = f"{name} needs a subject line 'subj:<subject>'"
            raise InvalidMacro(msg)
        _require_text(name, message)
        return Content(kind, message, subject=subject or None, flash=flash, comment=comment)
    if kind is Kind.CALL:
        message, voice = _trailer(body, _VOICE)
        voice = voice if voice is not None else DEFAULT_VOICE
        if voice not in VOICES:
            msg = f"{name}: unknown voice {voice!r} (one of {', '.join(VOICES)})"
            raise InvalidMacro(msg)
        _require_text(name, message)
        return Content(kind, message, voice=voice, param=comment, flash=flash, comment=comment)
    # SOC
    _require_text(name, body)
    return Content(kind, body, flash=flash, comment=comment)


def _trailer(body: str, key: str) -> tuple[str, str | None]:
    """Split off a last line ``key<value>``; the value must be that one line."""
    if body.startswith(key):
        head, value = "", body[len(key):]
    else:
        idx = body.rfind("\n" + key)
        if idx < 0:
            return body, None
        head, value = body[:idx], body[idx + 1 + len(key):]
    value = value.strip()
    if "\n" in value:
        msg = f"'{key}' must be the last line"
        raise InvalidMacro(msg)
    return head.removesuffix("\r"), value


def _require_text(name: str, text: str) -> None:
    if not text.strip():
        msg = f"{name} needs a message text"
        raise InvalidMacro(msg)


def _viber(body: str, *, flash: bool, comment: str | None) -> Content:
    lines = body.split("\n")
    first_option = next(
        (i for i, line in enumerate(lines) if line.startswith(_VIBER_KEYS)), len(lines)
    )
    text = "\n".join(lines[:first_option]).removesuffix("\r")
    options: dict[str, str] = {}
    i = first_option
    while i < len(lines):
        line = lines[i]
        key = next((k for k in _VIBER_KEYS if line.startswith(k)), None)
        if key is None:
            msg = f"__VIBER__: unexpected line {line[:40]!r} after the options"
            raise InvalidMacro(msg)
        if key in options:
            msg = f"__VIBER__: '{key}' given twice"
            raise InvalidMacro(msg)
        if key == _SMS:
            # The fallback text runs to the end of the message and may span lines.
            options[key] = "\n".join([line[len(key):], *lines[i + 1:]]).strip()
            break
        options[key] = line[len(key):].strip()
        i += 1
    caption = url = None
    if _BUTTON in options:
        caption, sep, url = (s.strip() for s in options[_BUTTON].partition("|"))
        if not sep or not caption or not url:
            msg = "__VIBER__: the button needs 'button:<caption>|<url>'"
            raise InvalidMacro(msg)
        _require_url(url, _BUTTON)
        _require_text("__VIBER__ with a button", text)
    image = options.get(_IMAGE)
    if image is not None:
        _require_url(image, _IMAGE)
    fallback = options.get(_SMS)
    if fallback is not None and not fallback:
        msg = "__VIBER__: 'sms:' needs the fallback SMS text"
        raise InvalidMacro(msg)
    if not text.strip() and image is None:
        msg = "__VIBER__ needs a message text or an image"
        raise InvalidMacro(msg)
    return Content(Kind.VIBER, text, button_caption=caption, button_url=url, image_url=image,
                   fallback_text=fallback, flash=flash, comment=comment)


def _require_url(url: str, key: str) -> None:
    if not _URL_RE.match(url):
        msg = f"__VIBER__: '{key}' needs an http(s) URL, got {url[:40]!r}"
        raise InvalidMacro(msg)


def _check_limits(content: Content, limits: ContentLimits) -> None:
    if content.kind is Kind.SMS and content.fallback_text is None \
            and content.subject is None and content.button_caption is None \
            and content.button_url is None and content.image_url is None:
        # A plain message (nearly all traffic): only its text has a limit.
        if len(content.text) > limits.sms:
            msg = f"sms text: {len(content.text)} characters, at most {limits.sms}"
            raise MessageTooLong(msg)
        return
    checks = [
        ("text", content.text, limits.text_limit(content.kind)),
        ("sms fallback", content.fallback_text, limits.sms),
        ("button caption", content.button_caption, limits.button_caption),
        ("button url", content.button_url, limits.url),
        ("image url", content.image_url, limits.url),
        ("subject", content.subject, limits.subject),
    ]
    for what, value, limit in checks:
        if value is not None and len(value) > limit:
            msg = f"{content.kind.value} {what}: {len(value)} characters, at most {limit}"
            raise MessageTooLong(msg)
