"""The SQLite store's tests share one fixture: an open store on a file of the test's own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from smppbridge.store.sqlite.store import SqliteStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(str(tmp_path / "db" / "s.db"))
    await s.open()
    yield s
    await s.close()
