"""mysmpp XML API: send and state.php
(the provider's XML API documents; docs/providers.md).

One request carries a whole batch: messages with the same message-level fields (type,
sender, text, Viber fields) share one ``<message>`` with one ``<abonent>`` per
recipient. Every abonent gets ``number_sms`` (its number within the document, how the
response's ``information`` elements refer back to it) and ``client_id_sms`` = our
message id, so a request resent after a timeout is never sent twice. ``time_send`` and
``validity_period`` come from the message's schedule and expiry, in the provider's time
zone (``timezone``, default Europe/Moscow).

Kinds: sms (``type="sms"``, flash ``type="flashsms"``), ping (``type="silence"``), viber
(``type_send_1="viber"`` with ``sender_viber``, ``text_viber``, ``button_viber``,
``action_viber``, ``image_viber``; with fallback text ``type_send_2="sms"`` plus
``sender``/``text``).
"""

from __future__ import annotations

import json
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import httpx

from smppbridge.core.errors import ProviderRejected, ProviderUnavailable
from smppbridge.core.message import OutboundMessage
from smppbridge.core.outcomes import Err, SendOutcome, StatusUpdate
from smppbridge.providers import xmlsafe
from smppbridge.providers.base import HttpProvider, combine_channels, raise_for_http_status
from smppbridge.smpp.receipts import Stat
from smppbridge.text.content import Kind

if TYPE_CHECKING:
    from smppbridge.core.provider_settings import ProviderSettings
    from smppbridge.http.request import HttpRequest

__all__ = [
    "CONTENT_TYPE",
    "MYSMPP_ERRORS",
    "MYSMPP_STATES",
    "MessageHead",
    "MysmppXmlProvider",
    "abonent_fields",
    "build_send",
    "build_state",
    "message_head",
    "mysmpp_error",
    "mysmpp_state",
    "parse_send_response",
    "parse_states",
    "parse_webhook_body",
]

#: The spec's Content-type, "text/xml; charset=utf-8;".
CONTENT_TYPE = "text/xml; charset=utf-8;"
TIME_SEND_FORMAT = "%Y-%m-%d %H:%M"
VALIDITY_FORMAT = "%Y-%m-%d %H:%M:%S"
_HTTP_OK = 200
_HTTP_BAD_REQUEST = 400


#: mysmpp ``state`` values (its state.php documentation; docs/providers.md).
MYSMPP_STATES: dict[str, tuple[Stat, Err]] = {
    "send": (Stat.ENROUTE, Err.OK),
    "deliver": (Stat.DELIVRD, Err.OK),
    "read": (Stat.DELIVRD, Err.OK),
    "not_deliver": (Stat.UNDELIV, Err.UNDELIVERABLE),
    "expired": (Stat.EXPIRED, Err.EXPIRED),
    "partly_deliver": (Stat.ENROUTE, Err.PARTLY_DELIVERED),
}

#: mysmpp send error texts (the XML send API's ``information``, the JSON one's
#: ``error``), matched case-insensitively as prefixes, most specific first.
MYSMPP_ERRORS: tuple[tuple[str, Err], ...] = (
    ("phone number is on the stop list", Err.STOP_LIST),
    ("phone number must be less than", Err.NUMBER_INVALID),
    ("specify phone number", Err.NUMBER_INVALID),
    ("this destination is closed", Err.DESTINATION_CLOSED),
    ("sms text rejected by moderator", Err.MODERATION),
    ("the sender has not been moderated", Err.SENDER_INVALID),
    ("there is no such sender", Err.SENDER_INVALID),
    ("the sender must not exceed", Err.SENDER_INVALID),
    ("no sender", Err.SENDER_INVALID),
    ("no message text", Err.TEXT_INVALID),
    ("no link", Err.CONTENT_INVALID),
    ("provide the", Err.CONTENT_INVALID),  # "... contact name ... for a business card"
    ("we have run out of sms", Err.OUT_OF_FUNDS),
    ("out of sms", Err.OUT_OF_FUNDS),
    ("account blocked", Err.ACCOUNT_BLOCKED),
    ("your account is locked", Err.ACCOUNT_BLOCKED),
    ("incorrect login or password", Err.ACCOUNT_BLOCKED),
    ("incorrect xml document format", Err.REQUEST_INVALID),
    ("incorrect json document format", Err.REQUEST_INVALID),
    ("post data is missing", Err.REQUEST_INVALID),
)

