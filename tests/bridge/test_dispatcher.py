"""Receipt dispatcher: order, round-robin, retry on temporary answers, drop on permanent,
TTL expiry, TLVs only for 3.4 binds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from smppbridge.bridge.dispatcher import ReceiptDispatcher
from smppbridge.smpp import pdu as P
from smppbridge.smpp.constants import CommandStatus, Tag
from smppbridge.smpp.receipts import parse_receipt
from smppbridge.store.base import ReceiptRecord
from smppbridge.store.sqlite import SqliteStore

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


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(str(tmp_path / "r.db"))
    await s.open()
    yield s
    await s.close()


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
