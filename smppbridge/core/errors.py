"""The errors that cross layers, each carrying the answer it gets.

Like h11's ``error_status_hint`` and aioquic's class-level ``error_code``: whoever meets
one of these knows from the error itself what to answer. A store error is answered
``ESME_RMSGQFUL`` (retry later, docs/smpp.md); a provider error carries the receipt
``stat``/``err`` that ends a message it finally failed; :class:`NoRoute` the
command_status that refuses a message no provider can carry.

Adapters raise them at their boundary (httpx, sqlite3 and redis errors never leave the
adapter), the way httpcore's ``map_exceptions`` does.
"""

from __future__ import annotations

from smppbridge.core.outcomes import Err
from smppbridge.smpp.constants import CommandStatus
from smppbridge.smpp.receipts import Stat
from smppbridge.text.content import Kind

__all__ = [
    "NoRoute",
    "ProviderError",
    "ProviderRejected",
    "ProviderTimeout",
    "ProviderUnavailable",
    "StoreUnavailable",
]


class StoreUnavailable(Exception):
    """The store cannot be reached or refuses writes right now (Redis down, disk full);
    temporary. A submit that meets it is answered ESME_RMSGQFUL so the ESME retries
    later."""

    status = CommandStatus.ESME_RMSGQFUL


class NoRoute(Exception):
    """No provider of the message's route can carry its kind (docs/content.md)."""

    status = CommandStatus.VENDOR_NO_ROUTE

    def __init__(self, account: str, destination: str, kind: Kind) -> None:
        super().__init__(f"no provider can carry {kind.value} for account {account!r} "
                         f"to {destination!r}")
        self.account = account
        self.destination = destination
        self.kind = kind


class ProviderError(Exception):
    """A whole request failed; ``retryable`` says whether trying again may help."""

    retryable = True
    stat = Stat.UNDELIV
    err = Err.UNAVAILABLE

    def __init__(self, message: str, *, err: Err | None = None,
                 stat: Stat | None = None) -> None:
        super().__init__(message)
        if err is not None:
            self.err = err
        if stat is not None:
            self.stat = stat


class ProviderTimeout(ProviderError):
    """The provider did not answer within the configured timeout."""


class ProviderUnavailable(ProviderError):
    """Connection refused or dropped, 5xx, or our circuit breaker is open."""


class ProviderRejected(ProviderError):
    """The provider refused the request itself (credentials, format): not retried."""

    retryable = False
    stat = Stat.REJECTD
    err = Err.REQUEST_INVALID
