"""Config: the issue's sample file, validation messages that name the file, the key (an
account by its system_id, a provider by its name) or the environment variable, suggest
the nearest key and list the known providers, every problem at once; env overrides."""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

import pytest

from smppbridge.config import ConfigError, load_config, parse_config
from smppbridge.core.passwords import hash_password

#: an account with nothing but its name and password
A_PLAIN = '[[accounts]]\nsystem_id = "a"\npassword = "p"\n'

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
        ('[[accounts]]\nsystem_id = "a"\n', "accounts[a].password: required"),
        ('[[accounts]]\nsystem_id = "a"\npassword = "123456789"\n',
         "accounts[a].password: longer than 8"),
        ('[[accounts]]\nsystem_id = "a"\npassword = "scrypt$x"\n', "accounts[a].password:"),
        ('[[accounts]]\nsystem_id = "a"\npassword = "p"\nallowed_networks = ["10.0.0.999/8"]\n',
         "accounts[a].allowed_networks[0]: not a network"),
        ('[[accounts]]\nsystem_id = "a"\npassword = "p"\nproviders = ["nope"]\n',
         "accounts[a].providers: unknown provider 'nope'"),
        ('[[accounts]]\nsystem_id = "a"\npassword = "p"\n[[accounts]]\nsystem_id = "a"\n'
         'password = "q"\n', "accounts[1].system_id: duplicate 'a' (also accounts[0])"),
        ('[[accounts]]\nsystem_id = "a"\npassword = "p"\nmax_binds = 0\n',
         "accounts[a].max_binds: must be at least 1"),
        ('[[providers]]\nname = "x"\ntype = "carrier-pigeon"\n', "providers[x].type: must be"),
        (A_PLAIN + 'receipts = "email"\n',
         "accounts[a].receipts: must be one of smpp, http, both"),
        (A_PLAIN + 'receipts = "http"\n',
         "accounts[a].receipt_url: required with receipts = 'http'"),
        (A_PLAIN + 'receipt_url = "ftp://x/y"\n', "accounts[a].receipt_url: must be an http:// or"),
        (A_PLAIN + 'api_keys = ["short"]\n',
         "accounts[a].api_keys[0]: a plain token needs at least"),
        (A_PLAIN + 'callback_ttl = 0\n', "accounts[a].callback_ttl: must be more than 0"),
        ('[http]\ncallback_allow_networks = ["10.0.0.0/33"]\n',
         "http.callback_allow_networks[0]: not a network"),
        ("[smpp\n", "not valid TOML"),
        ('[bogus]\nx = 1\n', "bogus: unknown key"),
    ],
)
def test_errors_name_the_key_and_the_problem(text: str, message: str) -> None:
    """Each invalid value fails with a message that starts at the offending key."""
    with pytest.raises(ConfigError) as exc:
        parse_config(text, env={})
    assert message in str(exc.value)


def test_http_customer_keys() -> None:
    """An account's HTTP keys (api_keys, receipts, receipt_url, callback_secret,
    callback_ttl) and [http] callback_allow_networks are read into the typed config;
    the secrets stay out of its repr."""
    cfg = parse_config(
        '[http]\ncallback_allow_networks = ["127.0.0.0/8", "10.1.0.0/16"]\n'
        + A_PLAIN + 'api_keys = ["k-0123456789abcdef"]\nreceipts = "both"\n'
        'receipt_url = "https://hooks.example/dlr"\ncallback_secret = "s3cret"\n'
        'callback_ttl = 3600\n', env={})
    a = cfg.account("a")
    assert a is not None
    assert (a.api_keys, a.receipts, a.receipt_url, a.callback_secret, a.callback_ttl) == (
        ("k-0123456789abcdef",), "both", "https://hooks.example/dlr", "s3cret", 3600.0)
    assert "s3cret" not in repr(a)
    assert "k-0123456789abcdef" not in repr(a)
    assert [str(n) for n in cfg.http.callback_allow_networks] == ["127.0.0.0/8", "10.1.0.0/16"]
    default = parse_config(A_PLAIN, env={}).account("a")
    assert default is not None
    assert (default.receipts, default.receipt_url, default.callback_ttl) == ("smpp", "", 86400.0)



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


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
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
     "accounts[a].flood.windw: unknown key"),
    ('[[accounts]]\nsystem_id = "a"\npassword = "p"\nlimits = { sms = 0 }\n',
     "accounts[a].limits.sms: must be at least 1"),
    ("[content]\nmax_parts = 300\n", "content.max_parts: must be at least 2 and at most 255"),
])
def test_content_key_errors(text: str, message: str) -> None:
    """Errors in the nested tables name the full key path."""
    with pytest.raises(ConfigError) as exc:
        parse_config(text, env={})
    assert message in str(exc.value)


