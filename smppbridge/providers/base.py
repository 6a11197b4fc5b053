"""What the HTTP adapters share: pooled httpx clients, httpx errors mapped to ours at the
boundary, the HTTP statuses every adapter reads alike, and how several channels of one
message (Viber → SMS cascade) combine into one status.

The contract every adapter fulfils is :class:`smppbridge.core.ports.Provider`; what it
answers is in :mod:`smppbridge.core.outcomes`, the errors it raises in
:mod:`smppbridge.core.errors`.

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
from typing import TYPE_CHECKING

import httpx

from smppbridge.core.errors import ProviderRejected, ProviderTimeout, ProviderUnavailable
from smppbridge.core.outcomes import Balance, Err
from smppbridge.smpp.receipts import Stat

if TYPE_CHECKING:
    from smppbridge.core.provider_settings import ProviderSettings

__all__ = ["HttpProvider", "combine_channels", "map_httpx_errors", "raise_for_http_status"]


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


def combine_channels(channels: Sequence[tuple[Stat, Err]]) -> tuple[Stat, Err]:
    """One status for a multi-channel (cascade) message, channels in send order."""
    if not channels:
        return Stat.ENROUTE, Err.OK
    if any(stat is Stat.DELIVRD for stat, _ in channels):
        return Stat.DELIVRD, Err.OK
    moving = [c for c in channels if not c[0].final]
    if moving:
        return moving[-1]
    return channels[-1]


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
          4 ~940 µs (docs/performance.md).
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

    async def balance(self) -> Balance | None:
        """No balance in the API (the adapters whose API has one say otherwise)."""
        return None

    async def aclose(self) -> None:
        if self._owns_client:
            for client in self._clients:
                await client.aclose()
