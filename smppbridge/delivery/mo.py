"""MO intake: a mobile-originated message from a provider (an upstream's deliver_sm, an
HTTP provider's MO webhook) is routed by ``[[mo_routes]]`` (core.mo) and stored — its
record, its deliver_sm in the receipt outbox when the account takes MO by SMPP, its
event in the callback outbox when by HTTP — in one store operation; :meth:`MoIntake.take`
returns once that is durable, so the provider acknowledges only then (a store error
raises :class:`~smppbridge.core.errors.StoreUnavailable`: the provider answers "try
again"). An MO no route takes is stored as unroutable (account "", stat REJECTD) and
counted; it is acknowledged all the same (it is kept, visible in the history).

A long MO (concat UDH or SAR) is joined unless its account has ``mo_parts = "parts"``:
each part is kept durably (the store's parts, as for submit_sm, ``system_type``
:data:`MO_PART`) before :meth:`MoIntake.take` returns, and collected in the same
:class:`~smppbridge.text.concat.Reassembler` as submit_sm parts (``[content]`` window
and limits); the last part in stores ONE MO — the parts' octets joined, in their
data_coding, routed by the whole text — and drops the held parts in the same store
operation. Parts held before a restart are replayed from the store
(:meth:`MoIntake.restore`). A set still incomplete when its window closes (or replaced
by a part with another total, or over the limits) is passed on part by part, as with
``mo_parts = "parts"``, and counted (``smppbridge_mo_total{outcome="incomplete"}``).
A part is held when the route of its own text gives a join account or no account (a
later part has no keyword); one that routes to a ``parts`` account goes at once.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from smppbridge.core.callbacks import EventKind, new_event
from smppbridge.core.clock import steady_of, timer_for
from smppbridge.core.message import Address, OutboundMessage
from smppbridge.core.mo import DIRECTION, MO_RECORD, InboundMo, mo_channels, route_mo
from smppbridge.core.records import PartRecord, ReceiptRecord
from smppbridge.observability.metrics import METRICS
from smppbridge.text.concat import (
    Concat,
    IncompleteMessage,
    Part,
    Reassembler,
    ReassemblyConfig,
)
from smppbridge.text.content import Content, Kind
from smppbridge.text.encoding import ContentError, decode

if TYPE_CHECKING:
    from smppbridge.core.accounts import Account
    from smppbridge.core.callbacks import CallbackEvent
    from smppbridge.core.mo import MoRoute
    from smppbridge.core.ports import Store

__all__ = ["MO_PART", "MoIntake", "mo_of_part", "part_of_mo"]

#: ``PartRecord.system_type`` of a held MO part (the others are submit_sm parts)
MO_PART = "\x00mo"

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
                 timer: Callable[[], float] | None = None,
                 reassembly: ReassemblyConfig | None = None) -> None:
        self.store = store
        self.routes = routes
        self.accounts = accounts
        self.receipt_ttl = receipt_ttl
        self.receipts_added = receipts_added
        self.callbacks_added = callbacks_added
        self.clock = clock
        self.timer = timer_for(clock, timer)
        #: long MO being joined (held parts; meta: the part as it came)
        self.reassembler: Reassembler[InboundMo] = Reassembler(reassembly)
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
        """Route and store one MO (or hold one part of a long MO being joined); its id.
        Raises StoreUnavailable when not stored (nothing is then held)."""
        try:
            mo_id = await self._new_id()
            name = self._route(mo)
            if mo.concat is not None:
                account = self.accounts(name) if name else None
                if account is None or account.mo_parts != "parts":
                    await self._hold(mo, mo_id)
                    return mo_id
        except BaseException:
            METRICS.mo.labels(mo.provider, "not_stored").inc()
            raise
        await self._store(mo, mo_id, name)
        return mo_id

    async def _hold(self, mo: InboundMo, mo_id: str, *, replay: bool = False,
                    now: float | None = None) -> None:
        assert mo.concat is not None
        ref, total, seq = mo.concat
        key = (mo.provider, mo.source.addr, mo.destination.addr, ref)
        if not replay:
            # Kept before the upstream is answered: a restart replays it (restore).
            await self.store.save_part(part_of_mo(mo, mo_id, repr(key)))
        try:
            added = self.reassembler.add(key, Concat(ref, total, seq), mo.payload,
                                         message_id=mo_id,
                                         now=self.timer() if now is None else now, meta=mo)
        except ContentError:
            # Over max_parts, or too many long MO waiting: this part goes on its own.
            await self._pass_on([Part(seq, mo_id, mo.payload, 0.0, mo)], [])
            return
        for old in added.evicted:
            await self._give_up(old)
        done = added.completed
        if done is None:
            return
        first = done.parts[0].meta
        payload = done.payload
        binary = first.encoding == "binary"
        try:
            decoded = decode(payload, first.data_coding, binary=binary)
            text, encoding = decoded.text or "", first.encoding
        except ContentError:
            text, encoding = "", "unknown"
        whole = InboundMo(provider=first.provider, source=first.source,
                          destination=first.destination, data_coding=first.data_coding,
                          payload=payload, text=text,
                          received_at=min(p.meta.received_at for p in done.parts),
                          encoding=encoding)
        name = route_mo(self.routes(), whole.destination.addr, whole.text)
        account = self.accounts(name) if name else None
        if account is not None and account.mo_parts == "parts":
            # Held while no route took a part alone; the whole goes to a parts account.
            await self._pass_on(list(done.parts), list(done.repeats), count=False)
            return
        await self._store(whole, mo_id, name, part_ids=done.part_ids,
                          held=done.part_ids, parts=done.total)

    async def _give_up(self, old: IncompleteMessage[InboundMo]) -> None:
        parts = list(old.parts)
        passed: set[str] = set()
        try:
            await self._pass_on(parts, list(old.repeats), passed=passed)
        except BaseException:
            # Not passed on (store error): collected again as they were, so the next
            # expiry round tries once more (they are still held in the store).
            seqs = {p.seq for p in parts if p.message_id in passed}
            for p in (*parts, *old.repeats):
                if p.seq in seqs or p.meta.concat is None:
                    continue
                ref, total, seq = p.meta.concat
                self.reassembler.add(old.key, Concat(ref, total, seq), p.payload,
                                     message_id=p.message_id, now=p.received_at,
                                     meta=p.meta)
            raise

    async def _pass_on(self, parts: Sequence[Part[InboundMo]],
                       repeats: Sequence[Part[InboundMo]], *, count: bool = True,
                       passed: set[str] | None = None) -> None:
        """Store each held part as an MO of its own (today's ``parts`` behaviour), with
        its held copy and those of its repeats dropped in the same store operation."""
        for p in parts:
            dups = tuple(r.message_id for r in repeats if r.seq == p.seq)
            await self._store(p.meta, p.message_id, self._route(p.meta),
                              held=(p.message_id, *dups))
            if passed is not None:
                passed.add(p.message_id)
            if count:
                METRICS.mo.labels(p.meta.provider, "incomplete").inc()

    async def restore(self, parts: Sequence[PartRecord]) -> int:
        """Replay MO parts held before a restart (:data:`MO_PART` records; the others
        are skipped) with their original ids and arrival times; how many were replayed.
        A set the replay completes is delivered then."""
        replayed = 0
        wall_now, steady_now = self.clock(), self.timer()
        for record in parts:
            if record.system_type != MO_PART:
                continue
            mo = mo_of_part(record)
            await self._hold(mo, record.part_id, replay=True,
                             now=steady_of(record.arrived_at, wall_now, steady_now))
            replayed += 1
        return replayed

    async def expire(self, now: float | None = None) -> int:
        """Pass on, part by part, every long MO whose window closed; how many."""
        late = self.reassembler.expire(self.timer() if now is None else now)
        for old in late:
            await self._give_up(old)
        return len(late)

    def next_deadline(self) -> float | None:
        return self.reassembler.next_deadline()

    async def _store(self, mo: InboundMo, mo_id: str, account_name: str | None, *,
                     part_ids: tuple[str, ...] = (), held: Sequence[str] = (),
                     parts: int = 0) -> None:
        try:
            account = self.accounts(account_name) if account_name else None
            extra = {DIRECTION: "mo", "mo_provider": mo.provider,
                     "mo_encoding": mo.encoding, "mo_coding": str(mo.data_coding),
                     "mo_payload": mo.payload.hex(),
                     "mo_state": "routed" if account is not None else "unroutable"}
            if mo.concat is not None:
                ref, total, seq = mo.concat
                extra.update(mo_ref=str(ref), mo_total=str(total), mo_seq=str(seq))
            if parts:
                extra["mo_parts"] = str(parts)
            message = OutboundMessage(
                message_id=mo_id, part_ids=part_ids or (mo_id,),
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
                                       stat="ACCEPTD" if account is not None else "REJECTD",
                                       held=held)
        except BaseException:
            METRICS.mo.labels(mo.provider, "not_stored").inc()
            raise
        METRICS.mo.labels(mo.provider, "routed" if account is not None else "unroutable").inc()
        if receipts:
            self.receipts_added()
        if events:
            self.callbacks_added()


def part_of_mo(mo: InboundMo, part_id: str, key: str) -> PartRecord:
    """The held copy of one part of a long MO (the store's parts; ``pdu``: JSON)."""
    assert mo.concat is not None
    body = {"provider": mo.provider,
            "source": [mo.source.addr, mo.source.ton, mo.source.npi],
            "destination": [mo.destination.addr, mo.destination.ton, mo.destination.npi],
            "data_coding": mo.data_coding, "payload": mo.payload.hex(), "text": mo.text,
            "concat": list(mo.concat), "encoding": mo.encoding}
    return PartRecord(part_id=part_id, account="", key=key,
                      pdu=json.dumps(body, ensure_ascii=False).encode(),
                      arrived_at=mo.received_at, system_type=MO_PART)


def mo_of_part(record: PartRecord) -> InboundMo:
    """The part :func:`part_of_mo` kept."""
    d = json.loads(record.pdu)
    ref, total, seq = (int(v) for v in d["concat"])
    return InboundMo(provider=d["provider"], source=Address(*d["source"]),
                     destination=Address(*d["destination"]), data_coding=d["data_coding"],
                     payload=bytes.fromhex(d["payload"]), text=d["text"],
                     received_at=record.arrived_at, concat=(ref, total, seq),
                     encoding=d["encoding"])