def test_example_config_is_valid() -> None:
    """conf/smppbridge.example.toml passes validation (TLS and files aside)."""
    path = Path(__file__).parent.parent / "conf" / "smppbridge.example.toml"
    cfg = load_config(str(path), env={})
    assert cfg.account("acme") is not None


# --- errors an operator can act on ---------------------------------------------------

#: A file with one problem in each kind of table (and two in one account).
MANY_PROBLEMS = """
[smpp]
window = 0

[stor]
url = "memory://"

[[accounts]]
system_id = "acme"
password = "p"
throughput = -1
throughtput = 5
providers = ["mysmp"]

[[accounts]]
system_id = "beta"
password = "123456789"

[[accounts]]
password = "q"

[[providers]]
name = "mysmpp"
type = "mysmpp-xml"
token = "t"
poll_intervl = 1.0

[[providers]]
name = "fly"
type = "smsfly"
url = "https://fly.example/api"
key = "k"

[[routes]]
providers = ["mysmp"]
"""


def _problems(text: str, *, env: dict[str, str], source: str = "<string>"
              ) -> tuple[str, ...]:
    """The problems parse_config reports for ``text``."""
    with pytest.raises(ConfigError) as exc:
        parse_config(text, source=source, env=env)
    return exc.value.problems


def test_an_error_names_the_file_it_is_in(tmp_path: Path) -> None:
    """A problem of a file read from disk starts with that file's path, then the key."""
    path = tmp_path / "x.toml"
    path.write_text('[[accounts]]\nsystem_id = "acme"\npassword = "p"\nthroughput = -1\n')
    with pytest.raises(ConfigError) as exc:
        load_config(str(path), env={})
    assert str(exc.value) == f"{path}: accounts[acme].throughput: must be at least 0"
    assert _problems("[smpp]\nwindow = 0\n", source="conf/x.toml", env={}) == (
        "conf/x.toml: smpp.window: must be at least 1",)


def test_an_account_is_named_by_its_system_id() -> None:
    """An account's problems name it by system_id (accounts[acme], not accounts[0]),
    nested tables included; by its place only when the system_id is missing or bad."""
    text = ('[[accounts]]\nsystem_id = "ok"\npassword = "p"\n'
            '[[accounts]]\nsystem_id = "acme"\npassword = "p"\nthroughput = -1\n'
            'flood = { flood_gap = -1 }\n'
            '[[accounts]]\npassword = "p"\n'
            '[[accounts]]\nsystem_id = "much-too-long-system-id"\npassword = "p"\n'
            'max_binds = 0\n')
    assert _problems(text, env={}) == (
        "accounts[acme].flood.flood_gap: must be at least 0",
        "accounts[acme].throughput: must be at least 0",
        "accounts[2].system_id: required (1-15 ASCII characters)",
        "accounts[3].system_id: must be 1-15 ASCII characters, got 'much-too-long-system-id'",
        "accounts[3].max_binds: must be at least 1",
    )


def test_a_provider_is_named_by_its_name() -> None:
    """Provider problems keep parse_provider's providers[<name>]; a provider without a
    name is named by its place."""
    text = ('[[providers]]\nname = "fly"\ntype = "smsfly"\nkey = "k"\n'
            '[[providers]]\ntype = "simulator"\n')
    assert _problems(text, env={}) == ("providers[fly].url: required",
                                       "providers[1].name: required")


def test_a_route_is_named_by_its_place() -> None:
    """[[routes]] have no name: their problems say which one by index."""
    text = ('[[providers]]\nname = "sim"\ntype = "simulator"\n'
            '[[routes]]\nproviders = ["sim"]\n[[routes]]\nproviders = ["sim"]\nkind = "fax"\n')
    (problem,) = _problems(text, env={})
    assert problem.startswith("routes[1].kind: unknown kind (known: ")


