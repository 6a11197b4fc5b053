"""Drop-in endpoints for clients written for Jasmin (``/send``) and Kannel
(``/cgi-bin/sendsms``), on the node's HTTP listener: the same parameters and answers
as those gateways (docs/http-compat.md says exactly which), the same submit path as
everything else (node/doors.py). Credentials are the account's ``system_id`` and
password, checked like a bind's (the same lockout).

Parameters come from the query string (GET) or an
``application/x-www-form-urlencoded`` body (POST), parsed here with urllib.parse; a
form value wins over a query value of the same name. Values are percent-decoded to
octets, then read as UTF-8, except Kannel's ``text`` (its ``charset``).
"""

from __future__ import annotations

import binascii
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.responses import Response

from smppbridge.core.accounts import Account
from smppbridge.core.message import Extra
from smppbridge.ingest.texts import TextMessage, TextResult
from smppbridge.node.doors import AddressProblem, SubmitDoors, destination, source
from smppbridge.smpp.constants import CommandStatus, DataCoding
from smppbridge.smpp.times import parse_smpp_time
from smppbridge.text.encoding import ContentError, decode

__all__ = ["add_compat"]

_S = CommandStatus
_FORM = "application/x-www-form-urlencoded"
#: Jasmin's coding values we take: (data_coding of hex-content, our encoding)
_JASMIN_CODINGS: Mapping[str, tuple[int, str]] = {
    "0": (DataCoding.DEFAULT, "gsm7"), "3": (DataCoding.LATIN1, "latin1"),
    "8": (DataCoding.UCS2, "ucs2")}
#: Kannel's coding values we take
_KANNEL_CODINGS: Mapping[str, str] = {"0": "gsm7", "2": "ucs2"}
#: the largest dlr-mask (its five bits)
_MASK_BITS = 31


class _Bad(Exception):
    """A request refused with ``status`` and the door's own wording."""

    def __init__(self, status: int, text: str, headers: Mapping[str, str] | None = None
                 ) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.headers = dict(headers or {})


@dataclass(frozen=True)
class _Params:
    """A request's parameters as octets (percent-decoded, not yet read as text)."""

    raw: Mapping[str, bytes]

    def get(self, name: str, default: str | None = None, *, charset: str = "utf-8",
            bad: Callable[[str], _Bad]) -> str | None:
        value = self.raw.get(name)
        if value is None:
            return default
        try:
            return value.decode(charset)
        except (UnicodeDecodeError, LookupError):
            raise bad(name) from None


async def _params(request: Request) -> _Params:
    pairs = parse_qsl(request.url.query, keep_blank_values=True, encoding="latin-1")
    if request.method == "POST":
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == _FORM:
            pairs += parse_qsl((await request.body()).decode("latin-1"),
                               keep_blank_values=True, encoding="latin-1")
    return _Params({k: v.encode("latin-1") for k, v in pairs})


def _text(status: int, text: str, headers: Mapping[str, str] | None = None) -> Response:
    return Response(text + "\n" if not text.endswith("\n") else text, status_code=status,
                    headers=dict(headers or {}), media_type="text/plain")


def add_compat(app: FastAPI, doors: SubmitDoors) -> None:
    """Mount ``/send`` (Jasmin) and ``/cgi-bin/sendsms`` (Kannel) on ``app``."""

    @app.api_route("/send", methods=["GET", "POST"], include_in_schema=False)
    async def jasmin(request: Request) -> Response:
        try:
            return await _jasmin(doors, request)
        except _Bad as exc:
            return _text(exc.status, f'Error "{exc.text}"', exc.headers)

    @app.api_route("/cgi-bin/sendsms", methods=["GET", "POST"], include_in_schema=False)
    async def kannel(request: Request) -> Response:
        try:
            return await _kannel(doors, request)
        except _Bad as exc:
            return _text(exc.status, exc.text, exc.headers)


async def _login(doors: SubmitDoors, request: Request, username: str | None,
                 password: str | None, refused: _Bad) -> Account:
    client = request.client.host if request.client else ""
    status, account = await doors.admission.check_credentials(
        username or "", password or "", client)
    if status != _S.ESME_ROK or account is None:
        raise refused
    return account


# --- Jasmin ------------------------------------------------------------------------------


def _jasmin_invalid(name: str, value: str = "") -> _Bad:
    return _Bad(400, f"Argument [{name}] has an invalid value: [{value}].")


