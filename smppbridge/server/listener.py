"""The SMPP listeners (plain and TLS), the registry of binds, and graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from smppbridge.observability.metrics import METRICS
from smppbridge.passwords import PasswordChecker
from smppbridge.seam import BindType
from smppbridge.server.connection import SmppConnection
from smppbridge.server.flow import BindGuard, ConnectionLimiter, TokenBucket
from smppbridge.smpp.constants import CommandStatus

if TYPE_CHECKING:
    from smppbridge.config import Account, Config
    from smppbridge.seam import SubmitHandler
    from smppbridge.smpp import pdu as P

__all__ = ["SmppServer", "make_tls_context"]

_S = CommandStatus
_log = structlog.get_logger("smppbridge.server")


def make_tls_context(cert: str, key: str, client_ca: str | None = None) -> ssl.SSLContext:
    """Server TLS: 1.2 or newer, the library's modern defaults; optional client certs."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    if client_ca:
        ctx.load_verify_locations(client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class SmppServer:
    """Owns the listeners and every connection; decides binds."""

    system_id = "smppbridge"

    def __init__(self, config: Config, handler: SubmitHandler) -> None:
        self.config = config
        self.handler = handler
        self.connections: set[SmppConnection] = set()
        self.binds: dict[str, set[SmppConnection]] = defaultdict(set)
        self.stopping = False
        self.addresses: dict[str, tuple[str, int]] = {}
        self._servers: list[asyncio.Server] = []
        self._limiter = ConnectionLimiter(config.smpp.max_connections,
                                          config.smpp.max_connections_per_ip)
        self._buckets: dict[str, TokenBucket] = {}
        self._passwords = PasswordChecker()
        cfg = config.smpp
        self._guard = BindGuard(cfg.bind_max_failures, cfg.bind_failure_window,
                                cfg.bind_lockout)
        self._tls: ssl.SSLContext | None = None
        #: called when a receiver/transceiver binds (the receipt dispatcher's wake-up)
        self.on_receiver_bound: Callable[[str], None] = lambda _system_id: None

    # --- listening -------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        cfg = self.config.smpp
        if cfg.listen:
            srv = await loop.create_server(lambda: SmppConnection(self), cfg.listen.host,
                                           cfg.listen.port, reuse_address=True, backlog=1024)
            self._servers.append(srv)
            self.addresses["smpp"] = srv.sockets[0].getsockname()[:2]
        if cfg.tls_listen and cfg.tls_cert and cfg.tls_key:
            self._tls = make_tls_context(cfg.tls_cert, cfg.tls_key, cfg.tls_client_ca)
            srv = await loop.create_server(lambda: SmppConnection(self, tls=True),
                                           cfg.tls_listen.host, cfg.tls_listen.port,
                                           ssl=self._tls, reuse_address=True, backlog=1024)
            self._servers.append(srv)
            self.addresses["smpp_tls"] = srv.sockets[0].getsockname()[:2]
        for name, (host, port) in self.addresses.items():
            _log.info("listener.started", listener=name, address=f"{host}:{port}")

    @property
    def listening(self) -> bool:
        return bool(self._servers) and all(s.is_serving() for s in self._servers)

    def reload_tls(self) -> None:
        """Load the certificate and key again (SIGHUP); new handshakes use them."""
        cfg = self.config.smpp
        if self._tls is not None and cfg.tls_cert and cfg.tls_key:
            self._tls.load_cert_chain(cfg.tls_cert, cfg.tls_key)

    # --- connections and binds -------------------------------------------------------

    def admit(self, conn: SmppConnection) -> bool:
        if self.stopping or not self._limiter.admit(conn.peer[0]):
            return False
        self.connections.add(conn)
        METRICS.connections.inc()
        return True

    def forget(self, conn: SmppConnection) -> None:
        self.connections.discard(conn)
        METRICS.connections.dec()
        self._limiter.release(conn.peer[0])
        if conn.ctx is not None:
            binds = self.binds.get(conn.ctx.system_id)
            if binds is not None and conn in binds:
                METRICS.binds.labels(conn.ctx.system_id, conn.ctx.bind_type.value).dec()
                binds.discard(conn)
                if not binds:
                    del self.binds[conn.ctx.system_id]

    def register_bind(self, conn: SmppConnection) -> None:
        assert conn.ctx is not None
        self.binds[conn.ctx.system_id].add(conn)
        METRICS.binds.labels(conn.ctx.system_id, conn.ctx.bind_type.value).inc()
        if conn.ctx.bind_type is not BindType.TRANSMITTER:
            self.on_receiver_bound(conn.ctx.system_id)

    async def authenticate(self, pdu: P.BindTransmitter | P.BindReceiver | P.BindTransceiver,
                           ip: str, bind_type: BindType) -> tuple[int, Account | None]:
        """Decide a bind. Order matters: a locked-out IP or system_id is refused before
        anything is checked, and the network before the password, so that neither a
        brute-forcer nor a refused network learns anything about the password."""
        now = asyncio.get_running_loop().time()
        keys = (f"ip:{ip}", f"id:{pdu.system_id}")
        if self._guard.locked(keys, now):
            _log.warning("bind.locked_out", ip=ip, system_id=pdu.system_id)
            return _S.ESME_RBINDFAIL, None
        status, account = await self._check(pdu, ip)
        if status in (_S.ESME_RINVSYSID, _S.ESME_RINVPASWD):
            if self._guard.failed(keys, now):
                _log.warning("bind.lockout_started", ip=ip, system_id=pdu.system_id,
                             lockout=self.config.smpp.bind_lockout)
        elif status == _S.ESME_ROK:
            self._guard.succeeded(keys)
        return status, account

    async def _check(self, pdu: P.BindTransmitter | P.BindReceiver | P.BindTransceiver,
                     ip: str) -> tuple[int, Account | None]:
        account = self.config.account(pdu.system_id)
        if account is None:
            return _S.ESME_RINVSYSID, None
        if self.stopping:
            return _S.ESME_RBINDFAIL, None
        if not account.allows(ip):
            return _S.ESME_RBINDFAIL, None
        ok = self._passwords.cached(pdu.password, account.password)
        if ok is None:  # a hash not verified before: scrypt off the event loop
            ok = await asyncio.to_thread(self._passwords.verify, pdu.password,
                                         account.password)
        if not ok:
            return _S.ESME_RINVPASWD, None
        if len(self.binds.get(account.system_id, ())) >= account.max_binds:
            return _S.ESME_RBINDFAIL, None
        return _S.ESME_ROK, account

    def take_token(self, system_id: str, now: float) -> bool:
        bucket = self._buckets.get(system_id)
        if bucket is None:
            account = self.config.account(system_id)
            rate = account.throughput if account else 0.0
            bucket = TokenBucket(rate, account.burst if account else 0, now)
            self._buckets[system_id] = bucket
        return bucket.take(now)

    def receiver_accounts(self) -> list[str]:
        """system_ids with at least one receiver or transceiver bound here."""
        return [system_id for system_id in self.binds if self.receivers(system_id)]

    def receivers(self, system_id: str) -> list[SmppConnection]:
        """Binds of ``system_id`` that may receive deliver_sm (receiver/transceiver)."""
        return [c for c in self.binds.get(system_id, ())
                if c.ctx is not None and c.ctx.bind_type is not BindType.TRANSMITTER]

    # --- reload and shutdown -----------------------------------------------------------

    def reload(self, config: Config) -> None:
        """Take new accounts and limits; existing binds stay up.

        A bind whose account disappeared keeps its session until it ends; throughput
        buckets are rebuilt with the new rates.
        """
        self.config = config
        self._buckets.clear()
        self._limiter.max_total = config.smpp.max_connections
        self._limiter.max_per_ip = config.smpp.max_connections_per_ip
        self._guard.max_failures = config.smpp.bind_max_failures
        self._guard.window = config.smpp.bind_failure_window
        self._guard.lockout = config.smpp.bind_lockout
        for system_id, conns in self.binds.items():
            account = config.account(system_id)
            if account is not None:
                for conn in conns:
                    conn.update_account(account)
        self.reload_tls()

    async def stop_listening(self) -> None:
        for srv in self._servers:
            srv.close()
        for srv in self._servers:
            with contextlib.suppress(Exception):
                await srv.wait_closed()
        self._servers.clear()

    async def shutdown(self, grace: float | None = None) -> None:
        """Graceful stop (uvicorn's server.py order, with asyncio.timeout).

        Stop accepting connections and refuse new submits; let requests already received
        finish and their responses go out; then send unbind to every session and wait
        for the unbind_resp. Whatever is still open when ``grace`` runs out is aborted.
        In-flight work is answered before the unbind so that no accepted message's
        response is lost to a closing socket.
        """
        grace = self.config.smpp.shutdown_grace if grace is None else grace
        self.stopping = True
        for srv in self._servers:
            srv.close()
        conns = list(self.connections)
        _log.info("shutdown.started", connections=len(conns), grace=grace)
        try:
            async with asyncio.timeout(grace):
                await asyncio.gather(*(c.drain() for c in conns))
                for conn in conns:
                    conn.start_unbind()
                await asyncio.gather(*(c.closed.wait() for c in conns))
        except TimeoutError:
            left = [c for c in conns if not c.closed.is_set()]
            _log.warning("shutdown.forced", connections=len(left))
            for conn in left:
                conn.abort()
        await self.stop_listening()
        _log.info("shutdown.finished")
