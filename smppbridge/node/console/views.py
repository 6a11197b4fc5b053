"""What the console's pages show, prepared in Python so that the templates only place
it: every time in the configured zone with its offset, every label and CSS class
chosen here. The data are the operator API's own models (``MessageItem``,
``MessageDetail``, ``BindItem``, ``ProviderItem``, ``AccountItem``), built by the API's
own functions, so the console and the API cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from urllib.parse import quote, urlencode

from smppbridge.core.cluster import Second
from smppbridge.node.models import (
    AccountItem,
    BindItem,
    MessageDetail,
    MessageItem,
    ProviderItem,
)
from smppbridge.smpp.receipts import Stat

__all__ = [
    "AccountRow",
    "BindRow",
    "MessageRow",
    "MessageView",
    "Option",
    "ProviderRow",
    "Totals",
    "from_iso",
    "local_time",
    "offset",
]

#: characters of a message's text shown in the list (the detail page shows it all)
TEXT_IN_LIST = 80
STATES = ("queued", "sent", "final")


def offset(dt: datetime) -> str:
    """``+02:00``: the UTC offset of an aware datetime."""
    off = dt.utcoffset() or timedelta(0)
    sign = "-" if off < timedelta(0) else "+"
    minutes = abs(int(off.total_seconds())) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def local_time(ts: float | None, tz: tzinfo) -> str:
    """A UNIX time in ``tz`` with its offset: ``2026-12-03 15:04:05 +02:00``."""
    if ts is None:
        return ""
    dt = datetime.fromtimestamp(ts, tz)
    return f"{dt:%Y-%m-%d %H:%M:%S} {offset(dt)}"


def from_iso(value: str | None) -> float | None:
    """The UNIX time of one of the API's ISO 8601 times (``…Z``)."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def iso_time(value: str | None, tz: tzinfo) -> str:
    """An API time (ISO 8601, UTC) shown in ``tz``."""
    return local_time(from_iso(value), tz)


def api_time(value: str, tz: tzinfo) -> str | None:
    """A time typed in the search form as the API takes it: a time without an offset
    (what a ``datetime-local`` field sends) is in the console's zone; anything else
    (UNIX seconds, a time with an offset, garbage) goes to the API's parser as it is,
    which names the field when it cannot read it."""
    text = value.strip()
    if not text:
        return None
    try:
        float(text)
    except ValueError:
        pass
    else:
        return text
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    return dt.isoformat()


def form_time(value: str | None, tz: tzinfo) -> str:
    """What a ``datetime-local`` field shows for an API time: local, no offset."""
    if not value:
        return ""
    try:
        seconds = float(value)
    except ValueError:
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return ""
        seconds = dt.timestamp() if dt.tzinfo is not None else dt.replace(
            tzinfo=tz).timestamp()
    return f"{datetime.fromtimestamp(seconds, tz):%Y-%m-%dT%H:%M:%S}"


def stat_class(stat: str, state: str) -> str:
    """The CSS class of a stat: ok (delivered), bad (failed for good), wait."""
    if stat == "DELIVRD":
        return "ok"
    if state == "final" or stat in ("UNDELIV", "EXPIRED", "REJECTD", "DELETED", "UNKNOWN"):
        return "bad"
    return "wait"


def message_href(message_id: str) -> str:
    return "/messages/" + quote(message_id, safe="")


@dataclass(frozen=True, slots=True)
class Option:
    value: str
    label: str
    selected: bool


def options(values: Iterable[str], chosen: str | None, empty: str) -> list[Option]:
    out = [Option("", empty, not chosen)]
    out += [Option(v, v, v == chosen) for v in values]
    return out


def state_options(chosen: str | None) -> list[Option]:
    return options(STATES, chosen, "any state")


def stat_options(chosen: str | None) -> list[Option]:
    return options(Stat.__members__, chosen, "any stat")


def query_string(params: Mapping[str, str | None]) -> str:
    """``?a=1&b=2`` of the parameters given (empty ones left out), or ''."""
    given = {k: v for k, v in params.items() if v}
    return "?" + urlencode(given) if given else ""


@dataclass(frozen=True, slots=True)
class MessageRow:
    id: str
    href: str
    submitted: str
    account: str
    source: str
    to: str
    text: str
    #: the whole text, when the list shows it cut
    text_title: str
    comment: str
    parts: int
    state: str
    stat: str
    stat_class: str
    provider: str

    @classmethod
    def of(cls, m: MessageItem, tz: tzinfo) -> MessageRow:
        short = m.text if len(m.text) <= TEXT_IN_LIST else m.text[:TEXT_IN_LIST - 1] + "…"
        return cls(id=m.id, href=message_href(m.id), submitted=iso_time(m.submitted_at, tz),
                   account=m.account, source=m.from_, to=m.to, text=short,
                   text_title=m.text if short != m.text else "", comment=m.comment or "",
                   parts=m.parts, state=m.state, stat=m.stat or "—",
                   stat_class=stat_class(m.stat, m.state), provider=m.provider or "—")


@dataclass(frozen=True, slots=True)
class Field:
    label: str
    value: str
    #: a CSS class for the value ('' none)
    css: str = ""


@dataclass(frozen=True, slots=True)
class TimelineRow:
    at: str
    state: str
    stat: str
    stat_class: str
    err: str
    detail: str


@dataclass(frozen=True, slots=True)
class ReceiptRow:
    part_id: str
    system_id: str
    stat: str
    stat_class: str
    err: str
    state: str
    attempts: int
    at: str


