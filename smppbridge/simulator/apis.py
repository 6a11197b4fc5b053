"""The simulated provider APIs: request handlers for mysmpp XML and JSON, SMS-fly and
the generic http-json API (with HLR), all over one :class:`SimEngine`.

Each handler is a Starlette endpoint (``Request`` → ``Response``) that validates the
request the way the real service documents and answers in its format; the engine decides
what happens to each message. :meth:`ProviderApis.routes` lists them with the answer each
API family gives to an injected failure (the fault switches are applied by the app).
"""

from __future__ import annotations

import json
import zoneinfo
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from smppbridge.providers import xmlsafe
from smppbridge.providers.simulator.engine import SimEngine, SimMessage

__all__ = ["Failure", "Handler", "ProviderApis"]

#: a Starlette endpoint
Handler = Callable[[Request], Awaitable[Response]]
#: the answer of one API family to an injected failure with this HTTP status
Failure = Callable[[int], Response]

_MOSCOW = zoneinfo.ZoneInfo("Europe/Moscow")
_KYIV = zoneinfo.ZoneInfo("Europe/Kyiv")
_XML_HEAD = '<?xml version="1.0" encoding="utf-8" ?>\n<response>\n'
_XML_TYPE = "text/xml; charset=utf-8"
#: mysmpp: "The sender must not exceed 15 characters for numeric numbers and 11
#: characters for alphanumeric numbers"; "Phone number must be less than 15 characters".
_MAX_NUMERIC_SENDER, _MAX_ALPHA_SENDER, _MAX_PHONE = 15, 11, 15
_SMSFLY_TTL = range(1, 1441)

_MYSMPP_ERRORS = {
    "stop_list": "Phone number is on the stop list",
    "closed": "This destination is closed",
    "moderation": "SMS text rejected by moderator",
    "no_funds": "Out of SMS",
    "no_sender": "There is no such sender",
}
_MYSMPP_STATES = {
    "accepted": "send", "progress": "send", "delivered": "deliver", "read": "read",
    "undeliverable": "not_deliver", "expired": "expired", "partly": "partly_deliver",
    "fallback": "deliver",
}
_SMSFLY_SEND_ERRORS = {"stop_list": "INVRECIPIENT", "closed": "INVROUTE",
                       "moderation": "INVTEXT", "no_sender": "INVSOURCE"}
_SMSFLY_STATES = {
    "accepted": "ACCEPTD", "progress": "SENT", "delivered": "DELIVRD", "read": "VIEWED",
    "undeliverable": "UNDELIV", "expired": "EXPIRED", "partly": "DELIVRD",
    "fallback": "UNDELIV",
}
_HTTP_ERRORS = {"stop_list": "stop_list", "closed": "destination_closed",
                "moderation": "moderation", "no_funds": "out_of_funds",
                "no_sender": "sender_invalid"}
_HTTP_STATES = {
    "accepted": "accepted", "progress": "enroute", "delivered": "delivered",
    "read": "delivered", "undeliverable": "undeliverable", "expired": "expired",
    "partly": "delivered", "fallback": "delivered",
}


def _xml(text: str, status: int = 200) -> Response:
    return Response(text.encode(), status, media_type=_XML_TYPE)


def _xml_error(text: str, status: int = 400) -> Response:
    return _xml(f"{_XML_HEAD} <error>{xmlsafe.text(text)}</error>\n</response>", status)


def _json(obj: Any, status: int = 200) -> Response:
    """``obj`` as compact UTF-8 JSON (``application/json``)."""
    return JSONResponse(obj, status)


