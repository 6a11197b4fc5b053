"""Pipeline: ack after store, sending with outcomes, statuses, receipts, resume."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Literal

from structlog.testing import capture_logs

from smppbridge.core.accounts import Account
from smppbridge.core.errors import NoRoute, StoreUnavailable
from smppbridge.core.message import Address, OutboundMessage
from smppbridge.core.outcomes import Err, SendOutcome, StatusUpdate
from smppbridge.core.records import DeliveryState, StoredMessage
from smppbridge.core.session import BindType, SessionContext
from smppbridge.delivery.pipeline import Pipeline
from smppbridge.delivery.poller import StatusPoller
from smppbridge.delivery.receipts import ReceiptDispatcher
from smppbridge.smpp.constants import CommandStatus
from smppbridge.smpp.receipts import Stat
from smppbridge.store.sqlite.store import SqliteStore
from smppbridge.text.content import Content, Kind


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
    assert stored.state is DeliveryState.SENT
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
    assert (stored.state, stored.stat) == (DeliveryState.FINAL, "DELIVRD")
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
    assert retry.state is DeliveryState.QUEUED
    assert clock.now < retry.next_at <= clock.now + 20
    clock.now += 95
    await pipe._send_many([(await store.due(clock.now, 10))[0]])
    final = await store.find("1")
    assert final is not None
    assert (final.state, final.stat) == (DeliveryState.FINAL, "EXPIRED")


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
    assert (final.state, final.stat) == (DeliveryState.FINAL, "DELIVRD")
    assert len(await store.receipts_for("acme", clock.now + 1, 10)) == 1


# --- batches (accept_many) ------------------------------------------------------------

_CTX = SessionContext(1, Account("acme", "pw"), BindType.TRANSMITTER, "", 0x34, "x")


def _accepted(n: int) -> list[SendOutcome]:
    return [SendOutcome.accepted("", f"P{i}") for i in range(1, n + 1)]


class PickyRouter(FakeRouter):
    """FakeRouter with no route to destinations starting with 000."""

    def check(self, message: OutboundMessage) -> tuple[str, ...]:
        if message.destination.addr.startswith("000"):
            raise NoRoute(message.account, message.destination.addr, message.content.kind)
        return ("sim",)


async def _run_until_sent(pipe: Pipeline, event: asyncio.Event) -> None:
    """Run the sender until ``event`` is set and the sends it started are done."""
    task = asyncio.create_task(pipe.run())
    try:
        await asyncio.wait_for(event.wait(), 5)
        await asyncio.wait_for(pipe.drain(), 5)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_accept_many_refuses_the_unroutable_and_stores_the_rest(
        store: SqliteStore) -> None:
    """A message with no route gets NoRoute's status; the others of the batch are stored."""
    pipe = Pipeline(store, PickyRouter([]), clock=Clock())  # type: ignore[arg-type]
    lost = replace(_msg("2"), destination=Address("000123", 1, 1))
    statuses = await pipe.accept_many([_msg("1"), lost, _msg("3")])
    assert statuses == [CommandStatus.ESME_ROK, CommandStatus.VENDOR_NO_ROUTE,
                        CommandStatus.ESME_ROK]
    assert await store.find("2") is None
    for mid in ("1", "3"):
        stored = await store.find(mid)
        assert stored is not None
        assert stored.state is DeliveryState.QUEUED


