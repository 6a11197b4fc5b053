"""The SQLite store's history: search (every filter and combination, order, cursor
pages, the index each search runs on) and timelines."""

from __future__ import annotations

import itertools
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from smppbridge.core.history import (
    Cursor,
    MessageQuery,
    TimelineEntry,
)
from smppbridge.core.records import (
    DeliveryState,
)
from smppbridge.store.sqlite.history import choose_index, search_sql
from smppbridge.store.sqlite.schema import MIGRATIONS
from smppbridge.store.sqlite.store import SqliteStore
from tests.store.sqlite.support import msg, page_ids, rec

# --- a varied population: every filter has several values ----------------------------

@dataclass(frozen=True)
class _Row:
    """What the test knows of a stored message (the oracle of the search tests)."""

    id: str
    account: str
    dest: str
    source: str
    state: DeliveryState
    stat: str
    provider: str
    provider_id: str
    at: float


async def _population(store: SqliteStore) -> list[_Row]:
    """36 messages: 3 accounts, 5 destinations, 2 sources, every state, 3 final stats, 2
    providers; submitted_at 1000 + i//2 (so every other pair ties, broken by id)."""
    rows = []
    for i in range(36):
        account = "abc"[i % 3]
        dest, source = f"7900{i % 5}", f"S{i % 2}"
        at = 1000.0 + i // 2
        mid = f"m{i:02d}"
        state = (DeliveryState.QUEUED, DeliveryState.SENT, DeliveryState.FINAL,
                 DeliveryState.FINAL)[i % 4]
        provider = ("p1", "p2")[i % 2] if state is not DeliveryState.QUEUED else ""
        pid = f"x{i}" if provider else ""
        stat = {DeliveryState.QUEUED: "", DeliveryState.SENT: "ENROUTE"}.get(
            state, ("DELIVRD", "UNDELIV", "EXPIRED")[i % 3])
        await store.accept(msg(mid, account=account, dest=dest, source=source, at=at))
        if provider:
            await store.mark_sent(mid, provider, pid, "ENROUTE", at + 1)
        if state is DeliveryState.FINAL:
            await store.mark_final(mid, stat, 0, at + 2)
        rows.append(_Row(mid, account, dest, source, state, stat, provider, pid, at))
    return rows


_FIELDS: dict[str, Callable[[_Row], Any]] = {
    "account": lambda r: r.account,
    "destination": lambda r: r.dest,
    "source": lambda r: r.source,
    "state": lambda r: r.state,
    "stat": lambda r: r.stat,
    "provider": lambda r: r.provider,
    "provider_id": lambda r: r.provider_id,
}
#: every filter alone, every pair of filters, and a few triples
_COMBOS = ([(f,) for f in _FIELDS] + list(itertools.combinations(_FIELDS, 2))
           + [("account", "destination", "state"), ("account", "source", "stat"),
              ("destination", "provider", "provider_id")])


def _expected(rows: list[_Row], match: Callable[[_Row], bool]) -> list[str]:
    """Ids of the matching rows, newest first, ties by id descending."""
    return [r.id for r in sorted(rows, key=lambda r: (r.at, r.id), reverse=True)
            if match(r)]


@pytest.mark.parametrize("combo", _COMBOS, ids=["+".join(c) for c in _COMBOS])
async def test_every_filter_and_combination_finds_exactly_its_messages(
        store: SqliteStore, combo: tuple[str, ...]) -> None:
    """A search with these filters (values of a sent, final or queued message, so that
    something matches) returns exactly the messages matching all of them, newest
    first, alone and within a time range (since ≤ submitted_at < until)."""
    rows = await _population(store)
    for pivot in (rows[2], rows[1], rows[0]):  # final, sent, queued
        values = {f: _FIELDS[f](pivot) for f in combo}
        if "" in values.values():
            continue  # a queued message has no provider or stat to look for
        query = MessageQuery(**values)

        def match(r: _Row, values: dict[str, Any] = values) -> bool:
            return all(_FIELDS[f](r) == v for f, v in values.items())

        want = _expected(rows, match)
        assert want  # the pivot itself matches
        assert page_ids((await store.search(query)).items) == want
        ranged = replace(query, since=1004.0, until=1012.0)
        assert page_ids((await store.search(ranged)).items) == _expected(
            rows, lambda r, m=match: m(r) and 1004.0 <= r.at < 1012.0)


async def test_time_range_alone_is_half_open(store: SqliteStore) -> None:
    """since is inclusive, until exclusive; no filter at all returns everything,
    newest first."""
    rows = await _population(store)
    page = await store.search(MessageQuery(since=1003.0, until=1005.0))
    assert page_ids(page.items) == ["m09", "m08", "m07", "m06"]
    everything = await store.search(MessageQuery(limit=1000))
    assert page_ids(everything.items) == _expected(rows, lambda r: True)
    assert everything.next is None


