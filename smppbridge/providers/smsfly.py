"""SMS-fly REST API v2.04 (docs/providers.md, SMS-fly).

One recipient per ``SENDMESSAGE``, so a batch is sent as that many requests side by
side. ``channels`` is ``["sms"]``, ``["viber"]``, or ``["viber", "sms"]`` for a Viber
message with SMS fallback (the API's cascade). ``sms.flash`` is 1 for a flash SMS;
``ttl`` (minutes, 1..1440) comes from the message's validity, else ``default_ttl``.
Statuses by ``GETMESSAGESTATUS`` (one ``messageID`` per request); readiness by
``GETBALANCE`` (a positive balance).

HTTP codes (the spec's table): 400 is a refusal of this message (its ``error.code`` gives
the ``err``), 403 refuses our key (failover), 422 an unreadable body (ours: REJECTD 203),
500/502 are transient. SMS-fly has no client-side id: a request retried after a
timeout may be sent twice; ``retries = 0`` avoids that at the cost of failover.

The API has no scheduled sending, and the spec describes no webhook: ``parse_webhook``
accepts the ``GETMESSAGESTATUS`` response shape, or ``{"messageID", "status"}``.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx

from smppbridge.core.errors import ProviderError, ProviderRejected, ProviderUnavailable
from smppbridge.core.message import OutboundMessage
from smppbridge.core.outcomes import Balance, Err, SendOutcome, StatusUpdate
from smppbridge.providers.base import HttpProvider, combine_channels, raise_for_http_status
from smppbridge.smpp.receipts import Stat
from smppbridge.text.content import Kind

if TYPE_CHECKING:
    from smppbridge.core.provider_settings import ProviderSettings
    from smppbridge.http.request import HttpRequest

__all__ = ["CONTENT_TYPE", "SMSFLY_ERRORS", "SMSFLY_STATUSES", "SmsflyProvider", "build_send",
           "smsfly_error", "smsfly_status"]

CONTENT_TYPE = "application/json"
#: ttl takes the value from 1 to 1440 minutes (24 hours).
_TTL_MIN, _TTL_MAX = 1, 1440
_HTTP_OK, _HTTP_BAD_REQUEST, _HTTP_UNPROCESSABLE = 200, 400, 422
_CHANNEL_ORDER = ("viber", "sms")
_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


#: SMS-fly message statuses (the API's Message Status Table; docs/providers.md).
SMSFLY_STATUSES: dict[str, tuple[Stat, Err]] = {
    "ACCEPTD": (Stat.ACCEPTD, Err.OK),
    "ACCEPTED": (Stat.ACCEPTD, Err.OK),  # the send response example spells it so
    "PENDING": (Stat.ENROUTE, Err.OK),
    "INPROGRESS": (Stat.ENROUTE, Err.OK),
    "SENT": (Stat.ENROUTE, Err.OK),
    "MODERATION": (Stat.ENROUTE, Err.OK),
    "RESERVED": (Stat.ENROUTE, Err.OK),
    "DELIVRD": (Stat.DELIVRD, Err.OK),
    "VIEWED": (Stat.DELIVRD, Err.OK),
    "EXPIRED": (Stat.EXPIRED, Err.EXPIRED),
    "UNDELIV": (Stat.UNDELIV, Err.UNDELIVERABLE),
    "ERROR": (Stat.UNDELIV, Err.PROVIDER_ERROR),
    "REFUND": (Stat.UNDELIV, Err.REFUNDED),
    "STOPED": (Stat.REJECTD, Err.STOPPED),
    "INSUFFICIENTFUND": (Stat.REJECTD, Err.OUT_OF_FUNDS),
}

#: SMS-fly error codes (Table of error codes during request processing).
SMSFLY_ERRORS: dict[str, Err] = {
    "INVREQUEST": Err.REQUEST_INVALID,
    "INVACTION": Err.REQUEST_INVALID,
    "INVRECIPIENT": Err.NUMBER_INVALID,
    "INVTEXT": Err.TEXT_INVALID,
    "INVBUTTON": Err.CONTENT_INVALID,
    "INVIMAGEURL": Err.CONTENT_INVALID,
    "INVROUTE": Err.NO_ROUTE,
    "INVSOURCE": Err.SENDER_INVALID,
    "INVCHANNELS": Err.REQUEST_INVALID,
    "INVSMSMESSAGE": Err.TEXT_INVALID,
    "INVVIBERMESSAGE": Err.TEXT_INVALID,
    "INVMSGID": Err.REQUEST_INVALID,
    "FORBIDDEN": Err.ACCOUNT_BLOCKED,
}


def smsfly_status(status: str) -> tuple[Stat, Err]:
    """An SMS-fly status → (stat, err); an unknown word keeps the message ENROUTE."""
    return SMSFLY_STATUSES.get(status.strip().upper(), (Stat.ENROUTE, Err.OK))


def smsfly_error(code: str) -> Err:
    return SMSFLY_ERRORS.get(code.strip().upper(), Err.REJECTED_OTHER)


def _ttl(m: OutboundMessage, now: float, default: int) -> int:
    if m.expire_at is None:
        return default
    return max(_TTL_MIN, min(_TTL_MAX, math.ceil((m.expire_at - now) / 60)))


def build_send(m: OutboundMessage, s: ProviderSettings, now: float) -> dict[str, Any]:
    """The SENDMESSAGE document for one message."""
    c = m.content
    sender = s.sender or m.source.addr
    ttl = _ttl(m, now, s.default_ttl)
    data: dict[str, Any] = {"recipient": m.destination.addr.lstrip("+")}
    if c.kind is Kind.VIBER:
        data["channels"] = ["viber", "sms"] if c.fallback_text is not None else ["viber"]
        viber: dict[str, Any] = {"source": s.viber_sender or sender, "ttl": ttl}
        if c.text:
            viber["text"] = c.text
        if c.button_caption and c.button_url:
            viber["button"] = {"caption": c.button_caption, "url": c.button_url}
        if c.image_url:
            viber["image"] = c.image_url
        data["viber"] = viber
        if c.fallback_text is not None:
            data["sms"] = {"source": sender, "ttl": ttl, "text": c.fallback_text}
    else:
        data["channels"] = ["sms"]
        sms: dict[str, Any] = {"source": sender, "ttl": ttl}
        if c.flash:
            sms["flash"] = 1
        sms["text"] = c.text
        data["sms"] = sms
    return {"auth": {"key": s.key}, "action": "SENDMESSAGE", "data": data}


def _channels(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(channel, status) in cascade order for the channels the answer mentions."""
    out = []
    for name in _CHANNEL_ORDER:
        ch = data.get(name)
        if isinstance(ch, dict) and ch.get("status"):
            out.append((name, str(ch["status"])))
    return out


