"""The SMPP listeners (plain and TLS), the connections they accept, and graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import structlog

from smppbridge.core.session import BindType
from smppbridge.observability.metrics import METRICS
from smppbridge.server.admission import Admission, BindRegistry
from smppbridge.server.connection import SmppConnection
from smppbridge.server.settings import SmppConfig
from smppbridge.smpp.constants import CommandStatus

if TYPE_CHECKING:
    from smppbridge.core.accounts import Account
    from smppbridge.core.ports import SubmitHandler

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
    """Owns the listeners and every connection; binds are decided by its
    :class:`~smppbridge.server.admission.Admission`."""

    system_id = "smppbridge"

    def __init__(self, settings: SmppConfig, accounts: Mapping[str, Account],
                 handler: SubmitHandler, *,
                 binds: BindRegistry[SmppConnection] | None = None,
                 on_receiver_bound: Callable[[str], None] = lambda _system_id: None) -> None:
        self.settings = settings
        self.handler = handler
        self.connections: set[SmppConnection] = set()
        self.registry: BindRegistry[SmppConnection] = (binds if binds is not None
                                                       else BindRegistry())
        self.admission = Admission(settings, accounts, self.registry)
        self.addresses: dict[str, tuple[str, int]] = {}
        self._servers: list[asyncio.Server] = []
        self._tls: ssl.SSLContext | None = None
        #: called when a receiver/transceiver binds (the receipt dispatcher's wake-up)
        self.on_receiver_bound = on_receiver_bound

    @property
    def stopping(self) -> bool:
        return self.admission.stopping

    @property
    def binds(self) -> dict[str, set[SmppConnection]]:
        """Open binds by system_id."""
        return self.registry.binds

    # --- listening -------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        cfg = self.settings
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
        cfg = self.settings
        if self._tls is not None and cfg.tls_cert and cfg.tls_key:
            self._tls.load_cert_chain(cfg.tls_cert, cfg.tls_key)

    # --- connections and binds (the ConnectionHost protocol) -------------------------

    def admit(self, conn: SmppConnection) -> bool:
        if not self.admission.admit_connection(conn.peer[0]):
            return False
        self.connections.add(conn)
        METRICS.connections.inc()
        return True

    def forget(self, conn: SmppConnection) -> None:
        self.connections.discard(conn)
        METRICS.connections.dec()
        self.admission.release_connection(conn.peer[0])
        self.registry.discard(conn)

    def register_bind(self, conn: SmppConnection) -> None:
        assert conn.ctx is not None
        self.registry.add(conn)
        if conn.ctx.bind_type is not BindType.TRANSMITTER:
            self.on_receiver_bound(conn.ctx.system_id)

    def receiver_accounts(self) -> list[str]:
        """system_ids with at least one receiver or transceiver bound here."""
        return self.registry.receiver_accounts()

    def receivers(self, system_id: str) -> list[SmppConnection]:
        """Binds of ``system_id`` that may receive deliver_sm (receiver/transceiver)."""
        return self.registry.receivers(system_id)

    # --- reload and shutdown -----------------------------------------------------------

    def reload(self, settings: SmppConfig, accounts: Mapping[str, Account]) -> None:
        """Take new accounts and limits; existing binds stay up.

        A bind whose account disappeared keeps its session until it ends; throughput
        buckets are rebuilt with the new rates.
        """
        self.settings = settings
        self.admission.reload(settings, accounts)
        for system_id, conns in self.binds.items():
            account = accounts.get(system_id)
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
        grace = self.settings.shutdown_grace if grace is None else grace
        self.admission.stopping = True
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
