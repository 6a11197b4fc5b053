"""The scenario runner: names, cases, and a small suite against the echo target."""

from __future__ import annotations

import json

import pytest

from smppbridge.bench.runner import QUICK, Options, _scenario_names, build_cases, main


def test_scenario_names_and_aliases():
    """``all`` is the quick suite (no soak); letters a..e and a-latency are aliases."""
    assert _scenario_names(["all"]) == list(QUICK)
    assert "soak" not in _scenario_names(["all"])
    assert _scenario_names(["a", "a-latency,b", "c", "d", "e"]) == [
        "ack", "latency", "e2e", "binds", "ucs2", "soak"]
    with pytest.raises(ValueError, match="unknown scenario"):
        _scenario_names(["fast"])


def test_every_case_is_bounded():
    """Every row stops by a duration or a message count, and the ack scenario covers
    W = 1, 10, 100 with 1 and 4 binds."""
    cases = build_cases(_scenario_names(["all", "soak"]), Options())
    for case in cases:
        assert case.load.duration is not None or case.load.messages is not None
        case.load.validate()
    ack = [(c.load.window, c.load.sessions) for c in cases if c.scenario == "ack"]
    assert ack == [(1, 1), (1, 4), (10, 1), (10, 4), (100, 1), (100, 4)]
    binds = next(c for c in cases if c.scenario == "binds")
    assert binds.load.sessions + binds.load.idle_sessions == 1000
    soak = next(c for c in cases if c.scenario == "soak")
    assert soak.load.duration == 600


def test_main_runs_a_scenario_against_echo(tmp_path, capsys):
    """main(argv) runs the ucs2 scenario on the echo target, prints the table and writes
    JSON with the row's figures and the server's CPU and peak RSS."""
    out = tmp_path / "bench.json"
    code = main(["d", "--targets", "echo", "--messages", "100", "--loop", "asyncio",
                 "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "ucs2" in printed
    assert "messages/s of 3 parts" in printed
    data = json.loads(out.read_text())
    (row,) = data["rows"]
    assert row["ok"] is True
    assert row["load"]["acked"] == 300
    assert row["receipts"] == 0 or row["receipts"] <= 300
    assert row["peak_rss_mb"] > 0
    assert row["ratio"] == 1.0


def test_main_runs_end_to_end_against_smppbridge_over_http(tmp_path, capsys):
    """The smoke run of the real thing: the e2e scenario against smppbridge with the
    standalone simulator over HTTP (mysmpp XML, the provider in its worker process):
    every message acked and every receipt back, CPU and RSS sampled."""
    out = tmp_path / "bench.json"
    code = main(["e2e", "--targets", "smppbridge-mysmpp", "--messages", "200",
                 "--deliver-after", "0.2", "--receipt-wait", "60", "--loop", "asyncio",
                 "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "smppbridge-mysmpp" in printed
    (row,) = json.loads(out.read_text())["rows"]
    assert row["ok"] is True
    assert row["load"]["acked"] == row["load"]["submitted"] > 0
    assert row["receipts"] == row["load"]["acked"]
    assert row["server_cpu_s"] > 0
    assert row["peak_rss_mb"] > 0
