"""Configuration: one frozen object, loaded from TOML, validated before any port binds.

Size: over 500 lines because it parses every table of the file (each section's parser
is short) and collects every problem of a file at once; the settings types live with
the layers that read them.

Every limit has a name and a documented default (``conf/smppbridge.example.toml``).
Environment variables ``SMPPBRIDGE_<SECTION>_<KEY>`` override scalar keys of the
``[smpp]``, ``[http]``, ``[store]`` and ``[log]`` tables (e.g.
``SMPPBRIDGE_SMPP_LISTEN=0.0.0.0:2775``).

Errors name the file, the key and the problem (``conf/x.toml: accounts[acme].throughput:
must be at least 0``): an account by its system_id (by its place only when the
system_id itself is the problem), a provider by its name, a route by its place, and the
environment variable when the value came from one. A bad value does not stop the
parse: every problem of the file is collected, and one :class:`ConfigError` carries
them all (``check-config`` prints each on its own line).
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import ipaddress
import os
import tomllib
import urllib.parse
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from smppbridge.core.accounts import DEFAULT_CALLBACK_TTL, RECEIPT_CHANNELS, Account, FloodRules
from smppbridge.core.history import DEFAULT_HISTORY_DAYS
from smppbridge.core.mo import MO_CHANNELS, MO_PARTS, MoRoute
from smppbridge.core.net import HostPort, IpNetwork
from smppbridge.core.passwords import check_hash_format, is_hashed
from smppbridge.core.provider_settings import ProviderSettings
from smppbridge.core.routes import Route
from smppbridge.http.serve import HttpLimits
from smppbridge.providers.settings import parse_provider
from smppbridge.server.settings import SmppConfig
from smppbridge.store.redis.urls import CLUSTER_SCHEMES, parse_cluster_url
from smppbridge.text.concat import ReassemblyConfig
from smppbridge.text.content import Kind
from smppbridge.text.macros import ContentLimits

__all__ = [
    "DEMO_TOML",
    "Config",
    "ConfigError",
    "HttpConfig",
    "LogConfig",
    "ReceiptConfig",
    "StoreConfig",
    "load_config",
    "parse_config",
    "parse_route",
]

#: Bind password is a C-octet string of at most 9 octets with its NUL (SMPP 3.4 §4.1.1).
MAX_BIND_PASSWORD = 8
#: system_id: 16 octets with its NUL (SMPP 3.4 §4.1.1).
MAX_SYSTEM_ID = 15
#: a plain admin token shorter than this is guessable (a hash may be of anything)
MIN_ADMIN_TOKEN = 16
_ENV_PREFIX = "SMPPBRIDGE_"
#: the tables whose scalar keys SMPPBRIDGE_<SECTION>_<KEY> overrides
_ENV_SECTIONS = ("smpp", "http", "store", "log")
_SECTIONS = ("smpp", "http", "store", "log", "content", "receipts")
_ARRAYS = ("accounts", "providers", "routes", "mo_routes")
_ROUTE_KEYS = ("account", "prefix", "kind", "providers")
_MO_ROUTE_KEYS = ("to", "prefix", "keyword", "account")
#: parse_config's source when the text is not a file: its problems name no file
_NO_SOURCE = "<string>"
_MAX_PORT = 65535


class ConfigError(ValueError):
    """Config problems, one or more. Each (in ``problems``) starts with the file, or
    the environment variable, and the key it is about; ``str()`` is one per line."""

    def __init__(self, *problems: str) -> None:
        super().__init__(*problems)
        self.problems: tuple[str, ...] = problems

    def __str__(self) -> str:
        return "\n".join(self.problems)


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """``[http]``: the node's HTTP listeners and the limits of its HTTP server."""

    listen: HostPort | None = HostPort("127.0.0.1", 8080)
    #: serve /metrics here instead of on ``listen`` (e.g. a private address); None = on
    #: ``listen``
    metrics_listen: HostPort | None = None
    limits: HttpLimits = field(default_factory=HttpLimits)
    #: Bearer tokens of the operator API (plain, or ``scrypt$...`` hashes); none: the
    #: admin side is open on a loopback ``listen`` and closed elsewhere
    admin_tokens: tuple[str, ...] = field(default=(), repr=False)
    #: the time zone the console shows times in
    timezone: str = "UTC"
    #: loopback/private/link-local networks that callbacks may reach all the same
    callback_allow_networks: tuple[IpNetwork, ...] = ()


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """``[store]``: where messages are kept, and for how long once they ended."""

    url: str = "sqlite:///data/smppbridge.db"
    #: days a final message and its timeline stay findable (then purged)
    history_days: float = DEFAULT_HISTORY_DAYS

    @property
    def scheme(self) -> str:
        return self.url.split(":", 1)[0]


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = "info"
    #: json | console | auto (console on a TTY, JSON otherwise)
    format: str = "auto"


