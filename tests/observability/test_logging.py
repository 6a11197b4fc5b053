"""Log setup: secrets are masked in every event, and the JSON renderer is the default
off a TTY."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from smppbridge.observability.logging import configure_logging, mask_secrets

SECRET = "hunter22"


@pytest.mark.parametrize("key", ["password", "PASSWORD", "passwd", "secret", "token", "key",
                                 "api_key", "Authorization"])
def test_mask_secrets_hides_secret_looking_keys(key: str) -> None:
    """A value under any secret-looking key (any case) is replaced by ``***``."""
    event = {"event": "provider.login", key: SECRET}
    out = mask_secrets(None, "info", event)
    assert out[key] == "***"
    assert SECRET not in repr(out)


def test_mask_secrets_keeps_everything_else() -> None:
    """Ordinary fields (event name, system_id, peer, status) pass through unchanged, and
    the same mapping is returned (processors chain in place)."""
    event: dict[str, Any] = {"event": "bind.refused", "system_id": "demo",
                             "peer": "127.0.0.1:5000", "status": "0x0000000E"}
    expected = dict(event)
    assert mask_secrets(None, "info", event) is event
    assert event == expected


@pytest.fixture
def restore_structlog() -> Iterator[None]:
    """configure_logging changes process-global structlog state: put it back."""
    saved = structlog.get_config()
    try:
        yield
    finally:
        structlog.configure(**saved)


@pytest.mark.usefixtures("restore_structlog")
def test_configured_logging_writes_masked_json_lines(capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    """``configure_logging(fmt="json")`` writes one JSON object per event to stderr, with
    level, ISO timestamp, bound context, and the password masked."""
    configure_logging("info", "json")
    log = structlog.get_logger("test").bind(peer="127.0.0.1:5000")
    log.info("bind.refused", system_id="demo", password=SECRET)
    log.debug("below.level")
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    record = json.loads(lines[0])
    assert record["event"] == "bind.refused"
    assert record["level"] == "info"
    assert record["peer"] == "127.0.0.1:5000"
    assert record["password"] == "***"
    assert record["timestamp"].endswith("Z")
    assert SECRET not in err


@pytest.mark.usefixtures("restore_structlog")
def test_auto_format_is_json_off_a_tty(capsys: pytest.CaptureFixture[str]) -> None:
    """``fmt="auto"`` picks JSON when stderr is not a terminal (systemd, Docker)."""
    configure_logging("info", "auto")
    structlog.get_logger("test").warning("config.reload_refused", error="x")
    record = json.loads(capsys.readouterr().err)
    assert record["event"] == "config.reload_refused"
