"""benchmarks/history_redis.py at its ``--smoke`` size against the test database: it
completes, reports every phase and figure, moves every message through the whole
lifecycle, and leaves no key of its run behind. Timings and memory are never asserted
(the test Redis is shared); only what the run itself decides."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
import redis
from structlog.testing import capture_logs

from tests.store.redis.support import REDIS_URL

SCRIPT = Path(__file__).parents[3] / "benchmarks" / "history_redis.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("history_redis_bench", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_smoke_run_completes_and_reports(capsys: pytest.CaptureFixture[str]) -> None:
    """``--smoke --json``: every message accepted, sent, finalised with a receipt that
    is delivered, then purged; each phase reports memory, scripts, commands and CPU per
    message, the queries their cost, and the run's keys are deleted afterwards."""
    bench = _load()
    # The store's log lines (the test Redis keeps no AOF: store.redis_not_durable) are
    # kept off stdout, which holds the JSON.
    with capture_logs():
        assert bench.main(["--smoke", "--json", "--url", REDIS_URL]) == 0
    result = json.loads(capsys.readouterr().out)
    n = bench.SMOKE_MESSAGES
    assert (result["messages"], result["receipts_delivered"], result["purged"]) == (n, n, n)
    assert list(result["per_message"]) == [
        "accept_many", "due + mark_sent_many", "mark_final_many (+1 receipt)",
        "receipts_for + receipt_done", "purge"]
    for figures in result["per_message"].values():
        assert set(figures) == {"memory_bytes", "scripts", "commands", "script_usec",
                                "cpu_usec"}
    # the batch paths: one script call for the whole batch, not one a message
    assert 0 < result["per_message"]["accept_many"]["scripts"] * n <= 2
    assert 0 < result["per_message"]["mark_final_many (+1 receipt)"]["scripts"] * n <= 2
    assert {q["query"] for q in result["queries"]} >= {"timeline", "receipts_of"}
    assert result["breakdown"]["m:"]["keys"] == n  # every message hash was measured
    client = redis.Redis.from_url(REDIS_URL)
    try:
        assert not list(client.scan_iter(match=result["prefix"] + "*", count=1000))
    finally:
        client.close()


def test_text_report_and_database_zero_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """The plain report names each phase and the memory per message; database 0 is
    never used."""
    bench = _load()
    assert bench.main(["--smoke", "--url", REDIS_URL]) == 0
    text = capsys.readouterr().out
    for words in ("accept_many", "purge", "memory per message in the history",
                  "MEMORY USAGE by key class", "timeline"):
        assert words in text
    with pytest.raises(SystemExit, match="database 0"):
        bench.main(["--smoke", "--url", "redis://127.0.0.1:6379/0"])