def _jasmin_missing(name: str) -> _Bad:
    return _Bad(400, f"Mandatory argument [{name}] is not found.")


async def _jasmin(doors: SubmitDoors, request: Request) -> Response:
    p = await _params(request)

    def get(name: str, default: str | None = None) -> str | None:
        return p.get(name, default, bad=_jasmin_invalid)

    for name in ("username", "password", "to", "from"):
        if not get(name):
            raise _jasmin_missing(name)
    username = get("username") or ""
    account = await _login(doors, request, username, get("password"),
                           _Bad(403, f"Authentication failure for username:{username}"))
    coding = get("coding")
    if coding is not None and coding not in _JASMIN_CODINGS:
        raise _jasmin_invalid("coding", coding)
    content, hexed = get("content"), get("hex-content")
    if content is not None and hexed is not None:
        raise _Bad(400, "content and hex-content cannot be used both in same request.")
    if hexed is not None:
        data_coding, _ = _JASMIN_CODINGS[coding or "0"]
        try:
            content = decode(binascii.unhexlify(hexed), data_coding).text
        except (binascii.Error, ValueError, ContentError):
            raise _jasmin_invalid("hex-content", hexed) from None
    if content is None:
        raise _jasmin_missing("content")
    try:
        # An unescaped + in a query string reads as a space (both gateways read it so):
        # the leading space is dropped, as a + would be.
        to = destination((get("to") or "").strip())
        sender = source((get("from") or "").strip())
    except AddressProblem as exc:
        name = str(exc).partition(":")[0]
        raise _jasmin_invalid(name, get(name) or "") from None
    extra = {Extra.ORIGIN: "jasmin", Extra.CALLBACK_FORMAT: "jasmin"}
    if (get("dlr") or "no").lower() not in ("yes", "no"):
        raise _jasmin_invalid("dlr", get("dlr") or "")
    if (get("dlr") or "no").lower() == "yes":
        url = get("dlr-url")
        if not url:
            raise _jasmin_missing("dlr-url")
        if doors.callback_problem(url) is not None:
            raise _jasmin_invalid("dlr-url", url)
        level, method = get("dlr-level", "1") or "1", (get("dlr-method", "GET") or "GET")
        if level not in ("1", "2", "3"):
            raise _jasmin_invalid("dlr-level", level)
        if method.upper() not in ("GET", "POST"):
            raise _jasmin_invalid("dlr-method", method)
        extra |= {Extra.CALLBACK_URL: url, Extra.CALLBACK_LEVEL: level,
                  Extra.CALLBACK_METHOD: method.upper()}
    priority = get("priority")
    if priority is not None and priority not in ("0", "1", "2", "3"):
        raise _jasmin_invalid("priority", priority)
    validity = _minutes(get("validity-period"),
                        lambda v: _jasmin_invalid("validity-period", v)) or None
    sdt = get("sdt")
    schedule_at = None
    if sdt:
        try:
            schedule_at = parse_smpp_time(sdt, doors.wall())
        except ValueError:
            raise _jasmin_invalid("sdt", sdt) from None
    message = TextMessage(sender, to, content,
                          encoding=None if coding is None else _JASMIN_CODINGS[coding][1],
                          schedule_at=schedule_at, validity=validity,
                          registered_delivery=doors.registered_delivery(account),
                          extra=extra)
    result = await _one(doors, account, request, message, "jasmin")
    if result.ok:
        return _text(200, f'Success "{result.message_id}"')
    raise _jasmin_refusal(result, doors, account)


def _jasmin_refusal(result: TextResult, doors: SubmitDoors, account: Account) -> _Bad:
    if result.status == _S.ESME_RTHROTTLED:
        return _Bad(403, "User throughput exceeded",
                    {"retry-after": str(doors.retry_after(account, 1))})
    if result.status == _S.VENDOR_NO_ROUTE:
        return _Bad(412, "No route found")
    if result.status == _S.ESME_RMSGQFUL:
        return _Bad(503, "Cannot send submit_sm, the message store is unavailable; retry",
                    {"retry-after": "5"})
    return _Bad(400 if result.status != _S.ESME_RSYSERR else 500,
                f"Cannot send submit_sm: {result.reason or 'refused'} "
                f"(command_status 0x{result.status:08X})")


# --- Kannel ------------------------------------------------------------------------------


def _kannel_invalid(name: str) -> _Bad:
    return _Bad(400, f"Invalid {name}, rejected")


