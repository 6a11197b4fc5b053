"""Status callbacks: which events a message's callback asks for, what an event record
holds, and the three request shapes (ours in JSON, Jasmin's DLR parameters, Kannel's
dlr-url escapes), signing and the retry schedule. Sans-IO: the dispatcher
(:mod:`smppbridge.delivery.callbacks`) sends what :func:`build_request` makes.

An event is written in the same store operation as the status it reports (the final
status, or the provider's acceptance for ``sent``), so a crash between the two loses
neither; its ``event_id`` stays the same over every attempt and every node, so a
receiver can drop a duplicate. docs/http.md, *Status callbacks*, is the reference.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any

from smppbridge.core.mo import MO_KIND, mo_payload

__all__ = ["CallbackEvent", "CallbackOutcome", "CallbackRequest", "EventKind", "MessageFacts",
           "build_request", "callback_body", "events_wanted", "hlr_dict", "json_status",
           "new_event", "parse_retry_after", "retry_delay", "sign"]

#: first retry 5 s after a failed attempt, doubling to 15 min, then every 15 min
RETRY_FIRST = 5.0
RETRY_MAX = 900.0
#: seconds to connect, and for a whole attempt (connect, send, answer)
CONNECT_TIMEOUT = 5.0
ATTEMPT_TIMEOUT = 15.0
#: most bytes of an answer read
MAX_ANSWER = 64 * 1024
#: the longest Retry-After honoured (a longer one is read as this)
RETRY_AFTER_MAX = 3600.0

SIGNATURE_HEADER = "X-Smppbridge-Signature"
TIMESTAMP_HEADER = "X-Smppbridge-Timestamp"


class EventKind(StrEnum):
    """What happened: a provider took the message (``sent``), the message reached its
    final status after that (``final``), or it ended before any provider took it
    (``nack``: refused by the provider, expired or cancelled while queued)."""

    SENT = "sent"
    FINAL = "final"
    NACK = "nack"
    #: a mobile-originated message posted to the account's mo_url (core.mo)
    MO = "mo"


#: the JSON ``status`` of each final stat; any other (UNKNOWN, DELETED) is ``failed``
_JSON_STATUS = {"DELIVRD": "delivered", "UNDELIV": "undelivered", "EXPIRED": "expired",
                "REJECTD": "rejected"}


def json_status(kind: str, stat: str) -> str:
    """The JSON ``status`` word of an event."""
    if kind == EventKind.SENT:
        return "sent"
    return _JSON_STATUS.get(stat, "failed")


# Not frozen, to be treated as immutable (like ReceiptRecord).
@dataclass(slots=True)
class CallbackEvent:
    """One callback waiting in the outbox. ``at`` is the wall date of the event;
    ``expire_at`` the steady instant (core.clock) after which it is given up; ``url``
    is fixed when the event is made (the message's callback_url, else the account's
    receipt_url then)."""

    event_id: str
    message_id: str
    account: str
    url: str
    kind: str
    stat: str
    err: int
    at: float
    expire_at: float
    hlr_fields: str = ""
    seq: int = 0
    attempts: int = 0
    next_at: float = 0.0


_BODY_FIELDS = tuple(f for f in CallbackEvent.__dataclass_fields__
                     if f not in ("seq", "attempts", "next_at"))


def callback_body(ev: CallbackEvent) -> dict[str, Any]:
    """The fields a store serialises (``CallbackEvent(**body)`` restores it)."""
    return {name: getattr(ev, name) for name in _BODY_FIELDS}


def new_event(kind: EventKind, *, message_id: str, account: str, url: str, stat: str,
              err: int, at: float, since: float, ttl: float,
              hlr_fields: str = "") -> CallbackEvent:
    """A new event with a fresh ``event_id``; it expires ``ttl`` seconds after the
    steady instant ``since``."""
    return CallbackEvent(event_id=uuid.uuid4().hex, message_id=message_id,
                         account=account, url=url, kind=kind.value, stat=stat, err=err,
                         at=at, expire_at=since + ttl, hlr_fields=hlr_fields)


def _int(level: str, default: int) -> int:
    try:
        return int(level)
    except ValueError:
        return default


def events_wanted(fmt: str, level: str, kind: EventKind, stat: str) -> bool:
    """Does a callback of format ``fmt`` with ``callback_level`` ``level`` ask for this
    event?

    * ``json``: every final status (and ``nack``); ``sent`` too when the level is 1 or 3.
    * ``jasmin`` (dlr-level; empty is 2): 1 the submit's answer (``sent``, or ``nack``
      for a message that ended before any provider took it); 2 the final status (any,
      ``nack`` included); 3 both.
    * ``kannel`` (dlr-mask; empty is 0, nothing): 1 DELIVRD, 2 any other final status
      after the send, 8 ``sent``, 16 ``nack``.
    """
    if fmt == "kannel":
        mask = _int(level, 0)
        if kind is EventKind.SENT:
            return bool(mask & 8)
        if kind is EventKind.NACK:
            return bool(mask & 16)
        return bool(mask & (1 if stat == "DELIVRD" else 2))
    if fmt == "jasmin":
        lvl = _int(level, 2)
        if kind is EventKind.SENT:
            return lvl in (1, 3)
        if kind is EventKind.NACK:
            return True
        return lvl in (2, 3)
    if kind is EventKind.SENT:
        return _int(level, 2) in (1, 3)
    return True


# --- the request -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MessageFacts:
    """What the dispatcher reads of the message when it sends an event (its stored
    record; all empty when the message was purged meanwhile)."""

    source: str = ""
    destination: str = ""
    client_ref: str = ""
    parts: int = 1
    provider: str = ""
    provider_id: str = ""
    submitted_at: float = 0.0
    done_at: float | None = None
    text: str = ""
    data_coding: int = 0
    fmt: str = "json"
    method: str = "POST"
    level: str = ""
    #: the message's extra (an MO's fields: core.mo)
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CallbackRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes


def iso(ts: float | None) -> str | None:
    """ISO 8601 UTC with milliseconds (``2026-12-07T14:30:00.123Z``), or None."""
    if ts is None or ts <= 0:
        return None
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts))
    return f"{whole}.{int((ts % 1) * 1000):03d}Z"


def hlr_dict(fields: str) -> dict[str, str]:
    """``imsi:... msc:...`` (the receipt form, values urlencoded) as a dict."""
    out: dict[str, str] = {}
    for word in fields.split():
        name, _, value = word.partition(":")
        out[name] = urllib.parse.unquote_plus(value)
    return out


def json_payload(ev: CallbackEvent, facts: MessageFacts, attempt: int) -> dict[str, Any]:
    """Our JSON callback (docs/http.md, *Status callbacks*; an MO's: *MO callbacks*)."""
    if ev.kind == MO_KIND:
        return mo_payload(event_id=ev.event_id, attempt=attempt, mo_id=ev.message_id,
                          account=ev.account, source=facts.source,
                          destination=facts.destination, text=facts.text,
                          extra=facts.extra, received_at=iso(facts.submitted_at))
    body: dict[str, Any] = {
        "event_id": ev.event_id, "attempt": attempt, "message_id": ev.message_id,
        "client_ref": facts.client_ref or None, "account": ev.account,
        "from": facts.source, "to": facts.destination,
        "status": json_status(ev.kind, ev.stat), "stat": ev.stat,
        "err": f"{ev.err % 1000:03d}", "parts": facts.parts,
        "provider": facts.provider or None, "provider_message_id": facts.provider_id or None,
        "submitted_at": iso(facts.submitted_at),
        "done_at": None if ev.kind == EventKind.SENT else iso(ev.at),
    }
    if ev.hlr_fields:
        body.update(hlr_dict(ev.hlr_fields))
    return body


def _smpp_date(ts: float | None) -> str:
    return time.strftime("%y%m%d%H%M", time.gmtime(ts)) if ts else ""


def jasmin_params(ev: CallbackEvent, facts: MessageFacts) -> dict[str, str]:
    """Jasmin's DLR parameters: level 1 for ``sent``/``nack`` when the dlr-level asks for
    the submit's answer, else level 2 (the receipt's fields)."""
    lvl = _int(facts.level, 2)
    level1 = ev.kind == EventKind.SENT or (ev.kind == EventKind.NACK and lvl == 1)
    params = {"id": ev.message_id, "level": "1" if level1 else "2",
              "connector": facts.provider or "smppbridge"}
    if level1:
        params["message_status"] = "ESME_ROK" if ev.kind == EventKind.SENT \
            else "ESME_RSUBMITFAIL"
        return params
    params.update(message_status=ev.stat, id_smsc=facts.provider_id or ev.message_id,
                  sub="001", dlvrd="001" if ev.stat == "DELIVRD" else "000",
                  subdate=_smpp_date(facts.submitted_at), donedate=_smpp_date(ev.at),
                  err=f"{ev.err % 1000:03d}", text=facts.text[:20])
    return params


def kannel_mask_bit(ev: CallbackEvent) -> int:
    if ev.kind == EventKind.SENT:
        return 8
    if ev.kind == EventKind.NACK:
        return 16
    return 1 if ev.stat == "DELIVRD" else 2


def _plus(number: str) -> str:
    return "+" + number[2:] if number.startswith("00") else number


def kannel_url(ev: CallbackEvent, facts: MessageFacts) -> str:
    """The dlr-url with Kannel's escapes replaced (URL-encoded). As in Kannel's smsbox,
    a report's ``%p`` is the phone the message went to and ``%P`` its sender."""
    bit = kannel_mask_bit(ev)
    if bit in (1, 2):
        reply = (f"id:{ev.message_id} sub:001 dlvrd:{'001' if bit == 1 else '000'} "
                 f"submit date:{_smpp_date(facts.submitted_at)} done date:"
                 f"{_smpp_date(ev.at)} stat:{ev.stat} err:{ev.err % 1000:03d} "
                 f"text:{facts.text[:20]}")
    else:
        reply = "ACK/" if bit == 8 else f"NACK/{ev.err % 1000:03d}/{ev.stat}"
    values = {
        "d": str(bit), "A": reply, "p": facts.destination, "P": facts.source,
        "q": _plus(facts.destination), "Q": _plus(facts.source),
        "i": facts.provider, "I": ev.message_id, "F": facts.provider_id,
        "T": str(int(ev.at)), "t": time.strftime("%Y-%m-%d %H:%M", time.gmtime(ev.at)),
        "n": ev.account, "o": ev.account, "c": str(facts.data_coding),
        "b": facts.text, "k": (facts.text.split() or [""])[0], "%": "%",
    }
    out: list[str] = []
    url = ev.url
    i = 0
    while i < len(url):
        ch = url[i]
        if ch == "%" and i + 1 < len(url) and url[i + 1] in values:
            code = url[i + 1]
            out.append("%" if code == "%" else urllib.parse.quote(values[code], safe=""))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def sign(secret: str, timestamp: int, payload: bytes) -> str:
    """``v1=<hex HMAC-SHA256(secret, "<timestamp>." + payload)>``."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + payload, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def build_request(ev: CallbackEvent, facts: MessageFacts, *, attempt: int, secret: str,
                  now: float) -> CallbackRequest:
    """The request of one attempt; signed when ``secret`` is set: the body of a POST,
    the query string of a GET (what follows ``?``, as sent)."""
    headers = {"User-Agent": "smppbridge-callbacks"}
    if facts.fmt == "kannel":
        method, url, body = "GET", kannel_url(ev, facts), b""
    elif facts.fmt == "jasmin":
        params = urllib.parse.urlencode(jasmin_params(ev, facts))
        if facts.method.upper() == "GET":
            sep = "&" if urllib.parse.urlsplit(ev.url).query else "?"
            method, url, body = "GET", ev.url + sep + params, b""
        else:
            method, url, body = "POST", ev.url, params.encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
    else:
        method, url = "POST", ev.url
        body = json.dumps(json_payload(ev, facts, attempt), separators=(",", ":")).encode()
        headers["Content-Type"] = "application/json"
    if secret:
        ts = int(now)
        signed = body if method == "POST" else urllib.parse.urlsplit(url).query.encode()
        headers[TIMESTAMP_HEADER] = str(ts)
        headers[SIGNATURE_HEADER] = sign(secret, ts, signed)
    return CallbackRequest(method, url, headers, body)


# --- retries -----------------------------------------------------------------------------


def retry_delay(attempts: int) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: 5, 10, 20 ...
    up to 900, then 900."""
    return min(RETRY_MAX, RETRY_FIRST * 2.0 ** min(max(attempts - 1, 0), 20))


def parse_retry_after(value: str | None, now: float) -> float | None:
    """A Retry-After header (seconds, or an HTTP date against the wall time ``now``)
    as seconds from now, at most :data:`RETRY_AFTER_MAX`; None when absent or
    unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), RETRY_AFTER_MAX)
    try:
        when = float(parsedate_to_datetime(value).timestamp())
    except (TypeError, ValueError, IndexError):
        return None
    return min(max(0.0, when - now), RETRY_AFTER_MAX)


class CallbackOutcome(StrEnum):
    """How an event left the outbox; failed and expired ones leave a timeline entry."""

    DELIVERED = "delivered"
    FAILED = "failed"
    EXPIRED = "expired"
