"""Shared test helpers: a fake clock, messages, settings, a simulator on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from smppbridge.core.message import Address, OutboundMessage
from smppbridge.core.provider_settings import ProviderSettings
from smppbridge.providers.settings import parse_provider
from smppbridge.providers.simulator.settings import SimConfig
from smppbridge.simulator.app import Simulator
from smppbridge.text.content import Content, Kind

#: 2023-11-14 22:13:20 UTC = 2023-11-15 01:13:20 Europe/Moscow
T0 = 1_700_000_000.0


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingSleep:
    """An asyncio.sleep stand-in that returns at once and records the delays."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def message(mid: str = "1001", to: str = "79033256699", text: str = "hello", *,
            kind: Kind = Kind.SMS, source: str = "Sender", account: str = "acc",
            schedule_at: float | None = None, expire_at: float | None = None,
            **content: Any) -> OutboundMessage:
    return OutboundMessage(
        message_id=mid, part_ids=(mid,), account=account, source=Address(source, 5, 0),
        destination=Address(to, 1, 1), content=Content(kind=kind, text=text, **content),
        schedule_at=schedule_at, expire_at=expire_at, submitted_at=T0)


def settings(ptype: str, url: str = "", **raw: Any) -> ProviderSettings:
    base: dict[str, Any] = {"name": "p", "type": ptype}
    if ptype in ("mysmpp-xml", "mysmpp-json"):
        base.update(login="login", password="password")
        if url:
            base.update(url=f"{url}/{'xml' if ptype == 'mysmpp-xml' else 'json'}",
                        status_url=f"{url}/xml/state.php")
    elif ptype == "smsfly":
        base.update(key="specialsecretapikey", url=f"{url}/api/v2/api.php")
    elif ptype == "http-json":
        base.update(url=f"{url}/http-json/send", status_url=f"{url}/http-json/status")
    base.update(raw)
    return parse_provider(base, env={})


@asynccontextmanager
async def running_simulator(config: SimConfig | None = None,
                            clock: FakeClock | None = None) -> AsyncIterator[
                                tuple[Simulator, str]]:
    sim = Simulator(config, clock=clock or FakeClock())
    host, port = await sim.start("127.0.0.1", 0, webhook_interval=None)
    try:
        yield sim, f"http://{host}:{port}"
    finally:
        await sim.aclose()
