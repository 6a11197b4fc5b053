"""What the console reads from the node, through the operator API's own context and
functions: the same store searches, the same provider and bind lists, the same access
rules. Each read is bounded: one page of a search, one message's timeline and
receipts, counts that the store answers from an index; nothing here walks the history.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from smppbridge.core.cluster import Second
from smppbridge.core.records import DeliveryState
from smppbridge.node.auth import Principal
from smppbridge.node.context import (
    ApiContext,
    account_items,
    bind_items,
    provider_items,
    unbind_bind,
)
from smppbridge.node.models import AccountItem, BindItem, ProviderItem

__all__ = ["accounts", "binds", "counts", "providers", "seconds", "unbind"]


def zone(ctx: ApiContext) -> ZoneInfo:
    """``[http] timezone``: the zone the console shows times in."""
    return ZoneInfo(ctx.config().http.timezone)


async def accounts(ctx: ApiContext, who: Principal) -> list[AccountItem]:
    """The accounts ``who`` may see, as ``GET /api/v1/accounts`` lists them."""
    return await account_items(ctx, who)


async def binds(ctx: ApiContext) -> list[BindItem]:
    """Every open bind of this node and, in a cluster, of every live node."""
    return await bind_items(ctx)


def providers(ctx: ApiContext) -> list[ProviderItem]:
    return provider_items(ctx)


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
    return await unbind_bind(ctx, bind_id)
