"""The composition root: one node, built in one pass from its config.

SMPP listeners → the submit path (content stage) → the durable pipeline → providers,
the status poller, the receipt dispatcher, the HTTP side. Every object gets what it
needs when it is made, in the order of the data path backwards: store, providers and
router first, then the binds registry the receipt dispatcher reads, the dispatcher the
pipeline hands receipts to, the pipeline the submit path hands messages to, and last
the SMPP server that calls the submit path. :func:`run` runs a node until SIGTERM or
SIGINT and reloads it on SIGHUP (:mod:`smppbridge.node.reload`).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import structlog

from smppbridge.config import Config
from smppbridge.core.ports import Provider, Store, SubmitHandler
from smppbridge.core.provider_settings import ProviderSettings
from smppbridge.core.records import DeliveryState, PartRecord
from smppbridge.core.session import BindType, SessionContext
from smppbridge.delivery.pipeline import Pipeline
from smppbridge.delivery.poller import StatusPoller
from smppbridge.delivery.receipts import ReceiptDispatcher
from smppbridge.delivery.router import Router
from smppbridge.delivery.runner import ProviderRunner
from smppbridge.delivery.webhooks import Webhooks
from smppbridge.http.serve import ServedApp, serve_app
from smppbridge.ingest.flood import MemoryFloodState
from smppbridge.ingest.ids import IdAllocator
from smppbridge.ingest.submit import ContentHandler
from smppbridge.node.http import build_app, build_metrics_app
from smppbridge.node.parts import build_provider_for, open_store
from smppbridge.node.reload import reload
from smppbridge.observability.metrics import METRICS
from smppbridge.providers.worker import WorkerProvider
from smppbridge.server.admission import BindRegistry
from smppbridge.server.connection import SmppConnection
from smppbridge.server.listener import SmppServer

__all__ = ["Node", "run"]

_log = structlog.get_logger("smppbridge")


@dataclass
class Node:
    """One running smppbridge: start, reload, stop.

    ``handler`` replaces the submit path at the SMPP server (tests inject handlers that
    block or fail); the rest of the node is built all the same.
    """

    config: Config
    config_path: str | None = None
    handler: SubmitHandler | None = None
    store: Store = field(init=False)
    providers: dict[str, Provider] = field(init=False)
    #: each provider's settings, by name (read by the poller and the webhook endpoint)
    provider_settings: dict[str, ProviderSettings] = field(init=False)
    router: Router = field(init=False)
    dispatcher: ReceiptDispatcher = field(init=False)
    pipeline: Pipeline = field(init=False)
    poller: StatusPoller = field(init=False)
    content: ContentHandler = field(init=False)
    smpp: SmppServer = field(init=False)
    http: ServedApp | None = field(init=False, default=None)
    http_address: tuple[str, int] | None = field(init=False, default=None)
    #: the /metrics-only server of ``[http] metrics_listen``
    metrics_http: ServedApp | None = field(init=False, default=None)
    metrics_address: tuple[str, int] | None = field(init=False, default=None)
    _tasks: list[asyncio.Task[None]] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        cfg = self.config
        self.store = open_store(cfg)
        self.provider_settings = {s.name: s for s in cfg.providers}
        self.providers = {s.name: build_provider_for(cfg, s) for s in cfg.providers}
        self.router = Router({s.name: ProviderRunner(self.providers[s.name], s)
                              for s in cfg.providers},
                             cfg.routes, cfg.account_providers())
        binds: BindRegistry[SmppConnection] = BindRegistry()
        self.dispatcher = ReceiptDispatcher(
            self.store, binds.receivers, bound_accounts=binds.receiver_accounts,
            retry_backoff=cfg.receipts.retry_backoff, retry_max=cfg.receipts.retry_max)
        self.pipeline = Pipeline(
            self.store, self.router,
            poller=partial(StatusPoller, self.providers, self.provider_settings),
            receipts_added=self.dispatcher.notify, outbox=self.dispatcher,
            receipt_ttl=cfg.receipts.ttl_hours * 3600)
        assert self.pipeline.poller is not None
        self.poller = self.pipeline.poller
        # A shared store shares the flood windows too: the rules hold across nodes.
        self.content = ContentHandler(self.pipeline, new_id=IdAllocator(self.store).take,
                                      flood=self.store.flood_state() or MemoryFloodState(),
                                      reassembly=cfg.content)
        self.smpp = SmppServer(cfg.smpp, cfg.accounts_by_id(),
                               self.handler if self.handler is not None else self.content,
                               binds=binds,
                               on_receiver_bound=lambda _system_id: self.dispatcher.notify())

    async def start(self) -> None:
        await self.store.open()
        for provider in self.providers.values():
            if isinstance(provider, WorkerProvider):
                await provider.start()  # a child that cannot start stops the node here
        restored = await self.content.restore(await self.store.load_parts(),
                                              self._restored_context)
        if restored:
            _log.info("parts.restored", count=restored)
        await self.smpp.start()
        self.spawn(self.pipeline.run(), "pipeline")
        self.spawn(self.poller.run(), "status poller")
        self.spawn(self.dispatcher.run(), "receipt dispatcher")
        self.spawn(self._expire_parts(), "long-message expiry")
        http = self.config.http
        limits = http.limits
        if http.listen:
            async def listeners_up() -> bool:
                return self.smpp.listening

            app = build_app({"smpp_listeners": listeners_up, "store": self.store.ready},
                            info=self._provider_health, refresh=self._refresh_gauges,
                            webhooks=Webhooks(self.providers, self.pipeline.on_status,
                                              poller=self.poller,
                                              settings=self.provider_settings),
                            serve_metrics=http.metrics_listen is None)
            self.http = await serve_app(app, http.listen.host, http.listen.port,
                                        limits=limits, name="http")
            self.http_address = self.http.address
            _log.info("listener.started", listener="http",
                      address=f"{self.http_address[0]}:{self.http_address[1]}")
        if http.metrics_listen:
            # /metrics alone on its own (private) address; the main listener leaves it out.
            self.metrics_http = await serve_app(
                build_metrics_app(refresh=self._refresh_gauges), http.metrics_listen.host,
                http.metrics_listen.port, limits=limits, name="metrics")
            self.metrics_address = self.metrics_http.address
            _log.info("listener.started", listener="metrics",
                      address=f"{self.metrics_address[0]}:{self.metrics_address[1]}")

    def _restored_context(self, part: PartRecord) -> SessionContext | None:
        account = self.config.account(part.account)
        if account is None:
            return None
        return SessionContext(0, account, BindType.TRANSMITTER, part.system_type,
                              part.interface_version, "restored")

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``coro`` as a task of the node (cancelled at stop; a crash is logged)."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        task.add_done_callback(_report_crash)
        self._tasks.append(task)

    async def _expire_parts(self) -> None:
        while True:
            deadline = self.content.next_deadline()
            delay = 1.0 if deadline is None else min(1.0, max(0.0, deadline - time.time()))
            await asyncio.sleep(delay)
            await self.content.expire()

    async def _provider_health(self) -> dict[str, object]:
        async def one(p: Provider) -> bool:
            try:
                async with asyncio.timeout(2.0):
                    return await p.ready()
            except Exception:  # unreachable or slow: reported, never fatal
                return False
        names = list(self.providers)
        results = await asyncio.gather(*(one(self.providers[n]) for n in names))
        return {"providers": dict(zip(names, results, strict=True))}

    async def _refresh_gauges(self) -> None:
        """Gauges read from the store and the runners at scrape time."""
        for state in DeliveryState:
            METRICS.messages.labels(state.value).set(await self.store.count(state))
        METRICS.receipts_waiting.set(await self.store.count_receipts())
        for name, runner in self.router.runners.items():
            METRICS.breaker.labels(name).set(0 if runner.available else 1)
        METRICS.parts_waiting.set(self.content.reassembler.pending_parts)

    def reload(self) -> bool:
        """Re-read the config file (SIGHUP); see :func:`smppbridge.node.reload.reload`."""
        return reload(self)

    async def stop(self) -> None:
        await self.smpp.shutdown()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.config.smpp.shutdown_grace):
                await self.pipeline.drain()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.http is not None:
            await self.http.close()
        if self.metrics_http is not None:
            await self.metrics_http.close()
        await self.router.aclose()  # flushes batches and closes each provider
        await self.store.close()


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _log.error("task.crashed", task=task.get_name(), error=repr(task.exception()))


async def run(config: Config, config_path: str | None,
              started: Callable[[Node], None] | None = None) -> int:
    """Run a node until SIGTERM or SIGINT; return the exit code."""
    node = Node(config, config_path)
    await node.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, node.reload)
    _log.info("node.ready", config=config.source)
    if started is not None:
        started(node)
    await stop.wait()
    _log.info("node.stopping")
    await node.stop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.remove_signal_handler(sig)
    return 0
