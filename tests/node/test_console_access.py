"""Who the console lets in (smppbridge/node/console/access.py): logins checked by the
API's own ApiAuth (so an account's login shares the binds' lockout), and sessions that
hold only while what they were granted on still stands."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pytest

from smppbridge.config import Config, parse_config
from smppbridge.node.auth import ApiAuth
from smppbridge.node.console.access import Access
from smppbridge.node.console.sessions import Kind, SessionStore
from smppbridge.server.admission import Admission, BindRegistry

TOKEN = "an-admin-token-of-some-length"
CONFIG = f"""
[smpp]
listen = "127.0.0.1:2775"
bind_max_failures = 3
[http]
admin_tokens = ["{TOKEN}"]
[[accounts]]
system_id = "acme"
password = "pw"
[[accounts]]
system_id = "lan"
password = "pw"
allowed_networks = ["10.0.0.0/8"]
"""


@dataclass
class Ctx:
    """What Access reads of the API's context: the config in force and the auth."""

    cfg: Config
    auth: ApiAuth

    def config(self) -> Config:
        return self.cfg


def _access(*, tokens: bool = True, open_without_tokens: bool = False) -> tuple[Access, Ctx]:
    cfg = parse_config(CONFIG if tokens else CONFIG.replace(f'admin_tokens = ["{TOKEN}"]',
                                                            ""), env={})
    admission = Admission(cfg.smpp, cfg.accounts_by_id(), BindRegistry())
    ctx = Ctx(cfg, ApiAuth(lambda: ctx.cfg.http.admin_tokens, admission,
                           open_without_tokens=open_without_tokens))
    access = Access(ctx, SessionStore())  # type: ignore[arg-type]
    return access, ctx


def _with(cfg: Config, **http: Any) -> Config:
    return replace(cfg, http=replace(cfg.http, **http))


async def test_an_operator_logs_in_with_an_admin_token() -> None:
    """The right token gives an operator's session; a wrong or empty one none."""
    access, _ = _access()
    assert await access.login_operator("wrong-token-of-some-length", "127.0.0.1") is None
    assert await access.login_operator("", "127.0.0.1") is None
    session = await access.login_operator(TOKEN, "127.0.0.1")
    assert session is not None
    assert session.kind is Kind.OPERATOR
    who = access.principal(session, "127.0.0.1")
    assert who is not None
    assert who.admin


async def test_an_operators_session_ends_when_the_tokens_change() -> None:
    """A reload that changes the admin tokens ends the operators' sessions."""
    access, ctx = _access()
    session = await access.login_operator(TOKEN, "127.0.0.1")
    ctx.cfg = _with(ctx.cfg, admin_tokens=("another-token-of-some-length",))
    assert access.principal(session, "127.0.0.1") is None
    assert session is not None
    assert access.sessions.get(access.sessions.cookie(session)) is None  # dropped


async def test_an_account_logs_in_with_its_smpp_credentials() -> None:
    """system_id and password as for a bind; the session sees that account only."""
    access, _ = _access()
    assert await access.login_account("acme", "wrong", "127.0.0.1") is None
    assert await access.login_account("nobody", "pw", "127.0.0.1") is None
    assert await access.login_account("ac:me", "pw", "127.0.0.1") is None
    session = await access.login_account("acme", "pw", "127.0.0.1")
    assert session is not None
    who = access.principal(session, "127.0.0.1")
    assert who is not None
    assert who.account is not None
    assert who.account.system_id == "acme"
    assert who.may_see("acme")
    assert not who.may_see("other")


async def test_the_binds_lockout_applies_to_console_logins() -> None:
    """After bind_max_failures wrong passwords from an address, the right one is
    refused too: the same counter as binds and the API's Basic."""
    access, _ = _access()
    for _ in range(3):
        assert await access.login_account("acme", "wrong", "192.0.2.7") is None
    assert await access.login_account("acme", "pw", "192.0.2.7") is None


async def test_an_accounts_session_holds_while_the_account_stands() -> None:
    """A changed password or a removed account ends the session; so does a request
    from outside the account's allowed_networks."""
    access, ctx = _access()
    session = await access.login_account("acme", "pw", "127.0.0.1")
    accounts = ctx.cfg.accounts
    ctx.cfg = replace(ctx.cfg, accounts=tuple(replace(a, password="new")
                                              if a.system_id == "acme" else a
                                              for a in accounts))
    assert access.principal(session, "127.0.0.1") is None
    ctx.cfg = replace(ctx.cfg, accounts=accounts)
    session = await access.login_account("acme", "pw", "127.0.0.1")
    ctx.cfg = replace(ctx.cfg, accounts=tuple(a for a in accounts if a.system_id != "acme"))
    assert access.principal(session, "127.0.0.1") is None
    ctx.cfg = replace(ctx.cfg, accounts=accounts)
    lan = await access.login_account("lan", "pw", "10.1.2.3")
    assert lan is not None
    assert access.principal(lan, "192.0.2.1") is None


@pytest.mark.parametrize(("tokens", "loopback", "open_"), [
    (False, True, True), (False, False, False), (True, True, False)])
async def test_the_console_is_open_as_the_api_is(tokens: bool, loopback: bool,
                                                 open_: bool) -> None:
    """Open without a login only with no admin tokens and a loopback listener; a
    visitor's session is an operator only while that holds."""
    access, ctx = _access(tokens=tokens, open_without_tokens=loopback)
    assert access.open is open_
    visitor = access.visitor()
    who = access.principal(visitor, "127.0.0.1")
    assert (who is not None and who.admin) is open_
    if open_:
        ctx.cfg = _with(ctx.cfg, admin_tokens=(TOKEN,))
        assert access.principal(visitor, "127.0.0.1") is None