async def test_ties_on_submitted_at_are_broken_by_id_descending(store: SqliteStore) -> None:
    """Messages submitted at the same instant come newest id first, and a page boundary
    inside the tie loses or repeats none of them."""
    for mid in ("t3", "t1", "t5", "t2", "t4"):
        await store.accept(msg(mid, at=1000.0))
    await store.accept(msg("later", at=1001.0))
    page = await store.search(MessageQuery(limit=2))
    assert page_ids(page.items) == ["later", "t5"]
    assert page.next == Cursor(1000.0, "t5")
    page = await store.search(MessageQuery(limit=2, after=page.next))
    assert page_ids(page.items) == ["t4", "t3"]


@pytest.mark.parametrize("query", [
    MessageQuery(), MessageQuery(account="a"), MessageQuery(state=DeliveryState.FINAL),
    MessageQuery(since=1002.0, until=1014.0), MessageQuery(source="S1", since=1003.0),
], ids=["all", "account", "state", "time range", "source since"])
@pytest.mark.parametrize("limit", [1, 3, 4])
async def test_cursor_pages_return_every_message_exactly_once(
        store: SqliteStore, query: MessageQuery, limit: int) -> None:
    """Following ``next`` page by page (limit 1, 3, 4: pages that do and do not divide
    the result) yields the one-page result exactly, each message once, every page full
    but the last, and ``next`` None on the last page only."""
    await _population(store)
    whole = page_ids((await store.search(replace(query, limit=1000))).items)
    seen: list[str] = []
    page = await store.search(replace(query, limit=limit))
    while True:
        seen += page_ids(page.items)
        if page.next is None:
            break
        assert len(page.items) == limit
        assert page.next == Cursor(page.items[-1].message.submitted_at,
                                   page.items[-1].message.message_id)
        page = await store.search(replace(query, limit=limit, after=page.next))
    assert seen == whole
    assert len(set(seen)) == len(seen)


async def test_last_full_page_has_no_next(store: SqliteStore) -> None:
    """When the last page is exactly full, ``next`` is None (one more row is read to
    know), so a client never asks for an empty page."""
    for i in range(4):
        await store.accept(msg(f"n{i}", at=1000.0 + i))
    first = await store.search(MessageQuery(limit=2))
    assert first.next is not None
    second = await store.search(MessageQuery(limit=2, after=first.next))
    assert (page_ids(second.items), second.next) == (["n1", "n0"], None)


async def test_a_cursor_outside_the_time_range_is_bounded_by_it(store: SqliteStore) -> None:
    """A cursor newer than ``until`` does not widen the range, and one inside it
    continues from there: the tighter of the two bounds wins."""
    for i in range(6):
        await store.accept(msg(f"c{i}", at=1000.0 + i))
    newer = Cursor(2000.0, "zz")
    assert page_ids((await store.search(MessageQuery(until=1003.0, after=newer))).items) == [
        "c2", "c1", "c0"]
    inside = Cursor(1002.0, "c2")
    assert page_ids((await store.search(MessageQuery(until=1005.0, after=inside))).items) == [
        "c1", "c0"]


async def test_filter_values_are_data_not_sql(store: SqliteStore) -> None:
    """A filter value that looks like SQL matches only an address spelled that way."""
    await store.accept(msg("ok", dest="79001"))
    await store.accept(msg("odd", dest="' OR '1'='1"))
    assert page_ids((await store.search(MessageQuery(destination="' OR 1=1 --"))).items) == []
    assert page_ids((await store.search(MessageQuery(destination="' OR '1'='1"))).items) == [
        "odd"]


async def test_search_sees_every_acknowledged_write(store: SqliteStore) -> None:
    """Search reads on a connection of its own; a write that returned is already in
    what it reads (committed before it is acknowledged)."""
    for i in range(20):
        await store.accept(msg(f"w{i}", at=1000.0 + i))
        await store.mark_sent(f"w{i}", "p1", f"X{i}", "ENROUTE", 1001.0 + i)
        found = await store.search(MessageQuery(provider="p1", provider_id=f"X{i}"))
        assert [(m.message.message_id, m.state) for m in found.items] == [
            (f"w{i}", DeliveryState.SENT)]


async def test_memory_store_searches_too() -> None:
    """A ``:memory:`` store (one connection: reads run on the writer) searches alike."""
    s = SqliteStore(":memory:")
    await s.open()
    try:
        await s.accept(msg("m1", account="a"))
        assert page_ids((await s.search(MessageQuery(account="a"))).items) == ["m1"]
        assert [e.detail for e in await s.timeline("m1")] == ["accepted"]
    finally:
        await s.close()


