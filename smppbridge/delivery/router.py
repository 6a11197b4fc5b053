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

from smppbridge.core.errors import NoRoute
from smppbridge.core.message import OutboundMessage
from smppbridge.core.outcomes import Err, SendOutcome, SendResult
from smppbridge.core.routes import Route
from smppbridge.delivery.runner import ProviderRunner
from smppbridge.text.content import Kind

__all__ = ["Router"]


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
