"""No secret ever leaves the process: not in logs (structlog as production renders it,
and the stdlib loggers httpx and asyncio use), not in /metrics or /readyz, not in error
messages, reprs or the CLI's output.

One node runs everything that handles a secret: binds with wrong and right passwords
(plain and hashed accounts, an unknown system_id), providers whose credentials come
inline, from the environment and from a file, a provider at a closed port, a provider
(the simulator's HTTP API) refusing our credentials, webhook calls with wrong and right
secrets; then every output is searched for every secret.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from smppbridge.cli import main as cli_main
from smppbridge.config import ConfigError, parse_config
from smppbridge.core.passwords import hash_password
from smppbridge.node.node import Node
from smppbridge.observability.logging import mask_secrets
from smppbridge.observability.metrics import METRICS
from smppbridge.providers.simulator.settings import SimConfig
from smppbridge.simulator.app import Simulator
from smppbridge.smpp.constants import CommandStatus
from tests.security.conftest import Connect, StartNode
from tests.security.net import ROUND_TRIP, node_toml

_S = CommandStatus

ACCOUNT_PW = "Acct-Pw1"
HASHED_PW = "Hash-Pw2"
GUESSES = ("Guess-X1", "Guess-Y2", "Unkn-Pw3")
PROVIDER_PW = "provsecret"
WRONG_PROVIDER_PW = "provsecret-wrong"  # what we send to a provider that refuses it
ENV_TOKEN = "jsontoken-s3cret"
FILE_KEY = "smsflykey-s3cret"
HTTP_TOKEN = "httpjson-t0ken"
HOOK_SECRET = "hooksecret-v4lue"
HOOK_KEY = "hmackey-v4lue"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # nothing listens there once the socket is closed


@pytest.fixture
def rendered_logs() -> Iterator[io.StringIO]:
    """structlog configured as production configures it (secret masking, exception
    formatting, JSON), writing to a buffer; stdlib logging is captured by caplog."""
    out = io.StringIO()
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars,
                    structlog.processors.add_log_level,
                    structlog.processors.TimeStamper(fmt="iso", utc=True),
                    mask_secrets,
                    structlog.processors.format_exc_info,
                    structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,  # other tests use capture_logs afterwards
    )
    try:
        yield out
    finally:
        structlog.reset_defaults()


async def _until(predicate: str, provider: str, outcome: str) -> None:
    """Wait (bounded) until the provider-request counter shows ``outcome``."""
    labels = {"provider": provider, "outcome": outcome}

    async def poll() -> None:
        while not METRICS.registry.get_sample_value(predicate, labels):
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), 10 * ROUND_TRIP)


async def test_no_secret_in_logs_metrics_or_errors(
        nodes: StartNode, connect: Connect, rendered_logs: io.StringIO,
        caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str],
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Binds, failing provider calls (closed port; credentials refused), webhooks,
    /metrics, /readyz, config errors, reprs and check-config: no secret appears in any
    of them."""
    caplog.set_level(logging.DEBUG)
    hashed = hash_password(HASHED_PW, log2_n=10)
    key_file = tmp_path / "smsfly.key"
    key_file.write_text(FILE_KEY + "\n")
    monkeypatch.setenv("TEST_JSON_TOKEN", ENV_TOKEN)
    monkeypatch.setenv("TEST_WRONG_PW", WRONG_PROVIDER_PW)
    closed = f"http://127.0.0.1:{_closed_port()}"

    sim = Simulator(SimConfig(login="simuser", password="the-right-one"))
    sim_host, sim_port = await sim.start(webhook_interval=None)
    try:
        providers: list[dict[str, Any]] = [
            {"name": "down", "type": "mysmpp-xml", "url": f"{closed}/xml",
             "status_url": f"{closed}/state", "login": "provlogin", "password": PROVIDER_PW,
             "retries": 0},
            {"name": "refusing", "type": "mysmpp-xml",
             "url": f"http://{sim_host}:{sim_port}/xml",
             "status_url": f"http://{sim_host}:{sim_port}/xml/state.php",
             "login": "simuser", "password_env": "TEST_WRONG_PW", "retries": 0},
            {"name": "json", "type": "mysmpp-json", "url": f"{closed}/json",
             "token_env": "TEST_JSON_TOKEN"},
            {"name": "fly", "type": "smsfly", "url": f"{closed}/fly",
             "key_file": str(key_file)},
            {"name": "hooks", "type": "http-json", "url": f"{closed}/hj", "token": HTTP_TOKEN,
             "webhook_secret": HOOK_SECRET, "webhook_hmac_key": HOOK_KEY},
        ]
        accounts = [{"system_id": "plain", "password": ACCOUNT_PW, "providers": ["down"]},
                    {"system_id": "hashed", "password": hashed, "providers": ["refusing"]}]
        toml = node_toml({"bind_max_failures": 50}, accounts=accounts, providers=providers,
                         http={"listen": "127.0.0.1:0"})
        config_file = tmp_path / "node.toml"
        config_file.write_text(toml)
        node = await nodes(toml)
        await _exercise(node, connect)
        texts = await _http_outputs(node)
    finally:
        await sim.aclose()

    texts += _error_messages(toml, node)
    assert cli_main(["check-config", str(config_file)]) == 0
    captured = capsys.readouterr()
    texts += [captured.out, captured.err]
    texts.append(rendered_logs.getvalue())
    texts += [caplog.text, *(r.getMessage() for r in caplog.records)]

    secrets = [ACCOUNT_PW, HASHED_PW, hashed, hashed.rsplit("$", 1)[1], *GUESSES,
               PROVIDER_PW, WRONG_PROVIDER_PW, ENV_TOKEN, FILE_KEY, HTTP_TOKEN, HOOK_SECRET,
               HOOK_KEY]
    everything = "\n".join(texts)
    assert "bind.refused" in everything
    assert "provider.send_failed" in everything
    assert "provider.send_refused" in everything
    assert "status.webhook_refused" in everything
    leaks = [s for s in secrets if s in everything]
    assert not leaks, leaks


