"""What the console reads from the node, through the operator API's own context and
functions: the same store searches, the same provider and bind lists, the same access
rules. Each read is bounded: one page of a search, one message's timeline and
receipts, counts that the store answers from an index; nothing here walks the history.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from smppbridge.core.cluster import Second
from smppbridge.core.records import DeliveryState
from smppbridge.node.api import ApiContext, _all_binds, _providers
from smppbridge.node.auth import Principal
from smppbridge.node.models import AccountItem, BindItem, ProviderItem

__all__ = ["accounts", "binds", "counts", "providers", "seconds", "unbind"]


def zone(ctx: ApiContext) -> ZoneInfo:
    """``[http] timezone``: the zone the console shows times in."""
    return ZoneInfo(ctx.config().http.timezone)


async def accounts(ctx: ApiContext, who: Principal) -> list[AccountItem]:
    """The accounts ``who`` may see, as ``GET /api/v1/accounts`` lists them (messages
    today since midnight in ``[http] timezone``)."""
    cfg = ctx.config()
    midnight = datetime.now(zone(ctx)).replace(hour=0, minute=0, second=0, microsecond=0)
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


async def binds(ctx: ApiContext) -> list[BindItem]:
    """Every open bind of this node and, in a cluster, of every live node."""
    return [BindItem.of(b) for b in await _all_binds(ctx)]


def providers(ctx: ApiContext) -> list[ProviderItem]:
    return _providers(ctx)


async def seconds(ctx: ApiContext, minutes: int) -> list[list[Second]]:
    """The per-second counts of the last ``minutes``, one list per node (this one, and
    every other live node of a cluster), as ``GET /api/v1/stats`` gives them."""
    nodes = [ctx.stats.last(minutes)]
    if ctx.registry is not None:
        for report in await ctx.registry.reports():
            if report.node_id != ctx.node_id:
                nodes.append(await ctx.registry.seconds(report.node_id, minutes * 60))
    return nodes


async def counts(ctx: ApiContext) -> tuple[int, int]:
    """(messages queued, receipts pending): the store's gauges."""
    return (await ctx.store.count(DeliveryState.QUEUED), await ctx.store.count_receipts())


async def unbind(ctx: ApiContext, bind_id: str) -> bool:
    """Send unbind to a bind, on whichever node holds it, as ``DELETE
    /api/v1/binds/{id}`` does; False when there is no such bind."""
    node, _sep, number = bind_id.rpartition(":")
    if not number.isdigit():
        return False
    if node == ctx.node_id:
        return ctx.unbind(int(number))
    if ctx.registry is not None and any(b.id == bind_id for b in await _all_binds(ctx)):
        await ctx.registry.request_unbind(node, int(number))
        return True
    return False
