"""The Redis store against a real Redis: the SQLite store's contract, plus what a cluster
adds — work shared by consumer group, a dead node's work claimed, receipts leased,
outages reported as StoreUnavailable and recovered from.

Redis is expected at 127.0.0.1:6379 (``SMPPBRIDGE_TEST_REDIS`` overrides the URL); CI
starts one, and without it these tests fail rather than skip. Each test works under its
own random key prefix in DB 15 and deletes its keys afterwards (fixtures in conftest.py).
The message history (timeline, receipts, search, purge) is tested in test_history.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest
import redis.asyncio as aioredis

from smppbridge.core.errors import StoreUnavailable
from smppbridge.core.message import Address
from smppbridge.core.records import DeliveryState, PartRecord
from smppbridge.store.redis import store as redis_store
from smppbridge.store.redis.store import MessageExists, RedisStore
from smppbridge.text.content import Content, Kind
from tests.store.redis.support import REDIS_URL, StoreFactory
from tests.store.samples import sample_message, sample_receipt

#: upper bound for anything that waits on real time (claims, reconnects)
DEADLINE = 10.0


_msg = sample_message
_receipt = sample_receipt


async def _poll(probe: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait, with a deadline, until ``probe`` holds."""
    deadline = time.monotonic() + DEADLINE
    while not await probe():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


# --- the SQLite store's contract ---------------------------------------------------------

async def test_accepted_message_survives_a_new_client(make_store: StoreFactory) -> None:
    """A message accepted, then the store closed, is found whole by a new instance."""
    s = await make_store()
    await s.accept(_msg(1, parts=3))
    await s.close()
    s2 = await make_store()
    found = await s2.find("1-0")  # any part id finds the message
    assert found is not None
    assert found.message == _msg(1, parts=3)
    assert found.state is DeliveryState.QUEUED


async def test_concurrent_accepts_share_round_trips(store: RedisStore) -> None:
    """Hundreds of concurrent accepts travel in far fewer pipelines (group commit)."""
    before = store.round_trips
    await asyncio.gather(*(store.accept(_msg(i)) for i in range(500)))
    assert await store.count(DeliveryState.QUEUED) == 500
    assert store.round_trips - before < 20


async def test_batch_operations_of_the_store_contract(store: RedisStore) -> None:
    """accept_many, mark_sent_many and mark_final_many (the Store contract's batch
    operations) store and change every message of the batch in a few round trips; the
    store claims nothing on accept (due returns the batch) and leases no receipt."""
    assert store.claims_on_accept is False
    batch = [_msg(i) for i in range(1, 101)]
    before = store.round_trips
    assert await store.accept_many(batch, claim=True) == [None] * 100
    assert store.round_trips - before < 10
    due = await store.due(5000.0, 200)
    assert sorted(d.message.message_id for d in due) == sorted(m.message_id for m in batch)
    sent = [(m.message_id, "sim", f"P{i}", "ENROUTE", 1.0, [_receipt(m.message_id)])
            for i, m in enumerate(batch)]
    assert await store.mark_sent_many(sent, lease=True) == []
    assert await store.count(DeliveryState.SENT) == 100
    found = await store.find_by_provider("sim", "P7")
    assert found is not None
    assert found.state is DeliveryState.SENT
    finals = [(m.message_id, "DELIVRD", 0, 2.0, [_receipt(m.message_id)], "status from poll")
              for m in batch]
    assert await store.mark_final_many(finals, lease=True) == []
    assert await store.count(DeliveryState.SENT) == 0
    final = await store.find(batch[0].message_id)
    assert final is not None
    assert (final.state, final.stat) == (DeliveryState.FINAL, "DELIVRD")
    assert len(await store.receipts_for("acme", 5000.0, 1000)) == 200


async def test_accept_many_answers_each_message(store: RedisStore) -> None:
    """A message of a batch that cannot be stored (its id exists) gets its own error;
    the others of the batch are stored."""
    await store.accept(_msg(2))
    outcomes = await store.accept_many([_msg(1), _msg(2), _msg(3)])
    assert outcomes[0] is None
    assert outcomes[2] is None
    assert isinstance(outcomes[1], Exception)
    assert await store.find("3-0") is not None


async def test_failed_op_does_not_sink_its_batch(store: RedisStore) -> None:
    """A duplicate id fails alone (MessageExists); the rest of its pipeline is applied."""
    await store.accept(_msg(1))
    results = await asyncio.gather(store.accept(_msg(1)), store.accept(_msg(2)),
                                   return_exceptions=True)
    assert isinstance(results[0], MessageExists)
    assert results[1] is None
    assert await store.find("2-0") is not None


