"""The callback outbox's contract, run against both stores (tests/store/sqlite and
tests/store/redis call these with their own store)."""

from __future__ import annotations

from dataclasses import replace

from smppbridge.core.callbacks import CallbackEvent, CallbackOutcome, EventKind, new_event
from smppbridge.core.mo import DIRECTION, MO_RECORD
from smppbridge.core.ports import Store
from smppbridge.core.records import DeliveryState
from tests.store.samples import sample_message, sample_receipt

T0 = 5000.0


def event(mid: str, kind: EventKind = EventKind.FINAL, stat: str = "DELIVRD",
          ttl: float = 3600.0) -> CallbackEvent:
    return new_event(kind, message_id=mid, account="acme", url="https://cb.example/h",
                     stat=stat, err=0, at=T0, since=T0, ttl=ttl)


async def sent_then_final_in_order(store: Store) -> None:
    """The sent event goes with mark_sent, the final one with mark_final; only the
    oldest of a message is handed out until it is done."""
    m = sample_message(1)
    await store.accept(m)
    sent = event(m.message_id, EventKind.SENT, "ENROUTE")
    final = event(m.message_id)
    await store.mark_sent_many([(m.message_id, "p", "P1", "ENROUTE", T0, ())],
                               callbacks=[sent])
    await store.mark_final(m.message_id, "DELIVRD", 0, T0 + 1, callbacks=[final])
    assert await store.count_callbacks() == 2
    first = await store.callbacks_due(T0 + 10, 10)
    assert [e.event_id for e in first] == [sent.event_id]
    assert first[0].url == sent.url
    assert first[0].kind == "sent"
    assert await store.callbacks_due(T0 + 10, 10) == []  # leased; the final waits
    await store.callback_done(first[0], T0 + 11)
    second = await store.callbacks_due(T0 + 12, 10)
    assert [e.event_id for e in second] == [final.event_id]
    await store.callback_done(second[0], T0 + 13)
    assert await store.count_callbacks() == 0
    assert await store.callbacks_due(T0 + 99, 10) == []


async def a_message_final_already_adds_no_event(store: Store) -> None:
    m, n = sample_message(2), sample_message(3)
    await store.accept(m)
    await store.accept(n)
    await store.mark_final(m.message_id, "DELIVRD", 0, T0, callbacks=[event(m.message_id)])
    await store.mark_final(m.message_id, "UNDELIV", 0, T0, callbacks=[event(m.message_id)])
    await store.mark_final_many(
        [(m.message_id, "DELIVRD", 0, T0, (), "again"), (n.message_id, "DELIVRD", 0, T0, (),
                                                        "poll")],
        callbacks=[event(m.message_id), event(n.message_id)])
    assert await store.count_callbacks() == 2
    got = {e.message_id for e in await store.callbacks_due(T0 + 1, 10)}
    assert got == {m.message_id, n.message_id}


async def retry_waits_until_due(store: Store) -> None:
    m = sample_message(4)
    await store.accept(m)
    await store.mark_final(m.message_id, "DELIVRD", 0, T0, callbacks=[event(m.message_id)])
    [ev] = await store.callbacks_due(T0, 10)
    await store.callback_retry(ev.seq, T0 + 5, 1)
    assert await store.callbacks_due(T0 + 4.9, 10) == []
    [again] = await store.callbacks_due(T0 + 5, 10)
    assert again.event_id == ev.event_id
    assert again.attempts == 1


async def failed_and_expired_are_in_the_timeline(store: Store) -> None:
    m = sample_message(5)
    await store.accept(m)
    await store.mark_sent_many([(m.message_id, "p", "P5", "ENROUTE", T0, ())],
                               callbacks=[event(m.message_id, EventKind.SENT, "ENROUTE")])
    await store.mark_final(m.message_id, "DELIVRD", 0, T0 + 1, callbacks=[event(m.message_id)])
    [sent] = await store.callbacks_due(T0 + 2, 10)
    await store.callback_done(sent, T0 + 3, CallbackOutcome.FAILED,
                              "sent callback failed: HTTP 404 (https://cb.example/h)")
    [final] = await store.callbacks_due(T0 + 4, 10)
    await store.callback_done(final, T0 + 5, CallbackOutcome.EXPIRED,
                              "final callback expired after 9 attempts: HTTP 503")
    details = [e.detail for e in await store.timeline(m.message_id)]
    assert details[-2:] == ["sent callback failed: HTTP 404 (https://cb.example/h)",
                            "final callback expired after 9 attempts: HTTP 503"]
    assert await store.count_callbacks() == 0


async def delivered_leaves_no_timeline_entry(store: Store) -> None:
    m = sample_message(6)
    await store.accept(m)
    await store.mark_final(m.message_id, "DELIVRD", 0, T0, callbacks=[event(m.message_id)])
    before = await store.timeline(m.message_id)
    [ev] = await store.callbacks_due(T0, 10)
    await store.callback_done(ev, T0 + 1)
    assert await store.timeline(m.message_id) == before


async def an_mo_is_stored_final_with_its_deliver_sm_and_event(store: Store) -> None:
    """accept_mo: the record final with its stat and extra, its outbox record (extra
    kept) and its mo event, all readable back."""
    m = replace(sample_message(21), extra={DIRECTION: "mo", "mo_payload": "4869"})
    rx = replace(sample_receipt(m.message_id), stat="", extra={MO_RECORD: "8",
                                                              "mo_payload": "4869"})
    ev = event(m.message_id, EventKind.MO, "")
    await store.accept_mo(m, [rx], [ev], stat="ACCEPTD")
    stored = await store.find(m.message_id)
    assert stored is not None
    assert stored.state is DeliveryState.FINAL
    assert stored.stat == "ACCEPTD"
    assert stored.message.extra[DIRECTION] == "mo"
    [due] = await store.receipts_for("acme", T0, 10)
    assert due.extra == {MO_RECORD: "8", "mo_payload": "4869"}
    [got] = await store.callbacks_due(T0 + 1, 10)
    assert (got.event_id, got.kind) == (ev.event_id, "mo")
