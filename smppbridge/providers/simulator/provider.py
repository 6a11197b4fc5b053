"""The ``simulator`` provider type: the provider simulator's engine in-process, no HTTP.

It carries every kind, answers by the simulator's number rules, evolves statuses over
time (polled every ``poll_interval``, 1 s by default), returns HLR fields for ``hlr``
messages, and obeys the fault switches (``fail_rate``/``fail_next`` raise
ProviderUnavailable, ``down_for`` too, ``latency`` delays). Its settings are the
``simulator`` table of the provider (SimConfig keys). This is the demo configuration's
provider.

Mobile-originated messages: with ``mo_every`` set, one every that many seconds goes to
the node's MO intake (:meth:`SimulatorProvider.start_mo`); on request, the node's
``POST /webhooks/<provider>/mo`` takes the http-json MO shape for this type too.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from smppbridge.core.errors import ProviderUnavailable
from smppbridge.core.message import OutboundMessage
from smppbridge.core.mo import mo_of_text
from smppbridge.core.outcomes import Balance, Err, HlrResult, SendOutcome, StatusUpdate
from smppbridge.providers.simulator.engine import SimEngine
from smppbridge.providers.simulator.settings import SimConfig
from smppbridge.smpp.receipts import Stat
from smppbridge.text.content import Kind

if TYPE_CHECKING:
    from smppbridge.core.mo import InboundMo
    from smppbridge.core.provider_settings import ProviderSettings
    from smppbridge.http.request import HttpRequest

__all__ = ["OUTCOME_STATUS", "SEND_ERROR_ERR", "SimulatorProvider"]

#: engine outcome refused at send → err (REJECTD)
SEND_ERROR_ERR = {
    "stop_list": Err.STOP_LIST,
    "closed": Err.DESTINATION_CLOSED,
    "moderation": Err.MODERATION,
    "no_funds": Err.OUT_OF_FUNDS,
    "no_sender": Err.SENDER_INVALID,
}
#: engine phase → (stat, err), as the mysmpp mapping would give
OUTCOME_STATUS = {
    "accepted": (Stat.ACCEPTD, Err.OK),
    "progress": (Stat.ENROUTE, Err.OK),
    "delivered": (Stat.DELIVRD, Err.OK),
    "read": (Stat.DELIVRD, Err.OK),
    "fallback": (Stat.DELIVRD, Err.OK),
    "undeliverable": (Stat.UNDELIV, Err.UNDELIVERABLE),
    "expired": (Stat.EXPIRED, Err.EXPIRED),
    "partly": (Stat.ENROUTE, Err.PARTLY_DELIVERED),
}


class SimulatorProvider:
    """The in-process simulator adapter."""

    supports_schedule = True

    def __init__(self, settings: ProviderSettings, *, engine: SimEngine | None = None,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.settings = settings
        self.name = settings.name
        self.kinds = settings.kinds
        self.poll_interval = settings.poll_interval
        self.engine = engine or SimEngine(SimConfig.from_dict(settings.simulator), clock)
        self._sleep = sleep
        self._mo_task: asyncio.Task[None] | None = None
        #: MO the schedule made that the intake could not store, tried again next time
        self._mo_backlog: list[InboundMo] = []

    def start_mo(self, on_mo: Callable[[InboundMo], Awaitable[object]],
                 interval: float = 0.1) -> None:
        """Hand the scheduled MO (``mo_every``) to ``on_mo``, checked every
        ``interval`` seconds."""
        self._mo_task = asyncio.get_running_loop().create_task(
            self._mo_loop(on_mo, interval), name=f"simulator {self.name} MO")

    async def _mo_loop(self, on_mo: Callable[[InboundMo], Awaitable[object]],
                       interval: float) -> None:
        while True:
            await self._sleep(interval)
            now = self.engine.clock()
            self._mo_backlog += [mo_of_text(self.name, m["from"], m["to"], m["text"], now)
                                 for m in self.engine.due_mo()]
            while self._mo_backlog:
                try:
                    await on_mo(self._mo_backlog[0])
                except Exception:  # store trouble: kept, tried at the next tick
                    break
                self._mo_backlog.pop(0)

    async def _faults(self) -> None:
        if self.engine.config.latency:
            await self._sleep(self.engine.config.latency)
        fault = self.engine.fault()
        if fault.drop:
            raise ProviderUnavailable(f"{self.name}: simulator is down")
        if fault.status:
            raise ProviderUnavailable(f"{self.name}: HTTP {fault.status}")

    async def send(self, messages: Sequence[OutboundMessage]) -> list[SendOutcome]:
        await self._faults()
        out = []
        for m in messages:
            c = m.content
            channels = ("viber", "sms") if c.kind is Kind.VIBER and c.fallback_text \
                is not None else (c.kind.value,)
            msg, outcome = self.engine.accept(
                "sim", m.account, m.destination.addr.lstrip("+"), client_id=m.message_id,
                kind=c.kind.value, text=c.text, channels=channels, our_id=m.message_id)
            if msg is None:
                out.append(SendOutcome.rejected(m.message_id, SEND_ERROR_ERR[outcome], outcome))
            else:
                out.append(SendOutcome.accepted(m.message_id, msg.id, msg.parts))
        return out

    async def poll(self, provider_ids: Sequence[str]) -> list[StatusUpdate]:
        await self._faults()
        updates = []
        for pid in provider_ids:
            msg = self.engine.messages.get(pid)
            if msg is None:
                continue
            phase = self.engine.phase(msg)
            stat, err = OUTCOME_STATUS.get(phase, (Stat.ENROUTE, Err.OK))
            hlr = None
            if msg.kind == Kind.HLR.value and stat is Stat.DELIVRD:
                h = self.engine.hlr(msg)
                hlr = HlrResult(h.imsi, h.msc, h.mcc, h.mnc, h.cn, h.net, h.rcn, h.rnet)
            done_at = self.engine.final_time(msg) if stat.final else None
            updates.append(StatusUpdate(pid, stat, err, phase, done_at, msg.our_id, hlr))
        return updates

    def parse_webhook(self, request: HttpRequest) -> list[StatusUpdate]:
        raise ValueError("the in-process simulator sends no webhooks")

    async def ready(self) -> bool:
        return not (self.engine.down_until and self.engine.clock() < self.engine.down_until)

    async def balance(self) -> Balance | None:
        """The in-process simulator keeps no account balance."""
        return None

    async def aclose(self) -> None:
        if self._mo_task is not None:
            self._mo_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._mo_task
            self._mo_task = None