@pytest.mark.parametrize(("env", "message"), [
    ({"SMPPBRIDGE_SMPP_LISTEN": "x"}, "SMPPBRIDGE_SMPP_LISTEN: expected HOST:PORT, got 'x'"),
    ({"SMPPBRIDGE_SMPP_WINDOW": "0"}, "SMPPBRIDGE_SMPP_WINDOW: must be at least 1"),
    ({"SMPPBRIDGE_STORE_URL": "mysql://db"},
     "SMPPBRIDGE_STORE_URL: unsupported scheme 'mysql'"),
    ({"SMPPBRIDGE_LOG_LEVEL": "loud"}, "SMPPBRIDGE_LOG_LEVEL: must be debug, info"),
])
def test_an_error_in_a_value_from_the_environment_names_the_variable(
        env: dict[str, str], message: str, tmp_path: Path) -> None:
    """A bad value set by SMPPBRIDGE_<SECTION>_<KEY> is reported by the variable's name,
    not as the file's key, and without the file's name (it is not in the file)."""
    path = tmp_path / "x.toml"
    path.write_text("[smpp]\nwindow = 5\n")
    with pytest.raises(ConfigError) as exc:
        load_config(str(path), env=env)
    (problem,) = exc.value.problems
    assert problem.startswith(message)


@pytest.mark.parametrize(("text", "message"), [
    ("[smpp]\nwindw = 5\n", "smpp.windw: unknown key (did you mean window?)"),
    ('[http]\nlisen = "127.0.0.1:8080"\n', "http.lisen: unknown key (did you mean listen?)"),
    ('[store]\nulr = "memory://"\n', "store.ulr: unknown key (did you mean url?)"),
    ('[log]\nformt = "json"\n', "log.formt: unknown key (did you mean format?)"),
    ("[content]\nmax_part = 3\n", "content.max_part: unknown key (did you mean max_parts?)"),
    ("[receipts]\nttl_hour = 3\n", "receipts.ttl_hour: unknown key (did you mean ttl_hours?)"),
    ('[stor]\nurl = "memory://"\n', "stor: unknown key (did you mean store?)"),
    ('[[accounts]]\nsystem_id = "acme"\npassword = "p"\nthroughtput = 5\n',
     "accounts[acme].throughtput: unknown key (did you mean throughput?)"),
    ('[[accounts]]\nsystem_id = "acme"\npassword = "p"\nflood = { flood_gapp = 5 }\n',
     "accounts[acme].flood.flood_gapp: unknown key (did you mean flood_gap?)"),
    ('[[providers]]\nname = "sim"\ntype = "simulator"\npoll_intervl = 1.0\n',
     "providers[sim].poll_intervl: unknown key (did you mean poll_interval?)"),
    ('[[providers]]\nname = "sim"\ntype = "simulator"\n'
     '[[routes]]\nproviders = ["sim"]\nprefx = "380"\n',
     "routes[0].prefx: unknown key (did you mean prefix?)"),
    ("[smpp]\nxyz = 1\n", "smpp.xyz: unknown key"),
])
def test_an_unknown_key_suggests_the_nearest_known_one(text: str, message: str) -> None:
    """A typo in any table is an unknown key with the nearest known key of that table
    (none when nothing is near)."""
    assert _problems(text, env={}) == (message,)


def test_an_unknown_variable_suggests_the_nearest_known_variable() -> None:
    """A misspelt SMPPBRIDGE_ variable is suggested in the variable's own spelling."""
    assert _problems("", env={"SMPPBRIDGE_SMPP_WINDOWW": "5"}) == (
        "SMPPBRIDGE_SMPP_WINDOWW: unknown key (did you mean SMPPBRIDGE_SMPP_WINDOW?)",)


def test_an_unknown_provider_lists_the_known_ones() -> None:
    """A route or an account naming a provider that does not exist lists the names
    that do."""
    problems = _problems(MANY_PROBLEMS, env={})
    assert "routes[0].providers: unknown provider 'mysmp' (known: fly, mysmpp)" in problems
    assert "accounts[acme].providers: unknown provider 'mysmp' (known: fly, mysmpp)" in problems
    assert _problems('[[accounts]]\nsystem_id = "a"\npassword = "p"\nproviders = ["x"]\n',
                     env={}) == ("accounts[a].providers: unknown provider 'x' (known: none)",)