@dataclass(frozen=True, slots=True)
class ReceiptConfig:
    #: hours an undelivered receipt is kept for a receiver bind (docs/store.md: 72 h)
    ttl_hours: float = 72.0
    #: first retry delay after a failed deliver_sm, doubling up to retry_max
    retry_backoff: float = 5.0
    retry_max: float = 600.0


@dataclass(frozen=True, slots=True)
class Config:
    smpp: SmppConfig = SmppConfig()
    http: HttpConfig = HttpConfig()
    store: StoreConfig = StoreConfig()
    log: LogConfig = LogConfig()
    content: ReassemblyConfig = field(default_factory=ReassemblyConfig)
    receipts: ReceiptConfig = field(default_factory=ReceiptConfig)
    accounts: tuple[Account, ...] = ()
    providers: tuple[ProviderSettings, ...] = ()
    routes: tuple[Route, ...] = ()
    #: ``[[mo_routes]]``, in file order (the first match wins: core.mo)
    mo_routes: tuple[MoRoute, ...] = ()
    source: str = "<defaults>"
    #: SHA-256 of the file's text (``smppbridge_config_info``: every node runs the same?)
    sha256: str = ""

    def account(self, system_id: str) -> Account | None:
        for a in self.accounts:
            if a.system_id == system_id:
                return a
        return None

    def accounts_by_id(self) -> dict[str, Account]:
        return {a.system_id: a for a in self.accounts}

    def account_providers(self) -> dict[str, tuple[str, ...]]:
        """Each account's default route (its ``providers``)."""
        return {a.system_id: a.providers for a in self.accounts}


#: The demo configuration (docs/configuration.md), used by ``smppbridge serve`` without --config.
DEMO_TOML = """
[smpp]
listen = "127.0.0.1:2775"

[http]
listen = "127.0.0.1:8080"

[store]
url = "sqlite:///data/smppbridge.db"

[[accounts]]
system_id = "demo"
password = "demo"
providers = ["simulator"]

[[providers]]
name = "simulator"
type = "simulator"
"""


# --- parsing -----------------------------------------------------------------------------

T = TypeVar("T")