@dataclass(frozen=True, slots=True)
class MessageView:
    """The detail page of one message."""

    id: str
    text: str
    comment: str
    fields: list[Field]
    part_ids: list[str]
    timeline: list[TimelineRow]
    receipts: list[ReceiptRow]
    hlr: list[Field] = field(default_factory=list)

    @classmethod
    def of(cls, d: MessageDetail, tz: tzinfo, *, operator: bool) -> MessageView:
        fields = [Field("state", d.state), Field("stat", d.stat or "—",
                                                 stat_class(d.stat, d.state)),
                  Field("err", str(d.err)),
                  Field("submitted", iso_time(d.submitted_at, tz)),
                  Field("done", iso_time(d.done_at, tz) or "—")]
        if operator:
            fields.insert(0, Field("account", d.account))
        fields += [Field("from", d.from_), Field("to", d.to), Field("kind", d.kind),
                   Field("encoding", d.encoding), Field("parts", str(d.parts)),
                   Field("provider", d.provider or "—"),
                   Field("provider id", d.provider_id or "—")]
        timeline = [TimelineRow(at=iso_time(e.at, tz), state=e.state, stat=e.stat,
                                stat_class=stat_class(e.stat, e.state) if e.stat else "",
                                err=str(e.err) if e.err else "", detail=e.detail)
                    for e in d.timeline]
        receipts = [ReceiptRow(part_id=r.part_id, system_id=r.system_id, stat=r.stat,
                               stat_class=stat_class(r.stat, "final"),
                               err=str(r.err), state=r.state, attempts=r.attempts,
                               at=iso_time(r.at, tz)) for r in d.receipts]
        hlr = [Field(k, v) for k, v in sorted((d.hlr or {}).items())]
        return cls(id=d.id, text=d.text, comment=d.comment or "", fields=fields,
                   part_ids=d.part_ids, timeline=timeline, receipts=receipts, hlr=hlr)


@dataclass(frozen=True, slots=True)
class BindRow:
    id: str
    node: str
    system_id: str
    bind_type: str
    peer: str
    tls: str
    since: str
    window: str
    rate: str

    @classmethod
    def of(cls, b: BindItem, tz: tzinfo) -> BindRow:
        return cls(id=b.id, node=b.node, system_id=b.system_id, bind_type=b.bind_type,
                   peer=b.peer, tls="yes" if b.tls else "no", since=iso_time(b.since, tz),
                   window=f"{b.window_in_use} / {b.window}", rate=f"{b.submit_rate:g}/s")


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:g} ms"


@dataclass(frozen=True, slots=True)
class ProviderRow:
    name: str
    type: str
    health: str
    health_class: str
    breaker: str
    breaker_class: str
    in_flight: int
    sent_5m: int
    failed_5m: int
    latency: str
    balance: str

    @classmethod
    def of(cls, p: ProviderItem, tz: tzinfo) -> ProviderRow:
        if p.healthy is None:
            health, css = "not probed yet", "wait"
        else:
            health, css = ("healthy", "ok") if p.healthy else ("down", "bad")
        balance = "—"
        if p.balance is not None:
            balance = f"{p.balance:g} {p.balance_currency or ''}".strip()
            if p.balance_at:
                balance += f" (at {iso_time(p.balance_at, tz)})"
        return cls(name=p.name, type=p.type, health=health, health_class=css,
                   breaker=p.breaker.replace("_", " "),
                   breaker_class="ok" if p.breaker == "closed" else "bad",
                   in_flight=p.in_flight, sent_5m=p.sent_5m, failed_5m=p.failed_5m,
                   latency=f"p50 {_ms(p.latency_p50_ms)}, p99 {_ms(p.latency_p99_ms)}",
                   balance=balance)


@dataclass(frozen=True, slots=True)
class AccountRow:
    system_id: str
    messages_href: str
    binds: str
    networks: str
    throughput: str
    window: str
    providers: str
    message_ids: str
    messages_today: int
    receipts_pending: int

    @classmethod
    def of(cls, a: AccountItem) -> AccountRow:
        return cls(system_id=a.system_id,
                   messages_href="/messages" + query_string({"account": a.system_id}),
                   binds=f"{a.binds_now} of {a.max_binds}",
                   networks=", ".join(a.allowed_networks) or "any",
                   throughput=f"{a.throughput:g}/s, burst {a.burst}",
                   window="default" if a.window is None else str(a.window),
                   providers=", ".join(a.providers) or "routes only",
                   message_ids=a.message_id_format + (", ISO default" if a.iso_default
                                                      else ""),
                   messages_today=a.messages_today, receipts_pending=a.receipts_pending)


@dataclass(frozen=True, slots=True)
class Totals:
    """Counts summed over the seconds of a window (every node's)."""

    submitted: int = 0
    delivered: int = 0
    failed: int = 0
    refused: int = 0
    sent: int = 0
    seconds: int = 0

    @classmethod
    def of(cls, nodes: Sequence[Sequence[Second]]) -> Totals:
        submitted = delivered = failed = refused = sent = 0
        ats: set[int] = set()
        for seconds in nodes:
            for s in seconds:
                ats.add(s.at)
                submitted += s.submitted
                delivered += s.delivered
                failed += s.failed
                refused += sum(s.refused.values())
                sent += s.sent
        return cls(submitted, delivered, failed, refused, sent, len(ats))