def mysmpp_state(state: str) -> tuple[Stat, Err]:
    """A mysmpp ``state`` → (stat, err); an unknown word keeps the message ENROUTE."""
    return MYSMPP_STATES.get(state.strip().lower(), (Stat.ENROUTE, Err.OK))


def mysmpp_error(text: str) -> Err:
    """A mysmpp error text → err; unknown texts are 302."""
    low = text.strip().lower()
    for prefix, err in MYSMPP_ERRORS:
        if low.startswith(prefix):
            return err
    return Err.REJECTED_OTHER


@dataclass(frozen=True, slots=True)
class MessageHead:
    """The message-level fields; messages with equal heads share one ``<message>``."""

    type_send_1: str
    type_send_2: str = ""
    type: str = ""
    sender_viber: str = ""
    text_viber: str = ""
    button_viber: str = ""
    action_viber: str = ""
    image_viber: str = ""
    sender: str = ""
    text: str = ""

    #: element children in the order of the spec's example
    ELEMENTS = ("sender_viber", "text_viber", "button_viber", "action_viber", "image_viber",
                "sender", "text")


def message_head(m: OutboundMessage, s: ProviderSettings) -> MessageHead:
    c = m.content
    sender = s.sender or m.source.addr
    if c.kind is Kind.VIBER:
        fallback = c.fallback_text is not None
        return MessageHead(
            type_send_1="viber",
            type_send_2="sms" if fallback else "",
            sender_viber=s.viber_sender or sender,
            text_viber=c.text,
            button_viber=c.button_caption or "",
            action_viber=c.button_url or "",
            image_viber=c.image_url or "",
            sender=sender if fallback else "",
            text=c.fallback_text or "",
        )
    # a regular SMS leaves ``type`` out (it defaults to sms), as the spec's second example
    sms_type = "silence" if c.kind is Kind.PING else ("flashsms" if c.flash else "")
    return MessageHead(type_send_1="sms", type=sms_type, sender=sender, text=c.text)


def _local(ts: float, tz: tzinfo, fmt: str) -> str:
    return datetime.fromtimestamp(ts, tz).strftime(fmt)


def abonent_fields(m: OutboundMessage, tz: tzinfo) -> list[tuple[str, str]]:
    """``phone``, ``client_id_sms``, ``time_send``, ``validity_period``(``_viber``) of one
    recipient, in the spec's order (``number_sms`` is added by the XML writer)."""
    fields = [("phone", m.destination.addr.lstrip("+")), ("client_id_sms", m.message_id)]
    if m.schedule_at is not None:
        fields.append(("time_send", _local(m.schedule_at, tz, TIME_SEND_FORMAT)))
    if m.expire_at is not None:
        validity = _local(m.expire_at, tz, VALIDITY_FORMAT)
        viber = m.content.kind is Kind.VIBER
        if not viber or m.content.fallback_text is not None:
            fields.append(("validity_period", validity))
        if viber:
            fields.append(("validity_period_viber", validity))
    return fields


def _security(s: ProviderSettings) -> list[str]:
    if s.token:
        return [f' <token value="{xmlsafe.attr(s.token)}" />']
    return [f' <login value="{xmlsafe.attr(s.login)}" />',
            f' <password value="{xmlsafe.attr(s.password)}" />']