async def test_reserved_ids_never_repeat_across_nodes_and_restarts(
        make_store: StoreFactory) -> None:
    """Id blocks from concurrent nodes, and from a node after a restart, never overlap."""
    a, b = await make_store(), await make_store()
    firsts = await asyncio.gather(*(s.reserve_ids(100) for s in [a, b] * 20))
    await a.close()
    a = await make_store()
    firsts.append(await a.reserve_ids(100))
    ids = [n for first in firsts for n in range(first, first + 100)]
    assert len(ids) == len(set(ids)) == 4100
    assert min(ids) == 1


async def test_due_sent_final_lifecycle(store: RedisStore, raw: aioredis.Redis,
                                        prefix: str) -> None:
    """queued → due → sent (found by provider id) → final, with its timeline; finishing
    a message removes it from the work stream."""
    await store.accept(_msg(1))
    (due,) = await store.due(now=5000.0, limit=10)
    assert due.message.message_id == "1-0"
    await store.mark_sent("1-0", "sim", "P1", "ENROUTE", 5001.0)
    assert await store.due(now=5000.0, limit=10) == []
    sent = await store.find_by_provider("sim", "P1")
    assert sent is not None
    assert (sent.state, sent.attempts, sent.stat) == (DeliveryState.SENT, 1, "ENROUTE")
    assert [m.message.message_id for m in await store.in_flight()] == ["1-0"]
    await store.mark_final("1-0", "DELIVRD", 0, 5002.0, receipts=[_receipt("1-0")])
    await store.mark_final("1-0", "UNDELIV", 1, 5003.0, receipts=[_receipt("1-0")])
    final = await store.find("1-0")
    assert final is not None
    assert (final.state, final.stat, final.done_at) == (DeliveryState.FINAL, "DELIVRD", 5002.0)
    # the second final status is ignored, and so is its receipt
    assert len(await store.receipts_for("acme", 9000.0, 10)) == 1
    assert [e.state for e in await store.timeline("1-0")] == ["queued", "sent", "final"]
    assert await store.in_flight() == []
    assert await raw.xlen(prefix + "work") == 0
    assert await store.count(DeliveryState.FINAL) == 1


async def test_scheduled_message_waits(store: RedisStore) -> None:
    """A message with a schedule time is not due before it."""
    await store.accept(replace(_msg(1), schedule_at=3000.0))
    assert await store.due(now=2999.0, limit=10) == []
    (due,) = await store.due(now=3000.0, limit=10)
    assert due.next_at == 3000.0


async def test_retry_moves_next_attempt(store: RedisStore) -> None:
    """mark_retry hides a message until its next attempt time."""
    await store.accept(_msg(1))
    await store.due(now=5000.0, limit=10)
    await store.mark_retry("1-0", next_at=6000.0, attempts=1)
    assert await store.due(now=5999.0, limit=10) == []
    (due,) = await store.due(now=6000.0, limit=10)
    assert due.attempts == 1


async def test_due_takes_messages_until_retry(store: RedisStore) -> None:
    """A message returned by due() is not returned again while it is being sent; a
    retry releases it; due honours its limit and returns the oldest first."""
    for i in range(3):
        await store.accept(_msg(i))
    assert [m.message.message_id for m in await store.due(5000.0, 2)] == ["0-0", "1-0"]
    assert [m.message.message_id for m in await store.due(5000.0, 10)] == ["2-0"]
    assert await store.due(5000.0, 10) == []
    await store.mark_retry("1-0", next_at=5000.0, attempts=1)
    assert [m.message.message_id for m in await store.due(5000.0, 10)] == ["1-0"]


async def test_parts_kept_until_message_whole(store: RedisStore) -> None:
    """Parts are durable until their message is accepted, then dropped."""
    for p in range(2):
        await store.save_part(PartRecord(f"1-{p}", "acme", "k", b"\x01\x02", 10.0 + p))
    assert [p.part_id for p in await store.load_parts()] == ["1-0", "1-1"]
    (first, _) = await store.load_parts()
    assert first == PartRecord("1-0", "acme", "k", b"\x01\x02", 10.0)
    await store.accept(_msg(1, parts=3))
    assert await store.load_parts() == []