def test_a_provider_with_a_problem_is_still_a_known_name() -> None:
    """An account naming a provider whose own table is wrong gets no second,
    misleading "unknown provider" problem."""
    text = ('[[accounts]]\nsystem_id = "a"\npassword = "p"\nproviders = ["fly"]\n'
            '[[providers]]\nname = "fly"\ntype = "smsfly"\nkey = "k"\n')
    assert _problems(text, env={}) == ("providers[fly].url: required",)


def test_every_problem_is_reported_at_once() -> None:
    """One ConfigError (a ValueError) carries every problem of the file, in every table,
    and its str() is one problem per line."""
    with pytest.raises(ConfigError) as caught:
        parse_config(MANY_PROBLEMS, source="conf/x.toml", env={"SMPPBRIDGE_LOG_LEVEL": "loud"})
    exc = caught.value
    assert isinstance(exc, ValueError)
    assert exc.problems == (
        "conf/x.toml: stor: unknown key (did you mean store?)",
        "conf/x.toml: smpp.window: must be at least 1",
        "SMPPBRIDGE_LOG_LEVEL: must be debug, info, warning or error, got 'loud'",
        "conf/x.toml: providers[mysmpp].poll_intervl: unknown key (did you mean "
        "poll_interval?)",
        "conf/x.toml: accounts[acme].providers: unknown provider 'mysmp' (known: fly, mysmpp)",
        "conf/x.toml: accounts[acme].throughput: must be at least 0",
        "conf/x.toml: accounts[acme].throughtput: unknown key (did you mean throughput?)",
        "conf/x.toml: accounts[beta].password: longer than 8 characters, which no bind can "
        "carry",
        "conf/x.toml: accounts[2].system_id: required (1-15 ASCII characters)",
        "conf/x.toml: routes[0].providers: unknown provider 'mysmp' (known: fly, mysmpp)",
    )
    assert str(exc).splitlines() == list(exc.problems)


def test_a_redis_store_needs_the_redis_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """A redis:// store without redis-py installed (simulated: the import fails) is a
    config problem with the install command, not a traceback at start."""
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    assert _problems('[store]\nurl = "redis://127.0.0.1:6379/0"\n', source="conf/x.toml",
                     env={}) == ("conf/x.toml: store.url: redis:// needs the redis extra: "
                                 "pip install 'smppbridge[redis]'",)
    assert _problems("", env={"SMPPBRIDGE_STORE_URL": "rediss://10.0.0.5:6380/1"}) == (
        "SMPPBRIDGE_STORE_URL: rediss:// needs the redis extra: "
        "pip install 'smppbridge[redis]'",)
    assert parse_config('[store]\nurl = "memory://"\n', env={}).store.url == "memory://"


def test_a_redis_store_with_redis_installed_is_accepted() -> None:
    """With the extra installed (as in the test venv) a redis:// URL is fine."""
    cfg = parse_config('[store]\nurl = "redis://127.0.0.1:6379/0"\n', env={})
    assert cfg.store.scheme == "redis"


def test_a_redis_cluster_store_url_is_checked_and_its_mistakes_named() -> None:
    """``redis-cluster://`` with seeds and partitions is accepted; a seed without a
    port, a bad partition count or an unknown parameter is a problem of store.url that
    says which, without echoing the password."""
    cfg = parse_config('[store]\nurl = "redis-cluster://h1:7000,h2:7001/?partitions=12"\n',
                       env={})
    assert cfg.store.scheme == "redis-cluster"
    for url, says in (
            ("redis-cluster://u:secret@h1", "store.url: seed 'h1' is not HOST:PORT"),
            ("redis-cluster://h1:7000/?partitions=0",
             "store.url: partitions must be a whole number from 1 to 256, got '0'"),
            ("redis-cluster://h1:7000/?colour=blue", "store.url: unknown parameter 'colour'")):
        (problem,) = _problems(f'[store]\nurl = "{url}"\n', env={})
        assert problem.startswith(says), problem
        assert "secret" not in problem
