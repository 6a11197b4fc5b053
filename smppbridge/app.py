"""Assembles one node: SMPP listeners, the submit handler, the HTTP side; runs until
SIGTERM/SIGINT and reloads on SIGHUP."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from smppbridge.config import Config, ConfigError, load_config
from smppbridge.http.server import HttpServer
from smppbridge.seam import MemoryHandler, SubmitHandler
from smppbridge.server.listener import SmppServer
from smppbridge.web import build_router

__all__ = ["Node", "run"]

_log = structlog.get_logger("smppbridge")


@dataclass
class Node:
    """One running smppbridge: start, reload, stop."""

    config: Config
    config_path: str | None = None
    handler: SubmitHandler = field(default_factory=MemoryHandler)
    smpp: SmppServer = field(init=False)
    http: HttpServer | None = field(init=False, default=None)
    http_address: tuple[str, int] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.smpp = SmppServer(self.config, self.handler)

    async def start(self) -> None:
        await self.smpp.start()
        if self.config.http.listen:
            async def listeners_up() -> bool:
                return self.smpp.listening

            router = build_router({"smpp_listeners": listeners_up,
                                   "store": self.handler.ready})
            self.http = HttpServer(router)
            self.http_address = await self.http.start(self.config.http.listen.host,
                                                      self.config.http.listen.port)
            _log.info("listener.started", listener="http",
                      address=f"{self.http_address[0]}:{self.http_address[1]}")

    def reload(self) -> bool:
        """Re-read the config file; an invalid one is refused and the old one kept."""
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            _log.error("config.reload_refused", error=str(exc))
            return False
        if (new.smpp.listen, new.smpp.tls_listen, new.http.listen) != (
                self.config.smpp.listen, self.config.smpp.tls_listen, self.config.http.listen):
            _log.warning("config.listen_changed", note="listen addresses apply on restart")
        self.config = new
        self.smpp.reload(new)
        _log.info("config.reloaded", accounts=len(new.accounts), providers=len(new.providers))
        return True

    async def stop(self) -> None:
        await self.smpp.shutdown()
        if self.http is not None:
            await self.http.close()


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
