"""The node's background looks at itself: once a second the traffic counts
(:class:`~smppbridge.node.stats.NodeStats`), every ``HEALTH_INTERVAL`` each provider's
readiness, every ``BALANCE_INTERVAL`` each provider's balance where its API has one
(also the ``smppbridge_provider_balance`` gauge). The operator API and ``/readyz`` read
what was last seen, so a request never waits on a provider."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

import structlog

from smppbridge.core.cluster import BindInfo, NodeReport, Second
from smppbridge.core.errors import ProviderError, StoreUnavailable
from smppbridge.core.ports import NodeRegistry, Provider
from smppbridge.node.stats import NodeStats
from smppbridge.observability.metrics import METRICS

__all__ = ["BALANCE_INTERVAL", "HEALTH_INTERVAL", "Monitor"]

_log = structlog.get_logger("smppbridge.monitor")

#: seconds between two readiness probes of a provider
HEALTH_INTERVAL = 30.0
#: seconds between two balance requests to a provider ("every few minutes")
BALANCE_INTERVAL = 300.0
#: a probe that takes longer counts as a failure
PROBE_TIMEOUT = 5.0
#: a node whose last heartbeat is older is gone (it beats every second)
NODE_TTL = 10.0


class Monitor:
    """What the node last saw of its providers, and its traffic ring."""

    def __init__(self, providers: Mapping[str, Provider], stats: NodeStats, *,
                 node_id: str = "", binds: Callable[[], list[BindInfo]] = list,
                 registry: NodeRegistry | None = None,
                 unbind: Callable[[int], bool] = lambda _number: False,
                 clock: Callable[[], float] = time.time) -> None:
        self.providers = providers
        self.stats = stats
        self.node_id = node_id
        self.binds = binds
        #: the cluster's nodes (None: this node is alone)
        self.registry = registry
        self.unbind = unbind
        self.clock = clock
        self.health: dict[str, bool] = {}
        #: provider → (amount, currency, when read)
        self.balances: dict[str, tuple[float, str, float]] = {}

    def get(self, name: str) -> tuple[float, str, float] | None:
        return self.balances.get(name)

    async def run_stats(self) -> None:
        """Tick the traffic ring once a second (on the second of the monotonic clock,
        so a wall-clock step changes nothing)."""
        loop = asyncio.get_running_loop()
        next_at = loop.time() + 1.0
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at += 1.0
            try:
                second = self.stats.tick()
            except Exception:  # a counter that cannot be read must not end the loop
                _log.exception("stats.tick_failed")
                continue
            if self.registry is not None:
                await self._heartbeat(second)

    async def _heartbeat(self, second: Second) -> None:
        """Tell the other nodes this one is alive, its binds and this second; unbind
        what they asked to."""
        assert self.registry is not None
        report = NodeReport(self.node_id, self.clock(), tuple(self.binds()))
        try:
            asked = await self.registry.publish(report, second, NODE_TTL)
        except StoreUnavailable as exc:
            _log.debug("node.heartbeat_failed", error=str(exc))
            return
        for number in asked:
            found = self.unbind(number)
            _log.info("bind.unbind_requested", bind=f"{self.node_id}:{number}",
                      found=found)

    async def probe_health(self) -> None:
        names = list(self.providers)
        results = await asyncio.gather(*(self._ready(self.providers[n]) for n in names))
        self.health = dict(zip(names, results, strict=True))

    async def _ready(self, provider: Provider) -> bool:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                return await provider.ready()
        except Exception:  # unreachable or slow: reported, never fatal
            return False

    async def poll_balances(self) -> None:
        for name, provider in list(self.providers.items()):
            try:
                async with asyncio.timeout(PROBE_TIMEOUT):
                    balance = await provider.balance()
            except (ProviderError, TimeoutError) as exc:
                _log.warning("provider.balance_failed", provider=name, error=str(exc))
                continue
            if balance is None:
                self.balances.pop(name, None)
                continue
            self.balances[name] = (balance.amount, balance.currency,
                                   balance.at or self.clock())
            METRICS.provider_balance.labels(name).set(balance.amount)
        for gone in set(self.balances) - set(self.providers):
            del self.balances[gone]

    async def run_providers(self) -> None:
        """Probe readiness every HEALTH_INTERVAL and balances every BALANCE_INTERVAL."""
        loop = asyncio.get_running_loop()
        next_balance = loop.time()
        while True:
            await self.probe_health()
            if loop.time() >= next_balance:
                await self.poll_balances()
                next_balance = loop.time() + BALANCE_INTERVAL
            await asyncio.sleep(HEALTH_INTERVAL)