class _Problems:
    """Every problem of one document, in the order found, each once."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, line: str) -> None:
        if line not in self.lines:
            self.lines.append(line)

    def error(self, source: str) -> ConfigError:
        """One error carrying them all, each naming the file (not a problem with an
        environment variable: that value is not in the file)."""
        return ConfigError(*(
            line if source == _NO_SOURCE or line.startswith(_ENV_PREFIX)
            else f"{source}: {line}" for line in self.lines))


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _known(names: Iterable[str]) -> str:
    return f"known: {', '.join(sorted(names)) or 'none'}"


class _Table:
    """A TOML table read with key-path error messages; unknown keys are errors.

    A bad value is recorded in ``problems`` and read as its default, so the parse goes
    on and reports every problem at once. ``env`` maps the keys an environment variable
    set to that variable: a problem with such a key names the variable."""

    def __init__(self, data: object, path: str, problems: _Problems,
                 env: Mapping[str, str] | None = None) -> None:
        if not isinstance(data, Mapping):
            problems.add(f"{path}: expected a table")
            data = {}
        self.data: Mapping[str, Any] = data
        self.path = path
        self.problems = problems
        self.env: Mapping[str, str] = env or {}
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        if name in self.env:
            return self.env[name]
        return f"{self.path}.{name}" if self.path else name

    def fail(self, name: str, problem: str) -> None:
        """Record a problem with the key ``name`` (``name[3]`` for a list's item)."""
        self.problems.add(f"{self.key(name)}: {problem}")

    def table(self, name: str) -> _Table:
        """The nested table ``name`` (``flood = { ... }``)."""
        return _Table(self.get(name, dict, {}), self.key(name), self.problems)

    def get(self, name: str, kind: type[T] | tuple[type, ...], default: T) -> T:
        self.used.add(name)
        if name not in self.data:
            return default
        value = self.data[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and bool not in kinds:
            self.fail(name, f"expected {_names(kinds)}, got a boolean")
            return default
        if not isinstance(value, kinds):
            self.fail(name, f"expected {_names(kinds)}, got {type(value).__name__}")
            return default
        return value  # type: ignore[return-value]

    def number(self, name: str, default: float, *, minimum: float = 0,
               maximum: float | None = None) -> float:
        value = self.get(name, float, default)
        if value < minimum or (maximum is not None and value > maximum):
            bound = f" and at most {maximum:g}" if maximum is not None else ""
            self.fail(name, f"must be at least {minimum:g}{bound}")
            return default
        return value

    def integer(self, name: str, default: int, *, minimum: int = 0,
                maximum: int | None = None) -> int:
        value = self.get(name, int, default)
        if value < minimum or (maximum is not None and value > maximum):
            bound = f" and at most {maximum}" if maximum is not None else ""
            self.fail(name, f"must be at least {minimum}{bound}")
            return default
        return value

    def finish(self) -> None:
        """Every key no parser asked for is an unknown key, with the nearest known one."""
        for name in self.data:
            if name in self.used:
                continue
            close = difflib.get_close_matches(name, sorted(self.used), n=1)
            if close and name in self.env:  # in the variable's own spelling
                close = [self.env[name][:-len(name)] + close[0].upper()]
            self.fail(name, "unknown key" + (f" (did you mean {close[0]}?)" if close else ""))


def _names(kinds: tuple[type, ...]) -> str:
    return " or ".join({"str": "a string", "int": "an integer", "float": "a number",
                        "bool": "a boolean", "list": "a list"}.get(k.__name__, k.__name__)
                       for k in kinds)


def parse_hostport(value: str, key: str) -> HostPort:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= _MAX_PORT:
        raise ConfigError(f"{key}: expected HOST:PORT, got {value!r}")
    return HostPort(host.strip("[]"), int(port))


def _opt_hostport(t: _Table, name: str, default: HostPort | None) -> HostPort | None:
    raw = t.get(name, str, "")
    if not isinstance(t.data.get(name), str):  # absent, or not a string (recorded)
        return default
    if not raw:
        return None
    try:
        return parse_hostport(raw, t.key(name))
    except ConfigError as exc:
        t.problems.add(str(exc))
        return default


def _smpp(t: _Table) -> SmppConfig:
    d = SmppConfig()
    cfg = SmppConfig(
        listen=_opt_hostport(t, "listen", d.listen),
        tls_listen=_opt_hostport(t, "tls_listen", None),
        tls_cert=t.get("tls_cert", str, "") or None,
        tls_key=t.get("tls_key", str, "") or None,
        tls_client_ca=t.get("tls_client_ca", str, "") or None,
        window=t.integer("window", d.window, minimum=1),
        session_init_timeout=t.number("session_init_timeout", d.session_init_timeout),
        enquire_link_interval=t.number("enquire_link_interval", d.enquire_link_interval),
        inactivity_timeout=t.number("inactivity_timeout", d.inactivity_timeout),
        response_timeout=t.number("response_timeout", d.response_timeout, minimum=0.001),
        max_command_length=t.integer("max_command_length", d.max_command_length,
                                     minimum=1024, maximum=16 * 1024 * 1024),
        max_connections=t.integer("max_connections", d.max_connections),
        max_connections_per_ip=t.integer("max_connections_per_ip", d.max_connections_per_ip),
        shutdown_grace=t.number("shutdown_grace", d.shutdown_grace),
        write_buffer_high=t.integer("write_buffer_high", d.write_buffer_high, minimum=4096),
        bind_max_failures=t.integer("bind_max_failures", d.bind_max_failures),
        bind_failure_window=t.number("bind_failure_window", d.bind_failure_window),
        bind_lockout=t.number("bind_lockout", d.bind_lockout),
    )
    t.finish()
    if cfg.tls_listen and not (cfg.tls_cert and cfg.tls_key):
        t.fail("tls_listen", "needs smpp.tls_cert and smpp.tls_key")
    for key in ("tls_cert", "tls_key", "tls_client_ca"):
        path = getattr(cfg, key)
        if cfg.tls_listen and path and not Path(path).is_file():
            t.fail(key, f"no such file {path!r}")
    if not cfg.listen and not cfg.tls_listen:
        t.fail("listen", "no SMPP listener configured")
    return cfg


def _admin_tokens(t: _Table, name: str = "admin_tokens") -> tuple[str, ...]:
    """Bearer tokens (``[http] admin_tokens``, an account's ``api_keys``): plain of at
    least MIN_ADMIN_TOKEN characters, or hashes from ``smppbridge hash-password``."""
    tokens = t.get(name, list, [])
    out = []
    for i, token in enumerate(tokens):
        key = f"{name}[{i}]"
        if not isinstance(token, str) or not token:
            t.fail(key, "expected a non-empty string")
            continue
        if is_hashed(token):
            try:
                check_hash_format(token)
            except ValueError as exc:
                t.fail(key, str(exc))
                continue
        elif len(token) < MIN_ADMIN_TOKEN:
            # The value is not echoed: it is a secret.
            t.fail(key, f"a plain token needs at least {MIN_ADMIN_TOKEN} characters "
                        "(or give a hash from smppbridge hash-password)")
            continue
        out.append(token)
    return tuple(out)


def _networks(t: _Table, name: str) -> tuple[IpNetwork, ...]:
    out: list[IpNetwork] = []
    for i, raw in enumerate(t.get(name, list, [])):
        try:
            out.append(ipaddress.ip_network(str(raw), strict=False))
        except ValueError:
            t.fail(f"{name}[{i}]", f"not a network: {raw!r}")
    return tuple(out)


def _http_url(t: _Table, name: str) -> str:
    url = t.get(name, str, "")
    parts = urllib.parse.urlsplit(url)
    if url and (parts.scheme not in ("http", "https") or not parts.hostname):
        t.fail(name, f"must be an http:// or https:// URL with a host, got {url!r}")
    return url


def _timezone(t: _Table) -> str:
    name = t.get("timezone", str, "UTC")
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        t.fail("timezone", f"unknown time zone {name!r}")
        return "UTC"
    return name


def _http_limits(t: _Table) -> HttpLimits:
    d = HttpLimits()
    return HttpLimits(
        max_body=t.integer("max_body", d.max_body, minimum=1024, maximum=64 * 1024 * 1024),
        max_header=t.integer("max_header", d.max_header, minimum=1024,
                             maximum=1024 * 1024),
        keepalive_timeout=t.number("keepalive_timeout", d.keepalive_timeout, minimum=1),
        max_connections=t.integer("max_connections", d.max_connections, minimum=1),
        shutdown_grace=t.number("shutdown_grace", d.shutdown_grace, minimum=0.1),
        header_timeout=t.number("header_timeout", d.header_timeout, minimum=0.1),
        max_connections_per_ip=t.integer("max_connections_per_ip",
                                         d.max_connections_per_ip),
    )


def _store(t: _Table) -> StoreConfig:
    url = t.get("url", str, StoreConfig().url)
    history_days = t.number("history_days", DEFAULT_HISTORY_DAYS, minimum=0.001,
                            maximum=3650)
    t.finish()
    scheme = url.split(":", 1)[0]
    if scheme == "sqlite":
        if not url.startswith("sqlite:///") or len(url) <= len("sqlite:///"):
            t.fail("url", f"expected sqlite:///PATH, got {url!r}")
    elif scheme in ("redis", "rediss"):
        if not url.startswith(("redis://", "rediss://")):
            # The value is not echoed: a redis URL may carry a password.
            t.fail("url", "expected redis://[USER:PASSWORD@]HOST:PORT/DB")
        else:
            missing = _redis_missing()
            if missing is not None:
                t.fail("url", f"{scheme}:// needs the redis extra: "
                              f"pip install 'smppbridge[redis]'{missing}")
    elif scheme in CLUSTER_SCHEMES:
        try:
            parse_cluster_url(url)
        except ValueError as exc:
            t.fail("url", str(exc))
        missing = _redis_missing()
        if missing is not None:
            t.fail("url", f"{scheme}:// needs the redis extra: "
                          f"pip install 'smppbridge[redis]'{missing}")
    elif scheme != "memory":
        t.fail("url", f"unsupported scheme {scheme!r} (sqlite:///PATH, "
                      "redis://HOST:PORT/DB, redis-cluster://HOST:PORT,... or memory://)")
    return StoreConfig(url, history_days)


def _redis_missing() -> str | None:
    """None when redis-py imports (the ``redis`` extra); else what to add to the
    message: nothing when the package is absent, the import error when it is broken."""
    try:
        for name in ("redis", "redis.asyncio"):  # what the Redis store imports
            importlib.import_module(name)
    except ImportError as exc:
        return "" if (exc.name or "redis").split(".")[0] == "redis" else f" ({exc})"
    return None


def _log(t: _Table) -> LogConfig:
    level = t.get("level", str, "info").lower()
    fmt = t.get("format", str, "auto").lower()
    t.finish()
    if level not in ("debug", "info", "warning", "error"):
        t.fail("level", f"must be debug, info, warning or error, got {level!r}")
    if fmt not in ("json", "console", "auto"):
        t.fail("format", f"must be json, console or auto, got {fmt!r}")
    return LogConfig(level, fmt)


def _account(t: _Table, provider_names: Sequence[str]) -> Account:
    """One ``[[accounts]]`` table. Once its system_id is read, the table's problems
    name the account by it (``accounts[acme].throughput``), not by its place."""
    system_id = t.get("system_id", str, "")
    if not system_id:
        t.fail("system_id", f"required (1-{MAX_SYSTEM_ID} ASCII characters)")
    elif len(system_id) > MAX_SYSTEM_ID or not system_id.isascii():
        t.fail("system_id", f"must be 1-{MAX_SYSTEM_ID} ASCII characters, got {system_id!r}")
    else:
        t.path = f"accounts[{system_id}]"
    password = t.get("password", str, "")
    if not password:
        t.fail("password", "required")
    elif is_hashed(password):
        try:
            check_hash_format(password)
        except ValueError as exc:
            t.fail("password", str(exc))
    elif len(password) > MAX_BIND_PASSWORD:
        # A bind password is at most 8 characters on the wire (SMPP 3.4 §4.1.1),
        # so a longer one could never match.
        t.fail("password", f"longer than {MAX_BIND_PASSWORD} characters, which no bind "
                           "can carry")
    networks = _networks(t, "allowed_networks")
    receipts = t.get("receipts", str, "smpp")
    if receipts not in RECEIPT_CHANNELS:
        t.fail("receipts", f"must be one of {', '.join(RECEIPT_CHANNELS)}, got {receipts!r}")
    receipt_url = _http_url(t, "receipt_url")
    if receipts in ("http", "both") and not receipt_url:
        t.fail("receipt_url", f"required with receipts = {receipts!r} (where the status "
                              "callbacks go; a message's own callback_url overrides it)")
    callback_ttl = t.number("callback_ttl", DEFAULT_CALLBACK_TTL)
    if callback_ttl <= 0:
        t.fail("callback_ttl", "must be more than 0 seconds")
    mo_url = _http_url(t, "mo_url")
    mo = t.get("mo", str, "http" if mo_url else "smpp")
    if mo not in MO_CHANNELS:
        t.fail("mo", f"must be one of {', '.join(MO_CHANNELS)}, got {mo!r}")
    elif mo in ("http", "both") and not mo_url:
        t.fail("mo_url", f"required with mo = {mo!r} (where mobile-originated "
                         "messages are POSTed)")
    mo_parts = t.get("mo_parts", str, "join")
    if mo_parts not in MO_PARTS:
        t.fail("mo_parts", f"must be one of {', '.join(MO_PARTS)}, got {mo_parts!r}")
    providers = t.get("providers", list, [])
    if not all(isinstance(p, str) for p in providers):
        t.fail("providers", "expected a list of provider names")
        providers = []
    for name in providers:
        if name not in provider_names:
            t.fail("providers", f"unknown provider {name!r} ({_known(provider_names)})")
    id_format = t.get("message_id_format", str, "decimal")
    if id_format not in ("decimal", "hex"):
        t.fail("message_id_format", "must be decimal or hex")
    window = t.integer("window", 0, minimum=0) or None
    flood = _flood(t.table("flood"))
    limits = _limits(t.table("limits"))
    account = Account(
        system_id=system_id,
        password=password,
        max_binds=t.integer("max_binds", 10, minimum=1),
        allowed_networks=networks,
        throughput=t.number("throughput", 0.0),
        burst=t.integer("burst", 0),
        window=window,
        providers=tuple(providers),
        message_id_format=id_format,
        iso_default=t.get("iso_default", bool, False),
        flood=flood,
        limits=limits,
        api_keys=_admin_tokens(t, "api_keys"),
        receipts=receipts,
        receipt_url=receipt_url,
        callback_secret=t.get("callback_secret", str, ""),
        callback_ttl=callback_ttl,
        mo=mo,
        mo_url=mo_url,
        mo_parts=mo_parts,
    )
    t.finish()
    return account


def _flood(t: _Table) -> FloodRules:
    d = FloodRules()
    rules = FloodRules(
        duplicate_window=t.number("duplicate_window", d.duplicate_window),
        flood_gap=t.number("flood_gap", d.flood_gap),
        flood_limit=t.integer("flood_limit", d.flood_limit),
        duplicate_status=t.integer("duplicate_status", d.duplicate_status, minimum=1,
                                   maximum=0xFFFFFFFF),
        flood_status=t.integer("flood_status", d.flood_status, minimum=1, maximum=0xFFFFFFFF),
        enabled=t.get("enabled", bool, d.enabled),
    )
    t.finish()
    return rules


def _limits(t: _Table) -> ContentLimits:
    d = ContentLimits()
    limits = ContentLimits(**{name: t.integer(name, getattr(d, name), minimum=1)
                              for name in ContentLimits.__dataclass_fields__})
    t.finish()
    return limits


def _content(t: _Table) -> ReassemblyConfig:
    d = ReassemblyConfig()
    cfg = ReassemblyConfig(
        window=t.number("reassembly_window", d.window, minimum=1),
        max_parts=t.integer("max_parts", d.max_parts, minimum=2, maximum=255),
        max_pending=t.integer("max_pending", d.max_pending, minimum=1),
    )
    t.finish()
    return cfg


def _receipts(t: _Table) -> ReceiptConfig:
    d = ReceiptConfig()
    cfg = ReceiptConfig(
        ttl_hours=t.number("ttl_hours", d.ttl_hours, minimum=0.001),
        retry_backoff=t.number("retry_backoff", d.retry_backoff, minimum=0.01),
        retry_max=t.number("retry_max", d.retry_max, minimum=0.01),
    )
    t.finish()
    return cfg


def _provider(raw: Mapping[str, Any], index: int, problems: _Problems
              ) -> ProviderSettings | None:
    """One ``[[providers]]`` table, validated by the provider layer's own parser (each
    adapter's keys, secrets from ``<key>_env``/``<key>_file``: the process environment,
    whatever ``env`` overrides the scalar keys); its problems name the provider
    (``providers[<name>]``), by its place only when it has no name."""
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        problems.add(f"providers[{index}].name: " + (
            "required" if name is None or name == "" else
            f"expected a string, got {type(name).__name__}"))
        return None
    try:
        return parse_provider(dict(raw))
    except ValueError as exc:
        problems.add(str(exc))
        return None


def _tables(data: Mapping[str, Any], name: str,
            problems: _Problems) -> list[tuple[int, Mapping[str, Any]]]:
    """The tables of the array ``name`` with their places; what is not a table is a
    problem, and left out."""
    raw = data.get(name, [])
    if not isinstance(raw, list):
        problems.add(f"{name}: expected an array of tables ([[{name}]])")
        return []
    out = []
    for i, item in enumerate(raw):
        if isinstance(item, Mapping):
            out.append((i, item))
        else:
            problems.add(f"{name}[{i}]: expected a table")
    return out


def _env_overrides(data: dict[str, Any], env: Mapping[str, str], problems: _Problems
                   ) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    """The document with the environment's overrides, and per section the keys that
    came from a variable (key -> variable name)."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    origin: dict[str, dict[str, str]] = {}
    for section in _ENV_SECTIONS:
        prefix = f"{_ENV_PREFIX}{section.upper()}_"
        for var, value in sorted(env.items()):
            if not var.startswith(prefix):
                continue
            key = var[len(prefix):].lower()
            table = out.setdefault(section, {})
            if not isinstance(table, dict):  # the file's problem: "smpp: expected a table"
                continue
            try:
                table[key] = _coerce(value, table.get(key), var)
            except ConfigError as exc:
                problems.add(str(exc))
                continue
            origin.setdefault(section, {})[key] = var
    return out, origin


def _coerce(value: str, current: Any, var: str) -> Any:
    if isinstance(current, bool):
        return value.lower() in ("1", "true", "yes", "on")
    if isinstance(current, int):
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{var}: expected an integer, got {value!r}") from None
    if isinstance(current, float):
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{var}: expected a number, got {value!r}") from None
    for conv in (int, float):
        try:
            return conv(value)
        except ValueError:
            continue
    return value


def parse_config(text: str, *, source: str = _NO_SOURCE,
                 env: Mapping[str, str] | None = None) -> Config:
    """Parse and validate a TOML document (environment overrides applied).

    Raises one :class:`ConfigError` listing every problem found, each naming
    ``source`` (unless it is the default, text that is no file)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    problems = _Problems()
    data, from_env = _env_overrides(data, os.environ if env is None else env, problems)
    top = _Table(data, "", problems)
    tables = {name: _Table(top.get(name, dict, {}), name, problems, from_env.get(name))
              for name in _SECTIONS}
    top.used.update(_ARRAYS)
    top.finish()
    smpp = _smpp(tables["smpp"])
    http_t = tables["http"]
    http = HttpConfig(listen=_opt_hostport(http_t, "listen", HttpConfig().listen),
                      metrics_listen=_opt_hostport(http_t, "metrics_listen", None),
                      limits=_http_limits(http_t), admin_tokens=_admin_tokens(http_t),
                      timezone=_timezone(http_t),
                      callback_allow_networks=_networks(http_t, "callback_allow_networks"))
    http_t.finish()
    store = _store(tables["store"])
    log = _log(tables["log"])
    content = _content(tables["content"])
    receipts = _receipts(tables["receipts"])
    raw_providers = _tables(data, "providers", problems)
    # Named providers are known even when their table has a problem: an account or a
    # route naming one is not wrong too.
    names: list[str] = []
    for i, raw in raw_providers:
        name = raw.get("name")
        if isinstance(name, str) and name:
            if name in names:
                problems.add(f"providers[{i}].name: duplicate {name!r}")
            names.append(name)
    providers = tuple(p for i, raw in raw_providers
                      if (p := _provider(raw, i, problems)) is not None)
    accounts: list[Account] = []
    places: dict[str, int] = {}
    for i, raw in _tables(data, "accounts", problems):
        account = _account(_Table(raw, f"accounts[{i}]", problems), names)
        sid = account.system_id
        if sid in places:  # two accounts of that name: only the places tell them apart
            problems.add(f"accounts[{i}].system_id: duplicate {sid!r} "
                         f"(also accounts[{places[sid]}])")
        elif sid:
            places[sid] = i
        accounts.append(account)
    routes: list[Route] = []
    for i, raw in _tables(data, "routes", problems):
        try:
            routes.append(parse_route(raw, i, names))
        except ConfigError as exc:
            for line in exc.problems:
                problems.add(line)
    mo_routes: list[MoRoute] = []
    for i, raw in _tables(data, "mo_routes", problems):
        try:
            mo_routes.append(parse_mo_route(raw, i, [a.system_id for a in accounts]))
        except ConfigError as exc:
            for line in exc.problems:
                problems.add(line)
    if problems.lines:
        raise problems.error(source)
    return Config(smpp=smpp, http=http, store=store, log=log, content=content,
                  receipts=receipts, accounts=tuple(accounts), providers=providers,
                  routes=tuple(routes), mo_routes=tuple(mo_routes), source=source,
                  sha256=hashlib.sha256(text.encode()).hexdigest())


def _strings(raw: Mapping[str, Any], key: str, where: str,
             problems: list[str]) -> tuple[str, ...] | None:
    """A string or a list of strings as a tuple; None (and a problem) when it is not."""
    value = raw.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        problems.append(f"{where}.{key}: expected a list of strings")
        return None
    return tuple(value)


def parse_route(raw: Mapping[str, Any], index: int, provider_names: Sequence[str]) -> Route:
    """Validate one ``[[routes]]`` table (keys ``account``, ``prefix``, ``kind``,
    ``providers``; each a string or a list); raises ``ConfigError("routes[<i>].<key>:
    ...")`` with every problem of the table."""
    where = f"routes[{index}]"
    problems = [f"{where}.{key}: unknown key{_did_you_mean(key, _ROUTE_KEYS)}"
                for key in raw if key not in _ROUTE_KEYS]
    providers = _strings(raw, "providers", where, problems)
    if providers == ():
        problems.append(f"{where}.providers: required")
    for name in providers or ():
        if name not in provider_names:
            problems.append(f"{where}.providers: unknown provider {name!r} "
                            f"({_known(provider_names)})")
    kinds: frozenset[Kind] = frozenset()
    try:
        kinds = frozenset(Kind(k) for k in _strings(raw, "kind", where, problems) or ())
    except ValueError:
        problems.append(f"{where}.kind: unknown kind ({_known(k.value for k in Kind)})")
    prefixes = tuple(p.lstrip("+") for p in _strings(raw, "prefix", where, problems) or ())
    accounts = frozenset(_strings(raw, "account", where, problems) or ())
    if problems:
        raise ConfigError(*problems)
    return Route(providers or (), accounts, prefixes, kinds)


def parse_mo_route(raw: Mapping[str, Any], index: int, accounts: Sequence[str]) -> MoRoute:
    """Validate one ``[[mo_routes]]`` table (``to`` or ``prefix``, optional ``keyword``,
    each a string or a list; ``account`` required, a known system_id); raises
    ``ConfigError("mo_routes[<i>].<key>: ...")`` with every problem of the table."""
    where = f"mo_routes[{index}]"
    problems = [f"{where}.{key}: unknown key{_did_you_mean(key, _MO_ROUTE_KEYS)}"
                for key in raw if key not in _MO_ROUTE_KEYS]
    account = raw.get("account", "")
    if not isinstance(account, str) or not account:
        problems.append(f"{where}.account: required (the system_id the MO goes to)")
        account = ""
    elif account not in accounts:
        problems.append(f"{where}.account: unknown account {account!r}"
                        f"{_did_you_mean(account, accounts)}")
    to = frozenset(a.lstrip("+") for a in _strings(raw, "to", where, problems) or ())
    prefixes = tuple(p.lstrip("+") for p in _strings(raw, "prefix", where, problems) or ())
    if to and prefixes:
        problems.append(f"{where}.prefix: give to (exact numbers) or prefix, not both")
    keywords = frozenset(k.upper() for k in _strings(raw, "keyword", where, problems) or ())
    for k in keywords:
        if len(k.split()) != 1:
            problems.append(f"{where}.keyword: {k!r} is not one word")
    if problems:
        raise ConfigError(*problems)
    return MoRoute(account, to, prefixes, keywords)


def load_config(path: str | None, *, env: Mapping[str, str] | None = None) -> Config:
    """Load ``path``, or the demo configuration when ``path`` is None."""
    if path is None:
        return parse_config(DEMO_TOML, source="<demo defaults>", env=env)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_config(text, source=path, env=env)


