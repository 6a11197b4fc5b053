"""The console's pages and forms, on the node's HTTP listener at ``/``.

Every page is a plain HTML page rendered by Jinja2 (autoescaped: texts and comments are
data, never markup) that works with JavaScript off: search is a GET form, paging and
detail are links, disconnect and logout are POST forms with the session's CSRF token.
htmx only enhances: the overview's numbers and the binds table refresh themselves, and
a search or a page of results replaces the results alone (the same URL answers the
fragment when htmx asks for it). The overview's chart (uPlot) reads ``/api/v1/stats``
with the console's cookie. Nothing is logged per request.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from smppbridge import __version__
from smppbridge.core.errors import StoreUnavailable
from smppbridge.node.api import PREFIX, Filters, _ApiError, _detail, encode_cursor
from smppbridge.node.auth import Principal
from smppbridge.node.console import data
from smppbridge.node.console.access import Access, client_ip
from smppbridge.node.console.sessions import COOKIE, Kind, Session, SessionStore
from smppbridge.node.console.views import (
    AccountRow,
    BindRow,
    MessageRow,
    MessageView,
    ProviderRow,
    Totals,
    api_time,
    form_time,
    local_time,
    message_href,
    query_string,
    stat_options,
    state_options,
)
from smppbridge.node.context import ApiContext
from smppbridge.node.models import MessageItem

__all__ = ["STATIC_PREFIX", "add_console"]

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
STATIC_PREFIX = "/static"
#: the overview chart's window, and messages on a page of the console's search
CHART_MINUTES = 15
PAGE_SIZE = 50
#: the longest value a search field takes (the API's own limits)
_FIELD_LIMITS = {"account": 64, "to": 64, "from": 64, "provider": 64,
                 "provider_id": 128, "since": 64, "until": 64, "state": 16, "stat": 16,
                 "cursor": 512}
_SEARCH_FIELDS = ("to", "from", "account", "state", "stat", "provider", "provider_id",
                  "since", "until")
_HEADERS = {
    "cache-control": "no-store",
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
        "base-uri 'none'; object-src 'none'"),
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "x-content-type-options": "nosniff",
    "vary": "HX-Request, Cookie",
}

Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class NavItem:
    label: str
    href: str
    current: bool


@dataclass(frozen=True, slots=True)
class Frame:
    """What every page's frame shows: navigation, who is logged in, the footer."""

    title: str
    nav: list[NavItem]
    who: str
    logged_in: bool
    login_href: str
    csrf: str
    node: str
    version: str
    zone: str


@dataclass(frozen=True, slots=True)
class Panel:
    """The overview's live numbers (refreshed by htmx)."""

    binds_open: int
    binds_silent: int
    queued: int
    receipts_pending: int
    totals: Totals
    providers: list[ProviderRow]
    updated: str


def add_console(app: FastAPI, ctx: ApiContext) -> None:
    """Mount the console on ``app`` (after the API: the API's principal dependency
    reads the console's sessions for its GET routes through ``app.state``)."""
    console = Console(ctx, Access(ctx, SessionStore()))
    app.state.console_principal = console.access.api_principal
    pages: list[tuple[str, str, Handler]] = [
        ("GET", "/", console.overview), ("GET", "/overview/panel", console.panel),
        ("GET", "/messages", console.messages),
        ("GET", "/messages/{message_id}", console.message),
        ("GET", "/binds", console.binds), ("GET", "/binds/table", console.binds_table),
        ("POST", "/binds/disconnect", console.disconnect),
        ("GET", "/providers", console.providers), ("GET", "/accounts", console.accounts),
        ("GET", "/login", console.login_page), ("POST", "/login", console.login),
        ("POST", "/logout", console.logout)]
    for method, path, handler in pages:
        app.add_api_route(path, console.guarded(handler), methods=[method],
                          include_in_schema=False, response_class=HTMLResponse)
    app.mount(STATIC_PREFIX, StaticFiles(directory=STATIC), name="console-static")


async def _form(request: Request) -> dict[str, str]:
    """A urlencoded form body (what an HTML form posts); the HTTP side's body limit
    bounds it."""
    if not request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"):
        return {}
    body = (await request.body()).decode("utf-8", "replace")
    return dict(parse_qsl(body, keep_blank_values=True))


