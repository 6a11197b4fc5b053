"""Fixtures of the delivery tests: a real SQLite store in the test's directory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from smppbridge.store.sqlite.store import SqliteStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(str(tmp_path / "delivery.db"))
    await s.open()
    yield s
    await s.close()
