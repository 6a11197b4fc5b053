"""An account: who may bind, how fast, where its messages go, and the rules its
messages meet (flood rules, content limits). Parsed from ``[[accounts]]`` by
:mod:`smppbridge.config`; read by the server (binds), the submit path and the router.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from smppbridge.core.net import IpNetwork, ip_in_networks
from smppbridge.smpp.constants import CommandStatus
from smppbridge.text.macros import ContentLimits

__all__ = ["DEFAULT_CALLBACK_TTL", "RECEIPT_CHANNELS", "Account", "FloodRules"]

@dataclass(frozen=True, slots=True)
class FloodRules:
    """An account's flood settings (defaults: the SMS Center rules).

    ``duplicate_window = 0`` turns the duplicate rule off, ``flood_limit = 0`` the
    flood rule, ``enabled = False`` both. The statuses are any command_status, usually
    from the vendor range 0x400-0x4FF (SMPP 3.4 Table 5-2), so ESMEs that expect a
    particular code can get it.
    """

    duplicate_window: float = 60.0
    flood_gap: float = 30.0
    flood_limit: int = 50
    duplicate_status: int = CommandStatus.VENDOR_DUPLICATE
    flood_status: int = CommandStatus.VENDOR_SUBSCRIBER_FLOOD
    enabled: bool = True


#: seconds a callback is retried when the account does not say (``callback_ttl``)
DEFAULT_CALLBACK_TTL = 86_400.0
#: the values of an account's ``receipts``
RECEIPT_CHANNELS = ("smpp", "http", "both")


@dataclass(frozen=True, slots=True)
class Account:
    """One ``[[accounts]]`` table (docs/configuration.md has every key)."""

    system_id: str
    #: plain text or ``scrypt$...`` from ``smppbridge hash-password``; never logged
    password: str = field(repr=False)
    max_binds: int = 10
    allowed_networks: tuple[IpNetwork, ...] = ()
    #: submit_sm per second for the whole account (all binds), 0 = unlimited
    throughput: float = 0.0
    #: token-bucket depth; 0 means one second's worth of ``throughput``
    burst: int = 0
    #: window for this account's binds; None = ``[smpp] window``
    window: int | None = None
    providers: tuple[str, ...] = ()
    #: "decimal" (default, fits legacy parsers) or "hex"
    message_id_format: str = "decimal"
    #: read GSM 7-bit data_coding as ISO-8859-1 on every bind (as system_type "ISO" does)
    iso_default: bool = False
    flood: FloodRules = field(default_factory=FloodRules)
    limits: ContentLimits = field(default_factory=ContentLimits)
    #: ``Authorization: Bearer`` keys of the HTTP submit API (plain, or ``scrypt$...``)
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    #: where statuses go: "smpp" (deliver_sm receipts), "http" (callbacks) or "both"
    receipts: str = "smpp"
    #: the account's status callback URL (a message's own callback_url overrides it)
    receipt_url: str = ""
    #: HMAC-SHA256 key of the account's callbacks (X-Smppbridge-Signature); "" = unsigned
    callback_secret: str = field(default="", repr=False)
    #: seconds a callback is retried before it is given up as expired
    callback_ttl: float = DEFAULT_CALLBACK_TTL
    #: where this account's mobile-originated messages go: "smpp" (deliver_sm to its
    #: receiver binds), "http" (POST to ``mo_url``) or "both" (core.mo)
    mo: str = "smpp"
    #: the account's MO callback URL (signed with ``callback_secret``)
    mo_url: str = ""
    #: a long MO: "join" (one MO once every part is in) or "parts" (each part as it
    #: comes, with its concat UDH / ``part`` field) (delivery.mo)
    mo_parts: str = "join"

    def allows(self, ip: str) -> bool:
        return not self.allowed_networks or ip_in_networks(ip, self.allowed_networks)
