"""Assembles one node: SMPP listeners → content stage → durable pipeline → providers,
the receipt dispatcher, the HTTP side; runs until SIGTERM/SIGINT, reloads on SIGHUP."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import structlog

from smppbridge.bridge.content import ContentHandler, ContentSettings
from smppbridge.bridge.dispatcher import ReceiptDispatcher
from smppbridge.bridge.flood import MemoryFloodState
from smppbridge.bridge.pipeline import IdAllocator, Pipeline
from smppbridge.bridge.providers import ProviderSettings, build_provider, parse_provider
from smppbridge.bridge.providers.base import Provider
from smppbridge.bridge.providers.resilience import ProviderRunner
from smppbridge.bridge.providers.worker import WorkerProvider
from smppbridge.bridge.router import Router, parse_route
from smppbridge.bridge.status import StatusPoller, webhook_handler
from smppbridge.config import Account, Config, ConfigError, load_config
from smppbridge.http.server import HttpServer
from smppbridge.http.server import Router as HttpRouter
from smppbridge.observability.metrics import METRICS
from smppbridge.seam import BindType, SessionContext, SubmitHandler
from smppbridge.server.listener import SmppServer
from smppbridge.store.base import MessageState, PartRecord, Store
from smppbridge.store.sqlite import SqliteStore
from smppbridge.web import build_router, metrics_handler

__all__ = ["Node", "open_store", "run"]

_log = structlog.get_logger("smppbridge")


def open_store(config: Config) -> Store:
    """The store named by ``[store] url`` (not yet opened)."""
    url = config.store.url
    if url.startswith("memory:"):
        return SqliteStore(":memory:")
    if url.startswith(("redis:", "rediss:")):
        from smppbridge.store.redis import RedisStore

        return RedisStore.from_url(url)
    return SqliteStore.from_url(url)


#: id(account) -> (account, its content settings). Keyed by identity, not by value:
#: hashing a whole frozen Account on every submit costs more than building the settings.
#: The account is kept in the value, so its id cannot be reused while the entry lives.
_SETTINGS: dict[int, tuple[Account, ContentSettings]] = {}


def content_settings(ctx: SessionContext) -> ContentSettings:
    account = ctx.account
    hit = _SETTINGS.get(id(account))
    if hit is not None and hit[0] is account:
        return hit[1]
    if len(_SETTINGS) > 10_000:
        _SETTINGS.clear()
    settings = ContentSettings(account.iso_default, account.limits, account.flood)
    _SETTINGS[id(account)] = (account, settings)
    return settings


@dataclass
class Node:
    """One running smppbridge: start, reload, stop."""

    config: Config
    config_path: str | None = None
    #: replaces the content stage at the SMPP seam (tests inject blocking handlers)
    handler: SubmitHandler | None = None
    store: Store = field(init=False)
    smpp: SmppServer = field(init=False)
    pipeline: Pipeline = field(init=False)
    content: ContentHandler = field(init=False)
    dispatcher: ReceiptDispatcher = field(init=False)
    router: Router = field(init=False)
    poller: StatusPoller = field(init=False)
    providers: dict[str, Provider] = field(init=False, default_factory=dict)
    http: HttpServer | None = field(init=False, default=None)
    http_address: tuple[str, int] | None = field(init=False, default=None)
    #: the /metrics-only server of ``[http] metrics_listen``
    metrics_http: HttpServer | None = field(init=False, default=None)
    metrics_address: tuple[str, int] | None = field(init=False, default=None)
    _tasks: list[asyncio.Task[None]] = field(init=False, default_factory=list)
    _provider_settings: dict[str, ProviderSettings] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        cfg = self.config
        self.store = open_store(cfg)
        settings: dict[str, ProviderSettings] = {p.name: parse_provider(p.raw)
                                                 for p in cfg.providers}
        self.providers = {name: self._build_provider(s) for name, s in settings.items()}
        runners = {name: ProviderRunner(self.providers[name], s)
                   for name, s in settings.items()}
        names = list(settings)
        routes = [parse_route(r, i, names) for i, r in enumerate(cfg.routes)]
        self.router = Router(runners, routes,
                             {a.system_id: a.providers for a in cfg.accounts})
        self.smpp = SmppServer(cfg, handler=None)  # type: ignore[arg-type]
        self.dispatcher = ReceiptDispatcher(
            self.store, self.smpp.receivers, bound_accounts=self.smpp.receiver_accounts,
            retry_backoff=cfg.receipts.retry_backoff, retry_max=cfg.receipts.retry_max)
        self.pipeline = Pipeline(self.store, self.router,
                                 receipts_added=self.dispatcher.notify,
                                 outbox=self.dispatcher,
                                 receipt_ttl=cfg.receipts.ttl_hours * 3600)
        self._provider_settings = settings
        self.poller = StatusPoller(self.providers, settings, self.pipeline.on_status,
                                   on_updates=self.pipeline.on_statuses)
        self.pipeline.poller = self.poller
        self.content = ContentHandler(self.pipeline, new_id=IdAllocator(self.store).take,
                                      flood=MemoryFloodState(), settings=content_settings,
                                      reassembly=cfg.content)
        self.smpp.handler = self.handler if self.handler is not None else self.content
        self.smpp.on_receiver_bound = lambda _system_id: self.dispatcher.notify()

    def _build_provider(self, settings: ProviderSettings) -> Provider:
        provider = build_provider(settings)
        if settings.worker:
            return WorkerProvider(provider, settings,
                                  log=(self.config.log.level, self.config.log.format))
        return provider

    async def start(self) -> None:
        await self.store.open()
        for provider in self.providers.values():
            if isinstance(provider, WorkerProvider):
                await provider.start()  # a child that cannot start stops the node here
        flood_state = getattr(self.store, "flood_state", None)
        if flood_state is not None:
            # A shared store shares the flood windows too: the rules hold across nodes.
            self.content.flood = flood_state()
        restored = await self.content.restore(await self.store.load_parts(),
                                              self._restored_context)
        if restored:
            _log.info("parts.restored", count=restored)
        await self.smpp.start()
        self._spawn(self.pipeline.run(), "pipeline")
        self._spawn(self.poller.run(), "status poller")
        self._spawn(self.dispatcher.run(), "receipt dispatcher")
        self._spawn(self._expire_parts(), "long-message expiry")
        http = self.config.http
        if http.listen:
            async def listeners_up() -> bool:
                return self.smpp.listening

            router = build_router({"smpp_listeners": listeners_up, "store": self.store.ready},
                                  info=self._provider_health, refresh=self._refresh_gauges,
                                  serve_metrics=http.metrics_listen is None)
            router.add_prefix("POST", "/webhooks/",
                              webhook_handler(self.providers, self.pipeline.on_status,
                                              poller=self.poller,
                                              settings=self.poller.settings))
            self.http = HttpServer(router)
            self.http_address = await self.http.start(http.listen.host, http.listen.port)
            _log.info("listener.started", listener="http",
                      address=f"{self.http_address[0]}:{self.http_address[1]}")
        if http.metrics_listen:
            # /metrics alone on its own (private) address; the main listener leaves it out.
            metrics_router = HttpRouter()
            metrics_router.add("GET", "/metrics", metrics_handler(refresh=self._refresh_gauges))
            self.metrics_http = HttpServer(metrics_router)
            self.metrics_address = await self.metrics_http.start(http.metrics_listen.host,
                                                                 http.metrics_listen.port)
            _log.info("listener.started", listener="metrics",
                      address=f"{self.metrics_address[0]}:{self.metrics_address[1]}")

    def _restored_context(self, part: PartRecord) -> SessionContext | None:
        account = self.config.account(part.account)
        if account is None:
            return None
        return SessionContext(0, account, BindType.TRANSMITTER, part.system_type,
                              part.interface_version, "restored")

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
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
        count = getattr(self.store, "count", None)
        if count is not None:
            for state in MessageState:
                METRICS.messages.labels(state.value).set(await count(state))
        count_receipts = getattr(self.store, "count_receipts", None)
        if count_receipts is not None:
            METRICS.receipts_waiting.set(await count_receipts())
        for name, runner in self.router.runners.items():
            METRICS.breaker.labels(name).set(0 if runner.available else 1)
        METRICS.parts_waiting.set(self.content.reassembler.pending_parts)

    def reload(self) -> bool:
        """Re-read the config file (SIGHUP). Everything is validated first; an invalid
        file is refused with a log line and the old config kept whole. Accounts, limits,
        routes and providers are replaced without dropping binds: a provider whose table
        changed gets a new adapter (the old one finishes its batches and closes), an
        unchanged one keeps its connections. Listen addresses and the store apply on
        restart."""
        try:
            new = load_config(self.config_path)
            settings = {p.name: parse_provider(p.raw) for p in new.providers}
            routes = tuple(parse_route(r, i, list(settings)) for i, r in enumerate(new.routes))
        except (ConfigError, ValueError) as exc:
            _log.error("config.reload_refused", error=str(exc))
            return False
        if (new.smpp.listen, new.smpp.tls_listen, new.http, new.store.url) != (
                self.config.smpp.listen, self.config.smpp.tls_listen,
                self.config.http, self.config.store.url):
            _log.warning("config.restart_needed",
                         note="listen addresses and the store apply on restart")
        old_raw = {p.name: dict(p.raw) for p in self.config.providers}
        runners = {}
        retired = [r for n, r in self.router.runners.items() if n not in settings]
        for name, s in settings.items():
            current = self.router.runners.get(name)
            if current is not None and old_raw.get(name) == dict(
                    next(p.raw for p in new.providers if p.name == name)):
                runners[name] = current
                continue
            if current is not None:
                retired.append(current)
            runners[name] = ProviderRunner(self._build_provider(s), s)
        # Swap in place: the poller and the webhook handler hold these very dicts.
        self.providers.clear()
        self.providers.update({n: r.provider for n, r in runners.items()})
        self._provider_settings.clear()
        self._provider_settings.update(settings)
        self.router.update(runners, routes, {a.system_id: a.providers for a in new.accounts})
        self.config = new
        self.smpp.reload(new)
        for runner in retired:
            self._spawn(runner.aclose(), f"close provider {runner.name}")
        _log.info("config.reloaded", accounts=len(new.accounts), providers=len(new.providers),
                  providers_replaced=len(retired))
        return True

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