async def test_failed_parts_leave_receipts(store: RedisStore) -> None:
    """fail_parts drops the parts and stores their REJECTD receipts in one step."""
    await store.save_part(PartRecord("9-0", "acme", "k", b"x", 1.0))
    await store.fail_parts(["9-0"], [_receipt("9-0")])
    assert await store.load_parts() == []
    (r,) = await store.receipts_for("acme", 100.0, 10)
    assert r.message_id == "9-0"


async def test_receipts_in_order_per_account_with_retry_and_expiry(store: RedisStore) -> None:
    """Receipts come back per account in creation order; retry defers; TTL expires."""
    await store.add_receipts([_receipt("a"), _receipt("b"), _receipt("x", account="other"),
                              _receipt("old", expire_at=50.0)])
    assert await store.count_receipts() == 4
    assert await store.expire_receipts(now=100.0) == 1
    got = await store.receipts_for("acme", 100.0, 10)
    assert [r.message_id for r in got] == ["a", "b"]
    assert got[0] == replace(_receipt("a"), seq=got[0].seq)
    await store.receipt_retry(got[0].seq, next_at=200.0, attempts=1)
    # "b" was neither done nor retried: its 30 s lease ran out at 130
    assert [r.message_id for r in await store.receipts_for("acme", 150.0, 10)] == ["b"]
    await store.receipt_done([got[1].seq], 150.0)
    assert sorted(await store.accounts_with_receipts(300.0)) == ["acme", "other"]
    (again,) = await store.receipts_for("acme", 300.0, 10)
    assert (again.message_id, again.attempts) == ("a", 1)
    assert await store.count_receipts() == 2


async def test_retried_receipt_keeps_its_place_in_line(store: RedisStore) -> None:
    """A retried receipt, once due again, comes before receipts created after it."""
    await store.add_receipts([_receipt("a")])
    (a,) = await store.receipts_for("acme", 100.0, 10)
    await store.receipt_retry(a.seq, next_at=110.0, attempts=1)
    await store.add_receipts([_receipt("b")])
    assert [r.message_id for r in await store.receipts_for("acme", 120.0, 10)] == ["a", "b"]


async def test_any_text_round_trips(store: RedisStore) -> None:
    """Non-ASCII fields, emoji and a lone surrogate (a broken UCS2 pair) come back as
    they went in, through due() and find() alike."""
    m = replace(_msg(1), source=Address("Café ☕", 5, 0),
                content=Content(Kind.SMS, "привет 😀 \ud83d \"q\" \\ / \x00"),
                extra={"k": "v\u20ac"}, service_type="ü")
    await store.accept(m)
    (due,) = await store.due(5000.0, 10)
    found = await store.find("1-0")
    assert due.message == m
    assert found is not None
    assert found.message == m


async def test_history_is_capped(make_store: StoreFactory) -> None:
    """Only the last ``history_cap`` notes (retries, intermediate statuses) of a message
    are kept; accepted, sent and final, derived from the message itself, always are."""
    s = await make_store(history_cap=2)
    await s.accept(_msg(1))
    for attempt in range(1, 4):
        await s.mark_retry("1-0", 1000.0, attempt, f"retry {attempt}")
    await s.due(5000.0, 10)
    await s.mark_sent("1-0", "sim", "P1", "ENROUTE", 1.0)
    await s.mark_final("1-0", "DELIVRD", 0, 2.0)
    assert [e.detail for e in await s.timeline("1-0")] == [
        "accepted", "retry 2", "retry 3", "sent to sim as P1", ""]


async def test_ready(store: RedisStore) -> None:
    """ready() is True on an open store."""
    assert await store.ready()


# --- what the cluster adds ----------------------------------------------------------------

async def test_two_nodes_never_get_the_same_message(make_store: StoreFactory) -> None:
    """Nodes reading the work stream at once split it: each message goes to one node."""
    a, b = await make_store(), await make_store()
    await asyncio.gather(*(a.accept(_msg(i)) for i in range(300)))
    taken: dict[str, list[str]] = {"a": [], "b": []}

    async def drain(name: str, s: RedisStore) -> None:
        while batch := await s.due(5000.0, 7):
            taken[name] += [m.message.message_id for m in batch]

    await asyncio.gather(drain("a", a), drain("b", b), drain("a", a), drain("b", b))
    assert taken["a"]
    assert taken["b"]
    assert not set(taken["a"]) & set(taken["b"])
    assert sorted(taken["a"] + taken["b"]) == sorted(f"{i}-0" for i in range(300))


