"""The pipeline's status callbacks: ``receipts = smpp|http|both`` and a message's own
callback_url decide which SMPP receipts and which callback events a status writes
(with the status, in one store operation)."""

from __future__ import annotations

import asyncio

import pytest

from smppbridge.core.accounts import Account
from smppbridge.core.message import Extra
from smppbridge.core.outcomes import Err, HlrResult, SendOutcome, StatusUpdate
from smppbridge.delivery.pipeline import Pipeline
from smppbridge.smpp.receipts import Stat
from smppbridge.store.sqlite.store import SqliteStore
from tests.delivery.test_pipeline import Clock, FakeRouter, _msg

URL = "https://acme.example/status"


def _account(receipts: str) -> Account:
    return Account("acme", "pw", receipts=receipts,
                   receipt_url=URL if receipts != "smpp" else "", callback_ttl=600.0)


async def _sent_then_final(store: SqliteStore, account: Account, extra: dict[str, str],
                           outcome: SendOutcome | None = None,
                           final: StatusUpdate | None = None) -> Pipeline:
    router = FakeRouter([outcome or SendOutcome.accepted("", "P1")])
    pipe = Pipeline(store, router, clock=Clock(), accounts=lambda name: account)  # type: ignore[arg-type]
    m = _msg()
    m.extra.update(extra)
    await pipe.accept(m)
    task = asyncio.create_task(pipe.run())
    try:
        await asyncio.wait_for(router.sent_event.wait(), 5)
        await asyncio.wait_for(pipe.drain(), 5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    if final is not None:
        await pipe.on_status("sim", final)
    return pipe


DELIVERED = StatusUpdate("P1", Stat.DELIVRD, message_id="1", source="poll")


@pytest.mark.parametrize(("receipts", "smpp_receipts", "events"), [
    ("smpp", 1, 0), ("http", 0, 1), ("both", 1, 1)])
async def test_receipts_setting_decides_smpp_receipts_and_callbacks(
        store: SqliteStore, receipts: str, smpp_receipts: int, events: int) -> None:
    await _sent_then_final(store, _account(receipts), {}, final=DELIVERED)
    assert await store.count_receipts() == smpp_receipts
    due = await store.callbacks_due(2e6, 10)
    assert len(due) == events
    if events:
        assert due[0].url == URL
        assert due[0].kind == "final"
        assert due[0].stat == "DELIVRD"


async def test_a_messages_own_callback_url_calls_back_on_an_smpp_account(
        store: SqliteStore) -> None:
    own = "https://own.example/cb"
    await _sent_then_final(store, _account("smpp"), {Extra.CALLBACK_URL: own},
                           final=DELIVERED)
    assert await store.count_receipts() == 1
    [ev] = await store.callbacks_due(2e6, 10)
    assert ev.url == own


async def test_sent_event_when_the_level_asks_and_it_comes_first(store: SqliteStore) -> None:
    await _sent_then_final(store, _account("http"), {Extra.CALLBACK_LEVEL: "3"},
                           final=DELIVERED)
    assert await store.count_callbacks() == 2
    [first] = await store.callbacks_due(2e6, 10)
    assert first.kind == "sent"


async def test_a_rejected_message_is_a_nack_event(store: SqliteStore) -> None:
    await _sent_then_final(store, _account("http"), {Extra.CALLBACK_FORMAT: "kannel",
                                                     Extra.CALLBACK_LEVEL: "16"},
                           outcome=SendOutcome.rejected("", Err.UNDELIVERABLE))
    [ev] = await store.callbacks_due(2e6, 10)
    assert ev.kind == "nack"
    assert ev.stat == "REJECTD"
    assert ev.err == 1


async def test_final_of_a_poll_batch_writes_its_events_with_the_statuses(
        store: SqliteStore) -> None:
    hlr = HlrResult(imsi="250990000000001", mcc="250", mnc="99")
    pipe = await _sent_then_final(store, _account("http"), {})
    await pipe.on_statuses("sim", [StatusUpdate("P1", Stat.UNDELIV, Err.UNDELIVERABLE,
                                                message_id="1", hlr=hlr)])
    [ev] = await store.callbacks_due(2e6, 10)
    assert ev.stat == "UNDELIV"
    assert ev.err == 1
    assert "imsi:250990000000001" in ev.hlr_fields


async def test_a_second_final_adds_no_second_event(store: SqliteStore) -> None:
    pipe = await _sent_then_final(store, _account("http"), {}, final=DELIVERED)
    await pipe.on_status("sim", StatusUpdate("P1", Stat.UNDELIV, message_id="1"))
    assert await store.count_callbacks() == 1
