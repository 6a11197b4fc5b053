"""In-memory doubles for tests and experiments: never imported by a production module.

* :class:`MemoryHandler` — a :class:`~smppbridge.core.ports.SubmitHandler` that accepts
  every submit_sm into memory (the server without the rest of the node);
* :class:`MemorySink` — a :class:`~smppbridge.core.ports.MessageSink` that keeps accepted
  messages in memory (the submit path without a store);
* :class:`CounterIds` — process-unique message ids (the submit path without a store's
  reserved blocks).
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from smppbridge.core.ports import SubmitHandler
from smppbridge.core.session import QueryResult, SessionContext, SubmitResult
from smppbridge.smpp.constants import CommandStatus, MessageState

if TYPE_CHECKING:
    from smppbridge.core.message import OutboundMessage
    from smppbridge.core.records import FailedMessage, PartRecord
    from smppbridge.smpp.pdu import SubmitSm

__all__ = ["CounterIds", "MemoryHandler", "MemorySink"]

_OK = CommandStatus.ESME_ROK


@dataclass
class MemoryHandler(SubmitHandler):
    """Accepts every submit_sm into memory: the demo and test stand-in until a store exists.

    Nothing here survives a restart; it keeps the last ``capacity`` messages.
    """

    capacity: int = 100_000
    messages: OrderedDict[str, tuple[SessionContext, SubmitSm]] = field(
        default_factory=OrderedDict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _epoch: int = field(default_factory=lambda: int(time.time()) % 100_000)

    def next_id(self, ctx: SessionContext) -> str:
        n = next(self._ids)
        if ctx.short_ids:
            return f"{n % 100_000_000:08d}"
        return f"{self._epoch:05d}{n:010d}"

    async def submit(self, ctx: SessionContext, pdu: SubmitSm) -> SubmitResult:
        message_id = self.next_id(ctx)
        self.messages[message_id] = (ctx, pdu)
        if len(self.messages) > self.capacity:
            self.messages.popitem(last=False)
        return SubmitResult(CommandStatus.ESME_ROK, message_id)

    async def query(self, ctx: SessionContext, message_id: str, source_addr: str) -> QueryResult:
        if message_id not in self.messages:
            return QueryResult(CommandStatus.ESME_RQUERYFAIL)
        return QueryResult(CommandStatus.ESME_ROK, message_state=6)  # ACCEPTED

    async def cancel(self, ctx: SessionContext, message_id: str, source_addr: str) -> int:
        return CommandStatus.ESME_RCANCELFAIL

    async def ready(self) -> bool:
        return True


class CounterIds:
    """Default id generator: process-unique decimal ids (8 digits for v3.3 binds).

    Not unique across restarts or nodes — production injects the store's generator.
    """

    def __init__(self) -> None:
        self._n = itertools.count(1)
        self._epoch = int(time.time()) % 100_000

    def __call__(self, ctx: SessionContext) -> str:
        n = next(self._n)
        if ctx.short_ids:
            # SMPP 3.4 §3.4: at most 8 octets for a v3.3 ESME.
            return f"{n % 100_000_000:08d}"
        return f"{self._epoch:05d}{n:010d}"


@dataclass
class MemorySink:
    """Keeps accepted messages in memory: for tests and the demo.

    ``accept_status`` makes every accept answer that status (to test refusals).
    Keeps the last ``capacity`` messages.
    """

    capacity: int = 100_000
    accept_status: int = _OK
    messages: OrderedDict[str, OutboundMessage] = field(default_factory=OrderedDict)
    failures: list[FailedMessage] = field(default_factory=list)
    _by_part: dict[str, str] = field(default_factory=dict)

    async def accept(self, message: OutboundMessage) -> int:
        if self.accept_status != _OK:
            return self.accept_status
        self.messages[message.message_id] = message
        for pid in message.part_ids:
            self._by_part[pid] = message.message_id
        while len(self.messages) > self.capacity:
            _, old = self.messages.popitem(last=False)
            for pid in old.part_ids:
                self._by_part.pop(pid, None)
        return _OK

    async def accept_many(self, messages: Sequence[OutboundMessage]) -> list[int]:
        return [await self.accept(m) for m in messages]

    async def failed(self, failure: FailedMessage) -> None:
        self.failures.append(failure)
        del self.failures[: -self.capacity]

    async def query(self, ctx: SessionContext, message_id: str, source_addr: str) -> QueryResult:
        if message_id not in self._by_part:
            return QueryResult(CommandStatus.ESME_RQUERYFAIL)
        return QueryResult(_OK, message_state=MessageState.ACCEPTED)

    async def cancel(self, ctx: SessionContext, message_id: str, source_addr: str) -> int:
        return CommandStatus.ESME_RCANCELFAIL

    async def ready(self) -> bool:
        return True

    async def hold_part(self, part: PartRecord) -> None:
        return None
