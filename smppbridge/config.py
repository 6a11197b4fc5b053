"""Configuration: one frozen object, loaded from TOML, validated before any port binds.

Size: over 500 lines because it parses every table of the file (each section's parser
is short); the settings types live with the layers that read them.

Every limit has a name and a documented default (``conf/smppbridge.example.toml``).
Environment variables ``SMPPBRIDGE_<SECTION>_<KEY>`` override scalar keys of the
``[smpp]``, ``[http]``, ``[store]`` and ``[log]`` tables (e.g.
``SMPPBRIDGE_SMPP_LISTEN=0.0.0.0:2775``). Errors name the key and the problem.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import tomllib
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from smppbridge.core.accounts import Account, FloodRules
from smppbridge.core.history import DEFAULT_HISTORY_DAYS
from smppbridge.core.net import HostPort
from smppbridge.core.passwords import check_hash_format, is_hashed
from smppbridge.core.provider_settings import ProviderSettings
from smppbridge.core.routes import Route
from smppbridge.http.serve import HttpLimits
from smppbridge.providers.settings import PROVIDER_TYPES, parse_provider
from smppbridge.server.settings import SmppConfig
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
_MAX_PORT = 65535


class ConfigError(ValueError):
    """A config problem; the message starts with the key it is about."""


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


class _Table:
    """A TOML table read with key-path error messages; unknown keys are errors."""

    def __init__(self, data: Mapping[str, Any], path: str) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path}: expected a table")
        self.data = data
        self.path = path
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def get(self, name: str, kind: type[T] | tuple[type, ...], default: T) -> T:
        self.used.add(name)
        if name not in self.data:
            return default
        value = self.data[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and bool not in kinds:
            raise ConfigError(f"{self.key(name)}: expected {_names(kinds)}, got a boolean")
        if not isinstance(value, kinds):
            raise ConfigError(
                f"{self.key(name)}: expected {_names(kinds)}, got {type(value).__name__}")
        return value  # type: ignore[return-value]

    def number(self, name: str, default: float, *, minimum: float = 0,
               maximum: float | None = None) -> float:
        value = self.get(name, float, default)
        if value < minimum or (maximum is not None and value > maximum):
            bound = f" and at most {maximum:g}" if maximum is not None else ""
            raise ConfigError(f"{self.key(name)}: must be at least {minimum:g}{bound}")
        return value

    def integer(self, name: str, default: int, *, minimum: int = 0,
                maximum: int | None = None) -> int:
        value = self.get(name, int, default)
        if value < minimum or (maximum is not None and value > maximum):
            bound = f" and at most {maximum}" if maximum is not None else ""
            raise ConfigError(f"{self.key(name)}: must be at least {minimum}{bound}")
        return value

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ConfigError(f"{self.key(unknown[0])}: unknown key")


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
    if name not in t.data:
        return default
    return parse_hostport(raw, t.key(name)) if raw else None


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
        raise ConfigError("smpp.tls_listen: needs smpp.tls_cert and smpp.tls_key")
    for key in ("tls_cert", "tls_key", "tls_client_ca"):
        path = getattr(cfg, key)
        if cfg.tls_listen and path and not Path(path).is_file():
            raise ConfigError(f"smpp.{key}: no such file {path!r}")
    if not cfg.listen and not cfg.tls_listen:
        raise ConfigError("smpp.listen: no SMPP listener configured")
    return cfg


def _admin_tokens(t: _Table) -> tuple[str, ...]:
    tokens = t.get("admin_tokens", list, [])
    out = []
    for i, token in enumerate(tokens):
        key = f"{t.key('admin_tokens')}[{i}]"
        if not isinstance(token, str) or not token:
            raise ConfigError(f"{key}: expected a non-empty string")
        if is_hashed(token):
            try:
                check_hash_format(token)
            except ValueError as exc:
                raise ConfigError(f"{key}: {exc}") from None
        elif len(token) < MIN_ADMIN_TOKEN:
            # The value is not echoed: it is a secret.
            raise ConfigError(f"{key}: a plain token needs at least {MIN_ADMIN_TOKEN} "
                              "characters (or give a hash from smppbridge hash-password)")
        out.append(token)
    return tuple(out)


def _timezone(t: _Table) -> str:
    name = t.get("timezone", str, "UTC")
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{t.key('timezone')}: unknown time zone {name!r}") from None
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
            raise ConfigError(f"store.url: expected sqlite:///PATH, got {url!r}")
    elif scheme in ("redis", "rediss"):
        if not url.startswith(("redis://", "rediss://")):
            # The value is not echoed: a redis URL may carry a password.
            raise ConfigError("store.url: expected redis://[USER:PASSWORD@]HOST:PORT/DB")
    elif scheme != "memory":
        raise ConfigError(f"store.url: unsupported scheme {scheme!r} "
                          "(sqlite:///PATH, redis://HOST:PORT/DB or memory://)")
    return StoreConfig(url, history_days)


def _log(t: _Table) -> LogConfig:
    level = t.get("level", str, "info").lower()
    fmt = t.get("format", str, "auto").lower()
    t.finish()
    if level not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"log.level: must be debug, info, warning or error, got {level!r}")
    if fmt not in ("json", "console", "auto"):
        raise ConfigError(f"log.format: must be json, console or auto, got {fmt!r}")
    return LogConfig(level, fmt)


def _account(t: _Table) -> Account:
    system_id = t.get("system_id", str, "")
    if not system_id or len(system_id) > MAX_SYSTEM_ID or not system_id.isascii():
        raise ConfigError(f"{t.key('system_id')}: required, 1-{MAX_SYSTEM_ID} ASCII characters")
    password = t.get("password", str, "")
    if not password:
        raise ConfigError(f"{t.key('password')}: required")
    if is_hashed(password):
        try:
            check_hash_format(password)
        except ValueError as exc:
            raise ConfigError(f"{t.key('password')}: {exc}") from None
    elif len(password) > MAX_BIND_PASSWORD:
        # A bind password is at most 8 characters on the wire (SMPP 3.4 §4.1.1),
        # so a longer one could never match.
        raise ConfigError(f"{t.key('password')}: longer than {MAX_BIND_PASSWORD} "
                          "characters, which no bind can carry")
    networks = []
    for i, raw in enumerate(t.get("allowed_networks", list, [])):
        try:
            networks.append(ipaddress.ip_network(str(raw), strict=False))
        except ValueError:
            raise ConfigError(f"{t.key('allowed_networks')}[{i}]: not a network: "
                              f"{raw!r}") from None
    providers = t.get("providers", list, [])
    if not all(isinstance(p, str) for p in providers):
        raise ConfigError(f"{t.key('providers')}: expected a list of provider names")
    id_format = t.get("message_id_format", str, "decimal")
    if id_format not in ("decimal", "hex"):
        raise ConfigError(f"{t.key('message_id_format')}: must be decimal or hex")
    window = t.integer("window", 0, minimum=0) or None
    flood = _flood(_Table(t.get("flood", dict, {}), t.key("flood")))
    limits = _limits(_Table(t.get("limits", dict, {}), t.key("limits")))
    account = Account(
        system_id=system_id,
        password=password,
        max_binds=t.integer("max_binds", 10, minimum=1),
        allowed_networks=tuple(networks),
        throughput=t.number("throughput", 0.0),
        burst=t.integer("burst", 0),
        window=window,
        providers=tuple(providers),
        message_id_format=id_format,
        iso_default=t.get("iso_default", bool, False),
        flood=flood,
        limits=limits,
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


def _provider(t: _Table) -> ProviderSettings:
    """One ``[[providers]]`` table, validated by the provider layer's own parser (each
    adapter's keys, secrets from ``<key>_env``/``<key>_file``: the process environment,
    whatever ``env`` overrides the scalar keys)."""
    name = t.get("name", str, "")
    kind = t.get("type", str, "")
    if not name:
        raise ConfigError(f"{t.key('name')}: required")
    if kind not in PROVIDER_TYPES:
        raise ConfigError(f"{t.key('type')}: must be one of {', '.join(PROVIDER_TYPES)}, "
                          f"got {kind!r}")
    try:
        return parse_provider(dict(t.data))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _tables(data: Mapping[str, Any], name: str) -> list[_Table]:
    raw = data.get(name, [])
    if not isinstance(raw, list):
        raise ConfigError(f"{name}: expected an array of tables ([[{name}]])")
    return [_Table(item, f"{name}[{i}]") for i, item in enumerate(raw)]


def _env_overrides(data: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for section in ("smpp", "http", "store", "log"):
        prefix = f"{_ENV_PREFIX}{section.upper()}_"
        for var, value in env.items():
            if not var.startswith(prefix):
                continue
            key = var[len(prefix):].lower()
            table = out.setdefault(section, {})
            current = table.get(key)
            table[key] = _coerce(value, current, var)
    return out


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


def parse_config(text: str, *, source: str = "<string>",
                 env: Mapping[str, str] | None = None) -> Config:
    """Parse and validate a TOML document (environment overrides applied)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    data = _env_overrides(data, os.environ if env is None else env)
    top = _Table(data, "")
    for name in ("smpp", "http", "store", "log", "content", "receipts"):
        top.get(name, dict, {})
    top.used.update({"accounts", "providers", "routes"})
    top.finish()
    smpp = _smpp(_Table(data.get("smpp", {}), "smpp"))
    http_t = _Table(data.get("http", {}), "http")
    http = HttpConfig(listen=_opt_hostport(http_t, "listen", HttpConfig().listen),
                      metrics_listen=_opt_hostport(http_t, "metrics_listen", None),
                      limits=_http_limits(http_t), admin_tokens=_admin_tokens(http_t),
                      timezone=_timezone(http_t))
    http_t.finish()
    store = _store(_Table(data.get("store", {}), "store"))
    log = _log(_Table(data.get("log", {}), "log"))
    content = _content(_Table(data.get("content", {}), "content"))
    receipts = _receipts(_Table(data.get("receipts", {}), "receipts"))
    accounts = tuple(_account(t) for t in _tables(data, "accounts"))
    providers = tuple(_provider(t) for t in _tables(data, "providers"))
    seen: set[str] = set()
    for i, a in enumerate(accounts):
        if a.system_id in seen:
            raise ConfigError(f"accounts[{i}].system_id: duplicate {a.system_id!r}")
        seen.add(a.system_id)
    names = [p.name for p in providers]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ConfigError(f"providers[{i}].name: duplicate {name!r}")
    for i, a in enumerate(accounts):
        for p in a.providers:
            if p not in names:
                raise ConfigError(f"accounts[{i}].providers: unknown provider {p!r}")
    routes = tuple(parse_route(t.data, i, names)
                   for i, t in enumerate(_tables(data, "routes")))
    return Config(smpp=smpp, http=http, store=store, log=log, content=content,
                  receipts=receipts, accounts=accounts, providers=providers, routes=routes,
                  source=source, sha256=hashlib.sha256(text.encode()).hexdigest())


