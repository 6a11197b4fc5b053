"""Receipt dispatcher: order, round-robin, retry on temporary answers, drop on permanent,
TTL expiry, TLVs only for 3.4 binds."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest

from smppbridge.core.errors import StoreUnavailable
from smppbridge.core.history import ReceiptState
from smppbridge.core.records import ReceiptRecord
from smppbridge.delivery.receipts import ReceiptDispatcher
from smppbridge.smpp import pdu as P
from smppbridge.smpp.constants import CommandStatus, Tag
from smppbridge.smpp.receipts import parse_receipt
from smppbridge.store.sqlite.store import SqliteStore
from tests.store.samples import sample_message

S = CommandStatus


class FakeBind:
    """A receiver bind answering deliver_sm with scripted statuses (or TimeoutError)."""

    def __init__(self, answers: list[int | None] | None = None, version: int = 0x34) -> None:
        self.answers = answers or []
        self.got: list[P.DeliverSm] = []
        self._version = version

    @property
    def interface_version(self) -> int:
        return self._version

    @property
    def window(self) -> int:
        return 10

    def send_request(self, pdu: P.Pdu) -> asyncio.Future[P.Pdu]:
        assert isinstance(pdu, P.DeliverSm)
        self.got.append(pdu)
        fut: asyncio.Future[P.Pdu] = asyncio.get_running_loop().create_future()
        status = self.answers.pop(0) if self.answers else S.ESME_ROK
        if status is None:
            fut.set_exception(TimeoutError("no deliver_sm_resp"))
        else:
            fut.set_result(P.DeliverSmResp(command_status=status))
        return fut


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def _rec(mid: str, account: str = "acme", expire_at: float = 5000.0) -> ReceiptRecord:
    return ReceiptRecord(account=account, message_id=mid, stat="DELIVRD", err=0,
                         submit_date=900.0, done_date=950.0, text="hi there",
                         source_addr="79001", source_ton=1, source_npi=1, dest_addr="src",
                         dest_ton=5, dest_npi=0, expire_at=expire_at)


async def _drain(d: ReceiptDispatcher) -> None:
    await d.sweep()
    await asyncio.gather(*list(d._active.values()))


async def test_receipts_wait_for_a_receiver_then_go_in_order(store: SqliteStore) -> None:
    """With no receiver nothing is sent; once one binds, receipts go in creation order."""
    binds: dict[str, list[FakeBind]] = {}
    d = ReceiptDispatcher(store, lambda a: binds.get(a, []), clock=Clock())
    await store.add_receipts([_rec(str(i)) for i in range(5)])
    await _drain(d)
    assert d.sent == 0
    bind = FakeBind()
    binds["acme"] = [bind]
    await _drain(d)
    ids = [parse_receipt(p.short_message.decode())["id"] for p in bind.got]
    assert ids == ["0", "1", "2", "3", "4"]
    assert await store.receipts_for("acme", 2000.0, 10) == []
    pdu = bind.got[0]
    assert pdu.esm_class == 0x04
    assert (pdu.source_addr, pdu.destination_addr) == ("79001", "src")
    assert pdu.tlv(Tag.RECEIPTED_MESSAGE_ID) == b"0\x00"
    assert pdu.tlv(Tag.MESSAGE_STATE) == b"\x02"


async def test_round_robin_across_binds(store: SqliteStore) -> None:
    """Receipts are spread over the account's receiver binds."""
    a, b = FakeBind(), FakeBind()
    d = ReceiptDispatcher(store, lambda _: [a, b], clock=Clock())
    await store.add_receipts([_rec(str(i)) for i in range(6)])
    await _drain(d)
    assert len(a.got) == 3
    assert len(b.got) == 3


async def test_v33_receiver_gets_no_tlvs(store: SqliteStore) -> None:
    """A v3.3 receiver gets the receipt text without TLVs."""
    bind = FakeBind(version=0x33)
    d = ReceiptDispatcher(store, lambda _: [bind], clock=Clock())
    await store.add_receipts([_rec("1")])
    await _drain(d)
    assert bind.got[0].tlvs == ()


