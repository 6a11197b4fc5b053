"""The console's sessions, in the node's memory: a signed random id → who logged in.

A session is made at a successful login (an admin token, or an account's system_id and
password) and kept here, never on disk: a restart of the node logs everyone out. The
browser holds only ``<id>.<signature>`` in an HttpOnly, SameSite=Strict cookie; the id
is 256 random bits and the signature an HMAC of it under a key drawn at start, so a
cookie this process did not issue is refused before any lookup. A session ends after
:data:`IDLE` seconds without a request, :data:`LIFETIME` after the login whatever
happens, at logout, and when what it was granted on changes (the admin tokens, or the
account's password: see :mod:`smppbridge.node.console.access`).

Each session has its own CSRF token, put in every form that changes something
(disconnect, logout) and compared in constant time on the POST.

At most :data:`MAX_SESSIONS` are kept; past that the one least recently used is
dropped, so memory stays bounded whatever the number of logins.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["COOKIE", "IDLE", "LIFETIME", "MAX_SESSIONS", "Kind", "Session", "SessionStore"]

#: the cookie that carries a session
COOKIE = "smppbridge_session"
#: seconds without a request after which a session ends
IDLE = 12 * 3600.0
#: seconds after its login after which a session ends, used or not
LIFETIME = 7 * 86400.0
#: sessions kept at most (the least recently used goes first)
MAX_SESSIONS = 10_000


class Kind(StrEnum):
    """What a session stands for."""

    #: no login: a visitor of a console that is open (no admin tokens, loopback); it
    #: holds only a CSRF token, and is an operator only while the console stays open
    VISITOR = "visitor"
    #: logged in with an admin token
    OPERATOR = "operator"
    #: logged in as an account
    ACCOUNT = "account"


@dataclass(slots=True)
class Session:
    """One browser's session."""

    id: str
    csrf: str
    kind: Kind
    created: float
    seen: float
    #: the account, for :attr:`Kind.ACCOUNT`
    system_id: str = ""
    #: a keyed digest of what the login was checked against (the admin tokens, the
    #: account's password hash): when that changes, the session ends
    granted_on: str = ""


class SessionStore:
    """The sessions of this node's console."""

    def __init__(self, *, clock: Callable[[], float] = time.time, idle: float = IDLE,
                 lifetime: float = LIFETIME, limit: int = MAX_SESSIONS) -> None:
        self._clock = clock
        self.idle = idle
        self.lifetime = lifetime
        self.limit = limit
        self._key = secrets.token_bytes(32)
        #: least recently used first
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, kind: Kind, *, system_id: str = "", granted_on: str = "") -> Session:
        """A new session (never an old id reused: a login gets a fresh one)."""
        now = self._clock()
        self._sweep(now)
        while len(self._sessions) >= self.limit:
            self._sessions.popitem(last=False)
        session = Session(id=secrets.token_urlsafe(32), csrf=secrets.token_urlsafe(32),
                          kind=kind, created=now, seen=now, system_id=system_id,
                          granted_on=granted_on)
        self._sessions[session.id] = session
        return session

    def cookie(self, session: Session) -> str:
        """The cookie value of ``session``: its id and the id's signature."""
        return f"{session.id}.{self._sign(session.id)}"

    def get(self, cookie: str | None) -> Session | None:
        """The live session a cookie names (and it counts as used now), or None: no
        cookie, a signature this process did not make, an unknown or ended session."""
        if not cookie:
            return None
        sid, dot, signature = cookie.partition(".")
        if not dot or not hmac.compare_digest(signature.encode(), self._sign(sid).encode()):
            return None
        session = self._sessions.get(sid)
        if session is None:
            return None
        now = self._clock()
        if self._ended(session, now):
            del self._sessions[sid]
            return None
        session.seen = now
        self._sessions.move_to_end(sid)
        return session

    def drop(self, session: Session) -> None:
        """End ``session`` (logout, or what it was granted on changed)."""
        self._sessions.pop(session.id, None)

    @staticmethod
    def csrf_ok(session: Session | None, token: str | None) -> bool:
        """Is ``token`` the session's CSRF token (compared in constant time)?"""
        if session is None or not token:
            return False
        return hmac.compare_digest(session.csrf.encode(), token.encode())

    def digest(self, material: str) -> str:
        """A keyed digest of ``material`` (what a login was granted on), to compare
        later without keeping the material itself."""
        return hmac.new(self._key, b"granted:" + material.encode(), hashlib.sha256
                        ).hexdigest()

    def _sign(self, sid: str) -> str:
        mac = hmac.new(self._key, b"session:" + sid.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def _ended(self, session: Session, now: float) -> bool:
        return now - session.seen >= self.idle or now - session.created >= self.lifetime

    def _sweep(self, now: float) -> None:
        """Drop the sessions idle too long (the oldest-used are first)."""
        while self._sessions:
            oldest = next(iter(self._sessions.values()))
            if now - oldest.seen < self.idle:
                return
            self._sessions.popitem(last=False)