class ProviderApis:
    """The API handlers over ``engine``; ``clock`` dates the SMS-fly answers."""

    def __init__(self, engine: SimEngine, clock: Callable[[], float]) -> None:
        self.engine = engine
        self.clock = clock

    def routes(self) -> list[tuple[str, Handler, Failure]]:
        """``(path, handler, failure answer)`` of every API endpoint (all POST)."""

        def xml_fail(status: int) -> Response:
            return _xml_error("Internal Server Error", status)

        def json_fail(status: int) -> Response:
            return _json({"error": "Internal Server Error"}, status)

        def fly_fail(status: int) -> Response:
            return self._fly_error("INTERNAL", status)

        return [
            ("/xml", self.xml_send, xml_fail),
            ("/xml/state.php", self.xml_state, xml_fail),
            ("/json", self.json_send, json_fail),
            ("/api/v2/api.php", self.smsfly, fly_fail),
            ("/http-json/send", self.http_send, json_fail),
            ("/http-json/status", self.http_status, json_fail),
        ]

    # --- mysmpp XML ---------------------------------------------------------------------

    def _xml_auth(self, root: xmlsafe.Element) -> str | None:
        """The account name when the security block is accepted, else None."""
        sec = root.find("security") or xmlsafe.Element("security", {})
        values = {t: (sec.find(t) or xmlsafe.Element(t, {})).attrs.get("value", "")
                  for t in ("login", "password", "token")}
        if not self.engine.authorized(**values):
            return None
        return values["login"] or values["token"]

    async def xml_send(self, request: Request) -> Response:
        """``POST /xml``: mysmpp XML send."""
        try:
            root = xmlsafe.parse(await request.body())
        except xmlsafe.XmlError:
            return _xml_error("Incorrect XML document format")
        if root.tag != "request":
            return _xml_error("Incorrect XML document format")
        account = self._xml_auth(root)
        if account is None:
            return _xml_error("Incorrect login or password")
        messages = root.findall("message")
        if not messages:
            return _xml_error("POST data is missing")
        out = [_XML_HEAD]
        for message in messages:
            a = message.attrs
            channels = (a.get("type_send_1", "sms"),) + (
                (a["type_send_2"],) if a.get("type_send_2") else ())
            sms_type = a.get("type", "sms")
            f = {t: message.findtext(t) for t in ("sender", "text", "sender_viber",
                                                  "text_viber", "image_viber")}
            problem = _mysmpp_content_problem(channels, sms_type, f)
            kind = "viber" if channels[0] == "viber" else (
                "ping" if sms_type == "silence" else "sms")
            text = f["text_viber"] if kind == "viber" else f["text"]
            for ab in message.findall("abonent"):
                out.append(self._mysmpp_abonent(account, ab.attrs, channels, kind, text,
                                                problem))
        out.append("</response>")
        return _xml("".join(out))

    def _mysmpp_abonent(self, account: str, ab: Mapping[str, str], channels: tuple[str, ...],
                        kind: str, text: str, problem: str) -> str:
        number = xmlsafe.attr(ab.get("number_sms", ""))
        phone = ab.get("phone", "")
        error = problem
        if not phone:
            error = "Specify phone number"
        elif len(phone) >= _MAX_PHONE:
            error = "Phone number must be less than 15 characters"
        if not error:
            msg, outcome = self.engine.accept(
                "mysmpp", account, phone, client_id=ab.get("client_id_sms", ""), kind=kind,
                text=text, channels=channels, id_format="{}")
            if msg is not None:
                return (f' <information number_sms="{number}" id_sms="{msg.id}" '
                        f'parts="{msg.parts}">send</information>\n')
            error = _MYSMPP_ERRORS[outcome]
        return f' <information number_sms="{number}">{xmlsafe.text(error)}</information>\n'

    async def xml_state(self, request: Request) -> Response:
        """``POST /xml/state.php``: mysmpp XML status."""
        try:
            root = xmlsafe.parse(await request.body())
        except xmlsafe.XmlError:
            return _xml_error("Incorrect XML document format")
        if self._xml_auth(root) is None:
            return _xml_error("Incorrect login or password")
        get_state = root.find("get_state") or xmlsafe.Element("get_state", {})
        out = [_XML_HEAD]
        for el in get_state.findall("id_sms"):
            msg = self.engine.messages.get(el.text)
            if msg is not None:
                out.append(self._mysmpp_state(msg))
        out.append("</response>")
        return _xml("".join(out))

    def _mysmpp_state(self, msg: SimMessage) -> str:
        phase = self.engine.phase(msg)
        state = _MYSMPP_STATES.get(phase, "send")
        when = "" if state == "send" else datetime.fromtimestamp(
            self.engine.final_time(msg), _MOSCOW).strftime("%Y-%m-%d %H:%M:%S")
        channel_states = {msg.channels[0]: "not_deliver" if phase == "fallback" else state}
        if len(msg.channels) > 1 and phase in ("fallback", "undeliverable", "expired"):
            channel_states[msg.channels[1]] = state
        attrs = "".join(f' {c}="{s}"' for c, s in channel_states.items())
        return f' <state id_sms="{msg.id}" time="{when}"{attrs}>{state}</state>\n'

    # --- mysmpp JSON --------------------------------------------------------------------

    async def json_send(self, request: Request) -> Response:
        """``POST /json``: mysmpp JSON send."""
        try:
            data = json.loads(await request.body())
            messages = data["message"]
            if not isinstance(messages, list):
                raise TypeError("message")
        except (ValueError, KeyError, TypeError):
            return _json({"error": "Incorrect JSON document format"})
        creds = {k: str(data.get(k) or "") for k in ("login", "password", "token")}
        if not self.engine.authorized(**creds):
            return _json({"error": "Incorrect login or password"})
        account = creds["login"] or creds["token"]
        information: list[dict[str, str]] = []
        for message in messages:
            m = message if isinstance(message, dict) else {}
            channels = (str(m.get("type_send_1", "sms")),) + (
                (str(m["type_send_2"]),) if m.get("type_send_2") else ())
            sms_type = str(m.get("type", "sms"))
            f = {t: str(m.get(t) or "") for t in ("sender", "text", "sender_viber",
                                                  "text_viber", "image_viber")}
            problem = _mysmpp_content_problem(channels, sms_type, f)
            kind = "viber" if channels[0] == "viber" else (
                "ping" if sms_type == "silence" else "sms")
            text = f["text_viber"] if kind == "viber" else f["text"]
            for phone_entry in m.get("phones") or []:
                p = phone_entry if isinstance(phone_entry, dict) else {}
                information.append(self._json_phone(account, p, channels, kind, text, problem))
        status = 400 if information and all("error" in i for i in information) else 200
        return _json({"information": information}, status)

    def _json_phone(self, account: str, p: Mapping[str, Any], channels: tuple[str, ...],
                    kind: str, text: str, problem: str) -> dict[str, str]:
        phone = str(p.get("phone") or "")
        error = problem
        if not phone:
            error = "Specify phone number"
        elif len(phone) >= _MAX_PHONE:
            error = "Phone number must be less than 15 characters"
        if not error:
            msg, outcome = self.engine.accept(
                "mysmpp", account, phone, client_id=str(p.get("client_id_sms") or ""),
                kind=kind, text=text, channels=channels)
            if msg is not None:
                return {"state": "send", "id_sms": msg.id}
            error = _MYSMPP_ERRORS[outcome]
        return {"error": error}

    # --- SMS-fly ------------------------------------------------------------------------

    def _fly_date(self) -> str:
        return datetime.fromtimestamp(self.clock(), _KYIV).strftime("%Y-%m-%d %H:%M:%S %z")

    def _fly_error(self, code: str, status: int, description: str = "") -> Response:
        return _json({"success": 0, "error": {
            "code": code, "date": self._fly_date(), "description": description}}, status)

    async def smsfly(self, request: Request) -> Response:
        """``POST /api/v2/api.php``: SMS-fly (SENDMESSAGE, GETMESSAGESTATUS, GETBALANCE,
        GETBALANCEEXT)."""
        try:
            data = json.loads(await request.body())
            if not isinstance(data, dict):
                raise TypeError("not an object")
        except (ValueError, TypeError):
            return self._fly_error("INVREQUEST", 422, "request body is not JSON")
        auth_raw, body_raw = data.get("auth"), data.get("data")
        auth: dict[str, Any] = auth_raw if isinstance(auth_raw, dict) else {}
        if not self.engine.authorized(key=str(auth.get("key") or "")):
            return self._fly_error("FORBIDDEN", 403)
        action = data.get("action")
        body: dict[str, Any] = body_raw if isinstance(body_raw, dict) else {}
        if action == "GETBALANCE":
            return self._fly_ok({"balance": "91.477"})
        if action == "GETBALANCEEXT":
            return self._fly_ok({"balance": {"sms": "91.477", "viber": "191.477"}})
        if action == "SENDMESSAGE":
            return self._fly_send(str(auth.get("key") or ""), body)
        if action == "GETMESSAGESTATUS":
            msg = self.engine.messages.get(str(body.get("messageID") or ""))
            if msg is None or msg.api != "smsfly":
                return self._fly_error("INVMSGID", 400)
            return self._fly_ok({"messageID": msg.id, **self._fly_channels(msg)})
        return self._fly_error("INVACTION", 400)

    def _fly_ok(self, data: dict[str, Any]) -> Response:
        return _json({"success": 1, "date": self._fly_date(), "data": data})

    def _fly_send(self, key: str, d: Mapping[str, Any]) -> Response:
        recipient = str(d.get("recipient") or "")
        if not recipient.isdigit():
            return self._fly_error("INVRECIPIENT", 400)
        channels = d.get("channels")
        if not isinstance(channels, list) or not channels or not all(
                c in ("sms", "viber") for c in channels):
            return self._fly_error("INVCHANNELS", 400)
        for channel in channels:
            spec = d.get(channel)
            if not isinstance(spec, dict):
                return self._fly_error(f"INV{channel.upper()}MESSAGE", 400)
            if not spec.get("source"):
                return self._fly_error("INVSOURCE", 400)
            if spec.get("ttl") not in _SMSFLY_TTL:
                return self._fly_error("INVREQUEST", 400, f"{channel}.ttl: 1..1440")
            problem = _fly_content_problem(channel, spec)
            if problem:
                return self._fly_error(problem, 400)
        first = d[channels[0]]
        msg, outcome = self.engine.accept(
            "smsfly", key, recipient, kind=channels[0], text=str(first.get("text") or ""),
            channels=tuple(channels), id_format="FAPI{:016X}")
        if msg is None:
            if outcome == "no_funds":
                return self._fly_ok({"messageID": "", **{
                    c: {"status": "INSUFFICIENTFUND", "date": self._fly_date()}
                    for c in channels}})
            return self._fly_error(_SMSFLY_SEND_ERRORS[outcome], 400)
        result: dict[str, Any] = {"messageID": msg.id}
        for c in channels:
            result[c] = {"status": "ACCEPTD", "date": self._fly_date(), "cost": "0.475"}
            if c == "viber":
                result[c]["label"] = "transaction:1"
        return self._fly_ok(result)

    def _fly_channels(self, msg: SimMessage) -> dict[str, Any]:
        phase = self.engine.phase(msg)
        date = datetime.fromtimestamp(self.clock(), _KYIV).strftime("%Y-%m-%d %H:%M:%S")
        first, *rest = msg.channels
        state = _SMSFLY_STATES.get(phase, "SENT")
        out = {first: {"status": state, "date": date}}
        if rest and phase in ("fallback", "undeliverable", "expired"):
            out[rest[0]] = {"status": "DELIVRD" if phase == "fallback" else state,
                            "date": date}
        return out

    # --- http-json ----------------------------------------------------------------------

    def _bearer_ok(self, request: Request) -> bool:
        token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        return not self.engine.config.token or token == self.engine.config.token

    async def http_send(self, request: Request) -> Response:
        """``POST /http-json/send``: smppbridge's generic API, send."""
        if not self._bearer_ok(request):
            return _json({"error": "account_blocked"}, 401)
        try:
            messages = json.loads(await request.body())["messages"]
            if not isinstance(messages, list):
                raise TypeError("messages")
        except (ValueError, KeyError, TypeError):
            return _json({"error": "request_invalid"}, 400)
        results = []
        for raw in messages:
            m = raw if isinstance(raw, dict) else {}
            our_id = str(m.get("id") or "")
            to = str(m.get("to") or "").lstrip("+")
            if not to:
                results.append({"id": our_id, "status": "rejected", "error": "number_invalid"})
                continue
            msg, outcome = self.engine.accept(
                "http", "", to, client_id=our_id, kind=str(m.get("kind") or "sms"),
                text=str(m.get("text") or ""), callback=str(m.get("callback") or ""),
                our_id=our_id, id_format="H{}")
            if msg is None:
                results.append({"id": our_id, "status": "rejected",
                                "error": _HTTP_ERRORS[outcome]})
            else:
                results.append({"id": our_id, "status": "accepted", "provider_id": msg.id})
        return _json({"results": results})

    async def http_status(self, request: Request) -> Response:
        """``POST /http-json/status``: smppbridge's generic API, status."""
        if not self._bearer_ok(request):
            return _json({"error": "account_blocked"}, 401)
        try:
            ids = json.loads(await request.body())["ids"]
        except (ValueError, KeyError, TypeError):
            return _json({"error": "request_invalid"}, 400)
        statuses = [self.http_status_of(m) for i in ids
                    if (m := self.engine.messages.get(str(i))) is not None]
        return _json({"statuses": statuses})

    def http_status_of(self, msg: SimMessage) -> dict[str, Any]:
        """The http-json status object of ``msg`` (also the webhook body)."""
        phase = self.engine.phase(msg)
        word = _HTTP_STATES.get(phase, "enroute")
        out: dict[str, Any] = {"provider_id": msg.id, "id": msg.our_id, "status": word}
        if word in ("undeliverable", "expired"):
            out["err"] = "001" if word == "undeliverable" else "002"
        if word not in ("accepted", "enroute"):
            out["time"] = datetime.fromtimestamp(self.engine.final_time(msg), UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ")
        if msg.kind == "hlr" and word == "delivered":
            h = self.engine.hlr(msg)
            out["hlr"] = {k: getattr(h, k) for k in ("imsi", "msc", "mcc", "mnc", "cn", "net",
                                                    "rcn", "rnet")}
        return out


def _mysmpp_content_problem(channels: tuple[str, ...], sms_type: str,
                            f: Mapping[str, str]) -> str:
    """The mysmpp error text for a ``<message>`` that cannot be sent, or ""."""
    if "viber" in channels:
        if not f["sender_viber"]:
            return "No sender"
        if not f["text_viber"] and not f["image_viber"]:
            return "No message text"
    if "sms" in channels:
        sender = f["sender"]
        if not sender:
            return "No sender"
        if len(sender) > (_MAX_NUMERIC_SENDER if sender.isdigit() else _MAX_ALPHA_SENDER):
            return ("The sender must not exceed 15 characters for numeric numbers and 11 "
                    "characters for alphanumeric numbers")
        if not f["text"] and sms_type != "silence":
            return "No message text"
    return ""


def _fly_content_problem(channel: str, spec: Mapping[str, Any]) -> str:
    if channel == "sms":
        return "" if spec.get("text") else "INVTEXT"
    if not spec.get("text") and not spec.get("image"):
        return "INVTEXT"
    button = spec.get("button")
    if button is not None and not (isinstance(button, dict) and button.get("caption")
                                   and button.get("url")):
        return "INVBUTTON"
    image = spec.get("image")
    if image is not None and not str(image).startswith("https://"):
        return "INVIMAGEURL"
    return ""
