"""``POST /api/v1/messages``: messages submitted over HTTP with an account's
credentials (HTTP Basic, or ``Authorization: Bearer`` with one of its ``api_keys``),
one message or a batch of up to 1,000, with an optional ``Idempotency-Key``.

Each message goes down the submit_sm path (node/doors.py): the answer comes once the
store has committed it. Refusals carry the command_status a submit_sm of the message
would get (``smpp_status``); the HTTP status says what kind of refusal it is
(docs/http.md, Submit over HTTP).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import TypeAdapter, ValidationError

from smppbridge.core.accounts import Account
from smppbridge.core.idempotency import IDEMPOTENCY_TTL, IdempotentAnswer
from smppbridge.core.message import Extra
from smppbridge.ingest.texts import TextMessage, TextResult
from smppbridge.node.api import PREFIX
from smppbridge.node.auth import Refused
from smppbridge.node.context import ApiContext
from smppbridge.node.doors import AddressProblem, SubmitDoors, destination, source
from smppbridge.node.submit_models import (
    MAX_BATCH,
    SubmitAccepted,
    SubmitBatch,
    SubmitErrorBody,
    SubmitItems,
    SubmitMessage,
)
from smppbridge.smpp.constants import CommandStatus

__all__ = ["add_submit_api", "refusal"]

_log = structlog.get_logger("smppbridge.http")
_S = CommandStatus
_KEY = re.compile(r"[\x21-\x7e]{1,255}")
#: status and code of a refusal by command_status (flood statuses: per account)
_REFUSALS: Mapping[int, tuple[int, str]] = {
    _S.ESME_RTHROTTLED: (429, "throttled"),
    _S.ESME_RMSGQFUL: (503, "store_unavailable"),
    _S.VENDOR_NO_ROUTE: (422, "no_route"),
    _S.VENDOR_MESSAGE_TOO_LONG: (422, "text_too_long"),
    _S.VENDOR_INVALID_DATA_CODING: (422, "invalid_encoding"),
    _S.VENDOR_INVALID_MACRO: (422, "invalid_macro"),
    _S.ESME_RSYSERR: (500, "internal_error"),
}
_TEMPORARY = (429, 503)


class _Answer(Exception):
    """An answer made before the messages are submitted (a refused request)."""

    def __init__(self, status: int, code: str, message: str, parameter: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        error: dict[str, Any] = {"code": code, "message": message}
        if parameter is not None:
            error["parameter"] = parameter
        self.status = status
        self.body = _dump({"error": error})
        self.headers = dict(headers or {})


def refusal(result: TextResult, account: Account) -> tuple[int, dict[str, Any]]:
    """The HTTP status and ``error`` object of a refused message."""
    if result.status == account.flood.duplicate_status:
        status, code = 409, "duplicate"
    elif result.status == account.flood.flood_status:
        status, code = 409, "flood"
    else:
        status, code = _REFUSALS.get(result.status, (422, "refused"))
    message = result.reason or f"refused with command_status 0x{result.status:08X}"
    if result.field and not message.startswith(f"{result.field}:"):
        message = f"{result.field}: {message}"
    error: dict[str, Any] = {"code": code, "smpp_status": f"0x{result.status:08X}",
                             "message": message}
    if result.field:
        error["parameter"] = result.field
    return status, error


def add_submit_api(app: FastAPI, ctx: ApiContext, doors: SubmitDoors) -> None:
    """Mount ``POST /api/v1/messages`` on ``app`` (beside the operator API's GET)."""

    @app.post(f"{PREFIX}/messages", tags=["messages"], status_code=202,
              summary="Submit one message or a batch", openapi_extra=_OPENAPI)
    async def submit(request: Request) -> Response:
        client = request.client.host if request.client else ""
        try:
            account = await _account(ctx, request.headers.get("authorization"), client)
            _json_only(request.headers.get("content-type", ""))
            items = _parse(await request.body(), account, doors)
            key = request.headers.get("idempotency-key")
            if key is None:
                status, body, headers = await _submit(doors, account, client, items)
            else:
                status, body, headers = await _idempotent(ctx, doors, account, client,
                                                          items, key, await request.body())
        except _Answer as answer:
            status, body, headers = answer.status, answer.body, answer.headers
        return Response(body, status_code=status, headers=headers,
                        media_type="application/json")

    @app.api_route(f"{PREFIX}/messages", methods=["OPTIONS", "PUT", "PATCH", "DELETE"],
                   include_in_schema=False)
    async def other_method() -> Response:
        # Two routes share the path (GET lists, POST submits): without this, a 405
        # would name only the first one's method in Allow.
        return Response(_dump({"error": {"code": "method_not_allowed",
                                         "message": "GET or POST"}}), status_code=405,
                        headers={"allow": "GET, POST"}, media_type="application/json")

    _document(app)


async def _account(ctx: ApiContext, authorization: str | None, client: str) -> Account:
    try:
        who = await ctx.auth.principal(authorization, client)
    except Refused as exc:
        code = "unauthorized" if exc.status == 401 else "forbidden"
        headers = {"www-authenticate": 'Basic realm="smppbridge", Bearer'} \
            if exc.status == 401 else None
        raise _Answer(exc.status, code, exc.message, headers=headers) from None
    if who.account is None:
        raise _Answer(403, "forbidden", "submitting takes an account's credentials "
                      "(HTTP Basic or one of its api_keys), not an admin token")
    return who.account


def _json_only(content_type: str) -> None:
    """Only a JSON body is read: a browser sends one cross-site only after a CORS
    preflight, which this API never grants, so a page elsewhere cannot submit with the
    Basic credentials its visitor's browser has cached (a text/plain form could)."""
    kind = content_type.split(";", maxsplit=1)[0].strip().lower()
    if kind != "application/json" and not kind.endswith("+json"):
        raise _Answer(415, "unsupported_media_type", "Content-Type: application/json "
                      "is required", "Content-Type")


def _parse(raw: bytes, account: Account, doors: SubmitDoors
           ) -> tuple[bool, list[TextMessage]]:
    """``(batch, messages)`` of a request body, or the answer refusing it."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _Answer(400, "invalid_json", f"body: not JSON ({exc})", "body") from None
    if not isinstance(data, dict):
        raise _Answer(400, "invalid_json", "body: a JSON object, with to/from/text or "
                      "messages", "body")
    batch = "messages" in data
    if batch and isinstance(data["messages"], list) and len(data["messages"]) > MAX_BATCH:
        raise _Answer(422, "invalid_parameter", f"messages: at most {MAX_BATCH} in one "
                      f"request, not {len(data['messages'])}", "messages")
    try:
        if batch:
            given = SubmitBatch.model_validate(data).messages
        else:
            given = [SubmitMessage.model_validate(data)]
    except ValidationError as exc:
        first = exc.errors()[0]
        parameter = ".".join(str(p) for p in first["loc"]) or "body"
        raise _Answer(422, "invalid_parameter", f"{parameter}: {first['msg']}",
                      parameter) from None
    messages = []
    for i, m in enumerate(given):
        try:
            messages.append(_message(m, account, doors))
        except _Field as exc:
            parameter = f"messages.{i}.{exc.field}" if batch else exc.field
            raise _Answer(422, "invalid_parameter", f"{parameter}: {exc}",
                          parameter) from None
    return batch, messages


class _Field(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _message(m: SubmitMessage, account: Account, doors: SubmitDoors) -> TextMessage:
    try:
        to, sender = destination(m.to), source(m.from_)
    except AddressProblem as exc:
        name, _, why = str(exc).partition(": ")
        raise _Field(name, why) from None
    extra = {Extra.ORIGIN: "http", Extra.CALLBACK_FORMAT: "json",
             Extra.CALLBACK_METHOD: "POST"}
    if m.client_ref is not None:
        extra[Extra.CLIENT_REF] = m.client_ref
    if m.callback_url is not None:
        problem = doors.callback_problem(m.callback_url)
        if problem is not None:
            raise _Field("callback_url", problem)
        extra[Extra.CALLBACK_URL] = m.callback_url
    schedule_at = None
    if m.schedule_at is not None:
        try:
            at = datetime.fromisoformat(m.schedule_at.replace("Z", "+00:00"))
        except ValueError:
            raise _Field("schedule_at", "not an ISO 8601 time") from None
        schedule_at = (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()
    return TextMessage(sender, to, m.text, encoding=m.encoding, flash=m.flash,
                       schedule_at=schedule_at,
                       validity=None if m.validity is None else float(m.validity),
                       registered_delivery=doors.registered_delivery(account), extra=extra)


async def _submit(doors: SubmitDoors, account: Account, client: str,
                  parsed: tuple[bool, list[TextMessage]]) -> tuple[int, bytes, dict[str, str]]:
    batch, messages = parsed
    results = await doors.submit(account, client, messages, "http")
    headers: dict[str, str] = {}
    throttled = sum(1 for r in results if r.status == _S.ESME_RTHROTTLED)
    if throttled:
        headers["retry-after"] = str(doors.retry_after(account, throttled))
    elif any(r.status == _S.ESME_RMSGQFUL for r in results):
        headers["retry-after"] = "5"
    if not batch:
        result = results[0]
        if result.ok:
            return 202, _dump({"id": result.message_id, "parts": result.parts}), headers
        status, error = refusal(result, account)
        return status, _dump({"error": error}), headers
    items: list[dict[str, Any]] = []
    for result in results:
        if result.ok:
            items.append({"id": result.message_id, "parts": result.parts})
        else:
            items.append({"error": refusal(result, account)[1]})
    status = 202
    for temporary, code in ((_S.ESME_RTHROTTLED, 429), (_S.ESME_RMSGQFUL, 503)):
        if all(r.status == temporary for r in results):
            status = code  # nothing was taken: the whole request is to be retried
    return status, _dump({"items": items}), headers


async def _idempotent(ctx: ApiContext, doors: SubmitDoors, account: Account, client: str,
                      parsed: tuple[bool, list[TextMessage]], key: str, raw: bytes
                      ) -> tuple[int, bytes, dict[str, str]]:
    """The first answer to (account, key) for a day: kept in the store, so a retry
    after a restart gets it too; a second message is never made."""
    if not _KEY.fullmatch(key):
        raise _Answer(422, "invalid_parameter", "Idempotency-Key: 1-255 printable ASCII "
                      "characters", "Idempotency-Key")
    # The request as parsed, keys sorted: the same message serialised another way
    # (spacing, key order) is the same request.
    canonical = json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    store, now = ctx.store, doors.clock()
    kept = await store.claim_idempotency(account.system_id, key, digest, now,
                                         IDEMPOTENCY_TTL)
    if kept is not None:
        if kept.request_hash != digest:
            raise _Answer(422, "idempotency_key_reused", "Idempotency-Key: already used "
                          "with another request body", "Idempotency-Key")
        if kept.in_flight:
            raise _Answer(409, "idempotency_key_in_use", "Idempotency-Key: a request with "
                          "this key is being answered; retry", "Idempotency-Key",
                          headers={"retry-after": "1"})
        return kept.status, kept.body.encode(), {"idempotent-replayed": "true"}
    try:
        status, body, headers = await _submit(doors, account, client, parsed)
    except BaseException:
        await _release(store, account.system_id, key)
        raise
    if status in _TEMPORARY or status >= 500:
        await _release(store, account.system_id, key)
    else:
        try:
            await store.save_idempotency(account.system_id, key,
                                         IdempotentAnswer(digest, status, body.decode()),
                                         doors.clock(), IDEMPOTENCY_TTL)
        except Exception:  # the messages are stored: answer; the key stays in flight
            _log.warning("idempotency.save_failed", account=account.system_id,
                         exc_info=True)
    return status, body, headers


async def _release(store: Any, account: str, key: str) -> None:
    try:
        await store.release_idempotency(account, key)
    except Exception:
        _log.warning("idempotency.release_failed", account=account, exc_info=True)


def _dump(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


# --- the OpenAPI description ---------------------------------------------------------------

_REF = "#/components/schemas/{model}"


def _ref(model: type) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_OPENAPI: dict[str, Any] = {
    "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                    "description": "the same key from the same account within 24 h gets "
                    "the first answer and never makes a second message"}],
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "oneOf": [_ref(SubmitMessage), _ref(SubmitBatch)]}}}},
    "responses": {
        "202": _json({"oneOf": [_ref(SubmitAccepted), _ref(SubmitItems)]},
                     "stored: one message's id and parts, or one item per message"),
        **{str(code): _json(_ref(SubmitErrorBody), why) for code, why in (
            (400, "not JSON"), (401, "no or wrong credentials"),
            (403, "an admin token (submitting takes an account)"),
            (409, "refused by a flood rule, or the Idempotency-Key is in use"),
            (413, "body over [http] max_body"),
            (415, "the body is not declared application/json"),
            (422, "a field is invalid, the text is too long, no route"),
            (429, "over the account's throughput (Retry-After)"),
            (503, "the store is unavailable (Retry-After)"))},
    },
}


def _document(app: FastAPI) -> None:
    """Add the submit models to the OpenAPI components (the operation refers to them)."""
    original = app.openapi
    models: Sequence[type] = (SubmitMessage, SubmitBatch, SubmitAccepted, SubmitItems,
                              SubmitErrorBody)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = original()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in models:
                adapter: TypeAdapter[Any] = TypeAdapter(model)
                found = adapter.json_schema(ref_template=_REF, by_alias=True)
                components.update(found.pop("$defs", {}))
                components[model.__name__] = found
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
