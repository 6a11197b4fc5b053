"""The provider simulator's settings: outcome rules by number pattern and fault switches.

All of them can be given at start (``[providers.simulator]`` for the in-process
provider, the ``config`` of :func:`run_simulator`) and changed at run time with
``POST /control`` (the same keys as JSON).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["FINAL_OUTCOMES", "OUTCOMES", "SEND_ERRORS", "Rule", "SimConfig"]

#: Outcomes decided when the message is sent: the provider refuses it.
SEND_ERRORS = frozenset({"stop_list", "closed", "moderation", "no_funds", "no_sender"})
#: Outcomes reached ``deliver_after`` seconds after sending. ``never`` stays in flight
#: forever; ``partly`` is mysmpp's partly_deliver; ``fallback`` fails Viber and delivers
#: the SMS of a cascade; ``read`` is delivered and then read/viewed.
FINAL_OUTCOMES = frozenset({"delivered", "read", "undeliverable", "expired", "partly",
                            "never", "fallback"})
OUTCOMES = SEND_ERRORS | FINAL_OUTCOMES


@dataclass(frozen=True, slots=True)
class Rule:
    """Numbers matching ``pattern`` (shell glob on the digits, e.g. ``7999*``) get
    ``outcome``."""

    pattern: str
    outcome: str
    regex: re.Pattern[str] = field(compare=False, repr=False, default=re.compile(""))

    @classmethod
    def make(cls, pattern: str, outcome: str) -> Rule:
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r} (known: {', '.join(sorted(OUTCOMES))})")
        return cls(pattern, outcome, re.compile(fnmatch.translate(pattern.lstrip("+"))))


@dataclass(frozen=True, slots=True)
class SimConfig:
    """How the simulator answers. Times are seconds on the simulator's clock."""

    #: numbers no rule matches get this
    default_outcome: str = "delivered"
    rules: tuple[Rule, ...] = ()
    #: time from acceptance to the final status (half of it: "in progress")
    deliver_after: float = 2.0
    #: added before every API answer
    latency: float = 0.0
    #: share of API requests answered with ``fail_status`` (seeded, reproducible)
    fail_rate: float = 0.0
    fail_status: int = 500
    seed: int = 0
    #: credentials the APIs require; empty = any accepted
    login: str = ""
    password: str = field(default="", repr=False)
    token: str = field(default="", repr=False)
    key: str = field(default="", repr=False)
    #: where http-json statuses are pushed when a message names no callback
    webhook_url: str = ""
    #: messages kept for status requests and client_id_sms idempotency (oldest dropped)
    #: ~800 bytes each: 100,000 bound the in-process simulator (the demo provider) to
    #: ~80 MB; a 600 s soak at 1,000/s showed 1,000,000 growing the node to ~580 MB.
    max_messages: int = 100_000
    #: mobile-originated messages: one every ``mo_every`` seconds (0: only on request),
    #: from ``mo_from`` to ``mo_to`` with ``mo_text``; the standalone simulator POSTs
    #: them to ``mo_url`` (a node's ``/webhooks/<provider>/mo``) in the http-json shape
    mo_every: float = 0.0
    mo_from: str = "79000000001"
    mo_to: str = "1234"
    mo_text: str = "hello from the simulator"
    mo_url: str = ""

    def outcome_for(self, phone: str) -> str:
        for rule in self.rules:
            if rule.regex.match(phone):
                return rule.outcome
        return self.default_outcome

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], base: SimConfig | None = None) -> SimConfig:
        """Build from TOML/JSON keys, starting from ``base``; raises ``ValueError("<key>:
        <problem>")``. Run-time switches of /control (fail_next, down_for, up, reset)
        are not settings and are refused here."""
        cfg = base or cls()
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if key == "rules":
                values["rules"] = _rules(value)
            elif key in ("deliver_after", "latency", "fail_rate", "mo_every"):
                if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                    raise ValueError(f"{key}: expected a number >= 0")
                if key == "fail_rate" and value > 1:
                    raise ValueError("fail_rate: expected a share between 0 and 1")
                values[key] = float(value)
            elif key in ("fail_status", "seed", "max_messages"):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError(f"{key}: expected an integer")
                values[key] = value
            elif key in ("default_outcome", "login", "password", "token", "key",
                         "webhook_url", "mo_from", "mo_to", "mo_text", "mo_url"):
                if not isinstance(value, str):
                    raise ValueError(f"{key}: expected a string")
                if key == "default_outcome" and value not in FINAL_OUTCOMES | SEND_ERRORS:
                    raise ValueError(f"default_outcome: unknown outcome {value!r}")
                values[key] = value
            else:
                raise ValueError(f"{key}: unknown key")
        return replace(cfg, **values)


def _rules(value: Any) -> tuple[Rule, ...]:
    if not isinstance(value, list):
        raise ValueError("rules: expected a list of {pattern, outcome} tables")
    rules = []
    for i, item in enumerate(value):
        if not isinstance(item, Mapping) or not isinstance(item.get("pattern"), str) \
                or not isinstance(item.get("outcome"), str):
            raise ValueError(f"rules[{i}]: expected {{pattern = \"...\", outcome = \"...\"}}")
        try:
            rules.append(Rule.make(item["pattern"], item["outcome"]))
        except ValueError as exc:
            raise ValueError(f"rules[{i}]: {exc}") from None
    return tuple(rules)
