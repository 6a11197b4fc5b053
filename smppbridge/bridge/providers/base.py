"""What every provider adapter is and returns: the ``Provider`` protocol, send outcomes,
status updates, the receipt ``err:`` table, and the errors adapters raise at the httpx
boundary.

Theory of operation: an adapter turns a batch of :class:`OutboundMessage` into one (or,
for one-recipient APIs, several) HTTP requests and answers one :class:`SendOutcome` per
message, in order. Per-message problems (stop list, bad number, ...) are outcomes;
whole-request problems are exceptions: :class:`ProviderTimeout` and
:class:`ProviderUnavailable` are transient (retried with backoff, then failover),
:class:`ProviderRejected` is the provider refusing us (bad credentials, a request it
cannot read) and goes straight to failover. Adapters raise them from httpx errors the way
httpcore's ``map_exceptions`` does, so nothing above this layer sees an httpx type.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import TYPE_CHECKING, Protocol, runtime_checkable
from urllib.parse import quote_plus

import httpx

from smppbridge.smpp.constants import MessageState

if TYPE_CHECKING:
    from smppbridge.bridge.providers.settings import ProviderSettings
    from smppbridge.http.server import Request
    from smppbridge.message import Kind, OutboundMessage

__all__ = [
    "Err",
    "HlrResult",
    "HttpProvider",
    "Provider",
    "ProviderError",
    "ProviderRejected",
    "ProviderTimeout",
    "ProviderUnavailable",
    "SendOutcome",
    "SendResult",
    "Stat",
    "StatusUpdate",
    "map_httpx_errors",
    "raise_for_http_status",
]


class Stat(StrEnum):
    """The receipt ``stat:`` word (DESIGN.md §4) and its SMPP message_state."""

    ENROUTE = "ENROUTE"
    DELIVRD = "DELIVRD"
    EXPIRED = "EXPIRED"
    DELETED = "DELETED"
    UNDELIV = "UNDELIV"
    ACCEPTD = "ACCEPTD"
    UNKNOWN = "UNKNOWN"
    REJECTD = "REJECTD"

    @property
    def message_state(self) -> MessageState:
        """SMPP 3.4 §5.2.28 message_state for this stat."""
        return _STATES[self]

    @property
    def final(self) -> bool:
        """ENROUTE and ACCEPTD are intermediate; every other stat ends the message."""
        return self is not Stat.ENROUTE and self is not Stat.ACCEPTD


_STATES = {
    Stat.ENROUTE: MessageState.ENROUTE,
    Stat.DELIVRD: MessageState.DELIVERED,
    Stat.EXPIRED: MessageState.EXPIRED,
    Stat.DELETED: MessageState.DELETED,
    Stat.UNDELIV: MessageState.UNDELIVERABLE,
    Stat.ACCEPTD: MessageState.ACCEPTED,
    Stat.UNKNOWN: MessageState.UNKNOWN,
    Stat.REJECTD: MessageState.REJECTED,
}


class Err(IntEnum):
    """The 3-digit receipt ``err:`` code (documented in docs/providers.md).

    0xx: what happened to the message in the network; 1xx: the provider refused this
    message; 2xx: the provider refused our account or request; 3xx: we could not reach
    a provider.
    """

    OK = 0
    UNDELIVERABLE = 1
    EXPIRED = 2
    NO_FINAL_STATUS = 3
    PARTLY_DELIVERED = 4
    PROVIDER_ERROR = 5
    REFUNDED = 6
    STOPPED = 7
    STOP_LIST = 101
    DESTINATION_CLOSED = 102
    MODERATION = 103
    SENDER_INVALID = 104
    NUMBER_INVALID = 105
    TEXT_INVALID = 106
    CONTENT_INVALID = 107
    NO_ROUTE = 108
    OUT_OF_FUNDS = 201
    ACCOUNT_BLOCKED = 202
    REQUEST_INVALID = 203
    KIND_UNSUPPORTED = 204
    UNAVAILABLE = 301
    REJECTED_OTHER = 302

    def __str__(self) -> str:
        return f"{self.value:03d}"


class SendResult(StrEnum):
    """What became of one message at one provider."""

    #: the provider took it; ``provider_id`` is its id for status requests
    ACCEPTED = "accepted"
    #: the provider refused this message for good: a receipt with ``stat``/``err``
    REJECTED = "rejected"
    #: not sent here (transient failure after retries, or the provider refused our
    #: account/request): try the next provider; the last one's ``stat``/``err`` stand
    FAILED = "failed"
    #: transient failure of this message alone; the runner retries it
    RETRY = "retry"


# Not frozen, to be treated as immutable: a frozen dataclass sets every field through
# object.__setattr__, and these are made for every message (see README, Performance).
@dataclass(slots=True)
class SendOutcome:
    """One message's result from one provider."""

    message_id: str
    result: SendResult
    provider_id: str = ""
    parts: int = 1
    stat: Stat = Stat.ACCEPTD
    err: Err = Err.OK
    detail: str = ""
    provider: str = ""

    @classmethod
    def accepted(cls, message_id: str, provider_id: str, parts: int = 1,
                 detail: str = "") -> SendOutcome:
        return cls(message_id, SendResult.ACCEPTED, provider_id, parts, detail=detail)

    @classmethod
    def rejected(cls, message_id: str, err: Err, detail: str = "",
                 stat: Stat = Stat.REJECTD) -> SendOutcome:
        return cls(message_id, SendResult.REJECTED, stat=stat, err=err, detail=detail)

    @classmethod
    def failed(cls, message_id: str, err: Err, detail: str = "",
               stat: Stat = Stat.UNDELIV) -> SendOutcome:
        return cls(message_id, SendResult.FAILED, stat=stat, err=err, detail=detail)

    @classmethod
    def retry(cls, message_id: str, detail: str = "") -> SendOutcome:
        return cls(message_id, SendResult.RETRY, stat=Stat.UNDELIV, err=Err.UNAVAILABLE,
                   detail=detail)


