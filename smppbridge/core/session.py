"""What the rest of the node may know of a bind and what it answers a submit: the
session context a PDU arrived with, and the results of submit_sm and query_sm.

The asyncio server decodes PDUs and enforces the session rules; everything that decides
what happens to a message sits behind :class:`smppbridge.core.ports.SubmitHandler`,
which takes and returns these.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from smppbridge.smpp.constants import INTERFACE_VERSION_34, CommandStatus

if TYPE_CHECKING:
    from smppbridge.core.accounts import Account

__all__ = ["BindType", "QueryResult", "SessionContext", "SubmitResult"]


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