async def test_accept_many_hands_messages_to_the_sender_in_memory(store: SqliteStore) -> None:
    """Messages accepted in a batch are stored claimed: the store's ``due`` never returns
    them, yet run() sends each of them once and marks it sent."""
    router = FakeRouter(_accepted(2))
    clock = Clock()
    pipe = Pipeline(store, router, clock=clock)  # type: ignore[arg-type]
    returned: list[str] = []
    real_due = store.due

    async def recording_due(now: float, limit: int) -> list[StoredMessage]:
        found = await real_due(now, limit)
        returned.extend(m.message.message_id for m in found)
        return found

    store.due = recording_due  # type: ignore[method-assign]
    assert await pipe.accept_many([_msg("1"), _msg("2")]) == [CommandStatus.ESME_ROK] * 2
    await _run_until_sent(pipe, router.sent_event)
    assert router.sent == ["1", "2"]
    assert returned == []
    for mid, provider_id in (("1", "P1"), ("2", "P2")):
        stored = await store.find(mid)
        assert stored is not None
        assert (stored.state, stored.provider_id) == (DeliveryState.SENT, provider_id)


async def test_cancel_of_a_message_in_the_hand_off_is_honoured(store: SqliteStore) -> None:
    """cancel_sm of a message accepted in a batch and not yet taken by the sender: ROK,
    it ends DELETED with its receipt, and it is never sent."""
    router = FakeRouter(_accepted(1))
    clock = Clock()
    pipe = Pipeline(store, router, clock=clock)  # type: ignore[arg-type]
    await pipe.accept_many([_msg("1"), _msg("2")])
    assert await pipe.cancel(_CTX, "1", "src") == CommandStatus.ESME_ROK
    await _run_until_sent(pipe, router.sent_event)
    assert router.sent == ["2"]
    deleted = await store.find("1")
    assert deleted is not None
    assert (deleted.state, deleted.stat) == (DeliveryState.FINAL, "DELETED")
    (receipt,) = await store.receipts_for("acme", clock.now + 1, 10)
    assert (receipt.message_id, receipt.stat) == ("1", "DELETED")


async def test_accept_many_store_outage_is_queue_full_for_the_batch(tmp_path: Path) -> None:
    """StoreUnavailable from the batch insert: ESME_RMSGQFUL (temporary) for every
    routable message of the batch, none stored; an unroutable one keeps its NoRoute."""

    class DownStore(SqliteStore):
        async def accept_many(self, messages: Sequence[OutboundMessage], *,
                              claim: bool = False) -> None:
            raise StoreUnavailable("store down")

    store = DownStore(str(tmp_path / "down.db"))
    await store.open()
    try:
        pipe = Pipeline(store, PickyRouter([]), clock=Clock())  # type: ignore[arg-type]
        lost = replace(_msg("3"), destination=Address("000123", 1, 1))
        statuses = await pipe.accept_many([_msg("1"), _msg("2"), lost])
        assert statuses == [CommandStatus.ESME_RMSGQFUL, CommandStatus.ESME_RMSGQFUL,
                            CommandStatus.VENDOR_NO_ROUTE]
        assert await store.find("1") is None
        assert await store.find("2") is None
    finally:
        await store.close()


class WatchedSlots(asyncio.Semaphore):
    """The sender's slots; ``full`` is set once an acquire has to wait."""

    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.full = asyncio.Event()

    async def acquire(self) -> Literal[True]:
        if self.locked():
            self.full.set()
        return await super().acquire()


class GatedRouter(FakeRouter):
    """FakeRouter whose sends return only once ``gate`` is set; ``seen[id]`` is set when
    the message reaches it."""

    def __init__(self, outcomes: list[SendOutcome]) -> None:
        super().__init__(outcomes)
        self.gate = asyncio.Event()
        self.seen: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)

    async def send(self, message: OutboundMessage) -> SendOutcome:
        outcome = await super().send(message)
        self.seen[message.message_id].set()
        await self.gate.wait()
        return outcome


