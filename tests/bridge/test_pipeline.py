"""Pipeline: ack after store, sending with outcomes, statuses, receipts, resume."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from smppbridge.bridge.pipeline import (
    IdAllocator,
    Pipeline,
    make_receipts,
    status_err,
    wants_receipt,
)
from smppbridge.bridge.providers.base import Err, SendOutcome, Stat, StatusUpdate
from smppbridge.config import Account
from smppbridge.message import Address, Content, Kind, OutboundMessage
from smppbridge.seam import BindType, SessionContext
from smppbridge.smpp.constants import CommandStatus
from smppbridge.store.base import MessageState
from smppbridge.store.sqlite import SqliteStore


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeRouter:
    """Answers each send with the next scripted outcome (edge of the unit under test)."""

    def __init__(self, outcomes: list[SendOutcome]) -> None:
        self.outcomes = outcomes
        self.sent: list[str] = []
        self.sent_event = asyncio.Event()

    def check(self, message: OutboundMessage) -> tuple[str, ...]:
        return ("sim",)

    async def send(self, message: OutboundMessage) -> SendOutcome:
        self.sent.append(message.message_id)
        self.sent_event.set()
        outcome = self.outcomes.pop(0)
        return replace(outcome, message_id=message.message_id)

    async def send_many(self, messages: Sequence[OutboundMessage]) -> list[SendOutcome]:
        return [await self.send(m) for m in messages]


def _msg(mid: str = "1", rd: int = 1, parts: tuple[str, ...] | None = None,
         expire_at: float | None = None) -> OutboundMessage:
    return OutboundMessage(
        message_id=mid, part_ids=parts or (mid,), account="acme",
        source=Address("src", 5, 0), destination=Address("79001", 1, 1),
        content=Content(Kind.SMS, "hello world"), registered_delivery=rd,
        submitted_at=1_000_000.0, expire_at=expire_at)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(str(tmp_path / "p.db"))
    await s.open()
    yield s
    await s.close()


def test_registered_delivery_bits() -> None:
    """0 none; 1 every final; 2 failures only; 0x10 adds intermediate (SMPP 3.4 §5.2.17)."""
    assert not wants_receipt(0, "DELIVRD")
    assert wants_receipt(1, "DELIVRD")
    assert wants_receipt(1, "UNDELIV")
    assert not wants_receipt(2, "DELIVRD")
    assert wants_receipt(2, "REJECTD")
    assert not wants_receipt(1, "ENROUTE")
    assert wants_receipt(0x11, "ENROUTE")
    assert not wants_receipt(3, "DELIVRD")  # 11 is reserved


def test_one_receipt_per_part_with_swapped_addresses() -> None:
    """A 3-part message yields three receipts, from its destination to its source."""
    rs = make_receipts(_msg("c", parts=("a", "b", "c")), "DELIVRD", 0, 2_000_000.0)
    assert [r.message_id for r in rs] == ["a", "b", "c"]
    assert (rs[0].source_addr, rs[0].dest_addr) == ("79001", "src")
    assert rs[0].text == "hello world"


def test_status_err_for_refusals() -> None:
    """Vendor statuses map to 4xx, SMPP statuses to their decimal value."""
    assert status_err(CommandStatus.VENDOR_DUPLICATE) == 400
    assert status_err(CommandStatus.VENDOR_SUBSCRIBER_FLOOD) == 401
    assert status_err(CommandStatus.ESME_RSUBMITFAIL) == 69


async def test_ids_are_unique_and_formatted(store: SqliteStore) -> None:
    """Ids come from store blocks: decimal, hex by option, ≤ 8 chars for v3.3."""
    ids = IdAllocator(store, block=3)
    acct = Account("acme", "pw")
    ctx = SessionContext(1, acct, BindType.TRANSMITTER, "", 0x34, "x")
    got = [await ids.take(ctx) for _ in range(7)]
    assert len(set(got)) == 7
    assert all(g.isdigit() for g in got)
    hex_ctx = replace(ctx, account=replace(acct, message_id_format="hex"))
    assert all(c in "0123456789abcdef" for c in await ids.take(hex_ctx))
    ids._next = 10**12
    ids._end = 10**12 + 5
    v33 = replace(ctx, interface_version=0x33)
    assert len(await ids.take(v33)) <= 8


async def test_accept_stores_before_ack_and_sends(store: SqliteStore) -> None:
    """accept() returns ROK with the message stored; the sender hands it to the router,
    marks it sent, and the ENROUTE is not a receipt unless asked for."""
    router = FakeRouter([SendOutcome.accepted("", "P1")])
    clock = Clock()
    pipe = Pipeline(store, router, clock=clock)  # type: ignore[arg-type]
    assert await pipe.accept(_msg()) == CommandStatus.ESME_ROK
    assert (await store.find("1")) is not None
    task = asyncio.create_task(pipe.run())
    try:
        await asyncio.wait_for(router.sent_event.wait(), 5)
        await asyncio.wait_for(pipe.drain(), 5)
    finally:
        task.cancel()
    stored = await store.find("1")
    assert stored is not None
    assert stored.state is MessageState.SENT
    assert stored.provider_id == "P1"
    assert await store.receipts_for("acme", clock.now + 1, 10) == []


async def test_final_status_makes_receipts(store: SqliteStore) -> None:
    """A final status from the provider ends the message with one receipt per part."""
    clock = Clock()
    pipe = Pipeline(store, None, clock=clock)
    await store.accept(_msg("b", parts=("a", "b")))
    await store.mark_sent("b", "sim", "P9", "ENROUTE", clock.now)
    await pipe.on_status("sim", StatusUpdate("P9", Stat.DELIVRD, Err.OK, done_at=clock.now))
    stored = await store.find("a")
    assert stored is not None
    assert (stored.state, stored.stat) == (MessageState.FINAL, "DELIVRD")
    rs = await store.receipts_for("acme", clock.now + 1, 10)
    assert [(r.message_id, r.stat) for r in rs] == [("a", "DELIVRD"), ("b", "DELIVRD")]


async def test_rejection_is_final_with_its_err(store: SqliteStore) -> None:
    """A per-message rejection ends the message REJECTD with the provider's err."""
    router = FakeRouter([SendOutcome.rejected("", Err.STOP_LIST, "stop list")])
    pipe = Pipeline(store, router, clock=Clock())  # type: ignore[arg-type]
    await pipe.accept(_msg())
    stored = (await store.due(2e6, 10))[0]
    await pipe._send_many([stored])
    final = await store.find("1")
    assert final is not None
    assert (final.stat, final.err) == ("REJECTD", 101)
    (r,) = await store.receipts_for("acme", 3e6, 10)
    assert (r.stat, r.err) == ("REJECTD", 101)


