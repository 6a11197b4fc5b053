"""A node whose wall clock is stepped an hour forward while an ESME is bound (real
sockets, smpplib, SQLite): the flood window still holds, the long-message window still
holds, the dates on the wire are the new wall clock's, and the step is logged once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from smppbridge.config import parse_config
from smppbridge.core.clock import Clock
from smppbridge.node import node as node_module
from smppbridge.node.node import Node
from smppbridge.smpp.receipts import parse_receipt
from tests.integration.esme import Esme
from tests.integration.test_delivery import _config, _submit_parts, _ucs2_parts_16bit_ref

HOUR = 3600.0
TEXT = "a long message, sent twice an hour of wall clock apart " * 3


class SteppedWall:
    """``time.time`` plus an offset the test sets (an NTP step)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
async def stepped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                  ) -> AsyncIterator[tuple[Node, SteppedWall]]:
    monkeypatch.setattr(node_module, "CLOCK_CHECK_INTERVAL", 0.05)
    wall = SteppedWall()
    n = Node(parse_config(_config(tmp_path), env={}), clock=Clock(wall, time.monotonic))
    await n.start()
    try:
        yield n, wall
    finally:
        await n.stop()


def _minutes(at: Callable[[], float]) -> set[str]:
    """The receipt date (YYMMDDhhmm, UTC) of now by ``at``, and of a minute later (a
    minute may turn while the test runs)."""
    now = at()
    return {time.strftime("%y%m%d%H%M", time.gmtime(now + d)) for d in (0, 60)}


async def test_a_step_forward_keeps_the_windows_and_moves_the_dates(
        stepped: tuple[Node, SteppedWall]) -> None:
    """The same long message twice, the wall clock stepped an hour forward between
    them: the second is still a duplicate (0x400 on its last part; the 60 s window is
    steady time), its first part's REJECTD receipt carries the stepped date, and the
    node logs ``clock.stepped`` once with the size of the step."""
    node, wall = stepped
    esme = await asyncio.to_thread(Esme, node.smpp.addresses["smpp"][1])
    try:
        esme.thread.start()
        await asyncio.to_thread(_submit_parts, esme, _ucs2_parts_16bit_ref(TEXT, 1))
        assert await asyncio.to_thread(esme.wait, lambda e: len(e.resps) == 3, 5)
        assert [r.status for r in esme.resps] == [0, 0, 0]
        with capture_logs() as logs:
            wall.offset = HOUR
            expected_dates = _minutes(wall)
            await asyncio.to_thread(_submit_parts, esme, _ucs2_parts_16bit_ref(TEXT, 2))
            assert await asyncio.to_thread(esme.wait, lambda e: len(e.resps) == 6, 5)
            assert [r.status for r in esme.resps[3:]] == [0, 0, 0x400]
            rejected = {r.message_id.decode() for r in esme.resps[3:5]}

            def rejects(e: Esme) -> list[dict[str, str]]:
                return [f for f in map(parse_receipt, e.receipts)
                        if f["stat"] == "REJECTD" and f["id"] in rejected]

            assert await asyncio.to_thread(esme.wait, lambda e: len(rejects(e)) == 2, 10)
            for fields in rejects(esme):
                assert fields["done date"] in expected_dates
                assert fields["submit date"] in expected_dates

            def stepped_lines() -> list[dict[str, object]]:
                return [e for e in logs if e["event"] == "clock.stepped"]

            for _ in range(200):
                if stepped_lines():
                    break
                await asyncio.sleep(0.02)
            (line,) = stepped_lines()
            assert line["by"] == pytest.approx(HOUR, abs=1.0)
            assert line["log_level"] == "warning"
    finally:
        await asyncio.to_thread(esme.close)
