"""Deployment files: the systemd unit verifies and is hardened; the Dockerfile's install
steps work in a fresh virtualenv (no Docker engine runs here)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

from smppbridge.config import SmppConfig

ROOT = Path(__file__).parent.parent
UNIT = ROOT / "systemd" / "smppbridge.service"


def _unit_settings() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def test_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts the unit (ExecStart pointed at this install)."""
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze is needed (Debian package systemd; .ci/run installs it)"
    exe = Path(sys.executable).parent / "smppbridge"
    unit = tmp_path / "smppbridge.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/smppbridge", str(exe)))
    result = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr


def test_systemd_unit_is_hardened_and_outlasts_the_grace() -> None:
    """Dedicated user, state dir, hardening, file limit, restart, reload by HUP, and a
    stop timeout longer than the shutdown grace."""
    s = _unit_settings()
    assert s["DynamicUser"] == "yes"
    assert s["StateDirectory"] == "smppbridge"
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert s[key] == "yes"
    assert s["ProtectSystem"] == "strict"
    assert int(s["LimitNOFILE"]) >= 10_000
    assert s["Restart"] == "on-failure"
    assert "-HUP" in s["ExecReload"]
    assert s["KillSignal"] == "SIGTERM"
    assert float(s["TimeoutStopSec"]) > SmppConfig().shutdown_grace


def test_dockerfile_install_steps_work_in_a_fresh_virtualenv(tmp_path: Path) -> None:
    """The Dockerfile's `pip install` of the package, run in a fresh venv, gives a
    working `smppbridge` that validates the shipped example config, with the redis extra."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    install = re.search(r"^RUN pip install --no-compile '?(\.[^' ]*)'?", dockerfile,
                        re.MULTILINE)
    assert install is not None
    spec = install.group(1)  # "." with its extras, as the image installs it
    assert "USER smppbridge" in dockerfile
    assert "HEALTHCHECK" in dockerfile
    assert "/healthz" in dockerfile
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    pip = env_dir / "bin" / "pip"
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".venv", ".git", "__pycache__", "*.db", ".pytest_cache", ".mypy_cache",
        ".ruff_cache", ".hypothesis", "data"))
    subprocess.run([str(pip), "install", "-q", "--no-compile", spec], cwd=src, check=True,
                   timeout=300, capture_output=True)
    result = subprocess.run([str(env_dir / "bin" / "smppbridge"), "check-config",
                             str(src / "conf" / "smppbridge.example.toml")],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout
    # The image runs cluster nodes too: the redis extra is installed.
    subprocess.run([str(env_dir / "bin" / "python"), "-c", "import redis"], check=True,
                   timeout=60, capture_output=True)
