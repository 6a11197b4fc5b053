"""The HTTP side's security: webhook authentication (shared secret, HMAC signature,
source networks) and /metrics on its own address."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from smppbridge.config import ConfigError, HostPort, parse_config
from smppbridge.core.provider_settings import ProviderSettings
from smppbridge.delivery.webhooks import webhook_refusal
from smppbridge.http.request import HttpRequest as Request
from smppbridge.providers.settings import parse_provider
from tests.security.conftest import StartNode
from tests.security.net import GOOD, node_toml

SECRET = "hook-s3cret-value"
HMAC_KEY = "hmac-k3y-value"


def _settings(**raw: Any) -> ProviderSettings:
    return parse_provider({"name": "hj", "type": "http-json", "url": "http://127.0.0.1:9/",
                           **raw}, env={})


def _request(body: bytes = b"[]", *, headers: dict[str, str] | None = None,
             query: dict[str, list[str]] | None = None, client: str = "127.0.0.1"
             ) -> Request:
    return Request(method="POST", path="/webhooks/hj", query=query or {},
                   headers=headers or {}, body=body, client=(client, 40000))


def _sign(body: bytes, key: str = HMAC_KEY) -> str:
    return "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


# --- the check itself ----------------------------------------------------------------------


def test_no_webhook_settings_means_no_check() -> None:
    """A provider with none of the webhook_* keys accepts any webhook call (as before)."""
    assert webhook_refusal(_request(), _settings()) is None


@pytest.mark.parametrize(("request_", "refusal"), [
    (_request(headers={"x-webhook-secret": SECRET}), None),
    (_request(query={"secret": [SECRET]}), None),
    (_request(), (401, "no secret")),
    (_request(headers={"x-webhook-secret": SECRET[:-1]}), (401, "wrong secret")),
    (_request(headers={"x-webhook-secret": SECRET + "x"}), (401, "wrong secret")),
    (_request(query={"secret": ["nope"]}), (401, "wrong secret")),
], ids=["header", "query", "missing", "shorter", "longer", "wrong-query"])
def test_shared_secret(request_: Request, refusal: tuple[int, str] | None) -> None:
    """webhook_secret must come as X-Webhook-Secret or ?secret=; anything else is 401."""
    assert webhook_refusal(request_, _settings(webhook_secret=SECRET)) == refusal


@pytest.mark.parametrize(("signature", "refusal"), [
    (_sign(b'{"id":"1"}'), None),
    (_sign(b'{"id":"1"}').upper().replace("SHA256=", "sha256="), None),
    (_sign(b'{"id":"2"}'), (401, "wrong signature")),
    (_sign(b'{"id":"1"}', "other key"), (401, "wrong signature")),
    ("sha1=" + hashlib.sha1(b"x").hexdigest(), (401, "no sha256 signature")),
    ("", (401, "no sha256 signature")),
], ids=["good", "upper-hex", "other-body", "other-key", "sha1", "missing"])
def test_hmac_signature(signature: str, refusal: tuple[int, str] | None) -> None:
    """webhook_hmac_key requires X-Signature: sha256=<hex HMAC-SHA256 of the exact body>."""
    headers = {"x-signature": signature} if signature else {}
    got = webhook_refusal(_request(b'{"id":"1"}', headers=headers),
                          _settings(webhook_hmac_key=HMAC_KEY))
    assert got == refusal


@pytest.mark.parametrize(("client", "refusal"), [
    ("10.1.2.3", None), ("::ffff:10.1.2.3", None), ("2001:db8::5", None),
    ("127.0.0.1", (403, "source address not in webhook_networks")),
    ("not an address", (403, "source address not in webhook_networks")),
])
def test_source_networks(client: str, refusal: tuple[int, str] | None) -> None:
    """webhook_networks admits only those source addresses (IPv4-mapped IPv6 too): 403."""
    s = _settings(webhook_networks=["10.0.0.0/8", "2001:db8::/32"])
    assert webhook_refusal(_request(client=client), s) == refusal


def test_every_configured_check_must_pass() -> None:
    """With a secret and an HMAC key both set, a call needs both; the network comes
    first."""
    s = _settings(webhook_secret=SECRET, webhook_hmac_key=HMAC_KEY,
                  webhook_networks=["127.0.0.0/8"])
    body = b"[]"
    both = {"x-webhook-secret": SECRET, "x-signature": _sign(body)}
    assert webhook_refusal(_request(body, headers=both), s) is None
    assert webhook_refusal(_request(body, headers={"x-webhook-secret": SECRET}), s) == (
        401, "no sha256 signature")
    assert webhook_refusal(_request(body, headers={"x-signature": _sign(body)}), s) == (
        401, "no secret")
    assert webhook_refusal(_request(body, headers=both, client="192.0.2.1"), s) == (
        403, "source address not in webhook_networks")


def test_webhook_secrets_from_env_and_file_never_in_repr(tmp_path: Path) -> None:
    """webhook_secret and webhook_hmac_key may come from the environment or a file like
    the other provider secrets, and never appear in the settings' repr."""
    key_file = tmp_path / "hmac.key"
    key_file.write_text(HMAC_KEY + "\n")
    s = parse_provider({"name": "hj", "type": "http-json", "url": "http://127.0.0.1:9/",
                        "webhook_secret_env": "HOOK_SECRET",
                        "webhook_hmac_key_file": str(key_file)},
                       env={"HOOK_SECRET": SECRET})
    assert (s.webhook_secret, s.webhook_hmac_key) == (SECRET, HMAC_KEY)
    assert SECRET not in repr(s)
    assert HMAC_KEY not in repr(s)


