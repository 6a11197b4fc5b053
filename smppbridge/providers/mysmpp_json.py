"""mysmpp JSON send API (docs/providers.md); statuses through the XML
state.php (``status_url``) or the webhook, as for mysmpp-xml.

The JSON page documents only the SMS fields (``type_send_1``, ``sender``, ``text``,
``phones`` with ``phone``, ``client_id_sms``, ``validity_period``). Flash, ping and Viber
use the XML API's field names (``type``, ``type_send_2``, ``sender_viber``,
``text_viber``, ``button_viber``, ``action_viber``, ``image_viber``, ``time_send``,
``validity_period_viber``): same platform, same names; the page's title lists them.

The response's ``information`` array answers the phones in request order: an entry
with ``id_sms`` was accepted, one with ``error`` was refused. ``{"error": ...}`` alone
refuses the whole request (credentials, format, account).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from smppbridge.core.errors import ProviderRejected, ProviderUnavailable
from smppbridge.core.message import OutboundMessage
from smppbridge.core.outcomes import SendOutcome
from smppbridge.providers.base import raise_for_http_status
from smppbridge.providers.mysmpp_xml import (
    MessageHead,
    MysmppXmlProvider,
    abonent_fields,
    message_head,
    mysmpp_error,
)

__all__ = ["CONTENT_TYPE", "MysmppJsonProvider", "build_send", "parse_send_response"]

#: The spec's Content-type, "text/json; charset=utf-8;".
CONTENT_TYPE = "text/json; charset=utf-8;"
_HTTP_OK = 200
_HTTP_BAD_REQUEST = 400


def build_send(messages: Sequence[OutboundMessage], provider: MysmppXmlProvider) -> tuple[
        bytes, list[int]]:
    """The request body, and for each entry of the response's ``information`` (phones
    in order) the index of its message."""
    s = provider.settings
    doc: dict[str, Any] = {"token": s.token} if s.token else {
        "login": s.login, "password": s.password}
    groups: dict[MessageHead, list[int]] = {}
    for i, m in enumerate(messages):
        groups.setdefault(message_head(m, s), []).append(i)
    order: list[int] = []
    out = []
    for head, indexes in groups.items():
        entry: dict[str, Any] = {"type_send_1": head.type_send_1}
        if head.type_send_2:
            entry["type_send_2"] = head.type_send_2
        if head.type:
            entry["type"] = head.type
        for tag in MessageHead.ELEMENTS:
            value = getattr(head, tag)
            if value:
                entry[tag] = value
        entry["phones"] = [dict(abonent_fields(messages[i], provider.tz)) for i in indexes]
        order += indexes
        out.append(entry)
    doc["message"] = out
    return json.dumps(doc, ensure_ascii=False).encode(), order


def parse_send_response(data: Any, messages: Sequence[OutboundMessage],
                        order: list[int]) -> list[SendOutcome]:
    found: dict[int, SendOutcome] = {}
    info = data.get("information") if isinstance(data, dict) else None
    for index, item in zip(order, info if isinstance(info, list) else [], strict=False):
        mid = messages[index].message_id
        if not isinstance(item, dict):
            continue
        if item.get("id_sms"):
            found[index] = SendOutcome.accepted(mid, str(item["id_sms"]),
                                                detail=str(item.get("state", "")))
        elif item.get("error"):
            text = str(item["error"])
            found[index] = SendOutcome.rejected(mid, mysmpp_error(text), text)
    return [found.get(i) or SendOutcome.retry(m.message_id, "not in the provider's response")
            for i, m in enumerate(messages)]


class MysmppJsonProvider(MysmppXmlProvider):
    """The ``mysmpp-json`` adapter (polling and webhooks shared with mysmpp-xml)."""

    async def send(self, messages: Sequence[OutboundMessage]) -> list[SendOutcome]:
        body, order = build_send(messages, self)
        response = await self.post(self.settings.url, body, CONTENT_TYPE)
        raise_for_http_status(self.name, response)
        code = response.status_code
        try:
            data = response.json()
        except ValueError:
            if code == _HTTP_OK:
                raise ProviderUnavailable(f"{self.name}: unreadable response") from None
            raise ProviderRejected(f"{self.name}: HTTP {code}") from None
        if code not in (_HTTP_OK, _HTTP_BAD_REQUEST):
            raise ProviderRejected(f"{self.name}: HTTP {code}")
        if isinstance(data, dict) and data.get("error") and not data.get("information"):
            text = str(data["error"])
            raise ProviderRejected(f"{self.name}: {text}", err=mysmpp_error(text))
        return parse_send_response(data, messages, order)
