"""Config: the issue's sample file, validation messages that name the key, env overrides."""

from __future__ import annotations

import ipaddress

import pytest

from smppbridge.config import ConfigError, load_config, parse_config
from smppbridge.core.passwords import hash_password

SAMPLE = """
[smpp]
listen = "127.0.0.1:2775"

[http]
listen = "127.0.0.1:8080"

[store]
url = "sqlite:////var/lib/smppbridge/smppbridge.db"   # later also "redis://127.0.0.1:6379/0"

[[accounts]]
system_id = "acme"
password = "secret1"
providers = ["mysmpp"]

[[providers]]
name = "mysmpp"
type = "mysmpp-xml"            # mysmpp-xml | mysmpp-json | smsfly | http-json | simulator
url = "http://127.0.0.1:9000/xml"
status_url = "http://127.0.0.1:9000/xml/state.php"
login = "user"
password = "pass"
poll_interval = 1.0

[[providers]]
name = "fly"
type = "smsfly"
url = "http://127.0.0.1:9001/api"
key = "specialsecretapikey"
poll_interval = 1.0
"""


def test_sample_file_is_accepted_unchanged() -> None:
    """The file quoted in the core issue parses as is."""
    cfg = parse_config(SAMPLE, env={})
    assert str(cfg.smpp.listen) == "127.0.0.1:2775"
    assert cfg.http.listen is not None
    assert cfg.http.listen.port == 8080
    assert cfg.store.url == "sqlite:////var/lib/smppbridge/smppbridge.db"
    acme = cfg.account("acme")
    assert acme is not None
    assert acme.providers == ("mysmpp",)
    assert [p.name for p in cfg.providers] == ["mysmpp", "fly"]
    assert cfg.providers[1].key == "specialsecretapikey"


def test_demo_defaults() -> None:
    """No file: the demo of docs/configuration.md (SMPP 2775, HTTP 8080, demo/demo, simulator)."""
    cfg = load_config(None, env={})
    assert str(cfg.smpp.listen) == "127.0.0.1:2775"
    assert str(cfg.http.listen) == "127.0.0.1:8080"
    demo = cfg.account("demo")
    assert demo is not None
    assert demo.password == "demo"
    assert demo.providers == ("simulator",)
    assert cfg.store.url.startswith("sqlite:///")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[smpp]\nlisten = 2775\n", "smpp.listen: expected a string"),
        ('[smpp]\nlisten = "nohost"\n', "smpp.listen: expected HOST:PORT"),
        ("[smpp]\nwindow = 0\n", "smpp.window: must be at least 1"),
        ("[smpp]\nwindw = 5\n", "smpp.windw: unknown key"),
        ('[smpp]\ntls_listen = "127.0.0.1:3550"\n', "smpp.tls_listen: needs smpp.tls_cert"),
        ("[smpp]\nresponse_timeout = true\n", "smpp.response_timeout: expected a number"),
        ('[store]\nurl = "mysql://x"\n', "store.url: unsupported scheme"),
        ('[log]\nlevel = "loud"\n', "log.level:"),
        ('[[accounts]]\npassword = "x"\n', "accounts[0].system_id: required"),
        ('[[accounts]]\nsystem_id = "a"\n', "accounts[0].password: required"),
        ('[[accounts]]\nsystem_id = "a"\npassword = "123456789"\n',
         "accounts[0].password: longer than 8"),
        ('[[accounts]]\nsystem_id = "a"\npassword = "scrypt$x"\n', "accounts[0].password:"),
        ('[[accounts]]\nsystem_id = "a"\npassword = "p"\nallowed_networks = ["10.0.0.999/8"]\n',
         "accounts[0].allowed_networks[0]: not a network"),
        ('[[accounts]]\nsystem_id = "a"\npassword = "p"\nproviders = ["nope"]\n',
         "accounts[0].providers: unknown provider 'nope'"),
        ('[[accounts]]\nsystem_id = "a"\npassword = "p"\n[[accounts]]\nsystem_id = "a"\n'
         'password = "q"\n', "accounts[1].system_id: duplicate"),
        ('[[accounts]]\nsystem_id = "a"\npassword = "p"\nmax_binds = 0\n',
         "accounts[0].max_binds: must be at least 1"),
        ('[[providers]]\nname = "x"\ntype = "carrier-pigeon"\n', "providers[0].type: must be"),
        ("[smpp\n", "not valid TOML"),
        ('[bogus]\nx = 1\n', "bogus: unknown key"),
    ],
)
def test_errors_name_the_key_and_the_problem(text: str, message: str) -> None:
    """Each invalid value fails with a message that starts at the offending key."""
    with pytest.raises(ConfigError) as exc:
        parse_config(text, env={})
    assert message in str(exc.value)