@dataclass(frozen=True, slots=True)
class HlrResult:
    """An HLR lookup's answer, in the receipt fields of the SMS Center format."""

    imsi: str = ""
    msc: str = ""
    mcc: str = ""
    mnc: str = ""
    cn: str = ""
    net: str = ""
    rcn: str = ""
    rnet: str = ""

    def receipt_fields(self) -> str:
        """``imsi:<imsi> msc:<msc> mcc:<mcc> mnc:<mnc> cn:<cn> net:<net> rcn:<rcn>
        rnet:<rnet>`` with the string fields urlencoded (smpp-behaviour-smscenter.md)."""
        return " ".join(f"{name}:{quote_plus(getattr(self, name))}"
                        for name in ("imsi", "msc", "mcc", "mnc", "cn", "net", "rcn", "rnet"))


# Not frozen, to be treated as immutable: a frozen dataclass sets every field through
# object.__setattr__, and these are made for every message (see README, Performance).
@dataclass(slots=True)
class StatusUpdate:
    """A provider's word on one message, mapped to the receipt's terms.

    ``message_id`` is ours when the provider echoes it (http-json, simulator) and ""
    otherwise; the store finds the message by ``(provider, provider_id)``.
    """

    provider_id: str
    stat: Stat
    err: Err = Err.OK
    detail: str = ""
    done_at: float | None = None
    message_id: str = ""
    hlr: HlrResult | None = None

    @property
    def final(self) -> bool:
        return self.stat.final


# --- errors at the boundary ---------------------------------------------------------------


class ProviderError(Exception):
    """A whole request failed; ``retryable`` says whether trying again may help."""

    retryable = True
    stat = Stat.UNDELIV
    err = Err.UNAVAILABLE

    def __init__(self, message: str, *, err: Err | None = None,
                 stat: Stat | None = None) -> None:
        super().__init__(message)
        if err is not None:
            self.err = err
        if stat is not None:
            self.stat = stat


class ProviderTimeout(ProviderError):
    """The provider did not answer within the configured timeout."""


class ProviderUnavailable(ProviderError):
    """Connection refused or dropped, 5xx, or our circuit breaker is open."""


class ProviderRejected(ProviderError):
    """The provider refused the request itself (credentials, format): not retried."""

    retryable = False
    stat = Stat.REJECTD
    err = Err.REQUEST_INVALID