# --- plans: every search is a range of one index ---------------------------------------

_DRIVING = [
    (MessageQuery(provider_id="x"), "messages_provider_id", "provider_id=?"),
    (MessageQuery(provider="p", provider_id="x", account="a"), "messages_provider_id",
     "provider_id=?"),
    (MessageQuery(destination="d", account="a"), "messages_dest", "dest=?"),
    (MessageQuery(source="s", state=DeliveryState.SENT), "messages_source", "source=?"),
    (MessageQuery(account="a", stat="DELIVRD"), "messages_account", "account=?"),
    (MessageQuery(stat="UNDELIV", provider="p"), "messages_stat", "stat=?"),
    # the stat index holds failures only: DELIVRD, most of any history, is checked on
    # the rows of a more selective index, or of the time index
    (MessageQuery(stat="DELIVRD", provider="p"), "messages_provider", "provider=?"),
    (MessageQuery(stat="DELIVRD", since=1.0), "messages_time", "submitted_at>?"),
    # ENROUTE and ACCEPTD are never final: the few messages not final hold them
    (MessageQuery(stat="ENROUTE"), "messages_state", "state=?"),
    (MessageQuery(state=DeliveryState.QUEUED), "messages_state", "state=?"),
    # the state index holds only messages not final
    (MessageQuery(state=DeliveryState.FINAL, since=1.0), "messages_time",
     "submitted_at>?"),
    (MessageQuery(provider="p"), "messages_provider", "provider=?"),
    (MessageQuery(since=1.0, until=2.0), "messages_time", "submitted_at>?"),
]


@pytest.mark.parametrize(("query", "index", "constraint"), _DRIVING,
                         ids=[d[1] + "-" + str(i) for i, d in enumerate(_DRIVING)])
@pytest.mark.parametrize("page", ["first", "deep"])
def test_each_search_is_a_range_of_one_index(tmp_path: Path, query: MessageQuery,
                                             index: str, constraint: str,
                                             page: str) -> None:
    """The most selective filter picks the index, the plan seeks into it (no scan of
    the table, no sort but for a provider id's few rows), and a deep page seeks to its
    cursor within the same range."""
    db = sqlite3.connect(str(tmp_path / "p.db"))
    for v in sorted(MIGRATIONS):
        db.executescript(MIGRATIONS[v])
    if page == "deep":
        query = replace(query, until=5.0, after=Cursor(3.0, "x"))
    sql, params = search_sql(query)
    plan = [r[3] for r in db.execute("EXPLAIN QUERY PLAN " + sql, params)]
    assert choose_index(query) == index
    assert plan[0].startswith(f"SEARCH messages USING INDEX {index} (")
    assert constraint in plan[0]
    if page == "deep" and index != "messages_provider_id":
        assert "(submitted_at,id)<(?,?)" in plan[0]
    sorts = [p for p in plan if "TEMP B-TREE" in p]
    assert sorts == ([] if index != "messages_provider_id" else ["USE TEMP B-TREE FOR ORDER BY"])


# --- timelines --------------------------------------------------------------------------

async def test_timeline_of_a_retried_sent_statused_final_message(store: SqliteStore) -> None:
    """A message retried, sent, given an intermediate status and a final one has one
    entry for each, oldest first: accepted (queued), the retry with its words, ``sent
    to <provider> as <id>`` (ENROUTE), the status (still sent), the final status with
    where it came from."""
    await store.accept(msg("t1", at=1000.0))
    before = time.time()
    await store.mark_retry("t1", 1010.0, 1, "retry 1: provider unavailable")
    after = time.time()
    assert [m.message.message_id for m in await store.due(1010.0, 10)] == ["t1"]
    await store.mark_sent("t1", "sim", "P1", "ENROUTE", 1020.0)
    await store.record_status("t1", "ACCEPTD", 0, 1030.0, "status from webhook")
    await store.mark_final("t1", "UNDELIV", 11, 1040.0, detail="status from poll")
    timeline = await store.timeline("t1")
    assert [(e.state, e.stat, e.err, e.detail) for e in timeline] == [
        ("queued", "", 0, "accepted"),
        ("queued", "", 0, "retry 1: provider unavailable"),
        ("sent", "ENROUTE", 0, "sent to sim as P1"),
        ("sent", "ACCEPTD", 0, "status from webhook"),
        ("final", "UNDELIV", 11, "status from poll"),
    ]
    assert [e.at for e in timeline[2:]] == [1020.0, 1030.0, 1040.0]
    assert timeline[0].at == 1000.0
    # mark_retry takes no time of its own: the entry has the store's clock
    assert before <= timeline[1].at <= after
    found = await store.find("t1")
    assert found is not None
    assert (found.state, found.stat, found.attempts) == (DeliveryState.FINAL, "UNDELIV", 2)


