"""The command line: check-config (every problem, the redis extra), hash-password, serve
refusing a bad file (every problem, no traceback), serve's GC settings."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from smppbridge.cli import main
from smppbridge.core.passwords import verify_password


def test_check_config_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A valid file prints OK and exits 0."""
    f = tmp_path / "ok.toml"
    f.write_text('[[accounts]]\nsystem_id = "a"\npassword = "p"\n')
    assert main(["check-config", str(f)]) == 0
    assert "OK (1 accounts, 0 providers)" in capsys.readouterr().out


def test_check_config_lists_each_smpp_upstream(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """An smpp provider is listed with its upstream, binds, window and policies; a
    misspelt smpp key is named with its correction."""
    f = tmp_path / "up.toml"
    table = ('[[providers]]\nname = "up"\ntype = "smpp"\nhost = "smsc.example"\n'
             'port = 2775\nsystem_id = "me"\npassword = "pw"\nbinds = 2\nwindow = 50\n')
    f.write_text(table)
    assert main(["check-config", str(f)]) == 0
    assert ("providers[up]: smpp upstream smsc.example:2775 as 'me', 2 transceiver "
            "session(s), window 50") in capsys.readouterr().out
    f.write_text(table.replace("window = 50", "windw = 50"))
    assert main(["check-config", str(f)]) == 2
    assert "providers[up].windw: unknown key (did you mean window?)" in capsys.readouterr().err


def test_check_config_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An invalid file exits 2 and prints the key and the problem."""
    f = tmp_path / "bad.toml"
    f.write_text("[smpp]\nwindow = -1\n")
    assert main(["check-config", str(f)]) == 2
    assert "smpp.window: must be at least 1" in capsys.readouterr().err


def test_serve_refuses_an_invalid_file_before_binding(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """serve validates the whole file first and exits 2 with the message."""
    f = tmp_path / "bad.toml"
    f.write_text('[[accounts]]\nsystem_id = "a"\npassword = "p"\nproviders = ["x"]\n')
    assert main(["serve", "--config", str(f)]) == 2
    assert "accounts[a].providers: unknown provider 'x'" in capsys.readouterr().err


#: two problems in two tables
TWO_PROBLEMS = ('[smpp]\nwindow = 0\n'
                '[[accounts]]\nsystem_id = "acme"\npassword = "p"\nthroughput = -1\n')


def test_check_config_prints_every_problem(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """check-config prints every problem of the file, each on its own line with the file
    name, and exits 2."""
    f = tmp_path / "x.toml"
    f.write_text(TWO_PROBLEMS)
    assert main(["check-config", str(f)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{f}: smpp.window: must be at least 1",
        f"{f}: accounts[acme].throughput: must be at least 0",
    ]


def test_serve_prints_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """serve refuses to start and prints every problem, one per line."""
    f = tmp_path / "x.toml"
    f.write_text(TWO_PROBLEMS)
    assert main(["serve", "--config", str(f)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"smppbridge: invalid configuration: {f}: smpp.window: must be at least 1",
        f"smppbridge: invalid configuration: {f}: accounts[acme].throughput: must be at least 0",
    ]


def _redis_config(tmp_path: Path) -> Path:
    f = tmp_path / "cluster.toml"
    # port 0 everywhere: should serve ever get past the check, it binds nothing fixed
    f.write_text('[smpp]\nlisten = "127.0.0.1:0"\n[http]\nlisten = "127.0.0.1:0"\n'
                 '[store]\nurl = "redis://127.0.0.1:1/0"\n'
                 '[[accounts]]\nsystem_id = "a"\npassword = "p"\n')
    return f


_NEEDS_EXTRA = "store.url: redis:// needs the redis extra: pip install 'smppbridge[redis]'"


def test_check_config_fails_on_redis_without_the_extra(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A redis:// store without redis-py (simulated: the import fails) fails check-config
    with the install command, instead of passing and failing at start."""
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    f = _redis_config(tmp_path)
    assert main(["check-config", str(f)]) == 2
    assert capsys.readouterr().err == f"{f}: {_NEEDS_EXTRA}\n"


def test_serve_on_redis_without_the_extra_prints_the_install_command(tmp_path: Path) -> None:
    """`serve` on a redis:// store in a process where redis-py cannot be imported exits 2
    with the install command, not a traceback (a child process: the missing module is
    simulated with ``sys.modules["redis"] = None`` before anything runs)."""
    f = _redis_config(tmp_path)
    code = ("import sys; sys.modules['redis'] = None; from smppbridge.cli import main; "
            f"sys.exit(main(['serve', '--config', {str(f)!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"smppbridge: invalid configuration: {f}: {_NEEDS_EXTRA}\n"


def test_hash_password_from_stdin(monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    """hash-password reads one line of stdin and prints a hash that verifies it."""
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret\n"))
    assert main(["hash-password"]) == 0
    hashed = capsys.readouterr().out.strip()
    assert hashed.startswith("scrypt$")
    assert verify_password("s3cret", hashed)
    assert "s3cret" not in hashed


def test_hash_password_refuses_what_no_bind_can_carry(capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    """A password over 8 characters cannot be sent in a bind: refused."""
    assert main(["hash-password", "123456789"]) == 2
    assert "1-8 characters" in capsys.readouterr().err


def test_bench_hands_its_arguments_to_the_harness(capsys: pytest.CaptureFixture[str]) -> None:
    """`smppbridge bench --help` is the harness's own help (scenarios and options)."""
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--duration" in out
    assert "SCENARIO" in out


def test_serving_process_tunes_the_garbage_collector() -> None:
    """`serve` freezes the objects that exist at start out of the collector and collects
    young objects every 10,000 allocations (full-collection pauses were the soak's p99).
    Checked in a child process: the settings are process-wide."""
    code = ("import gc; from smppbridge.cli import _tune_gc; _tune_gc(); "
            "print(gc.get_threshold(), gc.get_freeze_count() > 1000)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out.strip() == "(10000, 10, 10) True"


def test_serve_reports_a_provider_worker_that_cannot_start(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A node whose start fails on a provider (a worker that did not start) exits 1 with
    the reason, not a traceback."""
    from smppbridge.core.errors import ProviderUnavailable

    async def failing_run(*_: object) -> int:
        raise ProviderUnavailable("fly: provider worker did not start (exit code 1)")

    # process-wide settings of serve are not for the test process (logging configured
    # here would keep writing to this test's captured, later closed, stderr)
    monkeypatch.setattr("smppbridge.cli._tune_gc", lambda: None)
    monkeypatch.setattr("smppbridge.cli._use_uvloop", lambda: None)
    monkeypatch.setattr("smppbridge.observability.logging.configure_logging",
                        lambda *_: None)
    monkeypatch.setattr("smppbridge.node.node.run", failing_run)
    f = tmp_path / "ok.toml"
    f.write_text('[[accounts]]\nsystem_id = "a"\npassword = "p"\n')
    assert main(["serve", "--config", str(f)]) == 1
    assert capsys.readouterr().err == (
        "smppbridge: cannot start: fly: provider worker did not start (exit code 1)\n")
