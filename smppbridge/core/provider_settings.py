"""A provider's settings: one ``[[providers]]`` table, validated by
:func:`smppbridge.providers.settings.parse_provider` when the config is loaded.

The one provider settings type: the adapters read their endpoint and credentials from
it, the runner its retries and breaker, the poller its polling pace, the webhook
endpoint its authentication (docs/providers.md has every key).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from smppbridge.core.net import IpNetwork
from smppbridge.text.content import Kind

__all__ = ["SMSFLY_MAX_TTL_MINUTES", "ProviderSettings", "UpstreamSettings"]

#: SMS-fly's ``ttl`` takes 1..1440 minutes
SMSFLY_MAX_TTL_MINUTES = 1440


@dataclass(frozen=True, slots=True)
class UpstreamSettings:
    """The ``smpp`` provider type's own keys: the upstream SMSC we bind to as an ESME
    (docs/providers.md, The smpp provider). The password is
    :attr:`ProviderSettings.password`."""

    host: str
    port: int
    system_id: str
    system_type: str = ""
    #: "transceiver", or "transmitter+receiver" (two connections per session)
    bind: str = "transceiver"
    #: sessions (binds) kept open to the upstream
    binds: int = 1
    #: submit_sm outstanding per session
    window: int = 100
    #: submit_sm per second over all sessions; 0 = no limit
    throughput: float = 0.0
    #: seconds between enquire_link probes of a silent upstream
    enquire_link: float = 30.0
    #: reconnect backoff: first delay, doubling up to the max (seconds)
    reconnect_backoff: float = 1.0
    reconnect_backoff_max: float = 30.0
    tls: bool = False
    #: CA bundle the upstream's certificate is checked against ("": the system's)
    tls_ca_file: str = ""
    #: TON/NPI overrides of source and destination (None: as the ESME sent them)
    source_ton: int | None = None
    source_npi: int | None = None
    dest_ton: int | None = None
    dest_npi: int | None = None
    #: "pass" (the ESME's data_coding), "gsm", "ucs2", "latin1"
    data_coding: str = "pass"
    #: "udh", "sar" (parts, each its own submit_sm) or "payload" (one message_payload)
    long_messages: str = "udh"
    #: receipts for ids not (yet) known are held this long for their submit_sm_resp
    early_receipt_ttl: float = 10.0
    #: at most this many such receipts are held
    early_receipts: int = 100_000
    #: answers 0x58 throttled / 0x14 queue full: tries of one part before the runner
    #: gets it back (RETRY)
    throttle_retries: int = 10


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """A provider's configuration. Times are seconds unless the name says otherwise."""

    name: str
    type: str
    url: str = ""
    status_url: str = ""
    login: str = ""
    password: str = field(default="", repr=False)
    token: str = field(default="", repr=False)
    key: str = field(default="", repr=False)
    #: forces the SMS sender (mysmpp ``sender``, SMS-fly ``sms.source``); default: the
    #: submit_sm source_addr
    sender: str = ""
    #: forces the Viber sender (``sender_viber``, ``viber.source``); default: ``sender``
    #: or the source_addr
    viber_sender: str = ""
    kinds: frozenset[Kind] = frozenset()
    #: first status poll this long after sending; 0 = statuses by webhook only
    poll_interval: float = 10.0
    #: the poll interval doubles as a message ages, up to this
    poll_max_interval: float = 300.0
    #: ids per status request (mysmpp state.php takes many)
    poll_batch: int = 200
    #: stop polling a message this long after sending when it has no validity
    max_status_age: float = 172_800.0
    #: keep polling this long past the validity end (late statuses)
    status_grace: float = 600.0
    batch_size: int = 100
    #: how long the first message of a batch waits for others
    linger: float = 0.05
    #: requests in flight at once to this provider
    concurrency: int = 8
    max_connections: int = 20
    #: read/write/pool timeout of one HTTP request
    timeout: float = 10.0
    connect_timeout: float = 5.0
    #: extra attempts after a transient failure, with exponential backoff and jitter
    retries: int = 2
    backoff: float = 0.5
    backoff_max: float = 10.0
    #: consecutive transient failures that open the circuit breaker
    breaker_threshold: int = 5
    #: how long an open breaker refuses requests before one trial
    breaker_reset: float = 30.0
    #: the provider's local time zone for the times it reads and writes (mysmpp
    #: ``time_send`` / ``validity_period``, SMS-fly status dates); default per type
    timezone: str = "UTC"
    #: SMS-fly ``ttl`` in minutes when the message has no validity
    default_ttl: int = SMSFLY_MAX_TTL_MINUTES
    #: http-json: URL the service posts statuses to (our ``/webhooks/<name>``)
    webhook_url: str = ""
    #: shared secret a webhook call must carry (header ``X-Webhook-Secret`` or query
    #: ``?secret=``), compared in constant time; "" = not required
    webhook_secret: str = field(default="", repr=False)
    #: key of the HMAC-SHA256 of the body a webhook call must carry in
    #: ``X-Signature: sha256=<hex>``; "" = not required
    webhook_hmac_key: str = field(default="", repr=False)
    #: source networks webhook calls may come from; empty = any
    webhook_networks: tuple[IpNetwork, ...] = ()
    #: simulator type: the simulator's own settings (the keys of
    #: smppbridge.providers.simulator.settings.SimConfig)
    simulator: Mapping[str, Any] = field(default_factory=dict)
    #: run the adapter's requests in a child process (a second core for the provider's
    #: HTTP, XML/JSON and status work; smppbridge.providers.worker). Default: on
    #: for the HTTP types, off for the in-process simulator (cheaper than the hop)
    worker: bool = False
    #: smpp type: the upstream SMSC (None for every other type)
    upstream: UpstreamSettings | None = None
