"""Joining a long MO (delivery/mo.py, ``mo_parts = "join"``) on a real SQLite file with
an injected clock: parts out of order, a repeated part, the window closing, a restart
between parts (the earlier parts come from the file), and ``mo_parts = "parts"``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from smppbridge.core.accounts import Account
from smppbridge.core.errors import StoreUnavailable
from smppbridge.core.message import Address
from smppbridge.core.mo import InboundMo, MoRoute, mo_payload
from smppbridge.delivery.mo import MoIntake
from smppbridge.delivery.receipts import mo_deliver_sm
from smppbridge.observability.metrics import METRICS
from smppbridge.smpp.constants import Tag
from smppbridge.store.sqlite.store import SqliteStore
from smppbridge.text.concat import ReassemblyConfig
from smppbridge.text.encoding import encode_text

ACCOUNTS = {
    "crm": Account("crm", "pw", mo="both", mo_url="https://crm.example/mo"),
    "raw": Account("raw", "pw", mo_parts="parts"),
}
ROUTES = (MoRoute("crm", to=frozenset({"1"})), MoRoute("raw", to=frozenset({"2"})))
TEXT = "Привет, мир! " * 12  # 156 UCS2 characters: 312 octets, three parts
UCS2 = 8


class Clock:
    """Wall and steady time, moved by the test."""

    def __init__(self) -> None:
        self.steady = 100.0

    def wall(self) -> float:
        return 1_000_000.0 + self.steady

    def timer(self) -> float:
        return self.steady


def _parts(text: str = TEXT, ref: int = 7, to: str = "1", at: float = 1_000_100.0
           ) -> list[InboundMo]:
    octets = encode_text(text, UCS2)
    size = 134
    chunks = [octets[i:i + size] for i in range(0, len(octets), size)]
    return [InboundMo(provider="up", source=Address("79001112233", 1, 1),
                      destination=Address(to), data_coding=UCS2, payload=c,
                      text=c.decode("utf-16-be", errors="replace"), received_at=at,
                      concat=(ref, len(chunks), n), encoding="ucs2")
            for n, c in enumerate(chunks, 1)]


def _intake(store: SqliteStore, clock: Clock, window: float = 60.0) -> MoIntake:
    return MoIntake(store, routes=lambda: ROUTES, accounts=ACCOUNTS.get,
                    receipt_ttl=3600.0, clock=clock.wall, timer=clock.timer,
                    reassembly=ReassemblyConfig(window=window))


def _incomplete() -> float:
    return METRICS.mo.labels("up", "incomplete")._value.get()


async def _open(path: Path) -> SqliteStore:
    store = SqliteStore(str(path))
    await store.open()
    return store


async def test_parts_out_of_order_become_one_mo_with_the_whole_text(
        tmp_path: Path) -> None:
    store, clock = await _open(tmp_path / "mo.db"), Clock()
    intake = _intake(store, clock)
    p1, p2, p3 = _parts()
    ids = [await intake.take(p) for p in (p3, p1, p2)]
    assert await store.load_parts() == []
    [rx] = await store.receipts_for("crm", clock.timer(), 10)
    stored = await store.find(rx.message_id)
    assert stored is not None
    assert stored.message.content.text == TEXT
    assert stored.message.account == "crm"
    assert stored.message.extra["mo_parts"] == "3"
    assert "mo_total" not in stored.message.extra
    # the ids handed out for the earlier parts find the joined MO
    for part_id in ids:
        found = await store.find(part_id)
        assert found is not None
        assert found.message.message_id == rx.message_id
    pdu = mo_deliver_sm(rx)
    assert (pdu.esm_class, pdu.data_coding, pdu.short_message) == (0, UCS2, b"")
    assert pdu.tlv(Tag.MESSAGE_PAYLOAD) == encode_text(TEXT, UCS2)
    [ev] = await store.callbacks_due(clock.timer(), 10)
    body = mo_payload(event_id=ev.event_id, attempt=1, mo_id=ev.message_id,
                      account="crm", source="79001112233", destination="1",
                      text=stored.message.content.text, extra=stored.message.extra,
                      received_at=None)
    assert (body["text"], body["parts"], body["part"]) == (TEXT, 3, None)
    await store.close()


async def test_a_repeated_part_does_not_repeat_text(tmp_path: Path) -> None:
    store, clock = await _open(tmp_path / "mo.db"), Clock()
    intake = _intake(store, clock)
    p1, p2, p3 = _parts()
    for p in (p1, p2, p2, p3):
        await intake.take(p)
    [rx] = await store.receipts_for("crm", clock.timer(), 10)
    stored = await store.find(rx.message_id)
    assert stored is not None
    assert stored.message.content.text == TEXT
    assert len(stored.message.part_ids) == 4
    assert await store.load_parts() == []
    await store.close()


async def test_a_restart_between_parts_joins_with_the_parts_from_the_file(
        tmp_path: Path) -> None:
    clock = Clock()
    p1, p2, p3 = _parts()
    store = await _open(tmp_path / "mo.db")
    before = _intake(store, clock)
    await before.take(p2)
    await before.take(p1)
    await store.close()  # the process ends: nothing of it in memory any more
    clock.steady += 5.0
    store = await _open(tmp_path / "mo.db")
    after = _intake(store, clock)
    assert await after.restore(await store.load_parts()) == 2
    assert await store.receipts_for("crm", clock.timer(), 10) == []
    await after.take(p3)
    [rx] = await store.receipts_for("crm", clock.timer(), 10)
    stored = await store.find(rx.message_id)
    assert stored is not None
    assert stored.message.content.text == TEXT
    assert await store.load_parts() == []
    await store.close()


async def test_an_incomplete_set_is_passed_on_part_by_part_when_its_window_closes(
        tmp_path: Path) -> None:
    store, clock = await _open(tmp_path / "mo.db"), Clock()
    intake = _intake(store, clock, window=30.0)
    p1, _, p3 = _parts()
    await intake.take(p1)
    await intake.take(p3)
    assert await intake.expire() == 0
    assert intake.next_deadline() == 130.0
    before = _incomplete()
    clock.steady += 30.0
    assert await intake.expire() == 1
    assert _incomplete() == before + 2
    assert await store.load_parts() == []
    receipts = await store.receipts_for("crm", clock.timer(), 10)
    assert [r.extra["mo_seq"] for r in receipts] == ["1", "3"]
    assert {r.extra["mo_total"] for r in receipts} == {"3"}
    assert mo_deliver_sm(receipts[0]).short_message[:6] == bytes((5, 0, 3, 7, 3, 1))
    await store.close()


async def test_mo_parts_parts_passes_each_part_at_once(tmp_path: Path) -> None:
    store, clock = await _open(tmp_path / "mo.db"), Clock()
    intake = _intake(store, clock)
    p1, p2, _ = _parts(to="2")
    await intake.take(p1)
    await intake.take(p2)
    assert await store.load_parts() == []
    receipts = await store.receipts_for("raw", clock.timer(), 10)
    assert [r.extra["mo_seq"] for r in receipts] == ["1", "2"]
    await store.close()


async def test_a_store_error_while_passing_on_keeps_the_set_for_the_next_round(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, clock = await _open(tmp_path / "mo.db"), Clock()
    intake = _intake(store, clock, window=30.0)
    p1, _, p3 = _parts()
    await intake.take(p1)
    await intake.take(p3)
    real = store.accept_mo
    calls = 0

    async def second_fails(*args: Any, **kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise StoreUnavailable("disk full")
        await real(*args, **kwargs)

    monkeypatch.setattr(store, "accept_mo", second_fails)
    clock.steady += 30.0
    with pytest.raises(StoreUnavailable):
        await intake.expire()
    assert len(await store.load_parts()) == 1  # part 3 still held in the file
    assert len(intake.reassembler) == 1  # part 3 collected again, part 1 went on
    assert await intake.expire() == 1
    receipts = await store.receipts_for("crm", clock.timer(), 10)
    assert [r.extra["mo_seq"] for r in receipts] == ["1", "3"]
    assert await store.load_parts() == []
    await store.close()