@pytest.mark.parametrize("answer", [S.ESME_RX_T_APPN, S.ESME_RTHROTTLED, None])
async def test_temporary_failure_is_retried_with_backoff(store: SqliteStore,
                                                         answer: int | None) -> None:
    """RX_T_APPN, RTHROTTLED or no answer: kept and retried after the backoff."""
    clock = Clock()
    bind = FakeBind([answer])
    d = ReceiptDispatcher(store, lambda _: [bind], clock=clock, retry_backoff=5.0)
    await store.add_receipts([_rec("1")])
    await _drain(d)
    assert d.retried == 1
    await _drain(d)
    assert len(bind.got) == 1  # not before the backoff
    clock.now += 5
    await _drain(d)
    assert len(bind.got) == 2
    assert d.sent == 1


async def test_permanent_failure_drops(store: SqliteStore) -> None:
    """ESME_RX_P_APPN drops the receipt (counted), it is not retried."""
    bind = FakeBind([S.ESME_RX_P_APPN])
    d = ReceiptDispatcher(store, lambda _: [bind], clock=Clock())
    await store.add_receipts([_rec("1")])
    await _drain(d)
    assert d.dropped == 1
    assert await store.receipts_for("acme", 1e9, 10) == []


async def test_ttl_expires_undelivered_receipts(store: SqliteStore) -> None:
    """Receipts nobody took within their TTL are dropped and counted."""
    clock = Clock()
    d = ReceiptDispatcher(store, lambda _: [], clock=clock)
    await store.add_receipts([_rec("1", expire_at=1500.0), _rec("2", expire_at=9000.0)])
    clock.now = 2000.0
    await _drain(d)
    assert d.expired == 1


class HeldBind(FakeBind):
    """A receiver that leaves every deliver_sm unanswered; the test answers through
    ``futures``. ``all_sent`` is set once ``expected`` requests have been written."""

    def __init__(self, expected: int) -> None:
        super().__init__()
        self.expected = expected
        self.futures: list[asyncio.Future[P.Pdu]] = []
        self.all_sent = asyncio.Event()

    def send_request(self, pdu: P.Pdu) -> asyncio.Future[P.Pdu]:
        assert isinstance(pdu, P.DeliverSm)
        self.got.append(pdu)
        fut: asyncio.Future[P.Pdu] = asyncio.get_running_loop().create_future()
        self.futures.append(fut)
        if len(self.futures) == self.expected:
            self.all_sent.set()
        return fut


async def test_batch_is_written_before_any_answer_and_an_error_retries_one(
        store: SqliteStore) -> None:
    """Every deliver_sm of a batch goes out before the first answer is given (answers
    arrive only after the test saw all three); the receipt answered with an error
    status is retried after the backoff, the others are done."""
    clock = Clock()
    bind = HeldBind(expected=3)
    d = ReceiptDispatcher(store, lambda _: [bind], clock=clock, retry_backoff=5.0)
    await store.add_receipts([_rec("1"), _rec("2"), _rec("3")])
    await d.sweep()
    (worker,) = d._active.values()
    await asyncio.wait_for(bind.all_sent.wait(), 5)
    ids = [parse_receipt(p.short_message.decode())["id"] for p in bind.got]
    assert ids == ["1", "2", "3"]
    for fut, status in zip(bind.futures, [S.ESME_ROK, S.ESME_RSYSERR, S.ESME_ROK],
                           strict=True):
        fut.set_result(P.DeliverSmResp(command_status=status))
    await asyncio.wait_for(worker, 5)
    assert (d.sent, d.retried) == (2, 1)
    assert await store.receipts_for("acme", clock.now, 10) == []  # waiting for the backoff
    clock.now += 5
    (again,) = await store.receipts_for("acme", clock.now, 10)
    assert (again.message_id, again.attempts) == ("2", 1)


# --- receipts leased to the dispatcher and handed over in memory (offer) ---------------

