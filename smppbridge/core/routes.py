"""A route: which providers, in which order, carry the messages it matches (one
``[[routes]]`` table, parsed by :mod:`smppbridge.config`; used by the router)."""

from __future__ import annotations

from dataclasses import dataclass

from smppbridge.text.content import Kind

__all__ = ["Route"]


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
