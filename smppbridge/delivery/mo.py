"""MO intake: a mobile-originated message from a provider (an upstream's deliver_sm, an
HTTP provider's MO webhook) is routed by ``[[mo_routes]]`` (core.mo) and stored — its
record, its deliver_sm in the receipt outbox when the account takes MO by SMPP, its
event in the callback outbox when by HTTP — in one store operation; :meth:`MoIntake.take`
returns once that is durable, so the provider acknowledges only then (a store error
raises :class:`~smppbridge.core.errors.StoreUnavailable`: the provider answers "try
again"). An MO no route takes is stored as unroutable (account "", stat REJECTD) and
counted; it is acknowledged all the same (it is kept, visible in the history).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from smppbridge.core.callbacks import EventKind, new_event
from smppbridge.core.clock import timer_for
from smppbridge.core.message import OutboundMessage
from smppbridge.core.mo import DIRECTION, MO_RECORD, InboundMo, mo_channels, route_mo
from smppbridge.core.records import ReceiptRecord
from smppbridge.observability.metrics import METRICS
from smppbridge.text.content import Content, Kind

if TYPE_CHECKING:
    from smppbridge.core.accounts import Account
    from smppbridge.core.callbacks import CallbackEvent
    from smppbridge.core.mo import MoRoute
    from smppbridge.core.ports import Store

__all__ = ["MoIntake"]

#: MO ids reserved from the store's message counter at a time
_ID_BLOCK = 1000
#: how long, and for how many long MO, the route of a first part is remembered
_PARTS_TTL = 600.0
_PARTS_MAX = 10_000


class MoIntake:
    """See the module docstring."""

    def __init__(self, store: Store, *, routes: Callable[[], Sequence[MoRoute]],
                 accounts: Callable[[str], Account | None], receipt_ttl: float,
                 receipts_added: Callable[[], None] = lambda: None,
                 callbacks_added: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] = time.time,
                 timer: Callable[[], float] | None = None) -> None:
        self.store = store
        self.routes = routes
        self.accounts = accounts
        self.receipt_ttl = receipt_ttl
        self.receipts_added = receipts_added
        self.callbacks_added = callbacks_added
        self.clock = clock
        self.timer = timer_for(clock, timer)
        self._next = 0
        self._end = 0
        self._lock = asyncio.Lock()
        #: the account each long MO's earlier parts went to, by (provider, source,
        #: destination, reference), with when (steady): a later part without the
        #: keyword follows its first part
        self._parts: dict[tuple[str, str, str, int], tuple[str | None, float]] = {}

    async def _new_id(self) -> str:
        async with self._lock:
            if self._next >= self._end:
                self._next = await self.store.reserve_ids(_ID_BLOCK)
                self._end = self._next + _ID_BLOCK
            n = self._next
            self._next += 1
        return str(n)

    def _route(self, mo: InboundMo) -> str | None:
        account = route_mo(self.routes(), mo.destination.addr, mo.text)
        if mo.concat is None:
            return account
        now = self.timer()
        key = (mo.provider, mo.source.addr, mo.destination.addr, mo.concat[0])
        seen = self._parts.get(key)
        if seen is not None and now - seen[1] < _PARTS_TTL and seen[0] is not None:
            return seen[0]
        if account is not None:
            if len(self._parts) >= _PARTS_MAX:
                self._parts = {k: v for k, v in self._parts.items()
                               if now - v[1] < _PARTS_TTL}
                if len(self._parts) >= _PARTS_MAX:
                    self._parts.clear()
            self._parts[key] = (account, now)
        return account

    async def take(self, mo: InboundMo) -> str:
        """Route and store one MO; its id. Raises StoreUnavailable when not stored."""
        try:
            mo_id = await self._new_id()
            account_name = self._route(mo)
            account = self.accounts(account_name) if account_name else None
            extra = {DIRECTION: "mo", "mo_provider": mo.provider,
                     "mo_encoding": mo.encoding, "mo_coding": str(mo.data_coding),
                     "mo_payload": mo.payload.hex(),
                     "mo_state": "routed" if account is not None else "unroutable"}
            if mo.concat is not None:
                ref, total, seq = mo.concat
                extra.update(mo_ref=str(ref), mo_total=str(total), mo_seq=str(seq))
            message = OutboundMessage(
                message_id=mo_id, part_ids=(mo_id,),
                account=account.system_id if account is not None else "",
                source=mo.source, destination=mo.destination, content=Content(Kind.SMS, mo.text),
                submitted_at=mo.received_at, data_coding=mo.data_coding, extra=extra)
            receipts: list[ReceiptRecord] = []
            events: list[CallbackEvent] = []
            if account is not None:
                smpp, http = mo_channels(account.mo, account.mo_url)
                now = self.timer()
                if smpp:
                    rx = {k: v for k, v in extra.items() if k.startswith("mo_")}
                    rx[MO_RECORD] = str(mo.data_coding)
                    receipts.append(ReceiptRecord(
                        account=account.system_id, message_id=mo_id, stat="", err=0,
                        submit_date=mo.received_at, done_date=mo.received_at, text="",
                        source_addr=mo.source.addr, source_ton=mo.source.ton,
                        source_npi=mo.source.npi, dest_addr=mo.destination.addr,
                        dest_ton=mo.destination.ton, dest_npi=mo.destination.npi,
                        expire_at=now + self.receipt_ttl, extra=rx))
                if http:
                    ev = new_event(EventKind.MO, message_id=mo_id, account=account.system_id,
                                   url=account.mo_url, stat="", err=0, at=self.clock(),
                                   since=now, ttl=account.callback_ttl)
                    events.append(ev)
            await self.store.accept_mo(message, receipts, events,
                                       stat="ACCEPTD" if account is not None else "REJECTD")
        except BaseException:
            METRICS.mo.labels(mo.provider, "not_stored").inc()
            raise
        METRICS.mo.labels(mo.provider, "routed" if account is not None else "unroutable").inc()
        if receipts:
            self.receipts_added()
        if events:
            self.callbacks_added()
        return mo_id

