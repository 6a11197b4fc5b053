"""One ``[[providers]]`` TOML table, validated into a frozen
:class:`~smppbridge.core.provider_settings.ProviderSettings`.

Every timeout and limit has a name and a default here (documented in docs/providers.md).
Errors read ``providers[<name>].<key>: <problem>``. Secrets may be given inline, as
``<key>_env`` (an environment variable's name) or ``<key>_file`` (a file whose content,
stripped, is the secret); they never appear in ``repr``.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from smppbridge.core.provider_settings import (
    SMSFLY_MAX_TTL_MINUTES,
    ProviderSettings,
    UpstreamSettings,
)
from smppbridge.text.content import Kind

__all__ = ["DEFAULT_KINDS", "PROVIDER_TYPES", "parse_provider"]

PROVIDER_TYPES = ("mysmpp-xml", "mysmpp-json", "smsfly", "http-json", "simulator", "smpp")

#: What each adapter type can carry (flash is an SMS with ``Content.flash``).
DEFAULT_KINDS: dict[str, frozenset[Kind]] = {
    "mysmpp-xml": frozenset({Kind.SMS, Kind.PING, Kind.VIBER}),
    "mysmpp-json": frozenset({Kind.SMS, Kind.PING, Kind.VIBER}),
    "smsfly": frozenset({Kind.SMS, Kind.VIBER}),
    "http-json": frozenset({Kind.MAIL, Kind.CALL, Kind.SOC, Kind.MMS, Kind.HLR}),
    "simulator": frozenset(Kind),
    "smpp": frozenset({Kind.SMS, Kind.PING}),
}

#: The endpoints the mysmpp specs give; SMS-fly and http-json have none (the URL comes
#: from the provider's personal cabinet).
_DEFAULT_URLS = {
    "mysmpp-xml": ("http://lk.mysmpp.ru/xml", "http://lk.mysmpp.ru/xml/state.php"),
    "mysmpp-json": ("http://lk.mysmpp.ru/json", "http://lk.mysmpp.ru/xml/state.php"),
}
#: Messages per request. mysmpp takes many ``abonent`` entries per request; SMS-fly takes
#: one recipient, so its "batch" is the number of requests run side by side.
_DEFAULT_BATCH = {"mysmpp-xml": 100, "mysmpp-json": 100, "smsfly": 20, "http-json": 50,
                  "simulator": 100, "smpp": 200}
_DEFAULT_TZ = {"mysmpp-xml": "Europe/Moscow", "mysmpp-json": "Europe/Moscow",
               "smsfly": "Europe/Kyiv"}
_SECRETS = ("password", "token", "key", "webhook_secret", "webhook_hmac_key")


_NUMBERS: dict[str, tuple[float, float | None]] = {
    "poll_interval": (0.0, None),
    "poll_max_interval": (0.0, None),
    "max_status_age": (1.0, None),
    "status_grace": (0.0, None),
    "linger": (0.0, 10.0),
    "timeout": (0.001, None),
    "connect_timeout": (0.001, None),
    "backoff": (0.0, None),
    "backoff_max": (0.0, None),
    "breaker_reset": (0.0, None),
}
_INTEGERS: dict[str, tuple[int, int | None]] = {
    "poll_batch": (1, 10_000),
    "batch_size": (1, 10_000),
    "concurrency": (1, 10_000),
    "max_connections": (1, 10_000),
    "retries": (0, 100),
    "breaker_threshold": (1, 1_000_000),
    "default_ttl": (1, SMSFLY_MAX_TTL_MINUTES),
}
_STRINGS = ("url", "status_url", "login", "sender", "viber_sender", "timezone", "webhook_url")
#: The smpp type's own keys (UpstreamSettings): numbers (lo, hi), integers, strings.
_SMPP_NUMBERS: dict[str, tuple[float, float | None]] = {
    "throughput": (0.0, 1_000_000.0),
    "enquire_link": (0.0, 86_400.0),
    "reconnect_backoff": (0.0, 3600.0),
    "reconnect_backoff_max": (0.0, 86_400.0),
    "early_receipt_ttl": (0.0, 86_400.0),
}
_SMPP_INTEGERS: dict[str, tuple[int, int]] = {
    "port": (1, 65_535),
    "binds": (1, 64),
    "window": (1, 10_000),
    "early_receipts": (0, 10_000_000),
    "throttle_retries": (0, 1000),
    "source_ton": (0, 255),
    "source_npi": (0, 255),
    "dest_ton": (0, 255),
    "dest_npi": (0, 255),
}
#: key → (max length, allowed values or None)
_SMPP_STRINGS: dict[str, tuple[int, tuple[str, ...] | None]] = {
    "host": (253, None),
    "system_id": (15, None),
    "system_type": (12, None),
    "bind": (20, ("transceiver", "transmitter+receiver")),
    "data_coding": (10, ("pass", "gsm", "ucs2", "latin1")),
    "long_messages": (10, ("udh", "sar", "payload")),
    "tls_ca_file": (4096, None),
}
_SMPP_KEYS = {*_SMPP_NUMBERS, *_SMPP_INTEGERS, *_SMPP_STRINGS, "tls"}
#: SMPP 3.4 §4.1.1: password is at most 8 octets
_SMPP_PASSWORD_MAX = 8

_KNOWN = {"name", "type", "kinds", "simulator", "webhook_networks", "worker", *_NUMBERS,
          *_INTEGERS, *_SMPP_KEYS,
          *_STRINGS,
          *_SECRETS, *(f"{s}_env" for s in _SECRETS), *(f"{s}_file" for s in _SECRETS)}


def parse_provider(raw: Mapping[str, Any], *,
                   env: Mapping[str, str] | None = None) -> ProviderSettings:
    """Validate one ``[[providers]]`` table; raises ``ValueError("providers[<name>].<key>:
    <problem>")``."""
    env = os.environ if env is None else env
    name = raw.get("name")
    where = f"providers[{name if isinstance(name, str) and name else '?'}]"

    def fail(key: str, problem: str) -> ValueError:
        return ValueError(f"{where}.{key}: {problem}")

    if not isinstance(name, str) or not name:
        raise fail("name", "required")
    ptype = raw.get("type")
    if ptype not in PROVIDER_TYPES:
        raise fail("type", f"must be one of {', '.join(PROVIDER_TYPES)}, got {ptype!r}")
    unknown = sorted(set(raw) - _KNOWN)
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(_KNOWN), n=1)
        raise fail(unknown[0], "unknown key" + (f" (did you mean {close[0]}?)" if close else ""))
    if ptype != "smpp":
        misplaced = sorted(set(raw) & _SMPP_KEYS)
        if misplaced:
            raise fail(misplaced[0], 'only for type = "smpp"')

    values: dict[str, Any] = {}
    for key in _STRINGS:
        if key in raw:
            if not isinstance(raw[key], str):
                raise fail(key, "expected a string")
            values[key] = raw[key]
    _read_numbers(raw, _NUMBERS, _INTEGERS, values, fail)
    for key in _SECRETS:
        values[key] = _secret(raw, key, env, fail)
    if "webhook_networks" in raw:
        values["webhook_networks"] = _networks(raw["webhook_networks"], fail)
    if "worker" in raw:
        if not isinstance(raw["worker"], bool):
            raise fail("worker", "expected true or false")
        values["worker"] = raw["worker"]

    default_kinds = DEFAULT_KINDS[ptype]
    if "kinds" in raw:
        kinds_raw = raw["kinds"]
        if not isinstance(kinds_raw, list) or not kinds_raw:
            raise fail("kinds", "expected a non-empty list of kinds")
        try:
            kinds = frozenset(Kind(k) for k in kinds_raw)
        except ValueError:
            raise fail("kinds", f"unknown kind in {kinds_raw!r} "
                       f"(known: {', '.join(k.value for k in Kind)})") from None
        if ptype != "http-json" and not kinds <= default_kinds:
            extra = ", ".join(sorted(k.value for k in kinds - default_kinds))
            raise fail("kinds", f"{ptype} cannot carry {extra}")
        values["kinds"] = kinds
    else:
        values["kinds"] = default_kinds

    if "simulator" in raw:
        if ptype != "simulator" or not isinstance(raw["simulator"], Mapping):
            raise fail("simulator", "a table, only for type = \"simulator\"")
        from smppbridge.providers.simulator.settings import SimConfig
        try:
            SimConfig.from_dict(raw["simulator"])
        except ValueError as exc:
            raise fail("simulator", str(exc)) from None
        values["simulator"] = dict(raw["simulator"])

    default_url, default_status = _DEFAULT_URLS.get(ptype, ("", ""))
    if ptype == "smpp":
        values["upstream"] = _upstream(raw, values, fail)
        if values.get("worker"):
            raise fail("worker", "the smpp type runs in the node (its sessions push "
                       "receipts); worker = true is not supported")
        values["worker"] = False
        values.setdefault("poll_interval", 0.0)  # statuses come as receipts
    values.setdefault("url", default_url)
    values.setdefault("status_url", default_status)
    values.setdefault("batch_size", _DEFAULT_BATCH[ptype])
    values.setdefault("timezone", _DEFAULT_TZ.get(ptype, "UTC"))
    values.setdefault("worker", ptype != "simulator")
    if ptype == "http-json" and "poll_interval" not in raw and not values["status_url"]:
        values["poll_interval"] = 0.0  # statuses by webhook
    if ptype == "simulator":
        values.setdefault("poll_interval", 1.0)
        # Polling the in-process simulator costs no HTTP request: poll at the same pace
        # until final instead of backing off (the back-off stretched an end-to-end
        # run's last receipts from ~2 s to ~18 s after the last submit).
        values.setdefault("poll_max_interval", values["poll_interval"])

    for key in ("url", "status_url", "webhook_url"):
        url = values.get(key, "")
        if url and not url.startswith(("http://", "https://")):
            raise fail(key, f"expected an http:// or https:// URL, got {url!r}")
    if ptype in ("smsfly", "http-json") and not values["url"]:
        raise fail("url", "required")
    if ptype in ("mysmpp-xml", "mysmpp-json") and not values["token"] and not (
            values.get("login") and values["password"]):
        raise fail("login", "mysmpp needs login and password, or token")
    if ptype == "smsfly" and not values["key"]:
        raise fail("key", "required (the SMS-fly API key)")
    if values.get("timezone"):
        try:
            zoneinfo.ZoneInfo(values["timezone"])
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise fail("timezone", f"unknown time zone {values['timezone']!r}") from None
    return ProviderSettings(name=name, type=ptype, **values)


