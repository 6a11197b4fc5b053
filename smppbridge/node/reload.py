"""SIGHUP: the config file read again and applied all or nothing.

Everything is validated first; an invalid file is refused with a log line and the old
config kept whole. Accounts, limits, routes and providers are replaced without dropping
binds: a provider whose settings changed gets a new adapter (the old one finishes its
batches and closes), an unchanged one keeps its connections. Listen addresses and the
store apply on restart (a warning says so).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Coroutine
from typing import Any, Protocol

import structlog

from smppbridge.config import Config, ConfigError, load_config
from smppbridge.core.ports import Provider
from smppbridge.core.provider_settings import ProviderSettings
from smppbridge.delivery.router import Router
from smppbridge.delivery.runner import ProviderRunner
from smppbridge.node.parts import build_provider_for
from smppbridge.observability.metrics import METRICS
from smppbridge.server.listener import SmppServer

__all__ = ["Reloadable", "config_changes", "mark_loaded", "reload"]

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

    def start_provider(self, provider: Provider) -> None:
        """Start what a new adapter runs of its own (an smpp provider's sessions)."""
        ...


def reload(node: Reloadable) -> bool:
    """Apply the node's config file again; False when it was refused."""
    try:
        new = load_config(node.config_path)
    except ConfigError as exc:
        _log.error("config.reload_refused", error=str(exc))
        return False
    old = node.config
    if (new.smpp.listen, new.smpp.tls_listen, new.http.listen, new.http.metrics_listen,
            new.http.limits, new.store) != (
            old.smpp.listen, old.smpp.tls_listen, old.http.listen, old.http.metrics_listen,
            old.http.limits, old.store):
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
        node.start_provider(runners[name].provider)
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
              providers_replaced=len(retired), sha256=new.sha256,
              changes=config_changes(old, new))
    mark_loaded(new)
    return True


def mark_loaded(config: Config) -> None:
    """The metrics that let an operator confirm every node runs the same file."""
    METRICS.config_reload.set(time.time())
    METRICS.config_info.clear()
    METRICS.config_info.labels(config.sha256).set(1)


def config_changes(old: Config, new: Config) -> dict[str, Any]:
    """What a reload changed, for the log: per account and provider whether it was
    added or removed, or which of its keys changed (names only, never values), and
    which sections' keys changed."""
    out: dict[str, Any] = {}
    for what, before, after in (
            ("accounts", {a.system_id: a for a in old.accounts},
             {a.system_id: a for a in new.accounts}),
            ("providers", {p.name: p for p in old.providers},
             {p.name: p for p in new.providers})):
        changes: dict[str, Any] = {}
        for name in sorted(set(before) | set(after)):
            if name not in before:
                changes[name] = "added"
            elif name not in after:
                changes[name] = "removed"
            elif before[name] != after[name]:
                changes[name] = _changed_keys(before[name], after[name])
        if changes:
            out[what] = changes
    for section in ("smpp", "http", "store", "log", "content", "receipts"):
        keys = _changed_keys(getattr(old, section), getattr(new, section))
        if keys:
            out[section] = keys
    if old.routes != new.routes:
        out["routes"] = f"{len(old.routes)} -> {len(new.routes)}"
    return out


def _changed_keys(a: Any, b: Any) -> list[str]:
    return [f.name for f in dataclasses.fields(a)
            if getattr(a, f.name) != getattr(b, f.name)]
