"""The seam between the SMPP server and the rest of the pipeline.

The asyncio server decodes PDUs and enforces the session rules; everything that decides
what happens to a message sits behind :class:`SubmitHandler`. The content layer, the
store and the providers plug in here; the demo starts with :class:`MemoryHandler`.
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from smppbridge.smpp.constants import INTERFACE_VERSION_34, CommandStatus

if TYPE_CHECKING:
    from smppbridge.config import Account
    from smppbridge.smpp.pdu import SubmitSm

__all__ = [
    "BindType",
    "MemoryHandler",
    "QueryResult",
    "SessionContext",
    "SubmitHandler",
    "SubmitResult",
]


class BindType(StrEnum):
    TRANSMITTER = "transmitter"
    RECEIVER = "receiver"
    TRANSCEIVER = "transceiver"


@dataclass(frozen=True, slots=True)
class SessionContext:
    """What the pipeline may know of the bind a PDU arrived on."""

    session_id: int
    account: Account
    bind_type: BindType
    system_type: str
    interface_version: int
    peer: str

    @property
    def system_id(self) -> str:
        return self.account.system_id

    @property
    def short_ids(self) -> bool:
        """SMPP 3.4 §3.4: a v3.3 ESME must not get message ids longer than 8 octets."""
        return self.interface_version < INTERFACE_VERSION_34


@dataclass(frozen=True, slots=True)
class SubmitResult:
    """The answer to one submit_sm: command_status and, when ESME_ROK, its message_id."""

    status: int
    message_id: str = ""

    @property
    def ok(self) -> bool:
        return self.status == CommandStatus.ESME_ROK


@dataclass(frozen=True, slots=True)
class QueryResult:
    """The answer to query_sm (SMPP 3.4 §4.8.2)."""

    status: int
    final_date: str = ""
    message_state: int = 0
    error_code: int = 0


class SubmitHandler(Protocol):
    """What the server calls for every message-carrying request that passed the session.

    Implementations must be safe to call concurrently (many binds, a window per bind)
    and must only return ``ESME_ROK`` once the message is stored as durably as the
    implementation promises.
    """

    async def submit(self, ctx: SessionContext, pdu: SubmitSm) -> SubmitResult:
        """Accept or refuse one submit_sm (data_sm and each submit_multi destination too)."""
        ...

    async def query(self, ctx: SessionContext, message_id: str, source_addr: str) -> QueryResult:
        """query_sm."""
        ...

    async def cancel(self, ctx: SessionContext, message_id: str, source_addr: str) -> int:
        """cancel_sm; returns the command_status."""
        ...

    async def ready(self) -> bool:
        """True when the store behind the handler is reachable (``/readyz``)."""
        ...


@dataclass
class MemoryHandler:
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
