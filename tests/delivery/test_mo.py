"""The MO intake (delivery/mo.py) on a real SQLite store: what it writes for each
account setting, an unroutable MO, a store error, and a long MO's later parts."""

from __future__ import annotations

import pytest

from smppbridge.core.accounts import Account
from smppbridge.core.errors import StoreUnavailable
from smppbridge.core.message import Address
from smppbridge.core.mo import InboundMo, MoRoute
from smppbridge.delivery.mo import MoIntake
from smppbridge.observability.metrics import METRICS
from smppbridge.store.sqlite.store import SqliteStore

ACCOUNTS = {
    "both": Account("both", "pw", mo="both", mo_url="https://crm.example/mo"),
    "smpp": Account("smpp", "pw", mo_parts="parts"),
}
ROUTES = (MoRoute("both", to=frozenset({"1"})),
          MoRoute("smpp", prefixes=("2",), keywords=frozenset({"GO"})))


def _mo(to: str, text: str, concat: tuple[int, int, int] | None = None) -> InboundMo:
    return InboundMo(provider="up", source=Address("79001112233", 1, 1),
                     destination=Address(to), data_coding=0, payload=text.encode(),
                     text=text, received_at=1000.0, concat=concat)


def _intake(store: SqliteStore, added: list[str]) -> MoIntake:
    return MoIntake(store, routes=lambda: ROUTES, accounts=ACCOUNTS.get,
                    receipt_ttl=3600.0, receipts_added=lambda: added.append("receipt"),
                    callbacks_added=lambda: added.append("callback"),
                    clock=lambda: 1000.0, timer=lambda: 50.0)


def _count(outcome: str) -> float:
    return METRICS.mo.labels("up", outcome)._value.get()


async def test_both_writes_a_deliver_sm_and_an_event_and_wakes_both_dispatchers(
        store: SqliteStore) -> None:
    added: list[str] = []
    mo_id = await _intake(store, added).take(_mo("1", "hi"))
    stored = await store.find(mo_id)
    assert stored is not None
    assert (stored.message.account, stored.stat, stored.message.extra["direction"]) == (
        "both", "ACCEPTD", "mo")
    [rx] = await store.receipts_for("both", 60.0, 10)
    assert (rx.message_id, rx.expire_at, rx.extra["mo_payload"]) == (mo_id, 3650.0, "6869")
    [ev] = await store.callbacks_due(60.0, 10)
    assert (ev.kind, ev.url, ev.message_id) == ("mo", "https://crm.example/mo", mo_id)
    assert added == ["receipt", "callback"]


async def test_unroutable_is_stored_without_account_or_outbox(store: SqliteStore) -> None:
    before = _count("unroutable")
    added: list[str] = []
    mo_id = await _intake(store, added).take(_mo("2", "no keyword"))
    stored = await store.find(mo_id)
    assert stored is not None
    assert (stored.message.account, stored.stat) == ("", "REJECTD")
    assert stored.message.extra["mo_state"] == "unroutable"
    assert await store.count_receipts() == 0
    assert await store.count_callbacks() == 0
    assert added == []
    assert _count("unroutable") == before + 1


async def test_a_store_error_raises_and_is_counted(store: SqliteStore,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*_: object, **__: object) -> None:
        raise StoreUnavailable("disk full")

    monkeypatch.setattr(store, "accept_mo", broken)
    before = _count("not_stored")
    with pytest.raises(StoreUnavailable):
        await _intake(store, []).take(_mo("1", "hi"))
    assert _count("not_stored") == before + 1


async def test_a_later_part_follows_its_first_part(store: SqliteStore) -> None:
    """mo_parts = "parts": part 1 starts with the keyword; part 2 (same originator,
    number, reference) does not, and still goes to that account; another reference's
    part 2 alone routes nowhere, so it is held (it may be a later part of a set to
    join)."""
    intake = _intake(store, [])
    first = await intake.take(_mo("2", "go left ", (5, 2, 1)))
    second = await intake.take(_mo("2", "and right", (5, 2, 2)))
    stray = await intake.take(_mo("2", "and right", (6, 2, 2)))
    accounts = []
    for mid in (first, second):
        stored = await store.find(mid)
        assert stored is not None
        accounts.append(stored.message.account)
    assert accounts == ["smpp", "smpp"]
    assert await store.find(stray) is None
    assert [p.part_id for p in await store.load_parts()] == [stray]