async def test_cancel_while_a_message_waits_for_a_send_slot(store: SqliteStore) -> None:
    """All send slots busy: a message taken by the sender but waiting for a slot is
    either not cancellable or, once cancel_sm says ROK, never sent."""
    router = GatedRouter(_accepted(4))
    pipe = Pipeline(store, router, clock=Clock(), concurrency=2)  # type: ignore[arg-type]
    slots = pipe._slots = WatchedSlots(2)
    task = asyncio.create_task(pipe.run())
    try:
        await pipe.accept_many([_msg("1")])
        await asyncio.wait_for(router.seen["1"].wait(), 5)  # "1" holds a slot
        await pipe.accept_many([_msg("2"), _msg("3")])
        await asyncio.wait_for(slots.full.wait(), 5)  # "3" waits for one
        status = await pipe.cancel(_CTX, "3", "src")
        router.gate.set()
        # "4" is taken after "3" has gone its way: once it is sent, "3" would have been.
        await pipe.accept_many([_msg("4")])
        await asyncio.wait_for(router.seen["4"].wait(), 5)
        await asyncio.wait_for(pipe.drain(), 5)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if status != CommandStatus.ESME_ROK:
        assert status == CommandStatus.ESME_RCANCELFAIL
        return
    assert "3" not in router.sent
    stored = await store.find("3")
    assert stored is not None
    assert (stored.state, stored.stat) == (DeliveryState.FINAL, "DELETED")


class CountingRouter(FakeRouter):
    """FakeRouter that sets ``all_sent`` once ``expected`` messages reached it."""

    def __init__(self, outcomes: list[SendOutcome], expected: int) -> None:
        super().__init__(outcomes)
        self.expected = expected
        self.all_sent = asyncio.Event()

    async def send(self, message: OutboundMessage) -> SendOutcome:
        outcome = await super().send(message)
        if len(self.sent) >= self.expected:
            self.all_sent.set()
        return outcome


async def test_a_batch_larger_than_the_send_slots_is_sent_in_turns(
        store: SqliteStore) -> None:
    """More due messages than concurrency allows: the sender starts what holds a slot
    and waits for slots to come back, instead of waiting forever for slots it holds."""
    router = CountingRouter(_accepted(5), expected=5)
    pipe = Pipeline(store, router, clock=Clock(), concurrency=2)  # type: ignore[arg-type]
    await pipe.accept_many([_msg(str(i)) for i in range(1, 6)])
    await _run_until_sent(pipe, router.all_sent)
    assert sorted(router.sent) == ["1", "2", "3", "4", "5"]
    for mid in router.sent:
        stored = await store.find(mid)
        assert stored is not None
        assert stored.state is DeliveryState.SENT


# --- receipts handed to the dispatcher in memory (outbox) -------------------------------

async def _sent_here(store: SqliteStore, pipe: Pipeline) -> None:
    """Message "1" accepted and sent by ``pipe`` (so a status for it is applied from
    memory by on_statuses)."""
    await pipe.accept(_msg())
    await pipe._send_many([(await store.due(2e6, 10))[0]])


def _with_outbox(store: SqliteStore, clock: Clock, woken: list[bool]
                 ) -> tuple[Pipeline, ReceiptDispatcher]:
    """A pipeline whose outbox is a ReceiptDispatcher (no receiver bound)."""
    outbox = ReceiptDispatcher(store, lambda _: [], clock=clock)
    pipe = Pipeline(store, FakeRouter([SendOutcome.accepted("", "P1")]),  # type: ignore[arg-type]
                    outbox=outbox, receipts_added=lambda: woken.append(True), clock=clock)
    return pipe, outbox


async def test_final_status_receipt_is_leased_and_offered(store: SqliteStore) -> None:
    """The receipt of a final status (on_statuses) is stored leased and offered to the
    dispatcher with its row's seq: held there, hidden from receipts_for."""
    clock = Clock()
    pipe, outbox = _with_outbox(store, clock, [])
    await _sent_here(store, pipe)
    await pipe.on_statuses("sim", [StatusUpdate("P1", Stat.DELIVRD, message_id="1")])
    held = list(outbox._held["acme"])
    assert [(r.message_id, r.stat) for _, r in held] == [("1", "DELIVRD")]
    assert await store.receipts_for("acme", clock.now + 1, 10) == []
    assert await store.count_receipts() == 1
    await store.release_receipts([held[0][0]])
    (released,) = await store.receipts_for("acme", clock.now + 1, 10)
    assert (released.seq, released.message_id) == (held[0][0], "1")


