"""Provider statuses and send errors mapped to receipt ``stat``/``err``, the polling
scheduler, and the webhook endpoint.

Mapping (DESIGN.md §4, refined with the specs; docs/providers.md has the tables):

- mysmpp ``send`` is "no status yet" (ENROUTE, intermediate); ``deliver`` and ``read``
  are DELIVRD; ``not_deliver`` UNDELIV; ``expired`` EXPIRED. ``partly_deliver`` is, per
  the status spec, "sent, but the status was not received" and names no parts, so it
  stays intermediate (ENROUTE, err 004) and, if nothing better comes before the
  validity ends, the message ends UNKNOWN err 004 rather than claiming delivery.
- SMS-fly ``ACCEPTD`` is ACCEPTD; the queue/progress states are ENROUTE; ``DELIVRD`` and
  ``VIEWED`` DELIVRD; ``UNDELIV``/``ERROR``/``REFUND`` UNDELIV; ``EXPIRED`` EXPIRED;
  ``STOPED`` and ``INSUFFICIENTFUND`` REJECTD. With several channels (Viber → SMS
  cascade) any delivered channel makes DELIVRD, any channel still moving keeps the
  message ENROUTE, otherwise the last channel's status stands.

The poller (theory of operation): every tracked message has a due time. The first poll
is ``poll_interval`` after sending; each poll that brings no final status doubles the
interval up to ``poll_max_interval`` (old messages are asked less often). Due messages
are grouped per provider and asked ``poll_batch`` ids per request. A message stops being
polled at its final status, or at its deadline: validity end + ``status_grace``, or
``max_status_age`` when it has no validity; then it ends EXPIRED (validity passed) or
UNKNOWN (we stopped waiting), err 003, so every message gets a final receipt.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import heapq
import hmac
import itertools
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Final

import structlog

from smppbridge.bridge.providers.base import Err, ProviderError, Stat, StatusUpdate
from smppbridge.config import ip_in_networks
from smppbridge.http.server import Request, Response

if TYPE_CHECKING:
    from smppbridge.bridge.providers.base import Provider
    from smppbridge.bridge.providers.settings import ProviderSettings
    from smppbridge.http.server import Handler

__all__ = [
    "MYSMPP_ERRORS",
    "MYSMPP_STATES",
    "SMSFLY_ERRORS",
    "SMSFLY_STATUSES",
    "OnUpdate",
    "StatusPoller",
    "combine_channels",
    "mysmpp_error",
    "mysmpp_state",
    "smsfly_error",
    "smsfly_status",
    "webhook_handler",
    "webhook_refusal",
]

_log = structlog.get_logger()

#: mysmpp ``state`` values (provider-mysmpp-xml-status.md).
MYSMPP_STATES: dict[str, tuple[Stat, Err]] = {
    "send": (Stat.ENROUTE, Err.OK),
    "deliver": (Stat.DELIVRD, Err.OK),
    "read": (Stat.DELIVRD, Err.OK),
    "not_deliver": (Stat.UNDELIV, Err.UNDELIVERABLE),
    "expired": (Stat.EXPIRED, Err.EXPIRED),
    "partly_deliver": (Stat.ENROUTE, Err.PARTLY_DELIVERED),
}

#: mysmpp send error texts (provider-mysmpp-xml-send.md ``information``, -json-send.md
#: ``error``), matched case-insensitively as prefixes, most specific first.
MYSMPP_ERRORS: tuple[tuple[str, Err], ...] = (
    ("phone number is on the stop list", Err.STOP_LIST),
    ("phone number must be less than", Err.NUMBER_INVALID),
    ("specify phone number", Err.NUMBER_INVALID),
    ("this destination is closed", Err.DESTINATION_CLOSED),
    ("sms text rejected by moderator", Err.MODERATION),
    ("the sender has not been moderated", Err.SENDER_INVALID),
    ("there is no such sender", Err.SENDER_INVALID),
    ("the sender must not exceed", Err.SENDER_INVALID),
    ("no sender", Err.SENDER_INVALID),
    ("no message text", Err.TEXT_INVALID),
    ("no link", Err.CONTENT_INVALID),
    ("provide the", Err.CONTENT_INVALID),  # "... contact name ... for a business card"
    ("we have run out of sms", Err.OUT_OF_FUNDS),
    ("out of sms", Err.OUT_OF_FUNDS),
    ("account blocked", Err.ACCOUNT_BLOCKED),
    ("your account is locked", Err.ACCOUNT_BLOCKED),
    ("incorrect login or password", Err.ACCOUNT_BLOCKED),
    ("incorrect xml document format", Err.REQUEST_INVALID),
    ("incorrect json document format", Err.REQUEST_INVALID),
    ("post data is missing", Err.REQUEST_INVALID),
)

#: SMS-fly message statuses (provider-smsfly-v2.04.md, Message Status Table).
SMSFLY_STATUSES: dict[str, tuple[Stat, Err]] = {
    "ACCEPTD": (Stat.ACCEPTD, Err.OK),
    "ACCEPTED": (Stat.ACCEPTD, Err.OK),  # the send response example spells it so
    "PENDING": (Stat.ENROUTE, Err.OK),
    "INPROGRESS": (Stat.ENROUTE, Err.OK),
    "SENT": (Stat.ENROUTE, Err.OK),
    "MODERATION": (Stat.ENROUTE, Err.OK),
    "RESERVED": (Stat.ENROUTE, Err.OK),
    "DELIVRD": (Stat.DELIVRD, Err.OK),
    "VIEWED": (Stat.DELIVRD, Err.OK),
    "EXPIRED": (Stat.EXPIRED, Err.EXPIRED),
    "UNDELIV": (Stat.UNDELIV, Err.UNDELIVERABLE),
    "ERROR": (Stat.UNDELIV, Err.PROVIDER_ERROR),
    "REFUND": (Stat.UNDELIV, Err.REFUNDED),
    "STOPED": (Stat.REJECTD, Err.STOPPED),
    "INSUFFICIENTFUND": (Stat.REJECTD, Err.OUT_OF_FUNDS),
}

#: SMS-fly error codes (Table of error codes during request processing).
SMSFLY_ERRORS: dict[str, Err] = {
    "INVREQUEST": Err.REQUEST_INVALID,
    "INVACTION": Err.REQUEST_INVALID,
    "INVRECIPIENT": Err.NUMBER_INVALID,
    "INVTEXT": Err.TEXT_INVALID,
    "INVBUTTON": Err.CONTENT_INVALID,
    "INVIMAGEURL": Err.CONTENT_INVALID,
    "INVROUTE": Err.NO_ROUTE,
    "INVSOURCE": Err.SENDER_INVALID,
    "INVCHANNELS": Err.REQUEST_INVALID,
    "INVSMSMESSAGE": Err.TEXT_INVALID,
    "INVVIBERMESSAGE": Err.TEXT_INVALID,
    "INVMSGID": Err.REQUEST_INVALID,
    "FORBIDDEN": Err.ACCOUNT_BLOCKED,
}


def mysmpp_state(state: str) -> tuple[Stat, Err]:
    """A mysmpp ``state`` → (stat, err); an unknown word keeps the message ENROUTE."""
    return MYSMPP_STATES.get(state.strip().lower(), (Stat.ENROUTE, Err.OK))


def mysmpp_error(text: str) -> Err:
    """A mysmpp error text → err; unknown texts are 302."""
    low = text.strip().lower()
    for prefix, err in MYSMPP_ERRORS:
        if low.startswith(prefix):
            return err
    return Err.REJECTED_OTHER


def smsfly_status(status: str) -> tuple[Stat, Err]:
    """An SMS-fly status → (stat, err); an unknown word keeps the message ENROUTE."""
    return SMSFLY_STATUSES.get(status.strip().upper(), (Stat.ENROUTE, Err.OK))


def smsfly_error(code: str) -> Err:
    return SMSFLY_ERRORS.get(code.strip().upper(), Err.REJECTED_OTHER)


def combine_channels(channels: Sequence[tuple[Stat, Err]]) -> tuple[Stat, Err]:
    """One status for a multi-channel (cascade) message, channels in send order."""
    if not channels:
        return Stat.ENROUTE, Err.OK
    if any(stat is Stat.DELIVRD for stat, _ in channels):
        return Stat.DELIVRD, Err.OK
    moving = [c for c in channels if not c[0].final]
    if moving:
        return moving[-1]
    return channels[-1]


# --- the poller ---------------------------------------------------------------------------

#: Called with the provider's name and an update (``message_id`` filled in when known).
OnUpdate = Callable[[str, StatusUpdate], Awaitable[None]]
#: The same for every update of one poll answer at once (one store transaction).
OnUpdates = Callable[[str, Sequence[StatusUpdate]], Awaitable[None]]


#: One message followed: a plain tuple ``(provider, provider_id, message_id, deadline,
#: validity, interval, due, last)``, replaced and never changed in place; ``last`` is the
#: (stat value, err) of the last status reported, or None. An exact tuple of plain values
#: is dropped from the garbage collector's lists after one look (a class instance, or
#: even a NamedTuple, is walked by every collection of its generation): thousands are
#: alive at once for a second or more, and were ~12 % of what each young collection
#: walked at 5,000 msg/s (README, *Performance*).
_Tracked = tuple[str, str, str, float, bool, float, float, "tuple[str, int] | None"]
_PROVIDER: Final = 0
_PROVIDER_ID: Final = 1
_MESSAGE_ID: Final = 2
_DEADLINE: Final = 3
_INTERVAL: Final = 5
_DUE: Final = 6
_LAST: Final = 7


class StatusPoller:
    """Asks providers for statuses until each message is final; see the module docstring.

    ``clock`` is wall time (UNIX seconds) because validity ends are absolute times.
    """

    def __init__(self, providers: Mapping[str, Provider],
                 settings: Mapping[str, ProviderSettings], on_update: OnUpdate, *,
                 on_updates: OnUpdates | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.providers = providers
        self.settings = settings
        self.on_update = on_update
        #: optional batch form of on_update, used for the updates of one poll answer
        self.on_updates = on_updates
        self.clock = clock
        self._items: dict[tuple[str, str], _Tracked] = {}
        self._heap: list[tuple[float, int, tuple[str, str]]] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def track(self, provider: str, provider_id: str, message_id: str, *,
              sent_at: float | None = None, expire_at: float | None = None) -> None:
        """Start following a message the provider accepted."""
        s = self.settings[provider]
        sent = self.clock() if sent_at is None else sent_at
        deadline = (expire_at + s.status_grace if expire_at is not None
                    else sent + s.max_status_age)
        interval = s.poll_interval
        due = min(sent + interval, deadline) if interval > 0 else deadline
        item: _Tracked = (provider, provider_id, message_id, deadline, expire_at is not None,
                          interval, due, None)
        self._items[(provider, provider_id)] = item
        self._push(item)

    def forget(self, provider: str, provider_id: str) -> None:
        """Stop following (a webhook brought the final status)."""
        self._items.pop((provider, provider_id), None)

    def next_due(self) -> float | None:
        while self._heap:
            due, _, key = self._heap[0]
            item = self._items.get(key)
            if item is not None and item[_DUE] == due:
                return due
            heapq.heappop(self._heap)  # stale entry
        return None

    def _push(self, item: _Tracked) -> None:
        heapq.heappush(self._heap, (item[_DUE], next(self._seq),
                                    (item[_PROVIDER], item[_PROVIDER_ID])))
        self._wake.set()

    async def poll_due(self) -> int:
        """Poll every message due now; returns how many updates were reported."""
        now = self.clock()
        due: dict[str, list[_Tracked]] = {}
        while (when := self.next_due()) is not None and when <= now:
            _, _, key = heapq.heappop(self._heap)
            item = self._items[key]
            due.setdefault(item[_PROVIDER], []).append(item)
        counts = await asyncio.gather(*(self._poll_provider(name, items, now)
                                        for name, items in due.items()))
        return sum(counts)

    async def _poll_provider(self, name: str, items: list[_Tracked], now: float) -> int:
        s = self.settings[name]
        reported = 0
        pollable = [i for i in items if i[_INTERVAL] > 0 and i[_DEADLINE] > now]
        for start in range(0, len(pollable), s.poll_batch):
            chunk = pollable[start:start + s.poll_batch]
            try:
                updates = await self.providers[name].poll([i[_PROVIDER_ID] for i in chunk])
            except ProviderError as exc:
                _log.warning("status.poll_failed", provider=name, error=str(exc),
                             ids=len(chunk))
                continue
            changed = [u for update in updates
                       if (item := self._items.get((name, update.provider_id))) is not None
                       and (u := self._note(item, update)) is not None]
            if not changed:
                continue
            reported += len(changed)
            if self.on_updates is not None:
                await self.on_updates(name, changed)
            else:
                # Concurrently: each ends in store writes, and concurrent writes share
                # one group commit (one by one, a commit per update capped receipts
                # near 800/s).
                await asyncio.gather(*(self.on_update(name, u) for u in changed))
        for polled in items:
            key = (polled[_PROVIDER], polled[_PROVIDER_ID])
            item = self._items.get(key)  # the latest (a status may have replaced it)
            if item is None:
                continue
            p, pid, mid, deadline, validity, interval, _, last = item
            if now >= deadline:
                reported += await self._give_up(item)
            else:
                interval = min(interval * 2, s.poll_max_interval)
                later = (p, pid, mid, deadline, validity, interval,
                         min(now + interval, deadline), last)
                self._items[key] = later
                self._push(later)
        return reported

    def _note(self, item: _Tracked, update: StatusUpdate) -> StatusUpdate | None:
        """Record ``update`` of ``item``; the update to report (with its message id),
        or None when it repeats the last one."""
        if not update.message_id:
            update = dataclasses.replace(update, message_id=item[_MESSAGE_ID])
        last = (update.stat.value, int(update.err))
        changed = item[_LAST] != last
        if update.final:
            self.forget(item[_PROVIDER], item[_PROVIDER_ID])
        elif changed:
            p, pid, mid, deadline, validity, interval, due, _ = item
            self._items[(p, pid)] = (p, pid, mid, deadline, validity, interval, due, last)
        return update if changed else None

    async def _give_up(self, item: _Tracked) -> int:
        provider, provider_id, message_id, _, validity, _, _, last = item
        self.forget(provider, provider_id)
        if last is not None and last[1] == Err.PARTLY_DELIVERED:
            stat, err = Stat.UNKNOWN, Err.PARTLY_DELIVERED
        else:
            stat = Stat.EXPIRED if validity else Stat.UNKNOWN
            err = Err.NO_FINAL_STATUS
        _log.debug("status.gave_up", provider=provider, provider_id=provider_id,
                   stat=stat.value)
        await self.on_update(provider, StatusUpdate(
            provider_id, stat, err, "no final status before the deadline",
            done_at=self.clock(), message_id=message_id))
        return 1

    async def run(self) -> None:
        """Poll forever (until cancelled), sleeping until the next due message."""
        while True:
            self._wake.clear()
            nxt = self.next_due()
            delay = None if nxt is None else max(0.0, nxt - self.clock())
            if delay is None or delay > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                continue
            try:
                await self.poll_due()
            except Exception:
                _log.exception("status.poll_crashed")


#: Where a webhook call carries its credentials (see :func:`webhook_refusal`): names of
#: a header and a query parameter, not secrets.
WEBHOOK_SECRET_HEADER = "x-webhook-secret"  # noqa: S105
WEBHOOK_SECRET_QUERY = "secret"  # noqa: S105
WEBHOOK_SIGNATURE_HEADER = "x-signature"
_HTTP_UNAUTHORIZED = 401
_HTTP_FORBIDDEN = 403




def _same(given: str, expected: str) -> bool:
    # Constant time in the content; only the length can show.
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"),
                               expected.encode("utf-8", "surrogateescape"))


def webhook_refusal(request: Request, s: ProviderSettings) -> tuple[int, str] | None:
    """Why this webhook call must be refused, as (HTTP status, reason), or None.

    Checks what the provider's settings ask for, all of it when several are set:
    ``webhook_networks`` (the source address; 403 outside them), ``webhook_secret``
    (header ``X-Webhook-Secret`` or query ``?secret=``, compared in constant time; 401)
    and ``webhook_hmac_key`` (``X-Signature: sha256=<hex HMAC-SHA256 of the body>``;
    401). The reason names what failed, never a value, so it is safe to log.
    """
    if s.webhook_networks and not ip_in_networks(request.client[0], s.webhook_networks):
        return _HTTP_FORBIDDEN, "source address not in webhook_networks"
    if s.webhook_secret:
        given = request.headers.get(WEBHOOK_SECRET_HEADER)
        if given is None:
            given = next(iter(request.query.get(WEBHOOK_SECRET_QUERY, ())), None)
        if given is None:
            return _HTTP_UNAUTHORIZED, "no secret"
        if not _same(given, s.webhook_secret):
            return _HTTP_UNAUTHORIZED, "wrong secret"
    if s.webhook_hmac_key:
        scheme, _, signature = request.headers.get(WEBHOOK_SIGNATURE_HEADER, "").partition("=")
        if scheme.strip().lower() != "sha256" or not signature:
            return _HTTP_UNAUTHORIZED, "no sha256 signature"
        expected = hmac.new(s.webhook_hmac_key.encode(), request.body, hashlib.sha256)
        if not _same(signature.strip().lower(), expected.hexdigest()):
            return _HTTP_UNAUTHORIZED, "wrong signature"
    return None


def webhook_handler(providers: Mapping[str, Provider], on_update: OnUpdate, *,
                    poller: StatusPoller | None = None,
                    settings: Mapping[str, ProviderSettings] | None = None,
                    prefix: str = "/webhooks/") -> Handler:
    """An HTTP handler for ``POST /webhooks/<provider name>``: authenticates the call
    as the provider's ``settings`` ask (:func:`webhook_refusal`), parses with the
    provider's ``parse_webhook``, reports each update, and stops polling messages made
    final. Mount with ``router.add_prefix("POST", "/webhooks/", handler)``."""
    settings = settings if settings is not None else {}

    async def handle(request: Request) -> Response:
        name = request.path[len(prefix):].strip("/")
        provider = providers.get(name)
        if provider is None:
            return Response.text("unknown provider\n", status=404)
        s = settings.get(name)
        refusal = webhook_refusal(request, s) if s is not None else None
        if refusal is not None:
            status, reason = refusal
            _log.warning("status.webhook_refused", provider=name, reason=reason,
                         client=request.client[0])
            return Response.text("unauthorized\n" if status == _HTTP_UNAUTHORIZED
                                 else "forbidden\n", status=status)
        try:
            updates = provider.parse_webhook(request)
        except ValueError as exc:
            _log.warning("status.webhook_invalid", provider=name, error=str(exc))
            return Response.text(f"invalid: {exc}\n", status=400)
        for update in updates:
            if poller is not None and update.final:
                poller.forget(name, update.provider_id)
        # Concurrently, so that the updates' store writes share a group commit.
        await asyncio.gather(*(on_update(name, update) for update in updates))
        return Response.text("OK")

    return handle