def build_send(messages: Sequence[OutboundMessage], s: ProviderSettings,
               tz: tzinfo) -> tuple[bytes, dict[str, int]]:
    """The send document, and ``number_sms`` → index into ``messages``."""
    groups: dict[MessageHead, list[int]] = {}
    for i, m in enumerate(messages):
        groups.setdefault(message_head(m, s), []).append(i)
    out = ['<?xml version="1.0" encoding="utf-8" ?>', "<request>"]
    numbers: dict[str, int] = {}
    for head, indexes in groups.items():
        attrs = f' type_send_1="{head.type_send_1}"'
        if head.type_send_2:
            attrs += f' type_send_2="{head.type_send_2}"'
        if head.type:
            attrs += f' type="{head.type}"'
        out.append(f" <message{attrs}>")
        for tag in MessageHead.ELEMENTS:
            value = getattr(head, tag)
            if value:
                out.append(f" <{tag}>{xmlsafe.text(value)}</{tag}>")
        for i in indexes:
            number = str(len(numbers) + 1)
            numbers[number] = i
            fields = abonent_fields(messages[i], tz)
            fields.insert(1, ("number_sms", number))
            attrs = "".join(f' {k}="{xmlsafe.attr(v)}"' for k, v in fields)
            out.append(f" <abonent{attrs} />")
        out.append(" </message>")
    out += [" <security>", *(" " + line for line in _security(s)), " </security>", "</request>"]
    return "\n".join(out).encode(), numbers


def build_state(ids: Sequence[str], s: ProviderSettings) -> bytes:
    """The state.php document asking for ``ids``."""
    out = ['<?xml version="1.0" encoding="utf-8" ?>', "<request>", " <security>",
           *(" " + line for line in _security(s)), " </security>", " <get_state>"]
    out += [f"  <id_sms>{xmlsafe.text(i)}</id_sms>" for i in ids]
    out += [" </get_state>", "</request>"]
    return "\n".join(out).encode()


def parse_send_response(root: xmlsafe.Element, messages: Sequence[OutboundMessage],
                        numbers: dict[str, int]) -> list[SendOutcome]:
    """Per-message outcomes from the ``information`` elements. A message the response
    does not mention is retried (``client_id_sms`` makes that safe)."""
    found: dict[int, SendOutcome] = {}
    for info in root.findall("information"):
        index = numbers.get(info.attrs.get("number_sms", ""))
        if index is None:
            continue
        mid = messages[index].message_id
        id_sms = info.attrs.get("id_sms", "")
        if id_sms:  # the spec: on an error id_sms is not transmitted
            parts = info.attrs.get("parts", "1")
            found[index] = SendOutcome.accepted(mid, id_sms,
                                                int(parts) if parts.isdigit() else 1,
                                                info.text)
        else:
            found[index] = SendOutcome.rejected(mid, mysmpp_error(info.text), info.text)
    return [found.get(i) or SendOutcome.retry(m.message_id, "not in the provider's response")
            for i, m in enumerate(messages)]


@lru_cache(maxsize=4096)
def _parse_time(value: str, tz: tzinfo) -> float | None:
    # Cached: a status answer repeats the same few seconds, and strptime costs ~10 µs
    # (1 % of a node's CPU with mysmpp statuses at 2,500/s).
    try:
        return datetime.strptime(value, VALIDITY_FORMAT).replace(tzinfo=tz).timestamp()
    except ValueError:
        return None


def parse_states(root: xmlsafe.Element, tz: tzinfo) -> list[StatusUpdate]:
    """``state`` elements → updates. The element text is the last status; when it is
    empty the ``viber`` and ``sms`` attributes are combined (cascade order)."""
    updates = []
    for el in root.findall("state"):
        id_sms = el.attrs.get("id_sms", "")
        if not id_sms:
            continue
        if el.text:
            stat, err = mysmpp_state(el.text)
            detail = el.text
        else:
            channels = [el.attrs[c] for c in ("viber", "sms") if el.attrs.get(c)]
            stat, err = combine_channels([mysmpp_state(c) for c in channels])
            detail = "/".join(channels)
        when = el.attrs.get("time", "")
        updates.append(StatusUpdate(id_sms, stat, err, detail,
                                    _parse_time(when, tz) if when else None))
    return updates


