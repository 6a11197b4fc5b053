"""The Redis store's message history against a real Redis: search (every filter, order,
ties, cursor paging, bounded work), timelines (by any part id; retried, sent twice,
intermediate and final messages), receipts in every state, and retention (purge trims
every index, also of messages whose keys already expired). One test runs its queries on
a private ``redis-server`` among 10,000 unrelated keys and checks in ``INFO
commandstats`` that nothing SCANned.

Fixtures (a per-test key prefix on DB 15) are in conftest.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from smppbridge.core.history import (
    Cursor,
    MessagePage,
    MessageQuery,
    ReceiptState,
    ReceiptView,
    TimelineEntry,
)
from smppbridge.core.message import Address, OutboundMessage
from smppbridge.core.records import DeliveryState
from smppbridge.store.redis import history as redis_history
from smppbridge.store.redis import store as redis_store
from smppbridge.store.redis.scripts import BUCKET_SECONDS
from smppbridge.store.redis.store import RedisStore
from tests.store.redis.support import StoreFactory
from tests.store.samples import sample_message, sample_receipt

_msg = sample_message
_receipt = sample_receipt
#: upper bound for a private redis-server to start
DEADLINE = 10.0


# --- a data set and a reference model of the search -------------------------------------

@dataclass(frozen=True)
class Row:
    """What the test knows of one message it stored (the reference model's record)."""

    message_id: str
    account: str
    destination: str
    source: str
    submitted_at: float
    state: DeliveryState
    stat: str
    provider: str
    provider_id: str


def _message(i: int, *, account: str, dest: str, source: str, at: float,
             parts: int = 1) -> OutboundMessage:
    m = _msg(i, parts=parts)
    return replace(m, account=account, destination=Address(dest, 1, 1),
                   source=Address(source, 5, 0), submitted_at=at)


async def _seed(store: RedisStore, count: int = 60) -> list[Row]:
    """``count`` messages over two accounts, three destinations, two sources, few
    distinct submitted_at (many ties), in every state, through two providers."""
    rows = []
    for i in range(count):
        account = ("acme", "beta")[i % 2]
        dest = ("79001", "79002", "7900\u00e9")[i % 3]
        source = ("Shop", "Caf\u00e9 \u2615")[(i // 3) % 2]
        at = 1000.0 + (i % 7) * 0.25
        await store.accept(_message(i, account=account, dest=dest, source=source, at=at))
        rows.append(Row(f"{i}-0", account, dest, source, at, DeliveryState.QUEUED,
                        "", "", ""))
    await store.due(5000.0, count)
    for k, row in enumerate(rows):
        step = k % 5
        if step == 0:  # left queued (released by a retry)
            await store.mark_retry(row.message_id, 4000.0, 1, "retry 1: busy")
            continue
        provider = ("sim", "alt")[k % 2]
        if step == 4:  # rejected by the provider: final, with the provider, never sent
            await store.mark_final(row.message_id, "REJECTD", 11, 5001.0,
                                   provider=provider, provider_id=f"R{k}")
            rows[k] = replace(row, state=DeliveryState.FINAL, stat="REJECTD",
                              provider=provider, provider_id=f"R{k}")
            continue
        await store.mark_sent(row.message_id, provider, f"P{k}", "ENROUTE", 5001.0)
        rows[k] = replace(row, state=DeliveryState.SENT, stat="ENROUTE", provider=provider,
                          provider_id=f"P{k}")
        if step in (2, 3):
            stat = ("DELIVRD", "UNDELIV")[step - 2]
            await store.mark_final(row.message_id, stat, step - 2, 5002.0)
            rows[k] = replace(rows[k], state=DeliveryState.FINAL, stat=stat)
    return rows


def _expected(rows: list[Row], q: MessageQuery) -> list[str]:
    """The reference: filters as the contract states them, newest first by
    (submitted_at, id), ids compared as strings."""
    def keep(r: Row) -> bool:
        return all([
            q.account is None or r.account == q.account,
            q.destination is None or r.destination == q.destination,
            q.source is None or r.source == q.source,
            q.state is None or r.state == q.state,
            q.stat is None or r.stat == q.stat,
            q.provider is None or r.provider == q.provider,
            q.provider_id is None or r.provider_id == q.provider_id,
            q.since is None or r.submitted_at >= q.since,
            q.until is None or r.submitted_at < q.until,
        ])
    ordered = sorted((r for r in rows if keep(r)),
                     key=lambda r: (r.submitted_at, r.message_id), reverse=True)
    return [r.message_id for r in ordered]


def _ids(page: MessagePage) -> list[str]:
    return [s.message.message_id for s in page.items]


async def _all_pages(store: RedisStore, q: MessageQuery) -> list[str]:
    """Every page of ``q`` from its own cursor on (bounded: 200 pages)."""
    out: list[str] = []
    after = q.after
    for _ in range(200):
        page = await store.search(replace(q, after=after))
        out += _ids(page)
        if page.next is None:
            return out
        after = page.next
    pytest.fail("paging did not end")


FILTERS = [
    pytest.param(MessageQuery(), id="no-filter"),
    pytest.param(MessageQuery(account="acme"), id="account"),
    pytest.param(MessageQuery(destination="79002"), id="destination"),
    pytest.param(MessageQuery(destination="7900\u00e9"), id="destination-non-ascii"),
    pytest.param(MessageQuery(source="Caf\u00e9 \u2615"), id="source"),
    pytest.param(MessageQuery(state=DeliveryState.SENT), id="state"),
    pytest.param(MessageQuery(stat="DELIVRD"), id="stat"),
    pytest.param(MessageQuery(provider="alt"), id="provider"),
    pytest.param(MessageQuery(provider_id="P7"), id="provider-id-alone"),
    pytest.param(MessageQuery(provider="alt", provider_id="P1"), id="provider+id"),
    pytest.param(MessageQuery(provider="sim", provider_id="P1"), id="id+wrong-provider"),
    pytest.param(MessageQuery(since=1000.5), id="since"),
    pytest.param(MessageQuery(until=1000.75), id="until"),
    pytest.param(MessageQuery(since=1000.25, until=1001.0), id="since+until"),
    pytest.param(MessageQuery(account="beta", destination="79001"), id="account+dest"),
    pytest.param(MessageQuery(account="acme", source="Shop", state=DeliveryState.FINAL),
                 id="account+source+state"),
    pytest.param(MessageQuery(destination="79002", source="Shop"), id="dest+source"),
    pytest.param(MessageQuery(account="acme", stat="ENROUTE", provider="sim"),
                 id="account+stat+provider"),
    pytest.param(MessageQuery(account="beta", state=DeliveryState.QUEUED, since=1000.25,
                              until=1001.5), id="account+state+since+until"),
    pytest.param(MessageQuery(account="acme", provider="sim", provider_id="P2"),
                 id="account+provider+id"),
    pytest.param(MessageQuery(account="acme", provider="alt", provider_id="P3"),
                 id="account+provider+id-of-another-account"),
    pytest.param(MessageQuery(account="nobody"), id="unknown-account"),
    pytest.param(MessageQuery(destination="79001", stat="REJECTD", provider="sim"),
                 id="dest+stat+provider"),
]


@pytest.mark.parametrize("query", FILTERS)
async def test_every_filter_and_combination(store: RedisStore, query: MessageQuery) -> None:
    """Each filter alone and in combination returns exactly the messages the contract's
    rules select (exact account/destination/source/state/stat/provider/provider_id,
    since <= submitted_at < until), newest first by (submitted_at, id), in one page."""
    rows = await _seed(store)
    page = await store.search(replace(query, limit=1000))
    assert _ids(page) == _expected(rows, query)
    assert page.next is None
    for s in page.items:  # the items are whole messages, as find() returns them
        assert s == await store.find(s.message.message_id)


@pytest.mark.parametrize("query", [p.values[0] for p in FILTERS[:8]] + [
    MessageQuery(account="acme", state=DeliveryState.FINAL),
    MessageQuery(since=1000.25, until=1001.25, provider="sim")])
async def test_cursor_paging_returns_every_message_exactly_once(
        store: RedisStore, query: MessageQuery) -> None:
    """Paging 4 at a time with each page's ``next`` yields every match exactly once, in
    the same order as one big page (ties of submitted_at cross page boundaries), and
    the last page's ``next`` is None."""
    rows = await _seed(store)
    assert await _all_pages(store, replace(query, limit=4)) == _expected(rows, query)


async def test_ties_are_broken_by_id_descending(store: RedisStore) -> None:
    """Messages submitted at the same instant come by message id descending, compared
    as strings ("9-0" before "10-0"), newer instants first."""
    for i in (1, 9, 10, 2, 100):
        await store.accept(_message(i, account="acme", dest="1", source="s", at=1000.0))
    await store.accept(_message(3, account="acme", dest="1", source="s", at=1000.5))
    page = await store.search(MessageQuery(account="acme"))
    assert _ids(page) == ["3-0", "9-0", "2-0", "100-0", "10-0", "1-0"]


async def test_next_page_starts_strictly_after_the_cursor(store: RedisStore) -> None:
    """A page after (t, id) holds exactly what sorts after it: equal t with a smaller
    id, then older t — also for a cursor naming no stored message."""
    for i in (1, 2, 3, 4):
        await store.accept(_message(i, account="acme", dest="1", source="s", at=1000.0))
    await store.accept(_message(5, account="acme", dest="1", source="s", at=999.0))
    after = await store.search(MessageQuery(after=Cursor(1000.0, "3-0")))
    assert _ids(after) == ["2-0", "1-0", "5-0"]
    between = await store.search(MessageQuery(account="acme",
                                              after=Cursor(1000.0, "2-5")))
    assert _ids(between) == ["2-0", "1-0", "5-0"]
    assert _ids(await store.search(MessageQuery(after=Cursor(1000.0, "0")))) == ["5-0"]


async def test_paging_survives_the_cursor_message_leaving_the_index(
        store: RedisStore, raw: aioredis.Redis, prefix: str) -> None:
    """If the message a cursor names leaves the index between two pages (retention),
    the next page still starts right after the cursor's place: nothing skipped or
    repeated among messages of the same instant."""
    for i in range(10):
        await store.accept(_message(i, account="acme", dest="1", source="s", at=1000.0))
    first = await store.search(MessageQuery(account="acme", limit=3))
    assert _ids(first) == ["9-0", "8-0", "7-0"]
    assert first.next == Cursor(1000.0, "7-0")
    for key in ("ix:t", "ix:a:acme", "ix:d:1", "ix:s:s"):
        await raw.zrem(prefix + key, "7-0")
    rest = await _all_pages(store, MessageQuery(account="acme", limit=3,
                                                after=first.next))
    assert rest == ["6-0", "5-0", "4-0", "3-0", "2-0", "1-0", "0-0"]


async def test_search_of_one_account_never_returns_another_accounts(
        store: RedisStore) -> None:
    """Two accounts sending to the same destination from the same source: a search
    naming one account returns only its messages, whichever index it walks; without
    an account both are found."""
    for i in range(6):
        account = "acme" if i < 2 else "beta"
        await store.accept(_message(i, account=account, dest="79001", source="Shop",
                                    at=1000.0 + i))
    for q in (MessageQuery(account="acme"), MessageQuery(account="acme", destination="79001"),
              MessageQuery(account="acme", source="Shop"),
              MessageQuery(account="acme", destination="79001", source="Shop",
                           state=DeliveryState.QUEUED)):
        assert _ids(await store.search(q)) == ["1-0", "0-0"], q
    assert len(_ids(await store.search(MessageQuery(destination="79001")))) == 6


async def test_sparse_filter_returns_short_pages_that_continue(
        store: RedisStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A filter without an index of its own (here state) examines a bounded number of
    index entries per answer: a page may come back short, with a ``next`` that carries
    on from the last entry examined; following it finds every match once."""
    monkeypatch.setattr(redis_history, "CALL_BUDGET", 4)
    monkeypatch.setattr(redis_history, "SEARCH_CALLS", 2)
    for i in range(40):
        await store.accept(_message(i, account="acme", dest="1", source="s",
                                    at=1000.0 + i))
    for i in (3, 30):
        await store.mark_final(f"{i}-0", "DELETED", 0, 2000.0)
    q = MessageQuery(state=DeliveryState.FINAL, limit=10)
    first = await store.search(q)
    assert _ids(first) == []  # 8 entries examined (39 ... 32): none final yet
    assert first.next == Cursor(1032.0, "32-0")
    assert await _all_pages(store, q) == ["30-0", "3-0"]


async def test_limit_and_empty_queries(store: RedisStore) -> None:
    """``limit`` caps a page; a limit of 0 answers an empty last page; an unknown
    destination finds nothing."""
    for i in range(5):
        await store.accept(_message(i, account="acme", dest="1", source="s", at=1000.0 + i))
    page = await store.search(MessageQuery(limit=2))
    assert _ids(page) == ["4-0", "3-0"]
    assert page.next == Cursor(1003.0, "3-0")
    assert await store.search(MessageQuery(limit=0)) == MessagePage([], None)
    assert await store.search(MessageQuery(destination="nowhere")) == MessagePage([], None)
    last = await store.search(MessageQuery(limit=5))
    assert len(last.items) == 5
    assert last.next is None  # nothing after the fifth


async def test_count_submitted_uses_the_account_index(store: RedisStore) -> None:
    """count_submitted counts an account's messages submitted at ``since`` or later,
    none of another account's."""
    for i in range(6):
        await store.accept(_message(i, account="acme" if i % 3 else "beta", dest="1",
                                    source="s", at=1000.0 + i))
    assert await store.count_submitted("acme", 1002.0) == 3
    assert await store.count_submitted("beta", 0.0) == 2
    assert await store.count_submitted("nobody", 0.0) == 0


# --- timelines ---------------------------------------------------------------------------

def _words(timeline: list[TimelineEntry]) -> list[tuple[str, str, int, str]]:
    return [(e.state, e.stat, e.err, e.detail) for e in timeline]


async def test_timeline_of_a_retried_sent_intermediate_final_message(
        store: RedisStore) -> None:
    """accepted (queued, at submitted_at), each retry (queued, its detail, dated by the
    node's clock), sent (to provider as id, ENROUTE), each intermediate status (sent,
    stat/err/detail), final (stat, err, detail) — in the order they happened."""
    await store.accept(_msg(1))
    await store.due(5000.0, 10)
    before = time.time()
    await store.mark_retry("1-0", 4000.0, 1, "retry 1: provider unavailable")
    await store.due(5000.0, 10)
    await store.mark_retry("1-0", 4000.0, 2, "retry 2: timeout")
    after = time.time()
    await store.due(5000.0, 10)
    await store.mark_sent("1-0", "sim", "P1", "ENROUTE", 5001.0)
    await store.record_status("1-0", "ACCEPTD", 0, 5002.0, "status from poll")
    await store.record_status("1-0", "ENROUTE", 3, 5003.0, "status from webhook roaming")
    await store.mark_final("1-0", "DELIVRD", 0, 5004.0, detail="status from poll")
    timeline = await store.timeline("1-0")
    assert _words(timeline) == [
        ("queued", "", 0, "accepted"),
        ("queued", "", 0, "retry 1: provider unavailable"),
        ("queued", "", 0, "retry 2: timeout"),
        ("sent", "ENROUTE", 0, "sent to sim as P1"),
        ("sent", "ACCEPTD", 0, "status from poll"),
        ("sent", "ENROUTE", 3, "status from webhook roaming"),
        ("final", "DELIVRD", 0, "status from poll"),
    ]
    assert timeline[0].at == 1001.0
    assert all(before <= e.at <= after for e in timeline[1:3])
    assert [e.at for e in timeline[3:]] == [5001.0, 5002.0, 5003.0, 5004.0]
    found = await store.find("1-0")
    assert found is not None
    assert (found.state, found.attempts) == (DeliveryState.FINAL, 3)  # 2 retries + 1 send


async def test_intermediate_status_keeps_the_message_sent(store: RedisStore) -> None:
    """record_status leaves the message sent, with the status's stat, and adds its
    receipts to the outbox; once final, a late intermediate status changes nothing."""
    await store.accept(_msg(1))
    await store.due(5000.0, 10)
    await store.mark_sent("1-0", "sim", "P1", "ENROUTE", 5001.0)
    await store.record_status("1-0", "ACCEPTD", 0, 5002.0, "status from poll",
                              [_receipt("1-0")])
    found = await store.find("1-0")
    assert found is not None
    assert (found.state, found.stat) == (DeliveryState.SENT, "ACCEPTD")
    assert await store.count_receipts() == 1
    await store.mark_final("1-0", "DELIVRD", 0, 5003.0)
    await store.record_status("1-0", "ACCEPTD", 0, 5004.0, "late", [_receipt("1-0")])
    assert await store.count_receipts() == 1
    assert _words(await store.timeline("1-0")) == [
        ("queued", "", 0, "accepted"), ("sent", "ENROUTE", 0, "sent to sim as P1"),
        ("sent", "ACCEPTD", 0, "status from poll"), ("final", "DELIVRD", 0, "")]


async def test_timeline_is_found_by_any_part_id(store: RedisStore) -> None:
    """A long message's timeline is found by its own id and by each part id."""
    await store.accept(_msg(1, parts=3))
    await store.due(5000.0, 10)
    await store.mark_sent("1-2", "sim", "P1", "ENROUTE", 5001.0)
    by_id = await store.timeline("1-2")
    assert [e.state for e in by_id] == ["queued", "sent"]
    for part in ("1-0", "1-1"):
        assert await store.timeline(part) == by_id


async def test_timeline_of_a_message_accepted_final(store: RedisStore) -> None:
    """A message stored already final (refused after a partial ack) has one entry:
    accepted, final, with its stat and err."""
    await store.accept(_msg(1), [_receipt("1-0")], final_stat="REJECTD", final_err=11)
    assert _words(await store.timeline("1-0")) == [("final", "REJECTD", 11, "accepted")]
    assert (await store.timeline("1-0"))[0].at == 1001.0


async def test_timeline_of_a_send_racing_a_cancel(store: RedisStore) -> None:
    """A message cancelled while a node was sending it: the send is recorded after the
    final entry, and the message stays final."""
    await store.accept(_msg(1))
    await store.due(5000.0, 10)
    await store.mark_final("1-0", "DELETED", 0, 5001.0, detail="cancelled (cancel_sm)")
    await store.mark_sent("1-0", "sim", "P9", "ENROUTE", 5002.0)
    assert _words(await store.timeline("1-0")) == [
        ("queued", "", 0, "accepted"),
        ("final", "DELETED", 0, "cancelled (cancel_sm)"),
        ("final", "ENROUTE", 0, "sent to sim as P9"),
    ]


async def test_timeline_of_a_message_sent_twice(make_store: StoreFactory) -> None:
    """Two nodes sending the same message (a claim after a pause): both sends are in
    the timeline with their own provider ids, then the final status."""
    a = await make_store()
    b = await make_store()
    await a.accept(_msg(1))
    await a.due(5000.0, 10)
    await a.mark_sent("1-0", "sim", "P1", "ENROUTE", 5001.0)
    await b.mark_sent("1-0", "alt", "Q1", "ENROUTE", 5002.0)
    await b.mark_final("1-0", "DELIVRD", 0, 5003.0)
    assert [(e.at, e.detail) for e in await a.timeline("1-0")] == [
        (1001.0, "accepted"), (5001.0, "sent to sim as P1"), (5002.0, "sent to alt as Q1"),
        (5003.0, "")]


async def test_replayed_retry_and_status_are_recorded_once(
        store: RedisStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """mark_retry and record_status re-sent with the same token (a pipeline retried
    after a lost reply) add one note and one receipt, not two."""
    await store.accept(_msg(1))
    await store.due(5000.0, 10)
    monkeypatch.setattr(redis_store, "token", lambda: "retry-token")
    await store.mark_retry("1-0", 100.0, 1, "retry 1")
    await store.mark_retry("1-0", 100.0, 1, "retry 1")
    await store.due(5000.0, 10)
    monkeypatch.setattr(redis_store, "token", lambda: "sent-token")
    await store.mark_sent("1-0", "sim", "P1", "ENROUTE", 5001.0)
    monkeypatch.setattr(redis_store, "token", lambda: "status-token")
    for _ in range(2):
        await store.record_status("1-0", "ACCEPTD", 0, 5002.0, "poll", [_receipt("1-0")])
    assert [e.detail for e in await store.timeline("1-0")] == [
        "accepted", "retry 1", "sent to sim as P1", "poll"]
    assert await store.count_receipts() == 1


async def test_timeline_of_unknown_message_is_empty(store: RedisStore) -> None:
    """No message, no timeline and no receipts."""
    assert await store.timeline("404") == []
    assert await store.receipts_of("404") == []


# --- receipts ----------------------------------------------------------------------------

async def test_receipts_of_shows_every_state_in_creation_order(store: RedisStore) -> None:
    """Every receipt of every part, in creation order: pending with its attempts,
    delivered and dropped at the time they were done, expired at its expire_at; the
    outbox counts only the pending ones."""
    await store.accept(_msg(1, parts=3))
    await store.due(5000.0, 10)
    await store.mark_sent("1-2", "sim", "P1", "ENROUTE", 5001.0)
    await store.record_status("1-2", "ACCEPTD", 0, 5002.0, "poll",
                              [replace(_receipt("1-0", expire_at=5500.0), stat="ACCEPTD",
                                       done_date=5002.0)])
    finals = [replace(_receipt(p), done_date=5003.0) for p in ("1-0", "1-1", "1-2")]
    await store.mark_final("1-2", "DELIVRD", 0, 5003.0, finals)
    assert await store.expire_receipts(6000.0) == 1
    taken = await store.receipts_for("acme", 6000.0, 10)
    assert [r.message_id for r in taken] == ["1-0", "1-1", "1-2"]
    await store.receipt_done([taken[0].seq], 6001.0)
    await store.receipt_done([taken[1].seq], 6002.0, ReceiptState.DROPPED)
    await store.receipt_retry(taken[2].seq, 7000.0, 2)
    assert await store.receipts_of("1-1") == [
        ReceiptView("1-0", "acme", "ACCEPTD", 0, ReceiptState.EXPIRED, 0, 5500.0),
        ReceiptView("1-0", "acme", "DELIVRD", 0, ReceiptState.DELIVERED, 0, 6001.0),
        ReceiptView("1-1", "acme", "DELIVRD", 0, ReceiptState.DROPPED, 0, 6002.0),
        ReceiptView("1-2", "acme", "DELIVRD", 0, ReceiptState.PENDING, 2, 5003.0),
    ]
    assert await store.count_receipts() == 1
    assert await store.count_receipts("acme") == 1
    assert await store.count_receipts("other") == 0


async def test_done_receipt_leaves_the_outbox_for_good(store: RedisStore) -> None:
    """A delivered receipt is never handed out again, is not counted, and its
    account no longer has receipts; its history line stays."""
    await store.accept(_msg(1))
    await store.due(5000.0, 10)
    await store.mark_final("1-0", "DELIVRD", 0, 5001.0, [_receipt("1-0")])
    (r,) = await store.receipts_for("acme", 6000.0, 10)
    await store.receipt_done([r.seq], 6000.5)
    assert await store.receipts_for("acme", 9000.0, 10) == []
    assert await store.accounts_with_receipts(9000.0) == []
    assert await store.count_receipts() == 0
    (view,) = await store.receipts_of("1-0")
    assert (view.state, view.at) == (ReceiptState.DELIVERED, 6000.5)
    await store.receipt_done([r.seq], 6009.0)  # a replay: already done, nothing changes
    assert await store.receipts_of("1-0") == [view]


async def test_receipt_of_another_account_shows_its_account(store: RedisStore) -> None:
    """A receipt addressed to another system_id than the message's own (added by part
    id) is listed under its message with that account."""
    await store.accept(_msg(1, parts=2))
    await store.add_receipts([_receipt("1-0", account="other")])
    (view,) = await store.receipts_of("1-1")
    assert (view.part_id, view.account, view.state) == ("1-0", "other",
                                                         ReceiptState.PENDING)


# --- retention ---------------------------------------------------------------------------

async def _ended(store: RedisStore, i: int, done_at: float, **kw: str) -> None:
    await store.accept(_message(i, account=kw.get("account", "acme"),
                                dest=kw.get("dest", "79001"), source="Shop",
                                at=done_at - 10.0, parts=2))
    await store.due(9e9, 10)
    await store.mark_sent(f"{i}-1", "sim", f"P{i}", "ENROUTE", done_at - 5.0)
    await store.mark_final(f"{i}-1", "DELIVRD", 0, done_at, [_receipt(f"{i}-0")])


async def _prefix_keys(raw: aioredis.Redis, prefix: str) -> set[str]:
    return {k.removeprefix(prefix) async for k in raw.scan_iter(match=prefix + "*")}


async def test_purge_removes_messages_ended_before_and_trims_every_index(
        store: RedisStore, raw: aioredis.Redis, prefix: str) -> None:
    """purge(ended_before) removes the messages that ended in a bucket wholly before
    ended_before — their keys, pending receipts and entries in all four search
    indexes — and keeps the younger ones and those not ended; it returns how many."""
    b = float(BUCKET_SECONDS)
    await _ended(store, 1, 0.5 * b)
    await _ended(store, 2, 1.99 * b, account="beta", dest="79002")
    await _ended(store, 3, 2.0 * b)
    await store.accept(_message(4, account="acme", dest="79001", source="Shop", at=1.0))
    assert await store.count_receipts() == 3
    assert await store.purge(2.5 * b, 100) == 2  # bucket 2 is not over before 2.5 b
    assert await store.timeline("1-1") == []
    assert await store.receipts_of("2-0") == []
    assert await store.find("2-0") is None
    assert await store.find_by_provider("sim", "P1") is None
    assert await store.count_receipts() == 1
    assert _ids(await store.search(MessageQuery())) == ["3-1", "4-0"]
    for key in ("ix:t", "ix:a:acme", "ix:a:beta", "ix:d:79001", "ix:d:79002", "ix:s:Shop"):
        members = set(await raw.zrange(prefix + key, 0, -1))
        assert not members & {"1-1", "2-1"}, key
    keys = await _prefix_keys(raw, prefix)
    assert not {k for k in keys if k.endswith(("1-0", "1-1", "2-0", "2-1"))}
    assert not {"ix:e:0", "ix:e:1"} & keys  # emptied buckets are gone
    assert await raw.zrange(prefix + "ix:ends", 0, -1) == ["2"]
    assert await store.purge(2.5 * b, 100) == 0
    assert await store.purge(3.0 * b, 100) == 1
    assert _ids(await store.search(MessageQuery())) == ["4-0"]


async def test_purge_takes_at_most_limit(store: RedisStore) -> None:
    """purge removes no more than ``limit`` messages a call; repeated calls finish."""
    for i in range(5):
        await _ended(store, i, 100.0 + i)
    assert await store.purge(1e6, 2) == 2
    assert await store.purge(1e6, 2) == 2
    assert await store.purge(1e6, 2) == 1
    assert await store.search(MessageQuery()) == MessagePage([], None)


async def test_purge_trims_indexes_of_messages_that_already_expired(
        store: RedisStore, raw: aioredis.Redis, prefix: str) -> None:
    """A message whose keys the TTL took before purge ran: search skips it, and purge
    still removes its entries from every index (the bucket names them)."""
    await _ended(store, 1, 100.0)
    await _ended(store, 2, 100.0)
    await raw.delete(prefix + "m:1-1")  # what final_ttl does
    assert _ids(await store.search(MessageQuery(destination="79001"))) == ["2-1"]
    assert await store.purge(1e6, 100) == 2
    for key in ("ix:t", "ix:a:acme", "ix:d:79001", "ix:s:Shop"):
        assert await raw.zcard(prefix + key) == 0, key


async def test_purge_keeps_a_message_stored_again_under_the_same_id(
        store: RedisStore, raw: aioredis.Redis, prefix: str) -> None:
    """A bucket entry whose id now names a message that is not final (the id was
    stored again after the first one expired) leaves that message alone."""
    await _ended(store, 1, 100.0)
    for key in await _prefix_keys(raw, prefix):
        if key.startswith(("m:", "pid:", "ix:t", "ix:a", "ix:d", "ix:s")):
            await raw.delete(prefix + key)
    await store.accept(_message(1, account="acme", dest="79001", source="Shop",
                                at=5000.0, parts=2))
    assert await store.purge(1e6, 100) == 1
    assert _ids(await store.search(MessageQuery())) == ["1-1"]


# --- no SCAN, on a private Redis -------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[str]:
    """A redis-server of this test's own (its INFO commandstats count only what the
    test does), without persistence, stopped afterwards."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is not on PATH (this test starts a private one)",
                    pytrace=False)
    port = _free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=DEADLINE)


async def _connect(url: str) -> aioredis.Redis:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            await client.ping()
            return client
        except RedisError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def _calls(client: aioredis.Redis, command: str) -> int:
    stats = await client.info("commandstats")
    entry = stats.get(f"cmdstat_{command}")
    return int(entry["calls"]) if entry else 0


@contextlib.asynccontextmanager
async def _opened(url: str) -> AsyncIterator[RedisStore]:
    s = RedisStore(url, prefix=f"p:{uuid.uuid4().hex}:", node_id="n")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def test_queries_among_many_unrelated_keys_never_scan(private_redis: str) -> None:
    """With 10,000 unrelated keys in the database, every history query (global,
    account, destination, source, state, provider, provider id, paging, timeline,
    receipts, purge, counts) runs without one SCAN or KEYS call; a SCAN the test makes
    itself is seen, so the check can fail."""
    client = await _connect(private_redis)
    try:
        async with client.pipeline(transaction=False) as pipe:
            for i in range(10_000):
                pipe.set(f"unrelated:{i}", "x")
            await pipe.execute()
        async with _opened(private_redis) as s:
            rows = await _seed(s, 30)
            await _ended(s, 900, 100.0)
            before = {c: await _calls(client, c) for c in ("scan", "keys", "evalsha")}
            queries = [cast(MessageQuery, q.values[0]) for q in FILTERS]
            for q in queries:
                await s.search(q)
            ended = Row("900-1", "acme", "79001", "Shop", 90.0, DeliveryState.FINAL,
                        "DELIVRD", "sim", "P900")
            assert await _all_pages(s, MessageQuery(limit=3)) == _expected(
                [*rows, ended], MessageQuery())
            await s.timeline("900-0")
            await s.receipts_of("900-1")
            await s.count_submitted("acme", 0.0)
            await s.count_receipts("acme")
            assert await s.purge(float(BUCKET_SECONDS), 100) == 1  # only 900-1 ended then
            after = {c: await _calls(client, c) for c in ("scan", "keys", "evalsha")}
        assert after["evalsha"] - before["evalsha"] > len(queries)
        assert (after["scan"], after["keys"]) == (before["scan"], before["keys"])
        await client.scan(0, match="unrelated:*", count=10)
        assert await _calls(client, "scan") == after["scan"] + 1
    finally:
        await client.aclose()