async def _exercise(node: Node, connect: Connect) -> None:
    address = node.smpp.addresses["smpp"]
    # Binds: wrong and right passwords on a plain and a hashed account, unknown id.
    for system_id, password, status in [
            ("plain", GUESSES[0], _S.ESME_RINVPASWD), ("hashed", GUESSES[1], _S.ESME_RINVPASWD),
            ("nobody", GUESSES[2], _S.ESME_RINVSYSID), ("plain", ACCOUNT_PW, _S.ESME_ROK),
            ("hashed", HASHED_PW, _S.ESME_ROK)]:
        client = await connect(address)
        assert (await client.bind(system_id, password)).command_status == status
        if status == _S.ESME_ROK:
            # plain → a provider at a closed port; hashed → credentials refused
            assert (await client.submit(b"secret test")).command_status == _S.ESME_ROK
    await _until("smppbridge_provider_requests_total", "down", "failed")
    await _until("smppbridge_provider_requests_total", "refusing", "refused")


async def _http_outputs(node: Node) -> list[str]:
    assert node.http_address is not None
    base = f"http://{node.http_address[0]}:{node.http_address[1]}"
    body = b"[]"
    signature = "sha256=" + hmac.new(HOOK_KEY.encode(), body, hashlib.sha256).hexdigest()
    texts = []
    async with httpx.AsyncClient(timeout=5.0) as http:
        for headers, expected in [({"X-Webhook-Secret": GUESSES[0]}, 401),
                                  ({"X-Webhook-Secret": HOOK_SECRET}, 401),
                                  ({"X-Webhook-Secret": HOOK_SECRET, "X-Signature": signature},
                                   200)]:
            resp = await http.post(f"{base}/webhooks/hooks", content=body, headers=headers)
            assert resp.status_code == expected
            texts.append(resp.text)
        for path in ("/metrics", "/readyz", "/healthz"):
            texts.append((await http.get(f"{base}{path}")).text)
    return texts


def _error_messages(toml: str, node: Node) -> list[str]:
    """Config errors around secrets, and the reprs of the objects holding them."""
    texts = [repr(node.config), str(node.config), repr(node.poller.settings),
             *(repr(p) for p in node.providers.values())]
    broken = [
        toml.replace(f'password = "{ACCOUNT_PW}"', f'password = "{ACCOUNT_PW}{ACCOUNT_PW}"'),
        toml.replace(f'password = "{PROVIDER_PW}"', f'pasword = "{PROVIDER_PW}"'),
        toml.replace('login = "provlogin"', ""),
        toml.replace(f'token = "{HTTP_TOKEN}"', f'token = "{HTTP_TOKEN}"\ntoken_env = "X"'),
    ]
    for text in broken:
        with pytest.raises(ConfigError) as exc:
            parse_config(text, env={})
        texts.append(str(exc.value))
    return texts


@pytest.mark.parametrize("url", ["redis:/user:redis-s3cret@10.0.0.1:6379/0",
                                 "redis:user:redis-s3cret@10.0.0.1"])
def test_malformed_store_url_error_does_not_echo_its_password(url: str) -> None:
    """Regression: a malformed redis URL was echoed whole in the config error, password
    included; the error now names the key and the expected form only."""
    with pytest.raises(ConfigError, match=r"^store\.url: expected redis://") as exc:
        parse_config(f'[store]\nurl = "{url}"\n', env={})
    assert "redis-s3cret" not in str(exc.value)
