"""Who is looking at the console: the same callers and rules as the operator API.

A login is checked by :class:`smppbridge.node.auth.ApiAuth`, exactly as the API checks a
header: an admin token as ``Bearer``, an account's system_id and password as ``Basic``
(so through ``Admission.check_credentials``: the same password hash, the same
``allowed_networks``, the same lockout as its binds). On success the console keeps a
session (:mod:`smppbridge.node.console.sessions`); at each request the session is turned
back into a :class:`~smppbridge.node.auth.Principal` from the config in force:

* an operator's session holds while the admin tokens are those it logged in with (a
  reload that changes them logs the operators out);
* an account's session holds while the account exists with the same password and the
  client's address is in its ``allowed_networks``;
* a visitor's session (no login, only a CSRF token) is an operator while the console
  is open: no admin tokens and a loopback listener, as
  :attr:`ApiAuth.open_without_tokens` says for the API.

The API reads the same sessions for its safe methods (GET, HEAD): the console's CSV link
works with the console's cookie, while a DELETE still needs a header credential (a
cookie travels with a forged cross-site request; a header does not).
"""

from __future__ import annotations

import base64

from fastapi import Request

from smppbridge.core.accounts import Account
from smppbridge.node.auth import Principal, Refused
from smppbridge.node.console.sessions import COOKIE, Kind, Session, SessionStore
from smppbridge.node.context import ApiContext

__all__ = ["Access", "client_ip"]


def client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


class Access:
    """Logins, sessions and the principal of a request, for the console and the API."""

    def __init__(self, ctx: ApiContext, sessions: SessionStore) -> None:
        self.ctx = ctx
        self.sessions = sessions

    @property
    def open(self) -> bool:
        """Is the console open without a login (no admin tokens, loopback listener)?"""
        return not self.ctx.config().http.admin_tokens and self.ctx.auth.open_without_tokens

    def session(self, request: Request) -> Session | None:
        """The request's live session, if its cookie names one."""
        return self.sessions.get(request.cookies.get(COOKIE))

    def principal(self, session: Session | None, ip: str) -> Principal | None:
        """What ``session`` may see now, or None (no session, or one that no longer
        holds: it is then dropped)."""
        if session is None:
            return None
        who = self._resolve(session, ip)
        if who is None and session.kind is not Kind.VISITOR:
            self.sessions.drop(session)
        return who

    def _resolve(self, session: Session, ip: str) -> Principal | None:
        if session.kind is Kind.VISITOR:
            return Principal() if self.open else None
        if session.kind is Kind.OPERATOR:
            return Principal() if session.granted_on == self._tokens_digest() else None
        account = self.ctx.config().account(session.system_id)
        if (account is None or session.granted_on != self._account_digest(account)
                or not account.allows(ip)):
            return None
        return Principal(account)

    def who(self, request: Request) -> tuple[Principal | None, Session | None]:
        """The caller of a console page (None: a login is needed) and its session."""
        session = self.session(request)
        who = self.principal(session, client_ip(request))
        if who is None and self.open:
            who = Principal()
        return who, session

    def api_principal(self, request: Request) -> Principal | None:
        """The hook the API's principal dependency calls for a safe method without an
        Authorization header: the console session's principal, or None."""
        if request.method not in ("GET", "HEAD"):
            return None
        return self.principal(self.session(request), client_ip(request))

    async def login_operator(self, token: str, ip: str) -> Session | None:
        """A session for an admin token (checked as the API checks ``Bearer``)."""
        if not token or not self.ctx.config().http.admin_tokens:
            return None
        try:
            who = await self.ctx.auth.principal(f"Bearer {token}", ip)
        except Refused:
            return None
        if not who.admin:
            return None
        return self.sessions.create(Kind.OPERATOR, granted_on=self._tokens_digest())

    async def login_account(self, system_id: str, password: str, ip: str
                            ) -> Session | None:
        """A session for an account (checked as the API checks ``Basic``: the bind
        check and its lockout)."""
        if not system_id or ":" in system_id:
            return None
        raw = base64.b64encode(f"{system_id}:{password}".encode()).decode()
        try:
            who = await self.ctx.auth.principal(f"Basic {raw}", ip)
        except Refused:
            return None
        if who.account is None:
            return None
        return self.sessions.create(Kind.ACCOUNT, system_id=who.account.system_id,
                                    granted_on=self._account_digest(who.account))

    def visitor(self) -> Session:
        """A session without a login, for the CSRF token of an open console's forms."""
        return self.sessions.create(Kind.VISITOR)

    def _tokens_digest(self) -> str:
        return self.sessions.digest("\0".join(self.ctx.config().http.admin_tokens))

    def _account_digest(self, account: Account) -> str:
        return self.sessions.digest(f"{account.system_id}\0{account.password}")
