"""The JSON shapes of the operator API (``/api/v1``): pydantic models, from which the
OpenAPI document at ``/api/v1/openapi.json`` is generated. Times are ISO 8601 in UTC."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

from smppbridge.core.cluster import BindInfo
from smppbridge.core.history import ReceiptView, TimelineEntry
from smppbridge.core.mo import DIRECTION
from smppbridge.core.records import StoredMessage
from smppbridge.text.encoding import InvalidDataCoding, parse_data_coding

__all__ = [
    "AccountItem",
    "BindItem",
    "ErrorBody",
    "MessageDetail",
    "MessageItem",
    "MessagePage",
    "ProviderItem",
    "Receipt",
    "StatsBody",
    "TimelineItem",
    "UnbindBody",
    "iso",
]


def iso(ts: float | None) -> str | None:
    """A UNIX time as ISO 8601 UTC with milliseconds (``2026-12-03T12:00:00.000Z``)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


class ErrorDetail(BaseModel):
    code: str = Field(description="a stable word: invalid_parameter, not_found, ...")
    message: str
    parameter: str | None = Field(None, description="the parameter at fault, if one is")


class ErrorBody(BaseModel):
    error: ErrorDetail


class MessageItem(BaseModel):
    """One message as a list shows it."""

    model_config = ConfigDict(populate_by_name=True)

    id: str
    account: str
    from_: str = Field(alias="from")
    to: str
    kind: str = Field(description="sms, viber, hlr, mms, mail, call, soc, ping")
    encoding: str = Field(description="gsm7, ascii, latin1, octet or ucs2: how it came in")
    text: str = Field(description="the decoded text sent, comment removed")
    comment: str | None
    parts: int
    state: str = Field(description="queued, sent or final")
    stat: str = Field(description="the receipt stat: DELIVRD, UNDELIV, ... ('' while none)")
    err: int
    provider: str
    provider_id: str
    submitted_at: str
    done_at: str | None
    direction: str = Field("mt", description="mt (submitted by an account) or mo "
                           "(mobile-originated, from a provider: submitted_at is when it "
                           "arrived; stat ACCEPTD routed, REJECTD unroutable)")

    @classmethod
    def of(cls, stored: StoredMessage) -> MessageItem:
        m = stored.message
        return cls(id=m.message_id, account=m.account, from_=m.source.addr,
                   to=m.destination.addr, kind=m.content.kind.value,
                   encoding=_encoding(m.data_coding), text=m.content.text,
                   comment=m.content.comment, parts=len(m.part_ids),
                   state=stored.state.value, stat=stored.stat, err=stored.err,
                   provider=stored.provider, provider_id=stored.provider_id,
                   submitted_at=iso(m.submitted_at) or "", done_at=iso(stored.done_at),
                   direction=m.extra.get(DIRECTION, "mt"))


def _encoding(data_coding: int) -> str:
    try:
        return parse_data_coding(data_coding).alphabet.value
    except InvalidDataCoding:
        return "unknown"


class MessagePage(BaseModel):
    items: list[MessageItem]
    next_cursor: str | None = Field(description="give it as cursor= for the next page")


class TimelineItem(BaseModel):
    at: str
    state: str
    stat: str
    err: int
    detail: str

    @classmethod
    def of(cls, e: TimelineEntry) -> TimelineItem:
        return cls(at=iso(e.at) or "", state=e.state, stat=e.stat, err=e.err,
                   detail=e.detail)


class Receipt(BaseModel):
    part_id: str
    system_id: str = Field(description="the account the receipt goes to")
    stat: str
    err: int
    state: str = Field(description="pending, delivered, dropped or expired")
    attempts: int
    at: str

    @classmethod
    def of(cls, r: ReceiptView) -> Receipt:
        return cls(part_id=r.part_id, system_id=r.account, stat=r.stat, err=r.err,
                   state=r.state.value, attempts=r.attempts, at=iso(r.at) or "")


class MessageDetail(MessageItem):
    """One message with its whole story."""

    part_ids: list[str]
    timeline: list[TimelineItem]
    receipts: list[Receipt]
    hlr: dict[str, str] | None = Field(None, description="an HLR lookup's result fields")


class BindItem(BaseModel):
    id: str = Field(description="<node>:<number>; DELETE /api/v1/binds/{id} unbinds it")
    node: str
    system_id: str
    bind_type: str
    peer: str
    tls: bool
    since: str
    window_in_use: int
    window: int
    submit_rate: float = Field(description="message requests per second, last minute")

    @classmethod
    def of(cls, b: BindInfo) -> BindItem:
        return cls(id=b.id, node=b.node, system_id=b.system_id, bind_type=b.bind_type,
                   peer=b.peer, tls=b.tls, since=iso(b.since) or "",
                   window_in_use=b.window_in_use, window=b.window,
                   submit_rate=b.submit_rate)


class UnbindBody(BaseModel):
    status: str
    id: str


class UpstreamSessionItem(BaseModel):
    """One connection of an smpp provider to its upstream SMSC."""

    session: str = Field(description="the session's number; a receiver of a "
                         "transmitter+receiver pair is <n>rx")
    bind: str = Field(description="transceiver, transmitter or receiver")
    state: str = Field(description="bound or connecting")
    since: str | None = Field(description="when it bound; null while connecting")
    window_in_use: int
    window: int
    reconnects: int
    last_error: str


class ProviderItem(BaseModel):
    name: str
    type: str
    healthy: bool | None = Field(description="its last readiness probe; null before one")
    breaker: str = Field(description="closed, open or half_open")
    in_flight: int
    sent_5m: int
    failed_5m: int
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    balance: float | None = Field(None, description="where the provider's API has one")
    balance_currency: str | None = None
    balance_at: str | None = None
    upstream_sessions: list[UpstreamSessionItem] | None = Field(
        None, description="type smpp: each session to the upstream SMSC")


class AccountItem(BaseModel):
    system_id: str
    max_binds: int
    allowed_networks: list[str]
    throughput: float
    burst: int
    window: int | None
    providers: list[str]
    message_id_format: str
    iso_default: bool
    binds_now: int
    messages_today: int
    receipts_pending: int


class StatsSecond(BaseModel):
    at: str
    submitted: int
    refused: dict[str, int]
    sent: int
    delivered: int
    failed: int
    receipts_delivered: int


class NodeStats(BaseModel):
    node: str
    seconds: list[StatsSecond]


class StatsBody(BaseModel):
    minutes: int
    nodes: list[NodeStats]