async def test_entries_keep_their_order_when_times_tie(store: SqliteStore) -> None:
    """Entries written at the same instant (a fake clock) keep the order the message
    went through, retries and statuses in the order written."""
    await store.accept(msg("t2", at=1000.0))
    await store.mark_retry("t2", 1000.0, 1, "retry 1: a")
    await store.mark_retry("t2", 1000.0, 2, "retry 2: b")
    await store.mark_sent("t2", "sim", "P2", "ENROUTE", 1000.0)
    await store.record_status("t2", "ENROUTE", 0, 1000.0, "status from poll")
    await store.record_status("t2", "ACCEPTD", 0, 1000.0, "status from webhook")
    await store.mark_final("t2", "DELIVRD", 0, 1000.0, detail="status from poll")
    assert [e.detail for e in await store.timeline("t2")] == [
        "accepted", "retry 1: a", "retry 2: b", "sent to sim as P2", "status from poll",
        "status from webhook", "status from poll"]


async def test_any_part_id_finds_the_timeline_of_its_message(store: SqliteStore) -> None:
    """A long message's timeline is found by its own id and by each part id."""
    await store.accept(msg("L", parts=3, at=1000.0))
    await store.mark_sent("L-2", "sim", "P9", "ENROUTE", 1001.0)
    whole = await store.timeline("L-2")
    assert [e.detail for e in whole] == ["accepted", "sent to sim as P9"]
    assert await store.timeline("L-0") == whole
    assert await store.timeline("L-1") == whole


async def test_a_message_stored_final_has_one_entry(store: SqliteStore) -> None:
    """A message accepted already final (refused after a partial ack) has one entry:
    accepted, in state final with its stat and err."""
    m = msg("R", parts=2, at=1000.0)
    await store.accept(m, [rec("R-0", stat="REJECTD")], final_stat="REJECTD", final_err=69)
    assert await store.timeline("R-0") == [
        TimelineEntry(1000.0, "final", "REJECTD", 69, "accepted")]


async def test_timeline_of_an_unknown_id_is_empty(store: SqliteStore) -> None:
    """No message, no timeline."""
    assert await store.timeline("nope") == []


async def test_status_of_a_final_message_is_not_recorded(store: SqliteStore) -> None:
    """An intermediate status after the final one (a late poll) adds no entry and no
    receipt: an ENROUTE receipt after the final one would mislead the ESME."""
    await store.accept(msg("f1"))
    await store.mark_sent("f1", "sim", "P", "ENROUTE", 1001.0)
    await store.mark_final("f1", "DELIVRD", 0, 1002.0, detail="status from poll")
    await store.record_status("f1", "ENROUTE", 0, 1003.0, "status from poll",
                              [rec("f1", stat="ENROUTE")])
    assert [e.state for e in await store.timeline("f1")] == ["queued", "sent", "final"]
    assert await store.count_receipts() == 0


async def test_a_retry_of_a_message_no_longer_queued_changes_nothing(
        store: SqliteStore) -> None:
    """mark_retry of a sent message (a send that crashed after its write) leaves the
    message and its timeline as they are."""
    await store.accept(msg("s1"))
    await store.mark_sent("s1", "sim", "P", "ENROUTE", 1001.0)
    await store.mark_retry("s1", 5000.0, 3, "retry 3: crashed")
    found = await store.find("s1")
    assert found is not None
    assert (found.state, found.attempts) == (DeliveryState.SENT, 1)
    assert [e.detail for e in await store.timeline("s1")] == ["accepted", "sent to sim as P"]


async def test_final_status_keeps_its_first_detail(store: SqliteStore) -> None:
    """A second final status (a duplicate webhook) changes neither the final entry nor
    the provider the message was sent to."""
    await store.accept(msg("d1"))
    await store.mark_sent("d1", "sim", "P", "ENROUTE", 1001.0)
    await store.mark_final("d1", "DELIVRD", 0, 1002.0, detail="status from webhook")
    await store.mark_final("d1", "UNDELIV", 1, 1003.0, provider="other", provider_id="Q",
                           detail="status from poll")
    assert (await store.timeline("d1"))[-2:] == [
        TimelineEntry(1001.0, "sent", "ENROUTE", 0, "sent to sim as P"),
        TimelineEntry(1002.0, "final", "DELIVRD", 0, "status from webhook")]
