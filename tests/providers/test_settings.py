"""parse_provider: defaults per type, validation messages, secrets from env and files."""

from __future__ import annotations

from pathlib import Path

import pytest

from smppbridge.config import ConfigError, parse_config
from smppbridge.providers import build_provider
from smppbridge.providers.settings import DEFAULT_KINDS, parse_provider
from smppbridge.text.content import Kind


def test_mysmpp_defaults_come_from_the_spec() -> None:
    """mysmpp-xml defaults to the spec's endpoints, Moscow time and batches of 100."""
    s = parse_provider({"name": "m", "type": "mysmpp-xml", "login": "l", "password": "Zq9secret"},
                       env={})
    assert (s.url, s.status_url) == ("http://lk.mysmpp.ru/xml",
                                     "http://lk.mysmpp.ru/xml/state.php")
    assert (s.timezone, s.batch_size, s.poll_interval) == ("Europe/Moscow", 100, 10.0)
    assert s.kinds == DEFAULT_KINDS["mysmpp-xml"]
    assert "Zq9secret" not in repr(s)


def test_http_json_without_status_url_uses_webhooks_only() -> None:
    """http-json polls only when it has a status_url."""
    s = parse_provider({"name": "h", "type": "http-json", "url": "https://h/send"}, env={})
    assert s.poll_interval == 0.0
    assert s.kinds == frozenset({Kind.MAIL, Kind.CALL, Kind.SOC, Kind.MMS, Kind.HLR})


@pytest.mark.parametrize(("raw", "message"), [
    ({"type": "smsfly"}, "providers[?].name: required"),
    ({"name": "x", "type": "fax"}, "providers[x].type: must be one of"),
    ({"name": "x", "type": "smsfly", "key": "k"}, "providers[x].url: required"),
    ({"name": "x", "type": "smsfly", "url": "https://s"}, "providers[x].key: required"),
    ({"name": "x", "type": "mysmpp-xml"}, "providers[x].login: mysmpp needs login and "
                                          "password, or token"),
    ({"name": "x", "type": "mysmpp-xml", "token": "t", "timeout": 0},
     "providers[x].timeout: must be at least 0.001"),
    ({"name": "x", "type": "mysmpp-xml", "token": "t", "batch_size": "5"},
     "providers[x].batch_size: expected an integer"),
    ({"name": "x", "type": "mysmpp-xml", "token": "t", "colour": "red"},
     "providers[x].colour: unknown key"),
    ({"name": "x", "type": "mysmpp-xml", "token": "t", "kinds": ["mail"]},
     "providers[x].kinds: mysmpp-xml cannot carry mail"),
    ({"name": "x", "type": "mysmpp-xml", "token": "t", "url": "ftp://x"},
     "providers[x].url: expected an http:// or https:// URL"),
    ({"name": "x", "type": "mysmpp-xml", "token": "t", "timezone": "Mars/Base"},
     "providers[x].timezone: unknown time zone"),
    ({"name": "x", "type": "simulator", "simulator": {"latency": -1}},
     "providers[x].simulator: latency: expected a number >= 0"),
    ({"name": "x", "type": "mysmpp-xml", "token": "t", "token_env": "T"},
     "providers[x].token_env: give only one of token, token_env"),
    ({"name": "x", "type": "mysmpp-xml", "token_env": "NOPE"},
     "providers[x].token_env: environment variable NOPE is not set"),
])
def test_errors_name_the_key(raw: dict[str, object], message: str) -> None:
    """Every problem is reported as providers[<name>].<key>: <problem>."""
    with pytest.raises(ValueError, match="^" + message.replace("[", r"\[").replace(
            "]", r"\]").replace(".", r"\.").replace("?", r"\?")):
        parse_provider(raw, env={})


def test_secrets_from_env_and_file(tmp_path: Path) -> None:
    """password_env reads an environment variable; key_file reads a file, stripped."""
    s = parse_provider({"name": "m", "type": "mysmpp-xml", "login": "l",
                        "password_env": "MYSMPP_PW"}, env={"MYSMPP_PW": "s3cret"})
    assert s.password == "s3cret"
    key = tmp_path / "key"
    key.write_text("abc-key\n")
    f = parse_provider({"name": "f", "type": "smsfly", "url": "https://f",
                        "key_file": str(key)}, env={})
    assert f.key == "abc-key"
    with pytest.raises(ValueError, match="key_file: cannot read"):
        parse_provider({"name": "f", "type": "smsfly", "url": "https://f",
                        "key_file": str(tmp_path / "none")}, env={})


def test_the_config_loader_uses_this_validator() -> None:
    """smppbridge.config validates [[providers]] tables with parse_provider."""
    toml = '[[providers]]\nname = "m"\ntype = "mysmpp-xml"\nlogin = "l"\n'
    with pytest.raises(ConfigError, match=r"^providers\[m\]\.login: mysmpp needs"):
        parse_config(toml, env={})


async def test_build_provider_makes_each_type() -> None:
    """build_provider returns an adapter with the configured name and kinds."""
    for raw in ({"type": "mysmpp-xml", "token": "t"}, {"type": "mysmpp-json", "token": "t"},
                {"type": "smsfly", "url": "https://f", "key": "k"},
                {"type": "http-json", "url": "https://h"}, {"type": "simulator"}):
        s = parse_provider({"name": "n", **raw}, env={})
        p = build_provider(s)
        try:
            assert (p.name, p.kinds) == ("n", s.kinds)
        finally:
            await p.aclose()


def test_worker_is_on_for_http_types_and_off_for_the_simulator() -> None:
    """`worker` defaults to a child process for every HTTP type, not the simulator."""
    for raw in ({"type": "mysmpp-xml", "token": "t"}, {"type": "mysmpp-json", "token": "t"},
                {"type": "smsfly", "url": "https://f", "key": "k"},
                {"type": "http-json", "url": "https://h"}):
        assert parse_provider({"name": "n", **raw}, env={}).worker is True
        assert parse_provider({"name": "n", "worker": False, **raw}, env={}).worker is False
    assert parse_provider({"name": "n", "type": "simulator"}, env={}).worker is False
    assert parse_provider({"name": "n", "type": "simulator", "worker": True},
                          env={}).worker is True


def test_worker_must_be_a_boolean() -> None:
    with pytest.raises(ValueError, match=r"^providers\[n\]\.worker: expected true or false"):
        parse_provider({"name": "n", "type": "simulator", "worker": "yes"}, env={})
