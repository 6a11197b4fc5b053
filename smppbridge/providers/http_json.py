"""``http-json``: smppbridge's own documented JSON API, for the kinds the provider specs
do not cover (mail, call, soc, mms, hlr) — or any kind, with ``kinds``.

Send: ``POST <url>`` with ``Authorization: Bearer <token>`` when a token is set::

    {"messages": [{"id": "<our message id>", "kind": "mail", "from": "<source>",
                   "to": "<destination digits>", "text": "...",
                   "subject": "...", "voice": "m4", "param": "...",
                   "button": {"caption": "...", "url": "..."}, "image": "...",
                   "fallback_text": "...", "flash": true,
                   "send_at": "2024-05-01T12:00:00Z", "expire_at": "...",
                   "callback": "<webhook_url>"}]}

(optional keys only when set). Answer ``200 {"results": [{"id", "status": "accepted",
"provider_id"} | {"id", "status": "rejected", "error": "<err name>", "message"}]}``;
``<err name>`` is an ``err`` table name in lower case (``stop_list``, ``out_of_funds``,
...). The service must treat ``id`` as idempotency key.

Status (webhook body, or ``POST <status_url> {"ids": [...]}`` answering
``{"statuses": [...]}``): ``{"provider_id", "id", "status": "accepted|enroute|delivered|
undeliverable|expired|rejected|deleted|unknown", "err": "001", "time":
"2024-05-01T12:00:05Z", "hlr": {"imsi", "msc", "mcc", "mnc", "cn", "net", "rcn",
"rnet"}}``; a webhook may carry one object, a list, or ``{"statuses": [...]}``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx

from smppbridge.core.errors import ProviderRejected, ProviderUnavailable
from smppbridge.core.message import OutboundMessage
from smppbridge.core.mo import InboundMo, mo_of_text
from smppbridge.core.outcomes import Err, HlrResult, SendOutcome, StatusUpdate
from smppbridge.providers.base import HttpProvider, map_httpx_errors, raise_for_http_status
from smppbridge.smpp.receipts import Stat

if TYPE_CHECKING:
    from smppbridge.core.provider_settings import ProviderSettings
    from smppbridge.http.request import HttpRequest

__all__ = ["STATUS_WORDS", "HttpJsonProvider", "build_message", "parse_status"]

STATUS_WORDS: dict[str, Stat] = {
    "accepted": Stat.ACCEPTD,
    "enroute": Stat.ENROUTE,
    "delivered": Stat.DELIVRD,
    "undeliverable": Stat.UNDELIV,
    "expired": Stat.EXPIRED,
    "rejected": Stat.REJECTD,
    "deleted": Stat.DELETED,
    "unknown": Stat.UNKNOWN,
}
_HLR_FIELDS = ("imsi", "msc", "mcc", "mnc", "cn", "net", "rcn", "rnet")
_HTTP_OK = 200


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _err(value: Any, default: Err) -> Err:
    """An ``err`` given as name (``stop_list``) or 3-digit number."""
    if value is None or value == "":
        return default
    text = str(value).strip()
    if text.isdigit():
        try:
            return Err(int(text))
        except ValueError:
            return default
    return Err.__members__.get(text.upper(), default)


def build_message(m: OutboundMessage, s: ProviderSettings) -> dict[str, Any]:
    c = m.content
    out: dict[str, Any] = {"id": m.message_id, "kind": c.kind.value,
                           "from": s.sender or m.source.addr,
                           "to": m.destination.addr.lstrip("+"), "text": c.text}
    for key, value in (("subject", c.subject), ("voice", c.voice), ("param", c.param),
                       ("image", c.image_url), ("fallback_text", c.fallback_text)):
        if value is not None:
            out[key] = value
    if c.button_caption and c.button_url:
        out["button"] = {"caption": c.button_caption, "url": c.button_url}
    if c.flash:
        out["flash"] = True
    if m.schedule_at is not None:
        out["send_at"] = _iso(m.schedule_at)
    if m.expire_at is not None:
        out["expire_at"] = _iso(m.expire_at)
    if s.webhook_url:
        out["callback"] = s.webhook_url
    return out


def parse_mo_webhook(provider: str, body: bytes, now: float) -> list[InboundMo]:
    """``POST /webhooks/<provider>/mo``: one MO ``{"from": ..., "to": ..., "text": ...,
    "received_at": ISO 8601 (optional)}``, a list of them, or ``{"messages": [...]}``
    (docs/providers.md, *The http-json API*). The text is kept as GSM 7-bit when it
    fits, else UCS2 (its deliver_sm's data_coding). Raises ValueError for a body that
    is not that."""
    data = json.loads(body)
    if isinstance(data, dict) and isinstance(data.get("messages"), list):
        data = data["messages"]
    out = []
    for item in data if isinstance(data, list) else [data]:
        if not isinstance(item, dict):
            raise ValueError("an MO must be a JSON object")
        source, dest, text = item.get("from"), item.get("to"), item.get("text", "")
        if not (isinstance(source, str) and source and isinstance(dest, str) and dest):
            raise ValueError("an MO needs from and to (strings)")
        if not isinstance(text, str):
            raise ValueError("text must be a string")
        at = now
        if isinstance(item.get("received_at"), str):
            try:
                at = datetime.fromisoformat(item["received_at"].replace("Z", "+00:00")
                                            ).timestamp()
            except ValueError:
                raise ValueError("received_at must be an ISO 8601 date") from None
        out.append(mo_of_text(provider, source, dest, text, at))
    return out


def parse_status(item: Any) -> StatusUpdate:
    """One status object → update; raises ValueError."""
    if not isinstance(item, dict) or not item.get("provider_id") or not item.get("status"):
        raise ValueError("a status needs provider_id and status")
    word = str(item["status"]).strip()
    stat = STATUS_WORDS.get(word.lower()) or Stat.__members__.get(word.upper())
    if stat is None:
        raise ValueError(f"unknown status {word!r}")
    default_err = {Stat.UNDELIV: Err.UNDELIVERABLE, Stat.EXPIRED: Err.EXPIRED,
                   Stat.REJECTD: Err.REJECTED_OTHER}.get(stat, Err.OK)
    done_at = None
    if item.get("time"):
        try:
            done_at = datetime.fromisoformat(str(item["time"]).replace("Z", "+00:00")).timestamp()
        except ValueError:
            done_at = None
    hlr = None
    if isinstance(item.get("hlr"), dict):
        hlr = HlrResult(**{k: str(item["hlr"].get(k) or "") for k in _HLR_FIELDS})
    return StatusUpdate(str(item["provider_id"]), stat, _err(item.get("err"), default_err),
                        word, done_at, str(item.get("id") or ""), hlr)


class HttpJsonProvider(HttpProvider):
    """The ``http-json`` adapter."""

    supports_schedule = True

    def __init__(self, settings: ProviderSettings, *,
                 client: httpx.AsyncClient | None = None) -> None:
        super().__init__(settings, client=client)
        self._content_type = "application/json"

    async def _call(self, url: str, doc: Any) -> dict[str, Any]:
        body = json.dumps(doc, ensure_ascii=False).encode()
        headers = {}
        if self.settings.token:
            headers["Authorization"] = f"Bearer {self.settings.token}"
        response = await self.post(url, body, self._content_type, headers)
        raise_for_http_status(self.name, response)
        try:
            data = response.json()
            if not isinstance(data, dict):
                raise TypeError("not an object")
        except (ValueError, TypeError):
            if response.status_code == _HTTP_OK:
                raise ProviderUnavailable(f"{self.name}: unreadable response") from None
            raise ProviderRejected(f"{self.name}: HTTP {response.status_code}") from None
        if response.status_code != _HTTP_OK:
            raise ProviderRejected(f"{self.name}: HTTP {response.status_code} "
                                   f"{data.get('error', '')}",
                                   err=_err(data.get("error"), Err.REQUEST_INVALID))
        return data

    async def send(self, messages: Sequence[OutboundMessage]) -> list[SendOutcome]:
        data = await self._call(self.settings.url, {
            "messages": [build_message(m, self.settings) for m in messages]})
        results = data.get("results")
        by_id = {str(r.get("id")): r for r in results if isinstance(r, dict)} \
            if isinstance(results, list) else {}
        out = []
        for m in messages:
            r = by_id.get(m.message_id)
            if r is None:
                out.append(SendOutcome.retry(m.message_id, "not in the provider's response"))
            elif r.get("status") == "accepted" and r.get("provider_id"):
                out.append(SendOutcome.accepted(m.message_id, str(r["provider_id"])))
            else:
                detail = str(r.get("message") or r.get("error") or "rejected")
                out.append(SendOutcome.rejected(m.message_id,
                                                _err(r.get("error"), Err.REJECTED_OTHER),
                                                detail))
        return out

    async def poll(self, provider_ids: Sequence[str]) -> list[StatusUpdate]:
        if not self.settings.status_url or not provider_ids:
            return []
        data = await self._call(self.settings.status_url, {"ids": list(provider_ids)})
        statuses = data.get("statuses")
        return [parse_status(s) for s in statuses] if isinstance(statuses, list) else []

    def parse_webhook(self, request: HttpRequest) -> list[StatusUpdate]:
        data = json.loads(request.body)
        if isinstance(data, dict) and isinstance(data.get("statuses"), list):
            data = data["statuses"]
        return [parse_status(item) for item in (data if isinstance(data, list) else [data])]

    async def ready(self) -> bool:
        """No documented probe: ready while the base URL answers at all."""
        try:
            with map_httpx_errors(self.name):
                await self.client.head(self.settings.url)
        except Exception:  # timeouts, refusals, anything: not ready
            return False
        return True