async def test_receipt_is_stored_due_when_the_outbox_is_not_accepting(
        store: SqliteStore) -> None:
    """A dispatcher holding all it may (accepting() false) is offered nothing: the
    receipt is stored unleased (receipts_for returns it) and receipts_added wakes it."""
    clock = Clock()
    woken: list[bool] = []
    pipe, outbox = _with_outbox(store, clock, woken)
    outbox.held_cap = 0
    await _sent_here(store, pipe)
    await pipe.on_statuses("sim", [StatusUpdate("P1", Stat.DELIVRD, message_id="1")])
    assert outbox._held == {}
    due = await store.receipts_for("acme", clock.now + 1, 10)
    assert [(r.message_id, r.stat) for r in due] == [("1", "DELIVRD")]
    assert woken == [True]


async def test_enroute_receipt_of_a_send_is_offered(store: SqliteStore) -> None:
    """A message asking for intermediate receipts: the ENROUTE receipt written when the
    provider accepts it (mark_sent_many) is leased and offered too."""
    clock = Clock()
    pipe, outbox = _with_outbox(store, clock, [])
    await pipe.accept(_msg(rd=0x11))
    await pipe._send_many([(await store.due(2e6, 10))[0]])
    held = list(outbox._held["acme"])
    assert [(r.message_id, r.stat) for _, r in held] == [("1", "ENROUTE")]
    assert await store.receipts_for("acme", clock.now + 1, 10) == []
    assert await store.count_receipts() == 1


class OneByOneStore(SqliteStore):
    """A store that stores a batch message by message (as the Redis store does) and
    reports message "2" as not stored."""

    async def accept_many(self, messages: Sequence[OutboundMessage], *,
                          claim: bool = False) -> list[Exception | None]:
        out: list[Exception | None] = []
        for m in messages:
            if m.message_id == "2":
                out.append(RuntimeError("this row cannot be written"))
            else:
                await self.accept(m)
                out.append(None)
        return out


async def test_accept_many_answers_each_message_of_a_partly_stored_batch(
        tmp_path: Path) -> None:
    """A store that reports one message of a batch as not stored: that one gets
    ESME_RSYSERR, the others of the batch are stored and get ESME_ROK."""
    s = OneByOneStore(str(tmp_path / "one.db"))
    await s.open()
    try:
        pipe = Pipeline(s, FakeRouter([]), clock=Clock())  # type: ignore[arg-type]
        statuses = await pipe.accept_many([_msg("1"), _msg("2"), _msg("3")])
        assert statuses == [CommandStatus.ESME_ROK, CommandStatus.ESME_RSYSERR,
                            CommandStatus.ESME_ROK]
        assert await s.find("1") is not None
        assert await s.find("3") is not None
        assert await s.find("2") is None
    finally:
        await s.close()


async def test_resume_follows_messages_of_a_provider_no_longer_configured(
        store: SqliteStore) -> None:
    """A restart with messages `sent` to a provider the config no longer names: resume
    says so once per provider (with the count) and follows them to their deadline, and
    the pipeline keeps running (it used to die on a KeyError)."""
    clock = Clock()
    for mid in ("g1", "g2"):
        await store.accept(_msg(mid))
        await store.mark_sent(mid, "retired", f"P-{mid}", "ENROUTE", clock.now)
    pipe = Pipeline(store, None, clock=clock,
                    poller=partial(StatusPoller, {}, {}, clock=clock))
    with capture_logs() as logs:
        await pipe.resume()
    assert pipe.poller is not None
    assert len(pipe.poller) == 2
    gone = [e for e in logs if e["event"] == "status.provider_gone"]
    assert [(e["provider"], e["messages"]) for e in gone] == [("retired", 2)]
