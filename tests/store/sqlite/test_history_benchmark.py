"""benchmarks/history_sqlite.py at smoke size: it fills, runs every query and reports each
(timings are printed, never asserted: a timed unit test would fail on a busy machine)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

_SCRIPT = Path(__file__).parents[3] / "benchmarks" / "history_sqlite.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("history_sqlite", _SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module's names
    spec.loader.exec_module(module)
    return module


async def test_smoke_run_reports_every_query(bench: ModuleType, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """--smoke fills 20,000 messages through the store's write path, times every search
    (first and deep page), timeline, receipts_of and purge, each query finding
    something, prints a line for each, and counts the happy path's statements: fewer
    than the eight a message cost on schema 3."""
    args = bench.parse_args(["--smoke", "--db", str(tmp_path / "h.db"),
                             "--count-statements", "1000"])
    report = await bench.run(args)
    assert report.fill is not None
    assert report.fill.messages == 20_000
    assert report.fill.file_bytes > 0
    names = [f"{q}, {page}" for q in bench.QUERIES for page in ("first page", "deep page")]
    assert list(report.queries) == [*names, "timeline", "receipts_of", "purge 500"]
    for name in names:
        assert report.queries[name].runs == 20
        assert report.queries[name].items > 0, name
        assert 0 <= report.queries[name].p50 <= report.queries[name].p95 \
            <= report.queries[name].max
    assert report.queries["purge 500"].items == 1500  # 3 batches of messages ended day 1
    out = capsys.readouterr().out
    for name in report.queries:
        assert name in out
    dml = sum(report.statements[w] for w in ("INSERT", "UPDATE", "DELETE")) / 1000
    # mark_sent_many and mark_final_many are one statement a batch (rows.py): the
    # message and receipt inserts and the receipt's done update are what is left
    assert 3 <= dml < 4