class SmsflyProvider(HttpProvider):
    """The ``smsfly`` adapter."""

    def __init__(self, settings: ProviderSettings, *,
                 client: httpx.AsyncClient | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(settings, client=client)
        self.clock = clock
        self.tz = zoneinfo.ZoneInfo(settings.timezone)

    async def _call(self, doc: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        body = json.dumps(doc, ensure_ascii=False).encode()
        response = await self.post(self.settings.url, body, CONTENT_TYPE)
        raise_for_http_status(self.name, response)
        try:
            data = response.json()
            if not isinstance(data, dict):
                raise TypeError("not an object")
        except (ValueError, TypeError):
            if response.status_code == _HTTP_OK:
                raise ProviderUnavailable(f"{self.name}: unreadable response") from None
            raise ProviderRejected(f"{self.name}: HTTP {response.status_code}") from None
        return response.status_code, data

    async def _send_one(self, m: OutboundMessage) -> SendOutcome:
        code, data = await self._call(build_send(m, self.settings, self.clock()))
        mid = m.message_id
        if data.get("success") == 1 and isinstance(data.get("data"), dict):
            d = data["data"]
            statuses = [smsfly_status(st) for _, st in _channels(d)]
            if statuses and all(stat.final for stat, _ in statuses):
                stat, err = statuses[-1]
                return SendOutcome.rejected(mid, err, "/".join(s for _, s in _channels(d)),
                                            stat=stat)
            if not d.get("messageID"):
                raise ProviderUnavailable(f"{self.name}: no messageID in the answer")
            return SendOutcome.accepted(mid, str(d["messageID"]))
        raw_error = data.get("error")
        error: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
        err_code = str(error.get("code", ""))
        detail = f"{err_code} {error.get('description', '')}".strip()
        if code == _HTTP_UNPROCESSABLE:
            return SendOutcome.rejected(mid, Err.REQUEST_INVALID, detail)
        if smsfly_error(err_code) is Err.ACCOUNT_BLOCKED:
            raise ProviderRejected(f"{self.name}: {detail}", err=Err.ACCOUNT_BLOCKED)
        return SendOutcome.rejected(mid, smsfly_error(err_code), detail)

    async def send(self, messages: Sequence[OutboundMessage]) -> list[SendOutcome]:
        results = await asyncio.gather(*(self._send_one(m) for m in messages),
                                       return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        for r in errors:
            if not isinstance(r, ProviderError):
                raise r
            if isinstance(r, ProviderRejected):
                raise r
        if errors and len(errors) == len(results):
            raise errors[0]  # the whole batch failed: let the breaker count it
        return [r if isinstance(r, SendOutcome) else SendOutcome.retry(m.message_id, str(r))
                for m, r in zip(messages, results, strict=True)]

    def _update(self, d: Mapping[str, Any]) -> StatusUpdate | None:
        message_id = str(d.get("messageID") or "")
        channels = _channels(d)
        if not message_id or not channels:
            return None
        stat, err = combine_channels([smsfly_status(st) for _, st in channels])
        dates = [d[name].get("date", "") for name, _ in channels]
        done_at = None
        if stat.final and dates[-1]:
            try:
                done_at = datetime.strptime(str(dates[-1])[:19], _DATE_FORMAT).replace(
                    tzinfo=self.tz).timestamp()
            except ValueError:
                done_at = None
        return StatusUpdate(message_id, stat, err, "/".join(f"{n}:{s}" for n, s in channels),
                            done_at)

    async def _poll_one(self, provider_id: str) -> StatusUpdate | None:
        _, data = await self._call({"auth": {"key": self.settings.key},
                                    "action": "GETMESSAGESTATUS",
                                    "data": {"messageID": provider_id}})
        if data.get("success") != 1 or not isinstance(data.get("data"), dict):
            return None  # INVMSGID: unknown id
        return self._update(data["data"])

    async def poll(self, provider_ids: Sequence[str]) -> list[StatusUpdate]:
        results = await asyncio.gather(*(self._poll_one(i) for i in provider_ids),
                                       return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        for r in errors:
            if not isinstance(r, ProviderError):
                raise r
        if errors and len(errors) == len(results):
            raise errors[0]
        return [r for r in results if isinstance(r, StatusUpdate)]

    def parse_webhook(self, request: HttpRequest) -> list[StatusUpdate]:
        data = json.loads(request.body)
        items = data if isinstance(data, list) else [data]
        updates = []
        for item in items:
            if not isinstance(item, dict):
                raise ValueError("expected JSON objects")
            inner = item.get("data")
            d: dict[str, Any] = inner if isinstance(inner, dict) else item
            if "status" in d and "messageID" in d:
                d = {"messageID": d["messageID"], "sms": {"status": d["status"]}}
            update = self._update(d)
            if update is None:
                raise ValueError("expected messageID and a status")
            updates.append(update)
        return updates

    async def ready(self) -> bool:
        try:
            balance = await self.balance()
        except ProviderError:
            return False
        return balance.amount > 0

    async def balance(self) -> Balance:
        """``GETBALANCE``: the account's balance (the API gives no currency)."""
        _, data = await self._call({"auth": {"key": self.settings.key},
                                    "action": "GETBALANCE", "data": {}})
        raw = data.get("data", {}).get("balance") if data.get("success") == 1 else None
        try:
            amount = float(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ProviderUnavailable(f"{self.name}: GETBALANCE answered no balance"
                                      ) from None
        return Balance(amount, "", time.time())