def _read_numbers(raw: Mapping[str, Any], numbers: Mapping[str, tuple[float, float | None]],
                  integers: Mapping[str, tuple[int, int | None]], out: dict[str, Any],
                  fail: Any) -> None:
    """Check the number and integer keys present in ``raw`` against their (lowest,
    highest or None) bounds and put them into ``out``."""
    for key, (lo, hi) in numbers.items():
        if key in raw:
            v = raw[key]
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise fail(key, "expected a number")
            if v < lo or (hi is not None and v > hi):
                raise fail(key, f"must be at least {lo:g}"
                           + (f" and at most {hi:g}" if hi is not None else ""))
            out[key] = float(v)
    for key, (ilo, ihi) in integers.items():
        if key in raw:
            v = raw[key]
            if isinstance(v, bool) or not isinstance(v, int):
                raise fail(key, "expected an integer")
            if v < ilo or (ihi is not None and v > ihi):
                raise fail(key, f"must be at least {ilo}"
                           + (f" and at most {ihi}" if ihi is not None else ""))
            out[key] = v


def _upstream(raw: Mapping[str, Any], values: Mapping[str, Any],
              fail: Any) -> UpstreamSettings:
    """The smpp type's keys, each checked and named."""
    out: dict[str, Any] = {}
    _read_numbers(raw, _SMPP_NUMBERS, _SMPP_INTEGERS, out, fail)
    for key, (longest, allowed) in _SMPP_STRINGS.items():
        if key in raw:
            v = raw[key]
            if not isinstance(v, str):
                raise fail(key, "expected a string")
            if allowed is not None and v not in allowed:
                raise fail(key, f"must be one of {', '.join(allowed)}, got {v!r}")
            if len(v) > longest:
                raise fail(key, f"at most {longest} characters")
            out[key] = v
    if "tls" in raw:
        if not isinstance(raw["tls"], bool):
            raise fail("tls", "expected true or false")
        out["tls"] = raw["tls"]
    for key in ("host", "port", "system_id"):
        if key not in out or out[key] == "":
            raise fail(key, 'required for type = "smpp"')
    if len(values.get("password", "")) > _SMPP_PASSWORD_MAX:
        raise fail("password", f"at most {_SMPP_PASSWORD_MAX} characters (SMPP 3.4 §4.1.1)")
    ca = out.get("tls_ca_file", "")
    if ca:
        if not out.get("tls"):
            raise fail("tls_ca_file", "only with tls = true")
        if not Path(ca).is_file():
            raise fail("tls_ca_file", f"no such file: {ca!r}")
    if out.get("reconnect_backoff_max", 30.0) < out.get("reconnect_backoff", 1.0):
        raise fail("reconnect_backoff_max", "must be at least reconnect_backoff")
    return UpstreamSettings(**out)


def _networks(raw: Any, fail: Any) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    if not isinstance(raw, list):
        raise fail("webhook_networks", "expected a list of networks (CIDR)")
    out = []
    for i, item in enumerate(raw):
        try:
            out.append(ipaddress.ip_network(str(item), strict=False))
        except ValueError:
            raise fail(f"webhook_networks[{i}]", f"not a network: {item!r}") from None
    return tuple(out)


def _secret(raw: Mapping[str, Any], key: str, env: Mapping[str, str],
            fail: Any) -> str:
    given = [k for k in (key, f"{key}_env", f"{key}_file") if k in raw]
    if len(given) > 1:
        raise fail(given[1], f"give only one of {', '.join(given)}")
    if not given:
        return ""
    which = given[0]
    value = raw[which]
    if not isinstance(value, str):
        raise fail(which, "expected a string")
    if which.endswith("_env"):
        if value not in env:
            raise fail(which, f"environment variable {value} is not set")
        return env[value]
    if which.endswith("_file"):
        try:
            return Path(value).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise fail(which, f"cannot read {value!r}: {exc.strerror}") from None
    return value