@pytest.mark.parametrize(("raw", "message"), [
    ({"webhook_networks": "10.0.0.0/8"}, "providers[hj].webhook_networks: expected a list"),
    ({"webhook_networks": ["10.0.0.0/33"]}, "providers[hj].webhook_networks[0]: not a network"),
    ({"webhook_secret": SECRET, "webhook_secret_env": "X"},
     "providers[hj].webhook_secret_env: give only one of"),
])
def test_webhook_settings_errors(raw: dict[str, Any], message: str) -> None:
    """Bad webhook_* values are refused with the key's name, and never echo a secret."""
    with pytest.raises(ValueError, match=r"^" + message.replace("[", r"\[").replace(
            "]", r"\]").replace(".", r"\.")) as exc:
        _settings(**raw)
    assert SECRET not in str(exc.value)


# --- over HTTP -----------------------------------------------------------------------------

_PROVIDERS: list[dict[str, Any]] = [
    {"name": "sim", "type": "simulator"},
    {"name": "plain", "type": "http-json", "url": "http://127.0.0.1:9/"},
    {"name": "secret", "type": "http-json", "url": "http://127.0.0.1:9/",
     "webhook_secret": SECRET},
    {"name": "signed", "type": "http-json", "url": "http://127.0.0.1:9/",
     "webhook_hmac_key": HMAC_KEY},
    {"name": "walled", "type": "http-json", "url": "http://127.0.0.1:9/",
     "webhook_networks": ["10.0.0.0/8"]},
]


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        yield client


async def test_webhook_authentication_over_http(nodes: StartNode,
                                                http: httpx.AsyncClient) -> None:
    """POST /webhooks/<name>: 401 without or with a wrong secret or signature, 403 from
    outside webhook_networks, 200 when authenticated; each refusal is logged with the
    provider and the reason, never with the secret or the signature."""
    node = await nodes(node_toml(accounts=[GOOD], providers=_PROVIDERS,
                                 http={"listen": "127.0.0.1:0"}))
    assert node.http_address is not None
    base = f"http://{node.http_address[0]}:{node.http_address[1]}/webhooks"
    body = b"[]"
    with capture_logs() as logs:
        calls = [
            ("plain", {}, ""),
            ("secret", {}, ""),
            ("secret", {"X-Webhook-Secret": "guess"}, ""),
            ("secret", {"X-Webhook-Secret": SECRET}, ""),
            ("secret", {}, f"?secret={SECRET}"),
            ("signed", {"X-Signature": _sign(b"other")}, ""),
            ("signed", {"X-Signature": _sign(body)}, ""),
            ("walled", {}, ""),
        ]
        statuses = []
        for name, headers, query in calls:
            resp = await http.post(f"{base}/{name}{query}", content=body, headers=headers)
            statuses.append(resp.status_code)
    assert statuses == [200, 401, 401, 200, 200, 401, 200, 403]
    refused = [e for e in logs if e["event"] == "status.webhook_refused"]
    assert [(e["provider"], e["reason"]) for e in refused] == [
        ("secret", "no secret"), ("secret", "wrong secret"), ("signed", "wrong signature"),
        ("walled", "source address not in webhook_networks")]
    text = repr(logs)
    assert SECRET not in text
    assert "guess" not in text
    assert _sign(b"other")[7:] not in text


async def test_metrics_on_their_own_address(nodes: StartNode,
                                            http: httpx.AsyncClient) -> None:
    """With [http] metrics_listen, /metrics is served there (and nothing else is), and
    the main HTTP listener no longer serves it."""
    node = await nodes(node_toml(http={"listen": "127.0.0.1:0",
                                       "metrics_listen": "127.0.0.1:0"}))
    assert node.http_address is not None
    assert node.metrics_address is not None
    main = f"http://{node.http_address[0]}:{node.http_address[1]}"
    metrics = f"http://{node.metrics_address[0]}:{node.metrics_address[1]}"
    assert node.http_address != node.metrics_address
    scrape = await http.get(f"{metrics}/metrics")
    assert scrape.status_code == 200
    assert "smppbridge_connections" in scrape.text
    assert (await http.get(f"{main}/metrics")).status_code == 404
    assert (await http.get(f"{main}/healthz")).status_code == 200
    assert (await http.get(f"{metrics}/healthz")).status_code == 404
    assert (await http.post(f"{metrics}/webhooks/sim", content=b"[]")).status_code == 404


async def test_metrics_listen_without_the_main_listener(nodes: StartNode,
                                                        http: httpx.AsyncClient) -> None:
    """metrics_listen works with the main HTTP listener disabled (listen = "")."""
    node = await nodes(node_toml(http={"listen": "", "metrics_listen": "127.0.0.1:0"}))
    assert node.http is None
    assert node.metrics_address is not None
    host, port = node.metrics_address
    assert (await http.get(f"http://{host}:{port}/metrics")).status_code == 200


def test_metrics_listen_config() -> None:
    """[http] metrics_listen parses as HOST:PORT, defaults to none, may come from
    SMPPBRIDGE_HTTP_METRICS_LISTEN, and a malformed value names the key."""
    base = node_toml(http={"listen": "127.0.0.1:8080"})
    assert parse_config(base, env={}).http.metrics_listen is None
    cfg = parse_config(base, env={"SMPPBRIDGE_HTTP_METRICS_LISTEN": "10.0.0.5:9100"})
    assert cfg.http.metrics_listen == HostPort("10.0.0.5", 9100)
    with pytest.raises(ConfigError, match=r"^http\.metrics_listen: expected HOST:PORT"):
        parse_config(node_toml(http={"listen": "", "metrics_listen": "9100"}), env={})
