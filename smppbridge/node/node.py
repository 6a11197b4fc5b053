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
import os
import signal
import socket
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import structlog

from smppbridge.config import Config
from smppbridge.core.accounts import Account
from smppbridge.core.clock import CLOCK, Clock, StepWatch
from smppbridge.core.cluster import BindInfo
from smppbridge.core.errors import StoreUnavailable
from smppbridge.core.outcomes import StatusUpdate
from smppbridge.core.ports import Provider, Store, SubmitHandler
from smppbridge.core.provider_settings import ProviderSettings
from smppbridge.core.records import DeliveryState, PartRecord
from smppbridge.core.session import BindType, SessionContext
from smppbridge.delivery.callbacks import CallbackDispatcher, HttpCallbackSender
from smppbridge.delivery.mo import MO_PART, MoIntake
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
from smppbridge.node.auth import ApiAuth, is_loopback
from smppbridge.node.context import ApiContext
from smppbridge.node.doors import SubmitDoors
from smppbridge.node.http import build_app, build_metrics_app
from smppbridge.node.monitor import Monitor
from smppbridge.node.parts import build_provider_for, open_store
from smppbridge.node.reload import mark_loaded, reload
from smppbridge.node.stats import NodeStats
from smppbridge.observability.metrics import METRICS
from smppbridge.providers.http_json import parse_mo_webhook
from smppbridge.providers.simulator.provider import SimulatorProvider
from smppbridge.providers.smpp.provider import SmppProvider
from smppbridge.providers.worker import WorkerProvider
from smppbridge.server.admission import BindRegistry
from smppbridge.server.connection import SmppConnection
from smppbridge.server.listener import SmppServer

__all__ = ["Node", "run"]

_log = structlog.get_logger("smppbridge")
#: messages purged per store transaction, and seconds between purge rounds
RETENTION_BATCH = 500
RETENTION_INTERVAL = 60.0
#: how often the wall clock is compared with steady time (a step is logged once)
CLOCK_CHECK_INTERVAL = 5.0
#: seconds an operator's unbind waits for the ESME's unbind_resp before closing
UNBIND_GRACE = 5.0