class SpyStore:
    """The SQLite store, recording what receipts_for returned (``read``, ``reads``) and
    each receipt_retry; ``fail_done``/``fail_retry``: that many calls raise
    StoreUnavailable."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self.reads = 0
        self.read: list[str] = []
        self.retries: list[tuple[int, float, int]] = []
        self.fail_done = 0
        self.fail_retry = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def receipts_for(self, account: str, now: float, limit: int) -> list[ReceiptRecord]:
        got = await self._store.receipts_for(account, now, limit)
        self.reads += 1
        self.read += [r.message_id for r in got]
        return got

    async def receipt_done(self, seqs: Sequence[int], now: float,
                           state: ReceiptState = ReceiptState.DELIVERED) -> None:
        if self.fail_done:
            self.fail_done -= 1
            raise StoreUnavailable("store down")
        await self._store.receipt_done(seqs, now, state)

    async def receipt_retry(self, seq: int, next_at: float, attempts: int) -> None:
        if self.fail_retry:
            self.fail_retry -= 1
            raise StoreUnavailable("store down")
        self.retries.append((seq, next_at, attempts))
        await self._store.receipt_retry(seq, next_at, attempts)


async def _leased(store: SqliteStore, *ids: str) -> list[tuple[int, ReceiptRecord]]:
    """Receipts written leased, as the pipeline writes them (mark_final_many)."""
    for mid in ids:
        await store.accept(replace(sample_message(0), message_id=mid, part_ids=(mid,)))
    return await store.mark_final_many(
        [(mid, "DELIVRD", 0, 950.0, [_rec(mid)], "") for mid in ids], lease=True)


def _ids(bind: FakeBind) -> list[str]:
    return [parse_receipt(p.short_message.decode())["id"] for p in bind.got]


async def test_offered_receipts_go_from_memory_and_are_deleted(store: SqliteStore) -> None:
    """Receipts offered with their seqs are delivered in order without the store
    returning them (receipts_for never yields them), then deleted from the store."""
    spy = SpyStore(store)
    bind = FakeBind()
    d = ReceiptDispatcher(spy, lambda _: [bind], clock=Clock())  # type: ignore[arg-type]
    d.offer(await _leased(store, "1", "2", "3"))
    await _drain(d)
    assert _ids(bind) == ["1", "2", "3"]
    assert spy.read == []
    assert d.sent == 3
    assert await store.count_receipts() == 0


async def test_offered_receipts_without_a_receiver_are_given_back(store: SqliteStore) -> None:
    """Offered receipts of an account with no receiver bound here are released by the
    sweep (due in the store, no longer held); once a receiver binds they are read from
    the store and delivered."""
    spy = SpyStore(store)
    binds: dict[str, list[FakeBind]] = {}
    d = ReceiptDispatcher(spy, lambda a: binds.get(a, []), clock=Clock())  # type: ignore[arg-type]
    d.offer(await _leased(store, "1", "2"))
    await d.sweep()
    assert d._held == {}
    assert [r.message_id for r in await store.receipts_for("acme", 1000.0, 10)] == ["1", "2"]
    bind = FakeBind()
    binds["acme"] = [bind]
    await _drain(d)
    assert _ids(bind) == ["1", "2"]
    assert spy.read == ["1", "2"]
    assert await store.count_receipts() == 0


async def test_given_back_receipts_keep_their_place_before_later_offers(
        store: SqliteStore) -> None:
    """A receipt given back for want of a receiver is still delivered before a receipt
    of the same account created (and offered) after it."""
    binds: dict[str, list[FakeBind]] = {}
    d = ReceiptDispatcher(store, lambda a: binds.get(a, []), clock=Clock())
    d.offer(await _leased(store, "1"))
    await d.sweep()  # no receiver: "1" is given back to the store
    bind = FakeBind()
    binds["acme"] = [bind]
    d.offer(await _leased(store, "2"))
    await _drain(d)
    assert _ids(bind) == ["1", "2"]


async def test_offered_receipt_with_a_temporary_error_is_retried_by_the_store(
        store: SqliteStore) -> None:
    """An offered receipt answered ESME_RX_T_APPN is rescheduled in the store under its
    own seq (attempts=1, after the backoff) and not kept in memory: it is delivered
    once more, from the store, when due."""
    clock = Clock()
    spy = SpyStore(store)
    bind = FakeBind([S.ESME_RX_T_APPN])
    d = ReceiptDispatcher(spy, lambda _: [bind], clock=clock,  # type: ignore[arg-type]
                          retry_backoff=5.0)
    leased = await _leased(store, "1", "2")
    d.offer(leased)
    await _drain(d)
    assert spy.retries == [(leased[0][0], 1005.0, 1)]
    assert d._held == {}
    await _drain(d)
    assert _ids(bind) == ["1", "2"]  # not before the backoff
    clock.now += 5
    await _drain(d)
    assert _ids(bind) == ["1", "2", "1"]
    assert spy.read == ["1"]
    assert await store.count_receipts() == 0


class FeedingBind(FakeBind):
    """A receiver with window ``window`` that answers at once, while receipts keep
    arriving: each deliver_sm it gets offers the dispatcher the next of ``pending`` and
    moves the clock on 0.25 s. ``sent_at``: the clock at each deliver_sm."""

    def __init__(self, answers: list[int | None], window: int, clock: Clock) -> None:
        super().__init__(answers)
        self._window = window
        self.clock = clock
        self.dispatcher: ReceiptDispatcher | None = None
        self.pending: list[tuple[int, ReceiptRecord]] = []
        self.sent_at: list[float] = []

    @property
    def window(self) -> int:
        return self._window

    def send_request(self, pdu: P.Pdu) -> asyncio.Future[P.Pdu]:
        self.sent_at.append(self.clock.now)
        self.clock.now += 0.25
        if self.pending:
            assert self.dispatcher is not None
            self.dispatcher.offer([self.pending.pop(0)])
        return super().send_request(pdu)


@pytest.mark.parametrize("window", [10, 1])
async def test_due_store_receipts_are_delivered_while_offers_keep_coming(
        store: SqliteStore, window: int) -> None:
    """A retry that became due in the store is delivered within about a second while
    new receipts keep being offered (memory never runs dry), and the store is not read
    for every batch."""
    clock = Clock()
    spy = SpyStore(store)
    bind = FeedingBind([S.ESME_RX_T_APPN], window, clock)
    d = ReceiptDispatcher(spy, lambda _: [bind], clock=clock,  # type: ignore[arg-type]
                          retry_backoff=0.5)
    bind.dispatcher = d
    first, *bind.pending = await _leased(store, *(f"m{i}" for i in range(21)))
    d.offer([first])
    await _drain(d)  # m0 answered RX_T_APPN: due again in the store at 1000.75
    assert spy.retries == [(first[0], 1000.75, 1)]
    await _drain(d)
    ids = _ids(bind)
    assert ids.count("m0") == 2
    assert bind.sent_at[ids.index("m0", 1)] <= 1000.75 + 1.25
    assert ids.index("m0", 1) < ids.index("m20")
    assert spy.reads < 10  # 21 batches
    assert await store.count_receipts() == 0


async def test_leased_receipts_not_deleted_go_back_to_memory(store: SqliteStore) -> None:
    """receipt_done fails (StoreUnavailable) after delivery: the delivered leased
    receipts are held in memory again (still leased in the store, not lost) and are
    delivered again later; the one answered with a temporary error is the store's and
    is not put back."""
    clock = Clock()
    spy = SpyStore(store)
    bind = FakeBind([S.ESME_RX_T_APPN])
    d = ReceiptDispatcher(spy, lambda _: [bind], clock=clock,  # type: ignore[arg-type]
                          retry_backoff=5.0)
    leased = await _leased(store, "1", "2", "3")
    d.offer(leased)
    spy.fail_done = 1
    await _drain(d)
    assert _ids(bind) == ["1", "2", "3"]
    assert list(d._held["acme"]) == leased[1:]
    assert await store.receipts_for("acme", clock.now, 10) == []
    await _drain(d)
    assert _ids(bind) == ["1", "2", "3", "2", "3"]
    assert d._held == {}
    assert spy.read == []
    clock.now += 5
    await _drain(d)
    assert _ids(bind)[5:] == ["1"]
    assert await store.count_receipts() == 0


async def test_unanswered_leased_receipts_go_back_when_a_retry_cannot_be_written(
        store: SqliteStore) -> None:
    """receipt_retry fails (StoreUnavailable) on the first receipt of a batch: it and
    the ones after it, not yet finished with, are held again and delivered later."""
    spy = SpyStore(store)
    bind = FakeBind([S.ESME_RX_T_APPN])
    d = ReceiptDispatcher(spy, lambda _: [bind], clock=Clock())  # type: ignore[arg-type]
    leased = await _leased(store, "1", "2")
    d.offer(leased)
    spy.fail_retry = 1
    await _drain(d)
    assert list(d._held["acme"]) == leased
    await _drain(d)
    assert _ids(bind) == ["1", "2", "1", "2"]
    assert await store.count_receipts() == 0
