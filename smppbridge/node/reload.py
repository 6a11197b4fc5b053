"""SIGHUP: the config file read again and applied all or nothing.

Everything is validated first; an invalid file is refused with a log line and the old
config kept whole. Accounts, limits, routes and providers are replaced without dropping
binds: a provider whose settings changed gets a new adapter (the old one finishes its
batches and closes), an unchanged one keeps its connections. Listen addresses and the
store apply on restart (a warning says so).
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, Protocol

import structlog

from smppbridge.config import Config, ConfigError, load_config
from smppbridge.core.ports import Provider
from smppbridge.core.provider_settings import ProviderSettings
from smppbridge.delivery.router import Router
from smppbridge.delivery.runner import ProviderRunner
from smppbridge.node.parts import build_provider_for
from smppbridge.server.listener import SmppServer

__all__ = ["Reloadable", "reload"]

_log = structlog.get_logger("smppbridge")


class Reloadable(Protocol):
    """What a reload replaces in a node (:class:`smppbridge.node.node.Node`)."""

    config: Config
    config_path: str | None
    providers: dict[str, Provider]
    provider_settings: dict[str, ProviderSettings]
    router: Router
    smpp: SmppServer

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None: ...


def reload(node: Reloadable) -> bool:
    """Apply the node's config file again; False when it was refused."""
    try:
        new = load_config(node.config_path)
    except ConfigError as exc:
        _log.error("config.reload_refused", error=str(exc))
        return False
    old = node.config
    if (new.smpp.listen, new.smpp.tls_listen, new.http, new.store.url) != (
            old.smpp.listen, old.smpp.tls_listen, old.http, old.store.url):
        _log.warning("config.restart_needed",
                     note="listen addresses and the store apply on restart")
    settings = {s.name: s for s in new.providers}
    runners = {}
    retired = [r for n, r in node.router.runners.items() if n not in settings]
    for name, s in settings.items():
        current = node.router.runners.get(name)
        if current is not None and node.provider_settings.get(name) == s:
            runners[name] = current
            continue
        if current is not None:
            retired.append(current)
        runners[name] = ProviderRunner(build_provider_for(new, s), s)
    # Swap in place: the poller and the webhook handler hold these very dicts.
    node.providers.clear()
    node.providers.update({n: r.provider for n, r in runners.items()})
    node.provider_settings.clear()
    node.provider_settings.update(settings)
    node.router.update(runners, new.routes, new.account_providers())
    node.config = new
    node.smpp.reload(new.smpp, new.accounts_by_id())
    for runner in retired:
        node.spawn(runner.aclose(), f"close provider {runner.name}")
    _log.info("config.reloaded", accounts=len(new.accounts), providers=len(new.providers),
              providers_replaced=len(retired))
    return True
