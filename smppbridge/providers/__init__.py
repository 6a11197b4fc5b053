"""Provider adapters, one module per API, and :func:`build_provider` to make one from
its settings.

Each adapter fulfils :class:`smppbridge.core.ports.Provider` and maps its API's statuses
and errors to the receipt's ``stat``/``err`` in its own tables.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

    from smppbridge.core.ports import Provider
    from smppbridge.core.provider_settings import ProviderSettings

__all__ = ["build_provider"]


def build_provider(settings: ProviderSettings, *,
                   client: httpx.AsyncClient | None = None) -> Provider:
    """The adapter for ``settings.type`` (``client``: a shared httpx client, e.g. for
    tests; by default each adapter owns one with the configured timeouts)."""
    if settings.type == "mysmpp-xml":
        from smppbridge.providers.mysmpp_xml import MysmppXmlProvider
        return MysmppXmlProvider(settings, client=client)
    if settings.type == "mysmpp-json":
        from smppbridge.providers.mysmpp_json import MysmppJsonProvider
        return MysmppJsonProvider(settings, client=client)
    if settings.type == "smsfly":
        from smppbridge.providers.smsfly import SmsflyProvider
        return SmsflyProvider(settings, client=client)
    if settings.type == "http-json":
        from smppbridge.providers.http_json import HttpJsonProvider
        return HttpJsonProvider(settings, client=client)
    if settings.type == "simulator":
        from smppbridge.providers.simulator.provider import SimulatorProvider
        return SimulatorProvider(settings)
    if settings.type == "smpp":
        from smppbridge.providers.smpp.provider import SmppProvider
        return SmppProvider(settings)
    raise ValueError(f"providers[{settings.name}].type: unknown {settings.type!r}")