@dataclass
class Node:
    """One running smppbridge: start, reload, stop.

    ``handler`` replaces the submit path at the SMPP server (tests inject handlers that
    block or fail); the rest of the node is built all the same.
    """

    config: Config
    config_path: str | None = None
    handler: SubmitHandler | None = None
    #: wall time for dates, steady time for timers (core.clock; tests step the wall)
    clock: Clock = CLOCK
    store: Store = field(init=False)
    providers: dict[str, Provider] = field(init=False)
    #: each provider's settings, by name (read by the poller and the webhook endpoint)
    provider_settings: dict[str, ProviderSettings] = field(init=False)
    router: Router = field(init=False)
    dispatcher: ReceiptDispatcher = field(init=False)
    #: status callbacks to HTTP customers (docs/http.md, Status callbacks)
    callbacks: CallbackDispatcher = field(init=False)
    #: mobile-originated messages from the providers: routed and stored (delivery/mo.py)
    mo: MoIntake = field(init=False)
    pipeline: Pipeline = field(init=False)
    poller: StatusPoller = field(init=False)
    content: ContentHandler = field(init=False)
    smpp: SmppServer = field(init=False)
    stats: NodeStats = field(init=False)
    monitor: Monitor = field(init=False)
    auth: ApiAuth = field(init=False)
    #: this process's name in bind ids and stats (``<host>-<pid>``)
    node_id: str = field(init=False, default_factory=lambda: f"{socket.gethostname()}-"
                         f"{os.getpid()}")
    http: ServedApp | None = field(init=False, default=None)
    http_address: tuple[str, int] | None = field(init=False, default=None)
    #: the /metrics-only server of ``[http] metrics_listen``
    metrics_http: ServedApp | None = field(init=False, default=None)
    metrics_address: tuple[str, int] | None = field(init=False, default=None)
    _tasks: list[asyncio.Task[None]] = field(init=False, default_factory=list)
    #: the config the account index below was made from, and the index
    _accounts: tuple[Config | None, dict[str, Account]] = field(
        init=False, default_factory=lambda: (None, {}))

    def __post_init__(self) -> None:
        cfg = self.config
        self.store = open_store(cfg)
        self.provider_settings = {s.name: s for s in cfg.providers}
        self.providers = {s.name: build_provider_for(cfg, s) for s in cfg.providers}
        self.router = Router({s.name: ProviderRunner(self.providers[s.name], s)
                              for s in cfg.providers},
                             cfg.routes, cfg.account_providers())
        binds: BindRegistry[SmppConnection] = BindRegistry()
        wall, steady = self.clock.wall, self.clock.steady
        self.dispatcher = ReceiptDispatcher(
            self.store, binds.receivers, bound_accounts=binds.receiver_accounts,
            retry_backoff=cfg.receipts.retry_backoff, retry_max=cfg.receipts.retry_max,
            clock=wall, timer=steady)
        self.callbacks = CallbackDispatcher(
            self.store,
            HttpCallbackSender(lambda: self.config.http.callback_allow_networks),
            accounts=self.account, clock=wall, timer=steady)
        self.pipeline = Pipeline(
            self.store, self.router,
            poller=partial(StatusPoller, self.providers, self.provider_settings,
                           clock=wall, timer=steady),
            receipts_added=self.dispatcher.notify, outbox=self.dispatcher,
            receipt_ttl=cfg.receipts.ttl_hours * 3600, accounts=self.account,
            callbacks_added=self.callbacks.notify, clock=wall, timer=steady)
        self.mo = MoIntake(self.store, routes=lambda: self.config.mo_routes,
                           accounts=self.account,
                           receipt_ttl=cfg.receipts.ttl_hours * 3600,
                           receipts_added=self.dispatcher.notify,
                           callbacks_added=self.callbacks.notify, clock=wall, timer=steady,
                           reassembly=cfg.content)
        assert self.pipeline.poller is not None
        self.poller = self.pipeline.poller
        # A shared store shares the flood windows too: the rules hold across nodes.
        self.content = ContentHandler(self.pipeline, new_id=IdAllocator(self.store).take,
                                      flood=self.store.flood_state() or MemoryFloodState(),
                                      reassembly=cfg.content, clock=wall, timer=steady)
        self.smpp = SmppServer(cfg.smpp, cfg.accounts_by_id(),
                               self.handler if self.handler is not None else self.content,
                               binds=binds,
                               on_receiver_bound=lambda _system_id: self.dispatcher.notify())
        self.stats = NodeStats(
            binds=lambda: [(c.bind_id, c.submitted) for c in self.smpp.connections
                           if c.ctx is not None],
            providers=lambda: [(n, r.accepted, r.failed)
                               for n, r in self.router.runners.items()])
        self.monitor = Monitor(self.providers, self.stats, node_id=self.node_id,
                               binds=self.local_binds, registry=self.store.registry(),
                               unbind=self.unbind)
        listen = cfg.http.listen
        self.auth = ApiAuth(lambda: self.config.http.admin_tokens, self.smpp.admission,
                            open_without_tokens=listen is not None and is_loopback(listen.host))

    async def start(self) -> None:
        mark_loaded(self.config)
        await self.store.open()
        for provider in self.providers.values():
            if isinstance(provider, WorkerProvider):
                await provider.start()  # a child that cannot start stops the node here
            self.start_provider(provider)
        held = await self.store.load_parts()
        restored = await self.content.restore([p for p in held if p.system_type != MO_PART],
                                              self._restored_context)
        if restored:
            _log.info("parts.restored", count=restored)
        restored = await self.mo.restore(held)
        if restored:
            _log.info("mo_parts.restored", count=restored)
        await self.smpp.start()
        self.spawn(self.pipeline.run(), "pipeline")
        self.spawn(self.poller.run(), "status poller")
        self.spawn(self.dispatcher.run(), "receipt dispatcher")
        self.spawn(self.callbacks.run(), "callback dispatcher")
        self.spawn(self._expire_parts(), "long-message expiry")
        self.spawn(self._retention(), "retention")
        self.spawn(self._watch_clock(), "clock steps")
        self.spawn(self.monitor.run_stats(), "traffic stats")
        self.spawn(self.monitor.run_providers(), "provider health and balances")
        http = self.config.http
        limits = http.limits
        if http.listen:
            async def listeners_up() -> bool:
                return self.smpp.listening

            api = ApiContext(node_id=self.node_id, config=lambda: self.config,
                             store=self.store, smpp=self.smpp, router=self.router,
                             providers=self.providers,
                             provider_health=lambda: self.monitor.health,
                             stats=self.stats, auth=self.auth, balances=self.monitor,
                             local_binds=self.local_binds, unbind=self.unbind,
                             registry=self.store.registry(),
                             doors=SubmitDoors(self.content, self.smpp.admission,
                                               lambda: self.config, self.clock.steady,
                                               self.clock.wall))
            app = build_app({"smpp_listeners": listeners_up, "store": self.store.ready},
                            info=self._provider_health, refresh=self._refresh_gauges,
                            webhooks=Webhooks(self.providers, self.pipeline.on_status,
                                              poller=self.poller,
                                              settings=self.provider_settings,
                                              on_mo=self.mo.take,
                                              mo_parsers={"http-json": parse_mo_webhook,
                                                          "simulator": parse_mo_webhook}),
                            serve_metrics=http.metrics_listen is None, api=api)
            _log.info("http.auth", mode=self.auth.describe())
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

    def account(self, system_id: str) -> Account | None:
        """The account of that name in the config now (follows a reload)."""
        config, by_id = self._accounts
        if config is not self.config:
            by_id = self.config.accounts_by_id()
            self._accounts = (self.config, by_id)
        return by_id.get(system_id)

    def local_binds(self) -> list[BindInfo]:
        """The binds open on this node, as the operator API lists them."""
        out = []
        for conn in sorted(self.smpp.connections, key=lambda c: c.bind_id):
            if conn.ctx is None or conn.session is None:
                continue
            out.append(BindInfo(
                node=self.node_id, number=conn.bind_id, system_id=conn.ctx.system_id,
                bind_type=conn.ctx.bind_type.value, peer=conn.ctx.peer, tls=conn.tls,
                since=conn.bound_at, window_in_use=conn.session.pending_requests,
                window=conn.window, submit_rate=round(self.stats.bind_rate(conn.bind_id), 2)))
        return out

    def unbind(self, number: int) -> bool:
        """Send unbind to this node's bind ``number``; False when there is none."""
        conn = next((c for c in self.smpp.connections
                     if c.bind_id == number and c.ctx is not None), None)
        if conn is None:
            return False
        conn.disconnect(min(UNBIND_GRACE, self.config.smpp.response_timeout))
        return True

    def start_provider(self, provider: Provider) -> None:
        """An smpp provider opens its upstream sessions; their receipts reach the
        pipeline as statuses (the webhook path's ``on_statuses``), their MO the MO
        intake. An in-process simulator with ``mo_every`` hands its MO to the intake."""
        if isinstance(provider, SmppProvider):
            provider.start(self._pushed_statuses, self.mo.take)
        elif isinstance(provider, SimulatorProvider) and provider.engine.config.mo_every:
            provider.start_mo(self.mo.take)

    async def _pushed_statuses(self, provider: str, updates: Sequence[StatusUpdate]) -> None:
        """Statuses a provider pushes (an smpp provider's receipts): the webhook path —
        the pipeline, then the poller stops waiting for the messages made final (after
        the pipeline, which holds a status until its message is written as sent, and
        so followed)."""
        await self.pipeline.on_statuses(provider, updates)
        for update in updates:
            if update.final:
                self.poller.forget(provider, update.provider_id)

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``coro`` as a task of the node (cancelled at stop; a crash is logged)."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        task.add_done_callback(_report_crash)
        self._tasks.append(task)

    async def _retention(self) -> None:
        """Purge messages that ended more than ``[store] history_days`` ago, in small
        batches (each one short transaction: the submit path's writes go between
        them), every RETENTION_INTERVAL seconds."""
        while True:
            cutoff = time.time() - self.config.store.history_days * 86400
            try:
                purged = RETENTION_BATCH
                while purged >= RETENTION_BATCH:
                    purged = await self.store.purge(cutoff, RETENTION_BATCH)
            except StoreUnavailable as exc:
                _log.warning("retention.store_unavailable", error=str(exc))
            await asyncio.sleep(RETENTION_INTERVAL)

    async def _watch_clock(self) -> None:
        """Say so when the wall clock is stepped: dates follow it, timers do not
        (core.clock; docs/architecture.md, Time)."""
        watch = StepWatch(self.clock)
        while True:
            await asyncio.sleep(CLOCK_CHECK_INTERVAL)
            moved = watch.check()
            if moved is not None:
                _log.warning("clock.stepped", by=round(moved, 3),
                             since_start=round(watch.seen, 3))

    async def _expire_parts(self) -> None:
        while True:
            deadlines = [d for d in (self.content.next_deadline(),
                                     self.mo.next_deadline()) if d is not None]
            delay = 1.0 if not deadlines else min(
                1.0, max(0.0, min(deadlines) - self.clock.steady()))
            await asyncio.sleep(delay)
            try:
                await self.content.expire()
                await self.mo.expire()
            except StoreUnavailable as exc:
                # Their parts stay held; the next round fails them again.
                _log.debug("parts.expiry_waiting_for_store", error=str(exc))

    async def _provider_health(self) -> dict[str, object]:
        async def one(p: Provider) -> bool:
            try:
                async with asyncio.timeout(2.0):
                    return await p.ready()
            except Exception:  # unreachable or slow: reported, never fatal
                return False
        names = list(self.providers)
        results = await asyncio.gather(*(one(self.providers[n]) for n in names))
        info: dict[str, object] = {"providers": dict(zip(names, results, strict=True))}
        trouble = self.store.trouble()
        if trouble is not None:
            info["store_error"] = trouble
        return info

    async def _refresh_gauges(self) -> None:
        """Gauges read from the store and the runners at scrape time."""
        for state in DeliveryState:
            METRICS.messages.labels(state.value).set(await self.store.count(state))
        METRICS.receipts_waiting.set(await self.store.count_receipts())
        METRICS.callbacks_waiting.set(await self.store.count_callbacks())
        oldest = await self.store.oldest_queued()
        METRICS.queue_age.set(0.0 if oldest is None else max(0.0, time.time() - oldest))
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
        await self.callbacks.sender.aclose()
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