async def test_dead_nodes_message_is_claimed_by_another(make_store: StoreFactory) -> None:
    """A node that took a message and died without finishing it: after claim_after
    another node takes the message over, with its data intact."""
    a = await make_store(claim_after=0.5)
    b = await make_store(claim_after=0.5)
    await a.accept(_msg(1))
    (taken,) = await a.due(5000.0, 10)
    await a.close()  # dies: nothing acknowledged, nothing touched any more
    assert await b.due(5000.0, 10) == []  # not yet idle for claim_after
    claimed: list[Any] = []

    async def b_claims() -> bool:
        claimed.extend(await b.due(5000.0, 10))
        return bool(claimed)

    await _poll(b_claims, "node b to claim node a's message")
    assert claimed == [taken]
    await b.mark_sent("1-0", "sim", "P1", "ENROUTE", 5001.0)
    found = await b.find("1-0")
    assert found is not None
    assert found.state is DeliveryState.SENT


async def test_live_node_keeps_the_messages_it_works_on(make_store: StoreFactory) -> None:
    """A live node's heartbeat keeps its taken messages from looking idle: no other node
    claims them, however long the send takes."""
    a = await make_store(claim_after=0.4)
    b = await make_store(claim_after=0.4)
    await a.accept(_msg(1))
    assert len(await a.due(5000.0, 10)) == 1
    deadline = time.monotonic() + 3 * 0.4
    while time.monotonic() < deadline:
        assert await b.due(5000.0, 10) == []
        await asyncio.sleep(0.02)
    await a.mark_sent("1-0", "sim", "P1", "ENROUTE", 5001.0)
    assert await b.due(5000.0, 10) == []


