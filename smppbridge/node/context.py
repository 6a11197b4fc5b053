"""What the operator API and the web console read: :class:`ApiContext` (the node's
parts, held rather than copied) and the reads and actions behind the routes (accounts,
binds and unbind, providers), so both front ends answer from the same code.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from smppbridge.config import Config
from smppbridge.core.cluster import BindInfo
from smppbridge.core.ports import NodeRegistry, Provider, Store
from smppbridge.delivery.router import Router
from smppbridge.node.auth import ApiAuth, Principal
from smppbridge.node.doors import SubmitDoors
from smppbridge.node.models import AccountItem, BindItem, ProviderItem, UpstreamSessionItem, iso
from smppbridge.node.stats import NodeStats, percentile, recent
from smppbridge.providers.smpp.provider import SmppProvider
from smppbridge.server.listener import SmppServer

__all__ = ["ApiContext", "Balances", "account_items", "bind_items", "provider_items",
           "unbind_bind"]


class Balances(Protocol):
    """Provider balances polled in the background (None: not known, or no API)."""

    def get(self, name: str) -> tuple[float, str, float] | None: ...


@dataclass
class ApiContext:
    """What the API reads: the node's parts (held, not copied: a reload swaps their
    contents in place)."""

    node_id: str
    config: Callable[[], Config]
    store: Store
    smpp: SmppServer
    router: Router
    providers: Mapping[str, Provider]
    provider_health: Callable[[], Mapping[str, bool]]
    stats: NodeStats
    auth: ApiAuth
    balances: Balances
    local_binds: Callable[[], list[BindInfo]]
    unbind: Callable[[int], bool]
    #: the cluster's nodes (None: this node is alone)
    registry: NodeRegistry | None = None
    #: the HTTP submit doors (POST /api/v1/messages, /send, /cgi-bin/sendsms); None:
    #: not served
    doors: SubmitDoors | None = None



async def account_items(ctx: ApiContext, who: Principal) -> list[AccountItem]:
    """The accounts ``who`` may see, each with its settings (no secrets) and its
    traffic now (messages today: since midnight in ``[http] timezone``)."""
    cfg = ctx.config()
    tz = ZoneInfo(cfg.http.timezone)
    midnight = datetime.now(tz).replace(hour=0, minute=0, second=0, microsecond=0)
    items = []
    for a in cfg.accounts:
        if not who.may_see(a.system_id):
            continue
        items.append(AccountItem(
            system_id=a.system_id, max_binds=a.max_binds,
            allowed_networks=[str(n) for n in a.allowed_networks],
            throughput=a.throughput, burst=a.burst, window=a.window,
            providers=list(a.providers), message_id_format=a.message_id_format,
            iso_default=a.iso_default, binds_now=ctx.smpp.registry.count(a.system_id),
            messages_today=await ctx.store.count_submitted(a.system_id,
                                                           midnight.timestamp()),
            receipts_pending=await ctx.store.count_receipts(a.system_id)))
    return items


async def bind_items(ctx: ApiContext) -> list[BindItem]:
    """Every open bind of this node and, in a cluster, of every live node."""
    return [BindItem.of(b) for b in await _all_binds(ctx)]


async def unbind_bind(ctx: ApiContext, bind_id: str) -> bool:
    """Send unbind to the bind ``node:number`` on whichever node holds it; False when
    there is no such bind."""
    node, _sep, number = bind_id.rpartition(":")
    if not number.isdigit():
        return False
    if node == ctx.node_id:
        return ctx.unbind(int(number))
    if ctx.registry is not None and any(b.id == bind_id for b in await _all_binds(ctx)):
        await ctx.registry.request_unbind(node, int(number))
        return True
    return False


async def _all_binds(ctx: ApiContext) -> list[BindInfo]:
    binds = ctx.local_binds()
    if ctx.registry is not None:
        for report in await ctx.registry.reports():
            if report.node_id != ctx.node_id:
                binds.extend(report.binds)
    return binds


def provider_items(ctx: ApiContext) -> list[ProviderItem]:
    health = ctx.provider_health()
    since = time.monotonic() - 300
    items = []
    for name, runner in ctx.router.runners.items():
        latencies = recent(runner.latencies, since)
        p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
        sent, failed = ctx.stats.provider_counts(name)
        balance = ctx.balances.get(name)
        items.append(ProviderItem(
            name=name, type=runner.settings.type, healthy=health.get(name),
            breaker=runner.breaker.state.value, in_flight=runner.in_flight,
            sent_5m=sent, failed_5m=failed,
            latency_p50_ms=None if p50 is None else round(p50 * 1000, 1),
            latency_p99_ms=None if p99 is None else round(p99 * 1000, 1),
            balance=balance[0] if balance else None,
            balance_currency=balance[1] if balance else None,
            balance_at=iso(balance[2]) if balance else None,
            upstream_sessions=_upstream_sessions(runner.provider)))
    return items


def _upstream_sessions(provider: object) -> list[UpstreamSessionItem] | None:
    if not isinstance(provider, SmppProvider):
        return None
    return [UpstreamSessionItem(
        session=s["session"], bind=s["bind"], state=s["state"],
        since=iso(s["since"]) if s["since"] else None, window_in_use=s["window_in_use"],
        window=s["window"], reconnects=s["reconnects"], last_error=s["last_error"])
        for s in provider.sessions()]