def _strings(raw: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = raw.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}.{key}: expected a list of strings")
    return tuple(value)


def parse_route(raw: Mapping[str, Any], index: int, provider_names: Sequence[str]) -> Route:
    """Validate one ``[[routes]]`` table (keys ``account``, ``prefix``, ``kind``,
    ``providers``; each a string or a list); raises ``ConfigError("routes[<i>].<key>:
    ...")``."""
    where = f"routes[{index}]"
    unknown = sorted(set(raw) - {"account", "prefix", "kind", "providers"})
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key")
    providers = _strings(raw, "providers", where)
    if not providers:
        raise ConfigError(f"{where}.providers: required")
    for name in providers:
        if name not in provider_names:
            raise ConfigError(f"{where}.providers: unknown provider {name!r}")
    try:
        kinds = frozenset(Kind(k) for k in _strings(raw, "kind", where))
    except ValueError:
        raise ConfigError(f"{where}.kind: unknown kind (known: "
                          f"{', '.join(k.value for k in Kind)})") from None
    prefixes = tuple(p.lstrip("+") for p in _strings(raw, "prefix", where))
    return Route(providers, frozenset(_strings(raw, "account", where)), prefixes, kinds)


def load_config(path: str | None, *, env: Mapping[str, str] | None = None) -> Config:
    """Load ``path``, or the demo configuration when ``path`` is None."""
    if path is None:
        return parse_config(DEMO_TOML, source="<demo defaults>", env=env)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_config(text, source=path, env=env)


