"""The SMPP server's settings (``[smpp]``; docs/configuration.md has every key), parsed by
:mod:`smppbridge.config`."""

from __future__ import annotations

from dataclasses import dataclass

from smppbridge.core.net import HostPort
from smppbridge.smpp.codec import DEFAULT_MAX_COMMAND_LENGTH
from smppbridge.smpp.session import SessionConfig

__all__ = ["SmppConfig"]


@dataclass(frozen=True, slots=True)
class SmppConfig:
    """``[smpp]``: listeners, TLS, timers, windows and the limits of abuse."""

    listen: HostPort | None = HostPort("127.0.0.1", 2775)
    tls_listen: HostPort | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    #: CA bundle; when set, TLS clients must present a certificate it signed.
    tls_client_ca: str | None = None
    #: Default window of outstanding requests per bind (an account may override).
    window: int = 100
    session_init_timeout: float = 10.0
    enquire_link_interval: float = 30.0
    inactivity_timeout: float = 300.0
    response_timeout: float = 30.0
    max_command_length: int = DEFAULT_MAX_COMMAND_LENGTH
    #: Open connections, all peers together / from one IP address (0 = unlimited).
    max_connections: int = 10_000
    max_connections_per_ip: int = 1_000
    #: Seconds SIGTERM waits for in-flight work before cancelling it.
    shutdown_grace: float = 10.0
    #: Stop reading a peer whose unread responses exceed this many octets.
    write_buffer_high: int = 256 * 1024
    #: Failed binds (per source IP, and per system_id) within bind_failure_window
    #: seconds that lock that IP / system_id out for bind_lockout seconds (0 = off).
    bind_max_failures: int = 5
    bind_failure_window: float = 60.0
    bind_lockout: float = 60.0

    def session_config(self, window: int | None = None) -> SessionConfig:
        return SessionConfig(
            window=window or self.window,
            session_init_timeout=self.session_init_timeout,
            enquire_link_interval=self.enquire_link_interval,
            inactivity_timeout=self.inactivity_timeout,
            response_timeout=self.response_timeout,
            max_command_length=self.max_command_length,
        )