def _safe_next(value: str | None) -> str:
    """Where to go after a login: a path of this site only (no open redirect)."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


def _fragment(request: Request, target: str) -> bool:
    """Does htmx ask for the element ``target`` alone (not a history restore)?"""
    h = request.headers
    return (h.get("hx-request") == "true" and h.get("hx-target") == target
            and h.get("hx-history-restore-request") != "true")


class Console:
    """The pages; each reads what it shows through :mod:`.data` with the caller's
    principal."""

    def __init__(self, ctx: ApiContext, access: Access) -> None:
        self.ctx = ctx
        self.access = access
        self.env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True,
                               undefined=StrictUndefined, trim_blocks=True,
                               lstrip_blocks=True)

    # --- plumbing ------------------------------------------------------------------

    def guarded(self, handler: Handler) -> Handler:
        """``handler`` with the store's outage answered by a page, not a stack trace."""
        async def page(request: Request) -> Response:
            try:
                return await handler(request)
            except StoreUnavailable as exc:
                return self.error(request, 503, "The store is not available",
                                  f"{exc}. The page will work again once it is back.")
        page.__name__ = f"console_{handler.__name__}"
        return page

    def render(self, name: str, status: int = 200, **values: Any) -> HTMLResponse:
        html = self.env.get_template(name).render(**values)
        return HTMLResponse(html, status_code=status, headers=_HEADERS)

    def frame(self, request: Request, who: Principal | None, session: Session | None,
              title: str) -> Frame:
        path = request.url.path
        nav: list[tuple[str, str]] = []
        if who is not None:
            nav = [("Overview", "/"), ("Messages", "/messages")]
            if who.admin:
                nav += [("Binds", "/binds"), ("Providers", "/providers")]
            nav.append(("Accounts", "/accounts"))
        logged_in = (who is not None and session is not None
                     and session.kind is not Kind.VISITOR)
        if who is None:
            label = "not logged in"
        elif who.account is not None:
            label = f"account {who.account.system_id}"
        elif logged_in:
            label = "operator"
        else:
            label = "operator (open console: no admin tokens, loopback listener)"
        return Frame(
            title=title,
            nav=[NavItem(label, href, path == href or (href != "/" and path.startswith(
                href + "/"))) for label, href in nav],
            who=label, logged_in=logged_in,
            login_href="/login" + query_string({"next": _here(request)}),
            csrf=session.csrf if logged_in and session is not None else "",
            node=self.ctx.node_id, version=__version__, zone=self._zone_label())

    def _zone_label(self) -> str:
        now = local_time(time.time(), data.zone(self.ctx))
        return f"{self.ctx.config().http.timezone} (UTC{now.rsplit(' ', 1)[-1]})"

    def error(self, request: Request, status: int, title: str, message: str,
              who: Principal | None = None, session: Session | None = None
              ) -> HTMLResponse:
        if who is None:
            who, session = self.access.who(request)
        return self.render("error.html", status, frame=self.frame(request, who, session,
                                                                   title),
                           code=status, heading=title, message=message)

    def gate(self, request: Request, *, operator: bool = False
             ) -> tuple[Principal, Session | None] | Response:
        """The caller, or the answer for one who may not see this: the login page (a
        redirect; htmx is told to go there itself), or 403 for an account on an
        operator's page."""
        who, session = self.access.who(request)
        if who is None:
            target = "/login" + query_string({"next": _here(request)})
            if request.headers.get("hx-request") == "true":
                return Response(status_code=204, headers={"hx-redirect": target})
            return RedirectResponse(target, status_code=303)
        if operator and not who.admin:
            return self.error(request, 403, "Operators only",
                              "This page is for operators; an account sees its messages "
                              "and its account.", who, session)
        return who, session

    def _set_cookie(self, request: Request, response: Response, session: Session) -> None:
        response.set_cookie(COOKIE, self.access.sessions.cookie(session), httponly=True,
                            samesite="strict", secure=request.url.scheme == "https",
                            path="/")

    def _csrf_refused(self, request: Request) -> HTMLResponse:
        return self.error(request, 403, "Form refused",
                          "The form did not carry this session's token (CSRF check): it "
                          "came from elsewhere, or the session ended. Reload the page "
                          "and try again.")

    # --- the overview ------------------------------------------------------------

    async def overview(self, request: Request) -> Response:
        gate = self.gate(request)
        if isinstance(gate, Response):
            return gate
        who, session = gate
        frame = self.frame(request, who, session, "Overview")
        if not who.admin:
            rows = [AccountRow.of(a) for a in await data.accounts(self.ctx, who)]
            return self.render("overview_account.html", frame=frame, accounts=rows)
        return self.render("overview.html", frame=frame, panel=await self._panel(),
                           stats_url=f"{PREFIX}/stats?minutes={CHART_MINUTES}",
                           zone=self.ctx.config().http.timezone, minutes=CHART_MINUTES)

    async def panel(self, request: Request) -> Response:
        gate = self.gate(request, operator=True)
        if isinstance(gate, Response):
            return gate
        return self.render("_panel.html", panel=await self._panel())

    async def _panel(self) -> Panel:
        tz = data.zone(self.ctx)
        binds = await data.binds(self.ctx)
        queued, pending = await data.counts(self.ctx)
        return Panel(binds_open=len(binds),
                     binds_silent=sum(1 for b in binds if b.submit_rate == 0),
                     queued=queued, receipts_pending=pending,
                     totals=Totals.of(await data.seconds(self.ctx, CHART_MINUTES)),
                     providers=[ProviderRow.of(p, tz) for p in data.providers(self.ctx)],
                     updated=local_time(time.time(), tz))

    # --- messages ------------------------------------------------------------------

    async def messages(self, request: Request) -> Response:
        gate = self.gate(request)
        if isinstance(gate, Response):
            return gate
        who, session = gate
        tz = data.zone(self.ctx)
        q = request.query_params
        given = {k: q.get(k, "").strip() for k in _SEARCH_FIELDS}
        cursor = q.get("cursor", "").strip()
        api = {k: v or None for k, v in given.items()}
        api["since"] = api_time(given["since"], tz)
        api["until"] = api_time(given["until"], tz)
        rows: list[MessageRow] = []
        next_href = error = ""
        status = 200
        too_long = next((k for k, v in [*given.items(), ("cursor", cursor)]
                         if len(v) > _FIELD_LIMITS[k]), None)
        if too_long is not None:
            error, status = f"{too_long}: at most {_FIELD_LIMITS[too_long]} characters", 422
        else:
            filters = Filters(api["account"], api["to"], api["from"], api["state"],
                              api["stat"], api["provider"], api["provider_id"],
                              api["since"], api["until"], PAGE_SIZE, cursor or None)
            try:
                page = await self.ctx.store.search(filters.query(who))
            except _ApiError as exc:
                if exc.response.status_code == 404:
                    return self.error(request, 404, "Not found", str(exc), who, session)
                error, status = str(exc), exc.response.status_code
            else:
                rows = [MessageRow.of(MessageItem.of(s), tz) for s in page.items]
                if page.next is not None:
                    next_href = "/messages" + query_string(
                        {**given, "cursor": encode_cursor(page.next)})
        if not who.admin:
            api.pop("account")
        results = {
            "rows": rows, "next_href": next_href, "error": error,
            "first_href": "/messages" + query_string(given) if cursor else "",
            "csv_href": f"{PREFIX}/messages.csv" + query_string(api),
            "show_account": who.admin, "filtered": any(given.values()),
        }
        if _fragment(request, "results"):
            return self.render("_results.html", status, r=results)
        form = dict(given, since=form_time(api["since"], tz) or given["since"],
                    until=form_time(api["until"], tz) or given["until"])
        return self.render("messages.html", status,
                           frame=self.frame(request, who, session, "Messages"), r=results,
                           form=form, states=state_options(given["state"]),
                           stats=stat_options(given["stat"]), show_account=who.admin,
                           zone=self.ctx.config().http.timezone)

    async def message(self, request: Request) -> Response:
        gate = self.gate(request)
        if isinstance(gate, Response):
            return gate
        who, session = gate
        message_id = request.path_params["message_id"]
        stored = await self.ctx.store.find(message_id)
        if stored is None or not who.may_see(stored.message.account):
            # another account's message is not found, as in the API
            return self.error(request, 404, "No such message",
                              f"There is no message {message_id} here (or it was purged "
                              f"after [store] history_days).", who, session)
        detail = await _detail(self.ctx.store, stored)
        view = MessageView.of(detail, data.zone(self.ctx), operator=who.admin)
        return self.render("message.html",
                           frame=self.frame(request, who, session, f"Message {view.id}"),
                           m=view, json_href=f"{PREFIX}/messages/{quote(view.id, safe='')}",
                           href=message_href(view.id))

    # --- binds, providers, accounts ----------------------------------------------

    async def binds(self, request: Request) -> Response:
        return await self._binds(request, fragment=False)

    async def binds_table(self, request: Request) -> Response:
        return await self._binds(request, fragment=True)

    async def _binds(self, request: Request, *, fragment: bool) -> Response:
        gate = self.gate(request, operator=True)
        if isinstance(gate, Response):
            return gate
        who, session = gate
        tz = data.zone(self.ctx)
        rows = [BindRow.of(b, tz) for b in await data.binds(self.ctx)]
        notice = ""
        if unbound := request.query_params.get("unbound", ""):
            notice = f"Unbind sent to {unbound}: the session ends once the ESME answers."
        elif gone := request.query_params.get("gone", ""):
            notice = f"No bind {gone} (it may have closed already)."
        new_visitor = None
        if session is None:  # an open console's visitor: a session for the CSRF token
            session = new_visitor = self.access.visitor()
        response = self.render("_binds.html" if fragment else "binds.html",
                               frame=None if fragment else self.frame(
                                   request, who, session, "Binds"),
                               rows=rows, notice=notice, csrf=session.csrf)
        if new_visitor is not None:
            self._set_cookie(request, response, new_visitor)
        return response

    async def disconnect(self, request: Request) -> Response:
        gate = self.gate(request, operator=True)
        if isinstance(gate, Response):
            return gate
        _who, session = gate
        form = await _form(request)
        if not self.access.sessions.csrf_ok(session, form.get("csrf")):
            return self._csrf_refused(request)
        bind_id = form.get("id", "")
        sent = await data.unbind(self.ctx, bind_id)
        where = query_string({"unbound" if sent else "gone": bind_id})
        return RedirectResponse("/binds" + where, status_code=303)

    async def providers(self, request: Request) -> Response:
        gate = self.gate(request, operator=True)
        if isinstance(gate, Response):
            return gate
        who, session = gate
        tz = data.zone(self.ctx)
        return self.render("providers.html",
                           frame=self.frame(request, who, session, "Providers"),
                           rows=[ProviderRow.of(p, tz) for p in data.providers(self.ctx)])

    async def accounts(self, request: Request) -> Response:
        gate = self.gate(request)
        if isinstance(gate, Response):
            return gate
        who, session = gate
        return self.render("accounts.html",
                           frame=self.frame(request, who, session, "Accounts"),
                           rows=[AccountRow.of(a) for a in await data.accounts(self.ctx,
                                                                                 who)])

    # --- login, logout ---------------------------------------------------------------

    def _login(self, request: Request, status: int = 200, *, error: str = "",
               notice: str = "", system_id: str = "", next_path: str = "/"
               ) -> HTMLResponse:
        who, session = self.access.who(request)
        return self.render("login.html", status,
                           frame=self.frame(request, who, session, "Log in"),
                           error=error, notice=notice, system_id=system_id,
                           next=next_path, tokens=bool(self.ctx.config().http.admin_tokens),
                           open=self.access.open)

    async def login_page(self, request: Request) -> Response:
        notice = "You are logged out." if request.query_params.get("out") else ""
        return self._login(request, notice=notice,
                           next_path=_safe_next(request.query_params.get("next")))

    async def login(self, request: Request) -> Response:
        form = await _form(request)
        next_path = _safe_next(form.get("next"))
        ip = client_ip(request)
        system_id = form.get("system_id", "").strip()
        if form.get("kind") == "operator":
            new = await self.access.login_operator(form.get("token", "").strip(), ip)
            error = "Wrong admin token."
        else:
            new = await self.access.login_account(system_id, form.get("password", ""), ip)
            error = ("Wrong system_id or password, or this account or address is locked "
                     "out after repeated failures (as for binds): try again later.")
        if new is None:
            return self._login(request, 401, error=error, system_id=system_id,
                               next_path=next_path)
        old = self.access.session(request)
        if old is not None:
            self.access.sessions.drop(old)
        response = RedirectResponse(next_path, status_code=303)
        self._set_cookie(request, response, new)
        return response

    async def logout(self, request: Request) -> Response:
        form = await _form(request)
        session = self.access.session(request)
        if not self.access.sessions.csrf_ok(session, form.get("csrf")):
            return self._csrf_refused(request)
        assert session is not None  # csrf_ok is False without one
        self.access.sessions.drop(session)
        response = RedirectResponse("/login?out=1", status_code=303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict",
                               secure=request.url.scheme == "https")
        return response


def _here(request: Request) -> str:
    """Where a login sends the browser back to: this page (for an htmx request, the
    page that made it)."""
    url = request.url
    path, query = url.path, url.query
    if request.headers.get("hx-request") == "true":
        current = urlsplit(request.headers.get("hx-current-url", "/"))
        path, query = current.path or "/", current.query
    if path in ("/login", "/logout"):
        return "/"
    return path + (f"?{query}" if query else "")