async def test_consumers_of_nodes_long_gone_are_forgotten(
        make_store: StoreFactory, raw: aioredis.Redis, prefix: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Restarted processes are new consumers; the heartbeat deletes old consumers with
    nothing pending, and keeps any that still hold work (it will be claimed)."""
    monkeypatch.setattr(redis_store, "_STALE_CONSUMER_MS", -1)
    holder = await make_store(node_id="holder")
    idle = await make_store(node_id="idle")
    await holder.accept(_msg(1))
    assert len(await holder.due(5000.0, 10)) == 1
    assert await idle.due(5000.0, 10) == []
    await holder.close()
    await idle.close()
    await make_store(node_id="sweeper", claim_after=0.2)

    async def names() -> set[str]:
        info = await raw.xinfo_consumers(prefix + "work", "senders")
        return {c["name"] for c in info}

    async def swept() -> bool:
        return "idle" not in await names()

    await _poll(swept, "the idle consumer to be deleted")
    assert "holder" in await names()


async def test_receipt_lease_keeps_other_nodes_off(make_store: StoreFactory) -> None:
    """Receipts taken by one node are hidden from the others until the lease runs out
    (the node died) — then any node delivers them."""
    a = await make_store(receipt_lease=60.0)
    b = await make_store(receipt_lease=60.0)
    await a.add_receipts([_receipt("r1"), _receipt("r2")])
    taken, other = await asyncio.gather(a.receipts_for("acme", 100.0, 10),
                                        b.receipts_for("acme", 100.0, 10))
    assert sorted(r.message_id for r in taken + other) == ["r1", "r2"]
    assert not {r.seq for r in taken} & {r.seq for r in other}
    assert await b.receipts_for("acme", 159.0, 10) == []
    assert await b.accounts_with_receipts(159.0) == []
    assert await b.accounts_with_receipts(160.0) == ["acme"]
    assert [r.message_id for r in await b.receipts_for("acme", 160.0, 10)] == ["r1", "r2"]


async def test_cancelled_message_leaves_the_work_queue(store: RedisStore, raw: aioredis.Redis,
                                                       prefix: str) -> None:
    """A queued (or scheduled) message made final is never handed to a sender."""
    await store.accept(_msg(1))
    await store.accept(replace(_msg(2), schedule_at=3000.0))
    await store.mark_final("1-0", "DELETED", 0, 100.0)
    await store.mark_final("2-0", "DELETED", 0, 100.0)
    assert await store.due(5000.0, 10) == []
    assert await raw.xlen(prefix + "work") == 0
    assert await store.count(DeliveryState.QUEUED) == 0


async def test_send_racing_a_cancel_stays_final(store: RedisStore) -> None:
    """mark_sent after another node finalised the message keeps it final (no second
    final receipt later) but records the provider id, so statuses still find it."""
    await store.accept(_msg(1))
    await store.due(5000.0, 10)
    await store.mark_final("1-0", "DELETED", 0, 5001.0)
    await store.mark_sent("1-0", "sim", "P9", "ENROUTE", 5002.0, receipts=[_receipt("1-0")])
    found = await store.find_by_provider("sim", "P9")
    assert found is not None
    assert (found.state, found.stat) == (DeliveryState.FINAL, "DELETED")
    assert await store.receipts_for("acme", 9000.0, 10) == []
    assert await store.in_flight() == []


async def test_final_message_expires_with_its_indexes(make_store: StoreFactory,
                                                      raw: aioredis.Redis,
                                                      prefix: str) -> None:
    """Once final, the message hash, its timeline notes and its part/provider indexes
    get the final_ttl expiry; a queued message has none."""
    s = await make_store(final_ttl=3600)
    await s.accept(_msg(1, parts=2))
    assert await raw.ttl(prefix + "m:1-1") == -1
    await s.due(5000.0, 10)
    await s.mark_retry("1-1", 0.0, 1, "retry 1: busy")  # a note: h:1-1 exists
    await s.due(5000.0, 10)
    await s.mark_sent("1-1", "sim", "P1", "ENROUTE", 5001.0)
    await s.mark_final("1-1", "DELIVRD", 0, 5002.0)
    for key in ["m:1-1", "h:1-1", "pid:1-0", "pid:1-1", "prov:sim:P1"]:
        assert 3500 < await raw.ttl(prefix + key) <= 3600, key


async def test_message_refused_after_partial_ack_is_stored_final(store: RedisStore) -> None:
    """accept with final_stat stores the message final, with its receipts, not queued."""
    await store.accept(_msg(1), [_receipt("1-0")], final_stat="REJECTD", final_err=11)
    found = await store.find("1-0")
    assert found is not None
    assert (found.state, found.stat, found.err, found.done_at) == (
        DeliveryState.FINAL, "REJECTD", 11, 1001.0)
    assert await store.due(5000.0, 10) == []
    assert len(await store.receipts_for("acme", 5000.0, 10)) == 1


async def test_provider_index_is_unambiguous(store: RedisStore) -> None:
    """("a:b", "c") and ("a", "b:c") are two different provider ids."""
    await store.accept(_msg(1))
    await store.accept(_msg(2))
    await store.mark_sent("1-0", "a:b", "c", "ENROUTE", 1.0)
    await store.mark_sent("2-0", "a", "b:c", "ENROUTE", 1.0)
    one, two = (await store.find_by_provider("a:b", "c"),
                await store.find_by_provider("a", "b:c"))
    assert one is not None
    assert two is not None
    assert (one.message.message_id, two.message.message_id) == ("1-0", "2-0")


async def test_replayed_writes_apply_once(store: RedisStore,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A write re-sent with the same token (redis-py retrying a pipeline whose reply was
    lost) is a no-op: no duplicate-id error, no second attempt, no second receipt."""
    monkeypatch.setattr(redis_store, "token", lambda: "same-token")
    await store.accept(_msg(1))
    await store.accept(_msg(1))  # the replay
    await store.mark_sent("1-0", "sim", "P1", "ENROUTE", 1.0, receipts=[_receipt("1-0")])
    await store.mark_sent("1-0", "sim", "P1", "ENROUTE", 1.0, receipts=[_receipt("1-0")])
    found = await store.find("1-0")
    assert found is not None
    assert found.attempts == 1
    assert len(await store.receipts_for("acme", 5.0, 10)) == 1
    await store.add_receipts([_receipt("x")])
    await store.add_receipts([_receipt("x")])
    assert len(await store.receipts_for("acme", 5.0, 10)) == 1


async def test_scripts_are_reloaded_after_redis_forgets_them(store: RedisStore,
                                                             raw: aioredis.Redis) -> None:
    """After a Redis restart (or SCRIPT FLUSH) the store loads its scripts again."""
    await raw.script_flush()
    await store.accept(_msg(1))
    assert await store.find("1-0") is not None


async def test_work_survives_a_lost_stream(store: RedisStore, raw: aioredis.Redis,
                                           prefix: str) -> None:
    """If the work stream and its group vanish (Redis restarted without persistence),
    due() recreates the group and keeps serving new work."""
    await raw.delete(prefix + "work")
    assert await store.due(5000.0, 10) == []
    await store.accept(_msg(1))
    assert len(await store.due(5000.0, 10)) == 1


async def test_from_url_options() -> None:
    """Store options ride in the URL's query; the rest of the URL goes to redis-py."""
    s = RedisStore.from_url("redis://127.0.0.1:6379/3?prefix=sb%3A&node_id=n1"
                            "&claim_after=5&final_ttl=60&receipt_lease=9&min_replicas=1"
                            "&history_days=2.5")
    assert (s.url, s.prefix, s.node_id, s.claim_after, s.final_ttl, s.receipt_lease,
            s.min_replicas, s.history_days) == (
        "redis://127.0.0.1:6379/3", "sb:", "n1", 5.0, 60.0, 9.0, 1, 2.5)


def test_from_url_takes_history_days_from_the_config() -> None:
    """from_url's history_days (the config's [store] history_days) applies unless the
    URL names one."""
    assert RedisStore.from_url("redis://h/1", history_days=3).history_days == 3.0
    assert RedisStore.from_url("redis://h/1?history_days=2", history_days=3
                               ).history_days == 2.0
    assert RedisStore.from_url("redis://h/1").history_days == 7.0


def test_final_ttl_follows_history_days() -> None:
    """Without an explicit final_ttl a final message's keys live history_days plus an
    hour (purge removes them first; the TTL bounds memory when nothing purges)."""
    assert RedisStore(history_days=2.0).final_ttl == 2 * 86400 + 3600
    assert RedisStore(history_days=2.0, final_ttl=60).final_ttl == 60
    with pytest.raises(ValueError, match="history_days"):
        RedisStore(history_days=0)


# --- outages --------------------------------------------------------------------------------

class _Proxy:
    """A TCP relay to Redis that the test can cut and restore (a Redis outage)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for w in list(self._writers):
            w.close()
        await self._server.wait_closed()
        self._server = None

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.close()
                with contextlib.suppress(ConnectionError):
                    await w.wait_closed()


async def test_unreachable_redis_raises_store_unavailable(make_store: StoreFactory) -> None:
    """Opening a store whose Redis cannot be reached raises StoreUnavailable."""
    proxy = _Proxy(("127.0.0.1", 6379))
    await proxy.start()
    port = proxy.port
    await proxy.cut()  # a port nobody listens on
    with pytest.raises(StoreUnavailable):
        await make_store(url=f"redis://127.0.0.1:{port}/15", retries=1,
                         connect_timeout=0.5)


async def test_outage_raises_then_the_store_resumes(make_store: StoreFactory) -> None:
    """While Redis is unreachable every call raises StoreUnavailable and ready() is
    False; once it is back the same store instance reconnects by itself."""
    host, port, db = "127.0.0.1", 6379, REDIS_URL.rsplit("/", 1)[-1]
    proxy = _Proxy((host, port))
    await proxy.start()
    s = await make_store(url=f"redis://127.0.0.1:{proxy.port}/{db}", retries=2,
                         connect_timeout=0.5, socket_timeout=1.0)
    try:
        await s.accept(_msg(1))
        await proxy.cut()
        with pytest.raises(StoreUnavailable):
            await s.accept(_msg(2))
        assert not await s.ready()
        with pytest.raises(StoreUnavailable):
            await s.due(5000.0, 10)
        await proxy.start()  # the same port again

        async def back() -> bool:
            return await s.ready()

        await _poll(back, "the store to reconnect")
        await s.accept(_msg(2))
        assert {m.message.message_id for m in await s.due(5000.0, 10)} == {"1-0", "2-0"}
    finally:
        await s.close()
        if proxy._server is not None:
            await proxy.cut()


async def test_missing_replicas_fail_durable_writes(make_store: StoreFactory) -> None:
    """With min_replicas, a write no replica acknowledged in time raises
    StoreUnavailable (the ESME retries) instead of being acknowledged."""
    s = await make_store(min_replicas=1, replica_timeout=0.05)
    with pytest.raises(StoreUnavailable, match="replicas"):
        await s.accept(_msg(1))


async def test_oldest_queued_is_the_oldest_message_waiting(store: RedisStore) -> None:
    """oldest_queued gives the submit time of the first message waiting in the work
    stream (or waiting for a time), None when nothing waits."""
    assert await store.oldest_queued() is None
    await store.accept(_msg(1))
    await store.accept(_msg(2))
    assert await store.oldest_queued() == _msg(1).submitted_at
    taken = await store.due(5000.0, 10)
    for t in taken:
        await store.mark_final(t.message.message_id, "DELIVRD", 0, 5000.0)
    assert await store.oldest_queued() is None
