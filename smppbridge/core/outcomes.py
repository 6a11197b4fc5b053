"""What a provider answers, in the receipt's terms: one :class:`SendOutcome` per message
sent, :class:`StatusUpdate` for each status seen (poll or webhook), the 3-digit receipt
``err:`` table (:class:`Err`) and :class:`HlrResult` for an HLR lookup.

The ``stat:`` words are :class:`smppbridge.smpp.receipts.Stat`; every provider module maps
its own API's words to them in its own tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum
from urllib.parse import quote_plus

from smppbridge.smpp.receipts import Stat

__all__ = ["Balance", "Err", "HlrResult", "SendOutcome", "SendResult", "StatusUpdate"]


class Err(IntEnum):
    """The 3-digit receipt ``err:`` code (documented in docs/providers.md).

    0xx: what happened to the message in the network; 1xx: the provider refused this
    message; 2xx: the provider refused our account or request; 3xx: we could not reach
    a provider.
    """

    OK = 0
    UNDELIVERABLE = 1
    EXPIRED = 2
    NO_FINAL_STATUS = 3
    PARTLY_DELIVERED = 4
    PROVIDER_ERROR = 5
    REFUNDED = 6
    STOPPED = 7
    STOP_LIST = 101
    DESTINATION_CLOSED = 102
    MODERATION = 103
    SENDER_INVALID = 104
    NUMBER_INVALID = 105
    TEXT_INVALID = 106
    CONTENT_INVALID = 107
    NO_ROUTE = 108
    OUT_OF_FUNDS = 201
    ACCOUNT_BLOCKED = 202
    REQUEST_INVALID = 203
    KIND_UNSUPPORTED = 204
    UNAVAILABLE = 301
    REJECTED_OTHER = 302

    def __str__(self) -> str:
        return f"{self.value:03d}"


class SendResult(StrEnum):
    """What became of one message at one provider."""

    #: the provider took it; ``provider_id`` is its id for status requests
    ACCEPTED = "accepted"
    #: the provider refused this message for good: a receipt with ``stat``/``err``
    REJECTED = "rejected"
    #: not sent here (transient failure after retries, or the provider refused our
    #: account/request): try the next provider; the last one's ``stat``/``err`` stand
    FAILED = "failed"
    #: transient failure of this message alone; the runner retries it
    RETRY = "retry"


# Not frozen, to be treated as immutable: a frozen dataclass sets every field through
# object.__setattr__, and these are made for every message (docs/performance.md).
@dataclass(slots=True)
class SendOutcome:
    """One message's result from one provider."""

    message_id: str
    result: SendResult
    provider_id: str = ""
    parts: int = 1
    stat: Stat = Stat.ACCEPTD
    #: an :class:`Err`, or (smpp provider) the upstream's command_status as 3 digits
    err: int = Err.OK
    detail: str = ""
    provider: str = ""

    @classmethod
    def accepted(cls, message_id: str, provider_id: str, parts: int = 1,
                 detail: str = "") -> SendOutcome:
        return cls(message_id, SendResult.ACCEPTED, provider_id, parts, detail=detail)

    @classmethod
    def rejected(cls, message_id: str, err: int, detail: str = "",
                 stat: Stat = Stat.REJECTD) -> SendOutcome:
        return cls(message_id, SendResult.REJECTED, stat=stat, err=err, detail=detail)

    @classmethod
    def failed(cls, message_id: str, err: Err, detail: str = "",
               stat: Stat = Stat.UNDELIV) -> SendOutcome:
        return cls(message_id, SendResult.FAILED, stat=stat, err=err, detail=detail)

    @classmethod
    def retry(cls, message_id: str, detail: str = "") -> SendOutcome:
        return cls(message_id, SendResult.RETRY, stat=Stat.UNDELIV, err=Err.UNAVAILABLE,
                   detail=detail)


@dataclass(frozen=True, slots=True)
class HlrResult:
    """An HLR lookup's answer, in the receipt fields of the SMS Center format."""

    imsi: str = ""
    msc: str = ""
    mcc: str = ""
    mnc: str = ""
    cn: str = ""
    net: str = ""
    rcn: str = ""
    rnet: str = ""

    def receipt_fields(self) -> str:
        """``imsi:<imsi> msc:<msc> mcc:<mcc> mnc:<mnc> cn:<cn> net:<net> rcn:<rcn>
        rnet:<rnet>`` with the string fields urlencoded (docs/store.md, HLR receipts)."""
        return " ".join(f"{name}:{quote_plus(getattr(self, name))}"
                        for name in ("imsi", "msc", "mcc", "mnc", "cn", "net", "rcn", "rnet"))


# Not frozen, to be treated as immutable: a frozen dataclass sets every field through
# object.__setattr__, and these are made for every message (docs/performance.md).
@dataclass(slots=True)
class StatusUpdate:
    """A provider's word on one message, mapped to the receipt's terms.

    ``message_id`` is ours when the provider echoes it (http-json, simulator) and ""
    otherwise; the store finds the message by ``(provider, provider_id)``.
    """

    provider_id: str
    stat: Stat
    #: an :class:`Err`, or (smpp provider) the err: digits of the upstream's receipt
    err: int = Err.OK
    detail: str = ""
    done_at: float | None = None
    message_id: str = ""
    hlr: HlrResult | None = None
    #: where the status came from: "poll", "webhook", "deadline" (the poller gave up)
    source: str = ""

    @property
    def final(self) -> bool:
        return self.stat.final


@dataclass(frozen=True, slots=True)
class Balance:
    """A provider account's balance, where the provider's API tells it (SMS-fly
    ``GETBALANCE``): ``amount`` in the provider's currency, ``at`` when it was read."""

    amount: float
    currency: str = ""
    at: float = 0.0
