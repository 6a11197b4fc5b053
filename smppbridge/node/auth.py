"""Who is asking the HTTP API, and what they may see.

Two kinds of caller:

* an **operator**: ``Authorization: Bearer <token>`` with one of ``[http] admin_tokens``
  (plain, compared in constant time, or a ``scrypt$`` hash from ``smppbridge
  hash-password``). With no admin token configured the operator side is open when the
  HTTP listener is on a loopback address (the demo, a laptop) and closed (401)
  anywhere else; the node says once at start which it is.
* an **account**: HTTP Basic with its system_id and password — the same check as its
  binds: the same password hash, the same ``allowed_networks``, the same lockout after
  repeated failures (one counter for binds and HTTP) — or ``Authorization: Bearer``
  with one of its ``api_keys`` (compared as admin tokens are, from its
  ``allowed_networks`` only). An account sees only its own
  messages and its own account row; another account's message answers 404, as if it
  did not exist.

Credentials are never logged; a refusal says only that the credentials were refused.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from smppbridge.core.accounts import Account
from smppbridge.core.passwords import PasswordChecker
from smppbridge.server.admission import Admission
from smppbridge.smpp.constants import CommandStatus

__all__ = ["ApiAuth", "Principal", "Refused"]

_log = structlog.get_logger("smppbridge.http")


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller: an operator (``account is None``) or one account."""

    account: Account | None = None

    @property
    def admin(self) -> bool:
        return self.account is None

    def may_see(self, system_id: str) -> bool:
        return self.account is None or self.account.system_id == system_id


class Refused(Exception):
    """No (acceptable) credentials: answered 401 with a ``WWW-Authenticate`` challenge,
    or 403 when the credentials are fine but the caller may not do this."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


_UNAUTHORIZED = 401
_FORBIDDEN = 403


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


class ApiAuth:
    """Decides the :class:`Principal` of a request from its Authorization header.

    ``tokens`` gives the configured admin tokens at each call (a reload may change
    them); ``open_without_tokens`` is whether the operator side is open when there are
    none (the listener is on a loopback address).
    """

    def __init__(self, tokens: Callable[[], Sequence[str]], admission: Admission, *,
                 open_without_tokens: bool) -> None:
        self._tokens = tokens
        self._admission = admission
        self.open_without_tokens = open_without_tokens
        self._passwords = PasswordChecker()

    def describe(self) -> str:
        """One line for the start-up log: how the operator side is protected."""
        if self._tokens():
            return "admin API: bearer tokens from [http] admin_tokens"
        if self.open_without_tokens:
            return ("admin API: open, no [http] admin_tokens and the HTTP listener is on a "
                    "loopback address")
        return ("admin API: closed (401), no [http] admin_tokens and the HTTP listener is "
                "not on a loopback address; accounts can still use HTTP Basic")

    async def principal(self, authorization: str | None, client_ip: str) -> Principal:
        """The caller, or :class:`Refused`."""
        if not authorization:
            if not self._tokens() and self.open_without_tokens:
                return Principal()
            raise Refused(_UNAUTHORIZED, "credentials required")
        scheme, _, value = authorization.partition(" ")
        scheme = scheme.lower()
        value = value.strip()
        if scheme == "bearer":
            if await self._admin_token(value):
                return Principal()
            account = await self._api_key(value)
            if account is not None and account.allows(client_ip):
                return Principal(account)
            raise Refused(_UNAUTHORIZED, "credentials refused")
        if scheme == "basic":
            system_id, password = _basic(value)
            status, account = await self._admission.check_credentials(system_id, password,
                                                                      client_ip)
            if status == CommandStatus.ESME_ROK and account is not None:
                return Principal(account)
            raise Refused(_UNAUTHORIZED, "credentials refused")
        raise Refused(_UNAUTHORIZED, "unsupported authorization scheme")

    async def _admin_token(self, given: str) -> bool:
        if not given:
            return False
        found = False
        for token in self._tokens():
            # Every token is compared (no early exit): the time taken does not say which
            # one matched. A plain token is compared in constant time; a hash is checked
            # with scrypt once per token, off the event loop, then from a keyed cache.
            ok = self._passwords.cached(given, token)
            if ok is None:
                ok = await asyncio.to_thread(self._passwords.verify, given, token)
            found = ok or found
        return found


    async def _api_key(self, given: str) -> Account | None:
        """The account one of whose ``api_keys`` is ``given``. As for admin tokens,
        every key of every account is compared (constant time; a hash with scrypt
        once, then from the keyed cache)."""
        if not given:
            return None
        found: Account | None = None
        for account in list(self._admission.accounts.values()):
            for key in account.api_keys:
                ok = self._passwords.cached(given, key)
                if ok is None:
                    ok = await asyncio.to_thread(self._passwords.verify, given, key)
                if ok and found is None:
                    found = account
        return found


def _basic(value: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise Refused(_UNAUTHORIZED, "malformed Basic credentials") from None
    system_id, sep, password = decoded.partition(":")
    if not sep:
        raise Refused(_UNAUTHORIZED, "malformed Basic credentials")
    return system_id, password


def forbidden(message: str = "not allowed for this caller") -> Refused:
    return Refused(_FORBIDDEN, message)


def log_mode(auth: ApiAuth) -> None:
    _log.info("http.auth", mode=auth.describe())