def parse_webhook_body(request: HttpRequest, tz: tzinfo) -> list[StatusUpdate]:
    """A status pushed by mysmpp. The webhook page is not in our spec set, so this
    accepts the state.php response document, a JSON object or list of objects with
    ``id_sms`` and ``state`` (or ``status``), or form/query fields of the same names."""
    body = request.body.strip()
    ctype = request.headers.get("content-type", "")
    if body.startswith(b"<"):
        return parse_states(xmlsafe.parse(body), tz)
    items: list[dict[str, Any]]
    if body[:1] in (b"{", b"[") or "json" in ctype:
        data = json.loads(body)
        items = data if isinstance(data, list) else [data]
    else:
        fields = {**request.query, **parse_qs(body.decode("utf-8", "replace"))}
        items = [{k: v[0] for k, v in fields.items() if v}]
    updates = []
    for item in items:
        if not isinstance(item, dict) or not item.get("id_sms"):
            raise ValueError("expected id_sms and state")
        state = str(item.get("state") or item.get("status") or "")
        stat, err = mysmpp_state(state)
        when = str(item.get("time") or "")
        updates.append(StatusUpdate(str(item["id_sms"]), stat, err, state,
                                    _parse_time(when, tz) if when else None))
    return updates


class MysmppXmlProvider(HttpProvider):
    """The ``mysmpp-xml`` adapter."""

    supports_schedule = True

    def __init__(self, settings: ProviderSettings, *,
                 client: httpx.AsyncClient | None = None) -> None:
        super().__init__(settings, client=client)
        self.tz = zoneinfo.ZoneInfo(settings.timezone)

    async def send(self, messages: Sequence[OutboundMessage]) -> list[SendOutcome]:
        body, numbers = build_send(messages, self.settings, self.tz)
        response = await self.post(self.settings.url, body, CONTENT_TYPE)
        root = self._document(response)
        error = root.find("error")
        if error is not None and not root.findall("information"):
            raise ProviderRejected(f"{self.name}: {error.text}", err=mysmpp_error(error.text))
        return parse_send_response(root, messages, numbers)

    async def poll(self, provider_ids: Sequence[str]) -> list[StatusUpdate]:
        if not provider_ids:
            return []
        response = await self.post(self.settings.status_url,
                                   build_state(provider_ids, self.settings), CONTENT_TYPE)
        root = self._document(response)
        error = root.find("error")
        if error is not None:
            raise ProviderRejected(f"{self.name}: {error.text}", err=mysmpp_error(error.text))
        return parse_states(root, self.tz)

    def _document(self, response: httpx.Response) -> xmlsafe.Element:
        raise_for_http_status(self.name, response)
        code = response.status_code
        try:
            root = xmlsafe.parse(response.content)
        except xmlsafe.XmlError as exc:
            if code == _HTTP_OK:  # a proxy page or a cut-off body: resending is safe
                raise ProviderUnavailable(f"{self.name}: unreadable response: {exc}") from None
            raise ProviderRejected(f"{self.name}: HTTP {code}") from None
        if code not in (_HTTP_OK, _HTTP_BAD_REQUEST):
            raise ProviderRejected(f"{self.name}: HTTP {code}")
        return root

    def parse_webhook(self, request: HttpRequest) -> list[StatusUpdate]:
        return parse_webhook_body(request, self.tz)

    async def ready(self) -> bool:
        """state.php with no ids: ready when it answers without a login error."""
        try:
            response = await self.post(self.settings.status_url, build_state([], self.settings),
                                       CONTENT_TYPE)
            root = self._document(response)
        except (ProviderUnavailable, ProviderRejected):
            return False
        except Exception:  # timeouts and anything unexpected: not ready
            return False
        error = root.find("error")
        return error is None or mysmpp_error(error.text) is not Err.ACCOUNT_BLOCKED