async def test_failure_retries_then_expires_at_validity(store: SqliteStore) -> None:
    """No provider available: retried with backoff; past validity it ends EXPIRED."""
    clock = Clock()
    router = FakeRouter([SendOutcome.failed("", Err.UNAVAILABLE)] * 2)
    pipe = Pipeline(store, router, clock=clock, retry_backoff=10.0)  # type: ignore[arg-type]
    await pipe.accept(_msg(expire_at=clock.now + 100))
    await pipe._send_many([(await store.due(clock.now, 10))[0]])
    retry = await store.find("1")
    assert retry is not None
    assert retry.state is MessageState.QUEUED
    assert clock.now < retry.next_at <= clock.now + 20
    clock.now += 95
    await pipe._send_many([(await store.due(clock.now, 10))[0]])
    final = await store.find("1")
    assert final is not None
    assert (final.state, final.stat) == (MessageState.FINAL, "EXPIRED")


async def test_cancel_only_while_queued(store: SqliteStore) -> None:
    """cancel_sm deletes a queued message (DELETED receipt) and fails once it is sent."""
    pipe = Pipeline(store, None, clock=Clock())
    ctx = SessionContext(1, Account("acme", "pw"), BindType.TRANSMITTER, "", 0x34, "x")
    await store.accept(_msg("1"))
    await store.accept(_msg("2"))
    await store.mark_sent("2", "sim", "P", "ENROUTE", 1.0)
    assert await pipe.cancel(ctx, "1", "src") == CommandStatus.ESME_ROK
    assert await pipe.cancel(ctx, "2", "src") == CommandStatus.ESME_RCANCELFAIL
    assert await pipe.cancel(ctx, "nope", "src") == CommandStatus.ESME_RCANCELFAIL
    q = await pipe.query(ctx, "1", "src")
    assert (q.status, q.message_state) == (CommandStatus.ESME_ROK, 4)  # DELETED
    other = replace(ctx, account=Account("other", "pw"))
    assert (await pipe.query(other, "1", "src")).status == CommandStatus.ESME_RQUERYFAIL


async def test_status_of_a_message_sent_here_needs_no_store_read(store: SqliteStore) -> None:
    """A final status for a message this node sent is applied from memory (one store
    write, no read), and a second final status for it changes nothing."""
    router = FakeRouter([SendOutcome.accepted("", "P1")])
    clock = Clock()
    pipe = Pipeline(store, router, clock=clock)  # type: ignore[arg-type]
    await pipe.accept(_msg())
    await pipe._send_many([(await store.due(clock.now, 10))[0]])
    reads = 0
    real_find = store.find

    async def counting_find(message_id: str):  # type: ignore[no-untyped-def]
        nonlocal reads
        reads += 1
        return await real_find(message_id)

    store.find = counting_find  # type: ignore[method-assign]
    await pipe.on_status("sim", StatusUpdate("P1", Stat.DELIVRD, message_id="1"))
    assert reads == 0
    await pipe.on_status("sim", StatusUpdate("P1", Stat.UNDELIV, message_id="1"))
    final = await real_find("1")
    assert final is not None
    assert (final.state, final.stat) == (MessageState.FINAL, "DELIVRD")
    assert len(await store.receipts_for("acme", clock.now + 1, 10)) == 1