def test_environment_overrides_scalar_keys() -> None:
    """SMPPBRIDGE_<SECTION>_<KEY> overrides the file, typed like the key."""
    cfg = parse_config("[smpp]\nwindow = 5\n", env={
        "SMPPBRIDGE_SMPP_LISTEN": "0.0.0.0:2776",
        "SMPPBRIDGE_SMPP_WINDOW": "50",
        "SMPPBRIDGE_STORE_URL": "memory://",
        "SMPPBRIDGE_LOG_LEVEL": "debug",
    })
    assert str(cfg.smpp.listen) == "0.0.0.0:2776"
    assert cfg.smpp.window == 50
    assert cfg.store.url == "memory://"
    assert cfg.log.level == "debug"


def test_environment_override_is_validated() -> None:
    """A bad override fails like a bad file value."""
    with pytest.raises(ConfigError, match="SMPPBRIDGE_SMPP_WINDOW"):
        parse_config("[smpp]\nwindow = 5\n", env={"SMPPBRIDGE_SMPP_WINDOW": "many"})


def test_account_options() -> None:
    """Account keys are parsed with their types; networks and hashed passwords accepted."""
    hashed = hash_password("s3cret", log2_n=4)
    cfg = parse_config(f"""
[[accounts]]
system_id = "bank"
password = "{hashed}"
max_binds = 3
allowed_networks = ["10.0.0.0/8", "127.0.0.1"]
throughput = 100
burst = 20
window = 10
message_id_format = "hex"
""", env={})
    (acct,) = cfg.accounts
    assert acct.max_binds == 3
    assert acct.throughput == 100.0
    assert acct.window == 10
    assert acct.message_id_format == "hex"
    assert ipaddress.ip_network("10.0.0.0/8") in acct.allowed_networks
    assert acct.allows("127.0.0.1")
    assert acct.allows("::ffff:10.1.2.3")
    assert not acct.allows("192.168.1.1")
    assert "s3cret" not in repr(acct)
    assert hashed not in repr(acct)


def test_missing_file_is_a_config_error(tmp_path: object) -> None:
    """A config path that cannot be read names the path."""
    with pytest.raises(ConfigError, match="cannot read"):
        load_config("/nonexistent/smppbridge.toml", env={})


def test_content_and_receipt_keys() -> None:
    """Per-account flood/limits tables and the [content]/[receipts] sections parse."""
    cfg = parse_config("""
[content]
reassembly_window = 30
max_parts = 10
[receipts]
ttl_hours = 1
[[accounts]]
system_id = "a"
password = "p"
iso_default = true
flood = { duplicate_window = 10, flood_limit = 5, flood_status = 0x4FF }
limits = { sms = 160 }
""", env={})
    (acct,) = cfg.accounts
    assert acct.iso_default
    assert acct.flood.duplicate_window == 10.0
    assert acct.flood.flood_limit == 5
    assert acct.flood.flood_status == 0x4FF
    assert acct.flood.flood_gap == 30.0
    assert acct.limits.sms == 160
    assert acct.limits.viber == 1000
    assert cfg.content.window == 30.0
    assert cfg.content.max_parts == 10
    assert cfg.receipts.ttl_hours == 1.0


@pytest.mark.parametrize(("text", "message"), [
    ('[[accounts]]\nsystem_id = "a"\npassword = "p"\nflood = { windw = 1 }\n',
     "accounts[0].flood.windw: unknown key"),
    ('[[accounts]]\nsystem_id = "a"\npassword = "p"\nlimits = { sms = 0 }\n',
     "accounts[0].limits.sms: must be at least 1"),
    ("[content]\nmax_parts = 300\n", "content.max_parts: must be at least 2 and at most 255"),
])
def test_content_key_errors(text: str, message: str) -> None:
    """Errors in the nested tables name the full key path."""
    with pytest.raises(ConfigError) as exc:
        parse_config(text, env={})
    assert message in str(exc.value)


def test_example_config_is_valid() -> None:
    """conf/smppbridge.example.toml passes validation (TLS and files aside)."""
    from pathlib import Path

    path = Path(__file__).parent.parent / "conf" / "smppbridge.example.toml"
    cfg = load_config(str(path), env={})
    assert cfg.account("acme") is not None