@contextlib.contextmanager
def map_httpx_errors(provider: str) -> Iterator[None]:
    """Turn httpx's exceptions into ours, like httpcore's ``map_exceptions``."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise ProviderTimeout(f"{provider}: timed out ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        raise ProviderUnavailable(f"{provider}: {type(exc).__name__}: {exc}") from exc


#: HTTP statuses that say "try again later" (RFC 9110 §15.6; 429 is RFC 6585).
_TRANSIENT_STATUSES = frozenset({408, 429})
_FORBIDDEN_STATUSES = frozenset({401, 403})
_SERVER_ERROR = 500


def raise_for_http_status(provider: str, response: httpx.Response) -> None:
    """Raise for the statuses every adapter treats alike: 5xx/408/429 are transient,
    401/403 mean our credentials were refused. Other codes are the adapter's to read."""
    code = response.status_code
    if code >= _SERVER_ERROR or code in _TRANSIENT_STATUSES:
        raise ProviderUnavailable(f"{provider}: HTTP {code}")
    if code in _FORBIDDEN_STATUSES:
        raise ProviderRejected(f"{provider}: HTTP {code} (credentials refused)",
                               err=Err.ACCOUNT_BLOCKED)


@runtime_checkable
class Provider(Protocol):
    """One configured provider (one ``[[providers]]`` table)."""

    name: str
    kinds: frozenset[Kind]
    #: whether the API takes a send time (mysmpp ``time_send``); otherwise the
    #: pipeline holds a scheduled message until its time
    supports_schedule: bool
    #: seconds between status polls, 0 when statuses only come by webhook
    poll_interval: float

    async def send(self, messages: Sequence[OutboundMessage]) -> list[SendOutcome]:
        """Send a batch; one outcome per message, in order. Raises ProviderError."""
        ...

    async def poll(self, provider_ids: Sequence[str]) -> list[StatusUpdate]:
        """Ask for the status of these ids; ids the provider does not know are left out."""
        ...

    def parse_webhook(self, request: Request) -> list[StatusUpdate]:
        """Status updates pushed to ``/webhooks/<name>``; raises ValueError when the
        body is not understood."""
        ...

    async def ready(self) -> bool:
        """True when the provider answers and takes our credentials (``/readyz``)."""
        ...

    async def aclose(self) -> None:
        """Close the HTTP client."""
        ...


#: connections per httpx pool of an HTTP adapter (HttpProvider.post)
_POOL = 4


class HttpProvider:
    """Shared plumbing of the HTTP adapters: pooled httpx clients with the configured
    timeouts (``max_connections`` in all, in pools of up to 4; ``client`` replaces them
    with one given client, e.g. for tests), and POSTs whose httpx errors come out as
    ProviderError."""

    supports_schedule = False

    def __init__(self, settings: ProviderSettings, *,
                 client: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self.name = settings.name
        self.kinds = settings.kinds
        self.poll_interval = settings.poll_interval
        self._owns_client = client is None
        if client is not None:
            self._clients = [client]
        else:
            # Pools of at most _POOL connections each (see post()).
            shards = -(-settings.max_connections // _POOL)
            per_pool = -(-settings.max_connections // shards)
            self._clients = [httpx.AsyncClient(
                timeout=httpx.Timeout(settings.timeout, connect=settings.connect_timeout),
                limits=httpx.Limits(max_connections=per_pool,
                                    max_keepalive_connections=per_pool),
            ) for _ in range(shards)]
        self.client = self._clients[0]
        self._busy = [0] * len(self._clients)
        self._slots = asyncio.Semaphore(settings.max_connections)

    async def post(self, url: str, body: bytes, content_type: str,
                   headers: dict[str, str] | None = None) -> httpx.Response:
        """POST ``body``; raises ProviderTimeout/ProviderUnavailable on transport errors.

        Two costs of httpcore's connection pool are kept down here, each measured on
        SMS-fly (a request per message) against the simulator on loopback:

        * at most ``max_connections`` requests are handed to httpx at once: requests
          queued inside the pool are rescanned every time a connection frees up;
        * the connections are split over pools of at most 4 (the request goes to the
          least busy): every request scans its pool's connections once per idle
          connection, so one pool of 20 cost ~1,500 µs of CPU a message, five pools of
          4 ~940 µs (README, *Performance*).
        """
        all_headers = {"Content-Type": content_type}
        if headers:
            all_headers.update(headers)
        async with self._slots:
            busy = self._busy
            i = busy.index(min(busy))
            busy[i] += 1
            try:
                with map_httpx_errors(self.name):
                    return await self._clients[i].post(url, content=body,
                                                       headers=all_headers)
            finally:
                busy[i] -= 1

    async def aclose(self) -> None:
        if self._owns_client:
            for client in self._clients:
                await client.aclose()
