"""The operator API, ``/api/v1``: message history, binds, providers, accounts, stats.

Who may see what is :mod:`smppbridge.node.auth`'s: an operator sees everything; an
account sees its own messages and its own account row, and another account's message
answers 404. Every bad parameter is answered 422 with a JSON error that names it.
Lists are newest first with an opaque cursor (keyset pagination in the store); the CSV
export streams page by page, so a client reading slowly holds one page in memory and
is slowed by the transport's flow control, not buffered.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import unquote_plus

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from smppbridge.core.errors import StoreUnavailable
from smppbridge.core.history import MAX_PAGE, Cursor, MessageQuery
from smppbridge.core.ports import Store
from smppbridge.core.records import DeliveryState, StoredMessage
from smppbridge.node.auth import Principal, Refused
from smppbridge.node.context import (
    ApiContext,
    account_items,
    bind_items,
    provider_items,
    unbind_bind,
)
from smppbridge.node.models import (
    AccountItem,
    BindItem,
    ErrorBody,
    MessageDetail,
    MessageItem,
    MessagePage,
    ProviderItem,
    Receipt,
    StatsBody,
    TimelineItem,
    UnbindBody,
    iso,
)
from smppbridge.smpp.receipts import Stat

__all__ = ["add_api", "api_error"]

PREFIX = "/api/v1"
#: a CSV export reads the store this many messages at a time
CSV_PAGE = 500
_CSV_COLUMNS = ("id", "account", "from", "to", "kind", "encoding", "text", "comment",
                "parts", "state", "stat", "err", "provider", "provider_id", "submitted_at",
                "done_at")


def api_error(status: int, code: str, message: str, parameter: str | None = None
              ) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if parameter is not None:
        body["parameter"] = parameter
    return JSONResponse({"error": body}, status_code=status)


class _ApiError(Exception):
    def __init__(self, status: int, code: str, message: str,
                 parameter: str | None = None) -> None:
        super().__init__(message)
        self.response = api_error(status, code, message, parameter)


def _invalid(parameter: str, message: str) -> _ApiError:
    return _ApiError(422, "invalid_parameter", message, parameter)


def _not_found(what: str = "message") -> _ApiError:
    return _ApiError(404, "not_found", f"no such {what}")


# --- parsing ---------------------------------------------------------------------------


def parse_time(value: str | None, parameter: str) -> float | None:
    """ISO 8601 (a naive time is UTC) or UNIX seconds."""
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _invalid(parameter, f"{parameter}: not an ISO 8601 time or UNIX seconds"
                       ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def encode_cursor(cursor: Cursor | None) -> str | None:
    if cursor is None:
        return None
    raw = json.dumps([cursor.submitted_at, cursor.message_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(value: str | None) -> Cursor | None:
    if not value:
        return None
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        at, mid = json.loads(raw)
        if not isinstance(mid, str) or isinstance(at, bool) or not isinstance(
                at, int | float):
            raise TypeError
        return Cursor(float(at), mid)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise _invalid("cursor", "cursor: not a cursor this API gave") from None


@dataclass(frozen=True)
class Filters:
    """The query parameters of the message list and its CSV."""

    account: str | None
    to: str | None
    from_: str | None
    state: str | None
    stat: str | None
    provider: str | None
    provider_id: str | None
    since: str | None
    until: str | None
    limit: int
    cursor: str | None

    def query(self, principal: Principal) -> MessageQuery:
        account = self.account or None
        if principal.account is not None:
            if account is not None and account != principal.account.system_id:
                raise _not_found("account")
            account = principal.account.system_id
        state = None
        if self.state:
            try:
                state = DeliveryState(self.state)
            except ValueError:
                raise _invalid("state", "state: one of queued, sent, final") from None
        if self.stat and self.stat not in Stat.__members__:
            raise _invalid("stat", "stat: one of " + ", ".join(Stat.__members__))
        since = parse_time(self.since, "since")
        until = parse_time(self.until, "until")
        if since is not None and until is not None and until <= since:
            raise _invalid("until", "until: must be after since")
        return MessageQuery(account=account, destination=self.to or None,
                            source=self.from_ or None, state=state, stat=self.stat or None,
                            provider=self.provider or None,
                            provider_id=self.provider_id or None, since=since, until=until,
                            limit=self.limit, after=decode_cursor(self.cursor))


def _filters(
    account: Annotated[str | None, Query(max_length=64)] = None,
    to: Annotated[str | None, Query(max_length=64, description="destination, exact")] = None,
    from_: Annotated[str | None, Query(alias="from", max_length=64,
                                       description="source, exact")] = None,
    state: Annotated[str | None, Query(description="queued, sent or final")] = None,
    stat: Annotated[str | None, Query(description="DELIVRD, UNDELIV, ...")] = None,
    provider: Annotated[str | None, Query(max_length=64)] = None,
    provider_id: Annotated[str | None, Query(max_length=128)] = None,
    since: Annotated[str | None, Query(description="ISO 8601 or UNIX seconds")] = None,
    until: Annotated[str | None, Query(description="ISO 8601 or UNIX seconds")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Filters:
    return Filters(account, to, from_, state, stat, provider, provider_id, since, until,
                   limit, cursor)


# --- the routes --------------------------------------------------------------------------


async def _principal(request: Request) -> Principal:
    ctx: ApiContext = request.app.state.api
    client = request.client.host if request.client else ""
    header = request.headers.get("authorization")
    # Without a header, a safe method may use the web console's session (its cookie):
    # the console's CSV link. Never for DELETE: a cookie rides along with a forged
    # cross-site request, a header does not (docs/console.md).
    hook: Callable[[Request], Principal | None] | None = getattr(
        request.app.state, "console_principal", None)
    if not header and hook is not None and request.method in ("GET", "HEAD"):
        who = hook(request)
        if who is not None:
            return who
    try:
        return await ctx.auth.principal(header, client)
    except Refused as exc:
        raise _ApiError(exc.status, "unauthorized" if exc.status == 401 else "forbidden",
                        exc.message) from None


async def _admin(who: Annotated[Principal, Depends(_principal)]) -> Principal:
    if not who.admin:
        raise _ApiError(403, "forbidden", "operators only")
    return who


#: the caller of an operation (an operator or an account) / an operator only
Who = Annotated[Principal, Depends(_principal)]
Admin = Annotated[Principal, Depends(_admin)]


def add_api(app: FastAPI, ctx: ApiContext) -> None:
    """Mount ``/api/v1`` (and its OpenAPI document and docs) on ``app``."""
    app.state.api = ctx
    responses: dict[int | str, dict[str, Any]] = {
        401: {"model": ErrorBody}, 403: {"model": ErrorBody}, 404: {"model": ErrorBody},
        422: {"model": ErrorBody}, 503: {"model": ErrorBody}}
    api = APIRouter(prefix=PREFIX, responses=responses)

    @api.get("/messages", response_model=MessagePage, tags=["messages"])
    async def list_messages(who: Who, f: Annotated[Filters, Depends(_filters)]
                            ) -> MessagePage:
        """Messages newest first; every filter given must match."""
        page = await ctx.store.search(f.query(who))
        return MessagePage(items=[MessageItem.of(s) for s in page.items],
                           next_cursor=encode_cursor(page.next))

    @api.get("/messages.csv", tags=["messages"],
             responses={200: {"content": {"text/csv": {}}}})
    async def export_csv(who: Who, f: Annotated[Filters, Depends(_filters)]) -> Response:
        """The same filters as the list, every page, as CSV (streamed)."""
        query = f.query(who)
        return StreamingResponse(_csv_rows(ctx.store, query), media_type="text/csv",
                                 headers={"content-disposition":
                                          'attachment; filename="messages.csv"'})

    @api.get("/messages/{message_id}", response_model=MessageDetail, tags=["messages"])
    async def get_message(message_id: str, who: Who) -> MessageDetail:
        """One message by its id or any of its part ids, with its timeline and
        receipts."""
        stored = await ctx.store.find(message_id)
        if stored is None or not who.may_see(stored.message.account):
            raise _not_found()
        return await _detail(ctx.store, stored)

    @api.get("/binds", response_model=list[BindItem], tags=["binds"])
    async def list_binds(_: Admin) -> list[BindItem]:
        """Every open bind of this node and, in a cluster, of every live node."""
        return await bind_items(ctx)

    @api.delete("/binds/{bind_id}", status_code=202, response_model=UnbindBody,
                tags=["binds"])
    async def unbind(bind_id: str, _: Admin) -> UnbindBody:
        """Send unbind to the bind (on whichever node holds it); the ESME answers and
        the session ends, or the response timer ends it."""
        if not await unbind_bind(ctx, bind_id):
            raise _not_found("bind")
        return UnbindBody(status="unbind sent", id=bind_id)

    @api.get("/providers", response_model=list[ProviderItem], tags=["providers"])
    async def list_providers(_: Admin) -> list[ProviderItem]:
        """Each provider's health, breaker, traffic of the last 5 minutes, latency and
        balance."""
        return provider_items(ctx)

    @api.get("/accounts", response_model=list[AccountItem], tags=["accounts"])
    async def list_accounts(who: Who) -> list[AccountItem]:
        """Each account's settings (no secrets) and its traffic now; an account sees
        its own row only."""
        return await account_items(ctx, who)

    @api.get("/stats", response_model=StatsBody, tags=["stats"])
    async def stats(_: Admin,
                    minutes: Annotated[int, Query(ge=1, le=60)] = 15) -> StatsBody:
        """Per-second counts of the last ``minutes`` minutes, per node (every live
        node of a cluster)."""
        nodes = [(ctx.node_id, ctx.stats.last(minutes))]
        if ctx.registry is not None:
            for report in await ctx.registry.reports():
                if report.node_id != ctx.node_id:
                    nodes.append((report.node_id,
                                  await ctx.registry.seconds(report.node_id, minutes * 60)))
        return StatsBody.model_validate({"minutes": minutes, "nodes": [
            {"node": node, "seconds": [dict(s.as_dict(), at=iso(s.at)) for s in seconds]}
            for node, seconds in nodes]})

    app.include_router(api)
    _add_errors(app)
    _add_docs(app)


async def _csv_rows(store: Store, query: MessageQuery) -> AsyncIterator[str]:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(_CSV_COLUMNS)
    yield _take(buf)
    q = replace(query, limit=CSV_PAGE)
    while True:
        page = await store.search(q)
        for stored in page.items:
            item = MessageItem.of(stored)
            writer.writerow([item.id, item.account, item.from_, item.to, item.kind,
                             item.encoding, item.text, item.comment or "", item.parts,
                             item.state, item.stat, item.err, item.provider,
                             item.provider_id, item.submitted_at, item.done_at or ""])
        yield _take(buf)
        if page.next is None:
            return
        q = replace(q, after=page.next)


def _take(buf: io.StringIO) -> str:
    text = buf.getvalue()
    buf.seek(0)
    buf.truncate()
    return text


async def _detail(store: Store, stored: StoredMessage) -> MessageDetail:
    m = stored.message
    timeline = await store.timeline(m.message_id)
    receipts = await store.receipts_of(m.message_id)
    item = MessageItem.of(stored)
    hlr = None
    if m.content.kind.value == "hlr":
        hlr = _hlr_fields(timeline[-1].detail if timeline else "")
    return MessageDetail(**item.model_dump(by_alias=False), part_ids=list(m.part_ids),
                         timeline=[TimelineItem.of(e) for e in timeline],
                         receipts=[Receipt.of(r) for r in receipts], hlr=hlr)


def _hlr_fields(detail: str) -> dict[str, str] | None:
    """The HLR fields a final status carries in its detail (``hlr: imsi:... ...``)."""
    _, sep, rest = detail.partition("hlr: ")
    if not sep:
        return None
    out: dict[str, str] = {}
    for field in rest.split():
        name, colon, value = field.partition(":")
        if colon:
            out[name] = unquote_plus(value)
    return out


def _add_errors(app: FastAPI) -> None:
    @app.exception_handler(_ApiError)
    async def api_failed(_: Request, exc: _ApiError) -> JSONResponse:
        if exc.response.status_code == 401:
            exc.response.headers["www-authenticate"] = 'Basic realm="smppbridge", Bearer'
        return exc.response

    @app.exception_handler(StoreUnavailable)
    async def store_down(_: Request, exc: StoreUnavailable) -> JSONResponse:
        response = api_error(503, "store_unavailable", f"the store is not available: {exc}")
        response.headers["retry-after"] = "5"
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body")]
        parameter = ".".join(loc) or None
        message = f"{parameter}: {first.get('msg', 'invalid')}" if parameter else str(
            first.get("msg", "invalid request"))
        return api_error(422, "invalid_parameter", message, parameter)


_STATIC = f"{PREFIX}/static/swagger-ui"


def _add_docs(app: FastAPI) -> None:
    @app.get("/api/v1/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/api/v1/openapi.json",
            title="smppbridge API", swagger_js_url=f"{_STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{_STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{_STATIC}/favicon-32x32.png")
