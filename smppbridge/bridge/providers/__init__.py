"""Provider adapters, one module per API, and :func:`build_provider` to make one from
its settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from smppbridge.bridge.providers.base import (
    Err,
    HlrResult,
    Provider,
    ProviderError,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    SendOutcome,
    SendResult,
    Stat,
    StatusUpdate,
)
from smppbridge.bridge.providers.settings import ProviderSettings, parse_provider

if TYPE_CHECKING:
    import httpx

__all__ = [
    "Err",
    "HlrResult",
    "Provider",
    "ProviderError",
    "ProviderRejected",
    "ProviderSettings",
    "ProviderTimeout",
    "ProviderUnavailable",
    "SendOutcome",
    "SendResult",
    "Stat",
    "StatusUpdate",
    "build_provider",
    "parse_provider",
]


def build_provider(settings: ProviderSettings, *,
                   client: httpx.AsyncClient | None = None) -> Provider:
    """The adapter for ``settings.type`` (``client``: a shared httpx client, e.g. for
    tests; by default each adapter owns one with the configured timeouts)."""
    if settings.type == "mysmpp-xml":
        from smppbridge.bridge.providers.mysmpp_xml import MysmppXmlProvider
        return MysmppXmlProvider(settings, client=client)
    if settings.type == "mysmpp-json":
        from smppbridge.bridge.providers.mysmpp_json import MysmppJsonProvider
        return MysmppJsonProvider(settings, client=client)
    if settings.type == "smsfly":
        from smppbridge.bridge.providers.smsfly import SmsflyProvider
        return SmsflyProvider(settings, client=client)
    if settings.type == "http-json":
        from smppbridge.bridge.providers.http_json import HttpJsonProvider
        return HttpJsonProvider(settings, client=client)
    if settings.type == "simulator":
        from smppbridge.bridge.providers.simulator import SimulatorProvider
        return SimulatorProvider(settings)
    raise ValueError(f"providers[{settings.name}].type: unknown {settings.type!r}")
