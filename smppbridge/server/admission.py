"""Who may connect, who may bind, how fast a bound account may submit, and which binds
are open.

Theory of operation
-------------------
:class:`Admission` makes every decision before a PDU reaches the rest of the node:

* a connection: the global and per-IP connection limits (``max_connections``,
  ``max_connections_per_ip``); none while the node is stopping;
* a bind, in an order that leaks nothing: a locked-out IP or system_id is refused before
  anything is checked (:class:`~smppbridge.server.flow.BindGuard`), then the account, the
  network (``allowed_networks``) before the password (so neither a brute-forcer nor a
  refused network learns anything about it), then ``max_binds``. A wrong system_id or
  password counts towards the lockout; a successful bind clears it;
* a submit: the account's token bucket (``throughput``, ``burst``), shared by all its
  binds.

:class:`BindRegistry` is the list of open binds by system_id: ``max_binds`` counts it,
the receipt dispatcher asks it for an account's receivers, the operator API lists it.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import structlog

from smppbridge.core.passwords import PasswordChecker
from smppbridge.core.session import BindType
from smppbridge.observability.metrics import METRICS
from smppbridge.server.flow import BindGuard, ConnectionLimiter, TokenBucket
from smppbridge.smpp.constants import CommandStatus

if TYPE_CHECKING:
    from smppbridge.core.accounts import Account
    from smppbridge.core.session import SessionContext
    from smppbridge.server.settings import SmppConfig
    from smppbridge.smpp import pdu as P

__all__ = ["Admission", "BindRegistry", "Bound"]

_S = CommandStatus
_log = structlog.get_logger("smppbridge.server")

class Bound(Protocol):
    """A bound connection as the registry sees it."""

    @property
    def ctx(self) -> SessionContext | None: ...


C = TypeVar("C", bound=Bound)


class BindRegistry(Generic[C]):
    """The open binds of this node, by system_id."""

    def __init__(self) -> None:
        self.binds: dict[str, set[C]] = defaultdict(set)

    def add(self, conn: C) -> None:
        assert conn.ctx is not None
        self.binds[conn.ctx.system_id].add(conn)
        METRICS.binds.labels(conn.ctx.system_id, conn.ctx.bind_type.value).inc()

    def discard(self, conn: C) -> None:
        if conn.ctx is None:
            return
        binds = self.binds.get(conn.ctx.system_id)
        if binds is not None and conn in binds:
            METRICS.binds.labels(conn.ctx.system_id, conn.ctx.bind_type.value).dec()
            binds.discard(conn)
            if not binds:
                del self.binds[conn.ctx.system_id]

    def count(self, system_id: str) -> int:
        return len(self.binds.get(system_id, ()))

    def receivers(self, system_id: str) -> list[C]:
        """Binds of ``system_id`` that may receive deliver_sm (receiver/transceiver)."""
        return [c for c in self.binds.get(system_id, ())
                if c.ctx is not None and c.ctx.bind_type is not BindType.TRANSMITTER]

    def receiver_accounts(self) -> list[str]:
        """system_ids with at least one receiver or transceiver bound here."""
        return [system_id for system_id in self.binds if self.receivers(system_id)]


class Admission:
    """Decides connections, binds and submits; see the module docstring."""

    def __init__(self, settings: SmppConfig, accounts: Mapping[str, Account],
                 binds: BindRegistry[Any]) -> None:
        self.settings = settings
        self.accounts = dict(accounts)
        self.binds = binds
        self.stopping = False
        self._limiter = ConnectionLimiter(settings.max_connections,
                                          settings.max_connections_per_ip)
        self._guard = BindGuard(settings.bind_max_failures, settings.bind_failure_window,
                                settings.bind_lockout)
        self._buckets: dict[str, TokenBucket] = {}
        self._passwords = PasswordChecker()

    def reload(self, settings: SmppConfig, accounts: Mapping[str, Account]) -> None:
        """New accounts and limits (SIGHUP); throughput buckets start again."""
        self.settings = settings
        self.accounts = dict(accounts)
        self._buckets.clear()
        self._limiter.max_total = settings.max_connections
        self._limiter.max_per_ip = settings.max_connections_per_ip
        self._guard.max_failures = settings.bind_max_failures
        self._guard.window = settings.bind_failure_window
        self._guard.lockout = settings.bind_lockout

    # --- connections ---------------------------------------------------------------

    def admit_connection(self, ip: str) -> bool:
        return not self.stopping and self._limiter.admit(ip)

    def release_connection(self, ip: str) -> None:
        self._limiter.release(ip)

    # --- binds -----------------------------------------------------------------------

    async def authenticate(self, pdu: P.BindTransmitter | P.BindReceiver | P.BindTransceiver,
                           ip: str) -> tuple[int, Account | None]:
        """Decide a bind: its command_status, and the account when ESME_ROK."""
        status, account = await self.check_credentials(pdu.system_id, pdu.password, ip,
                                                       bind=True)
        if account is None:
            return status, None
        if self.binds.count(account.system_id) >= account.max_binds:
            return _S.ESME_RBINDFAIL, None
        return _S.ESME_ROK, account

    async def check_credentials(self, system_id: str, password: str, ip: str, *,
                                bind: bool = False) -> tuple[int, Account | None]:
        """An account's system_id and password from ``ip`` (a bind, or the HTTP API's
        Basic authentication): the lockout, the account, its networks, its password.
        ESME_ROK and the account, or the status that refuses them."""
        now = asyncio.get_running_loop().time()
        keys = (f"ip:{ip}", f"id:{system_id}")
        if self._guard.locked(keys, now):
            _log.warning("bind.locked_out", ip=ip, system_id=system_id)
            return _S.ESME_RBINDFAIL, None
        status, account = await self._check(system_id, password, ip, bind=bind)
        if status in (_S.ESME_RINVSYSID, _S.ESME_RINVPASWD):
            if self._guard.failed(keys, now):
                _log.warning("bind.lockout_started", ip=ip, system_id=system_id,
                             lockout=self.settings.bind_lockout)
        elif status == _S.ESME_ROK:
            self._guard.succeeded(keys)
        return status, account

    async def _check(self, system_id: str, password: str, ip: str, *, bind: bool
                     ) -> tuple[int, Account | None]:
        account = self.accounts.get(system_id)
        if account is None:
            return _S.ESME_RINVSYSID, None
        if bind and self.stopping:
            return _S.ESME_RBINDFAIL, None
        if not account.allows(ip):
            return _S.ESME_RBINDFAIL, None
        ok = self._passwords.cached(password, account.password)
        if ok is None:  # a hash not verified before: scrypt off the event loop
            ok = await asyncio.to_thread(self._passwords.verify, password, account.password)
        if not ok:
            return _S.ESME_RINVPASWD, None
        return _S.ESME_ROK, account

    def knows(self, system_id: str) -> bool:
        """Is ``system_id`` an account (a refusal logs it only then)?"""
        return system_id in self.accounts

    # --- submits -----------------------------------------------------------------------

    def take_token(self, system_id: str, now: float, n: int = 1) -> bool:
        """One submit of ``system_id`` at ``now`` (``n``: a message over HTTP takes one
        token per part, as its submit_sm parts would): False means throttle."""
        bucket = self._buckets.get(system_id)
        if bucket is None:
            account = self.accounts.get(system_id)
            rate = account.throughput if account else 0.0
            bucket = TokenBucket(rate, account.burst if account else 0, now)
            self._buckets[system_id] = bucket
        # A message of more parts than the bucket holds would never pass: it takes
        # the whole depth.
        return bucket.take(now, min(float(n), bucket.burst))