async def _kannel(doors: SubmitDoors, request: Request) -> Response:
    p = await _params(request)

    def get(name: str, alias: str | None = None) -> str | None:
        value = p.get(name, bad=_kannel_invalid)
        if value is None and alias is not None:
            value = p.get(alias, bad=_kannel_invalid)
        return value

    account = await _login(doors, request, get("username", "user"), get("password", "pass"),
                           _Bad(403, "Authorization failed for sendsms"))
    to = get("to")
    if not to:
        raise _Bad(400, "Missing receiver number, rejected")
    coding = get("coding")
    if coding is not None and coding not in _KANNEL_CODINGS:
        raise _Bad(400, "Invalid coding (0 and 2 are taken: 8-bit is not), rejected")
    if get("udh"):
        raise _Bad(400, "UDH is not supported, rejected")
    charset = get("charset") or ("UTF-16BE" if coding == "2" else "UTF-8")
    text = p.get("text", charset=charset, bad=lambda _: _kannel_invalid("text for charset"))
    if text is None:
        raise _Bad(400, "Missing text, rejected")
    mclass = get("mclass")
    if mclass is not None and mclass not in ("0", "1", "2", "3"):
        raise _kannel_invalid("mclass")
    if not get("from"):
        raise _Bad(400, "Sender missing and no global set, rejected")
    try:
        receivers = [destination(n) for n in to.split()]
        sender = source((get("from") or "").strip())
    except AddressProblem as exc:
        raise _kannel_invalid(str(exc).partition(":")[0]) from None
    extra = {Extra.ORIGIN: "kannel", Extra.CALLBACK_FORMAT: "kannel"}
    mask, url = get("dlr-mask"), get("dlr-url")
    if mask and (not mask.isdigit() or not 0 <= int(mask) <= _MASK_BITS):
        raise _kannel_invalid("dlr-mask")
    if mask and int(mask) and url:
        if doors.callback_problem(url) is not None:
            raise _kannel_invalid("dlr-url")
        extra |= {Extra.CALLBACK_URL: url, Extra.CALLBACK_LEVEL: mask,
                  Extra.CALLBACK_METHOD: "GET"}
    validity = _minutes(get("validity"), lambda _: _kannel_invalid("validity")) or None
    deferred = _minutes(get("deferred"), lambda _: _kannel_invalid("deferred"))
    messages = [TextMessage(sender, r, text,
                            encoding=None if coding is None else _KANNEL_CODINGS[coding],
                            flash=mclass == "0",
                            schedule_at=None if deferred is None else doors.wall() + deferred,
                            validity=validity,
                            registered_delivery=doors.registered_delivery(account),
                            extra=extra) for r in receivers]
    client = request.client.host if request.client else ""
    results = await doors.submit(account, client, messages, "kannel")
    if all(r.ok for r in results):
        return _text(202, "0: Accepted for delivery")
    bad = next(r for r in results if not r.ok)
    if bad.status in (_S.ESME_RTHROTTLED, _S.ESME_RMSGQFUL):
        after = doors.retry_after(account, 1) if bad.status == _S.ESME_RTHROTTLED else 5
        return _text(503, "Temporarily unable to accept the message, retry later"
                     if len(results) == 1 else _partial(results),
                     {"retry-after": str(after)})
    if len(results) > 1:
        return _text(400 if not any(r.ok for r in results) else 202, _partial(results))
    return _text(400 if bad.status != _S.ESME_RSYSERR else 500,
                 f"{bad.reason or 'refused'} (command_status 0x{bad.status:08X}), rejected")


def _partial(results: list[TextResult]) -> str:
    accepted = sum(1 for r in results if r.ok)
    return f"0: Accepted for delivery {accepted} of {len(results)} receivers"


# --- shared ------------------------------------------------------------------------------


def _minutes(value: str | None, bad: Callable[[str], _Bad]) -> float | None:
    """Minutes (Jasmin's validity-period, Kannel's validity and deferred) as seconds."""
    if value is None or value == "":
        return None
    try:
        minutes = int(value)
    except ValueError:
        raise bad(value) from None
    if minutes < 0 or not math.isfinite(minutes):
        raise bad(value)
    return minutes * 60.0


async def _one(doors: SubmitDoors, account: Account, request: Request,
               message: TextMessage, door: str) -> TextResult:
    client = request.client.host if request.client else ""
    return (await doors.submit(account, client, [message], door))[0]
