"""Routes: which providers, in which order, carry a message; and failover along them.

A route matches on account (system_id), destination prefix and kind; the first route
in config order that matches gives an ordered list of provider names; with no match the
account's own ``providers`` list is the route. Providers of the route that cannot carry
the message's kind are dropped; if none is left the message has no route
(:class:`NoRoute`, answered synchronously with ``VENDOR_NO_ROUTE``).

Sending walks the route: a provider whose breaker is open is skipped; a ``FAILED``
outcome (transient failure after retries, or the provider refusing our account) moves
on to the next; ``ACCEPTED`` and ``REJECTED`` end the walk. When every provider failed,
the last failure is returned: the pipeline may requeue the message (it is still within
validity) or end it with that outcome's ``stat``/``err`` (UNDELIV ``err:301`` for
unreachable providers).

Failover after a timeout can send a message twice (the first provider may have taken it
before the connection died): client-side ids only deduplicate within one provider.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from smppbridge.bridge.providers.base import Err, SendOutcome, SendResult
from smppbridge.bridge.providers.resilience import ProviderRunner
from smppbridge.message import Kind, OutboundMessage
from smppbridge.smpp.constants import CommandStatus

__all__ = ["NoRoute", "Route", "Router", "parse_route"]


class NoRoute(Exception):
    """No provider of the message's route can carry its kind (DESIGN.md §3)."""

    status = CommandStatus.VENDOR_NO_ROUTE

    def __init__(self, account: str, destination: str, kind: Kind) -> None:
        super().__init__(f"no provider can carry {kind.value} for account {account!r} "
                         f"to {destination!r}")
        self.account = account
        self.destination = destination
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Route:
    """One ``[[routes]]`` table. Empty ``accounts``/``prefixes``/``kinds`` match all."""

    providers: tuple[str, ...]
    accounts: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()
    kinds: frozenset[Kind] = frozenset()

    def matches(self, account: str, destination: str, kind: Kind) -> bool:
        return ((not self.accounts or account in self.accounts)
                and (not self.kinds or kind in self.kinds)
                and (not self.prefixes or destination.startswith(self.prefixes)))


def _strings(raw: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = raw.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{where}.{key}: expected a list of strings")
    return tuple(value)


def parse_route(raw: Mapping[str, Any], index: int, provider_names: Sequence[str]) -> Route:
    """Validate one ``[[routes]]`` table (keys ``account``, ``prefix``, ``kind``,
    ``providers``; each a string or a list); raises ``ValueError("routes[<i>].<key>:
    ...")``."""
    where = f"routes[{index}]"
    unknown = sorted(set(raw) - {"account", "prefix", "kind", "providers"})
    if unknown:
        raise ValueError(f"{where}.{unknown[0]}: unknown key")
    providers = _strings(raw, "providers", where)
    if not providers:
        raise ValueError(f"{where}.providers: required")
    for name in providers:
        if name not in provider_names:
            raise ValueError(f"{where}.providers: unknown provider {name!r}")
    try:
        kinds = frozenset(Kind(k) for k in _strings(raw, "kind", where))
    except ValueError:
        raise ValueError(f"{where}.kind: unknown kind (known: "
                         f"{', '.join(k.value for k in Kind)})") from None
    prefixes = tuple(p.lstrip("+") for p in _strings(raw, "prefix", where))
    return Route(providers, frozenset(_strings(raw, "account", where)), prefixes, kinds)


class Router:
    """Resolves routes and sends along them with failover."""

    def __init__(self, runners: Mapping[str, ProviderRunner], routes: Sequence[Route] = (),
                 account_providers: Mapping[str, Sequence[str]] | None = None) -> None:
        self.update(runners, routes, account_providers)

    def update(self, runners: Mapping[str, ProviderRunner], routes: Sequence[Route] = (),
               account_providers: Mapping[str, Sequence[str]] | None = None) -> None:
        """Take new providers and routes (config reload)."""
        self.runners = dict(runners)
        self.routes = tuple(routes)
        self.account_providers = {k: tuple(v) for k, v in (account_providers or {}).items()}
        #: (candidate names, kind) → the usable ones: resolve runs twice per message
        self._usable: dict[tuple[tuple[str, ...], Kind], tuple[str, ...]] = {}

    def resolve(self, account: str, destination: str, kind: Kind) -> tuple[str, ...]:
        """The ordered provider names that can carry ``kind``; raises NoRoute."""
        names: tuple[str, ...] = self.account_providers.get(account, ())
        if self.routes:
            dest = destination.lstrip("+")
            for route in self.routes:
                if route.matches(account, dest, kind):
                    names = route.providers
                    break
        usable = self._usable.get((names, kind))
        if usable is None:
            usable = tuple(n for n in names
                           if n in self.runners and kind in self.runners[n].provider.kinds)
            if len(self._usable) < 1024:
                self._usable[(names, kind)] = usable
        if not usable:
            raise NoRoute(account, destination, kind)
        return usable

    def check(self, message: OutboundMessage) -> tuple[str, ...]:
        """resolve() for a message: call it before acking submit_sm."""
        return self.resolve(message.account, message.destination.addr, message.content.kind)

    async def send(self, message: OutboundMessage) -> SendOutcome:
        """Send along the route; see the module docstring for the outcomes."""
        (outcome,) = await self.send_many([message])
        return outcome

    async def send_many(self, messages: Sequence[OutboundMessage]) -> list[SendOutcome]:
        """:meth:`send` for a batch, same outcomes: messages going to the same provider
        share its requests; a message its provider FAILED moves on to the next
        provider of its route, with the others that failed there."""
        outcomes: list[SendOutcome | None] = [None] * len(messages)
        routes: list[list[str]] = []
        for i, message in enumerate(messages):
            try:
                routes.append(list(self.check(message)))
            except NoRoute as exc:
                routes.append([])
                outcomes[i] = SendOutcome.rejected(message.message_id, Err.KIND_UNSUPPORTED,
                                                   str(exc))
        pending = [i for i, o in enumerate(outcomes) if o is None]
        last: dict[int, SendOutcome] = {}
        while pending:
            groups: dict[str, list[int]] = {}
            for i in pending:
                while routes[i]:
                    name = routes[i].pop(0)
                    if self.runners[name].available:
                        groups.setdefault(name, []).append(i)
                        break
                    last[i] = SendOutcome.failed(messages[i].message_id, Err.UNAVAILABLE,
                                                 f"{name}: circuit breaker open")
                else:
                    outcomes[i] = last[i]
            results = await asyncio.gather(*(
                self.runners[name].send_now([messages[i] for i in idx])
                for name, idx in groups.items()))
            pending = []
            for idx, outs in zip(groups.values(), results, strict=True):
                for i, outcome in zip(idx, outs, strict=True):
                    if outcome.result is SendResult.FAILED and routes[i]:
                        last[i] = outcome
                        pending.append(i)
                    else:
                        outcomes[i] = outcome
        return [o if o is not None else SendOutcome.failed(m.message_id, Err.UNAVAILABLE)
                for m, o in zip(messages, outcomes, strict=True)]

    async def aclose(self) -> None:
        """Flush and close every provider."""
        for runner in self.runners.values():
            await runner.aclose()
