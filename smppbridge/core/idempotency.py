"""The answers kept for ``Idempotency-Key`` (the HTTP submit API, docs/http.md): the
first answer to a key is kept for a day, and a second request with the same key from
the same account gets that answer instead of making a second message."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["IDEMPOTENCY_TTL", "IN_FLIGHT", "IdempotentAnswer"]

#: how long an answer is kept (seconds of steady time)
IDEMPOTENCY_TTL = 86_400.0
#: ``status`` of a key whose first request is still being answered
IN_FLIGHT = 0


@dataclass(frozen=True, slots=True)
class IdempotentAnswer:
    """What is kept for one (account, key): a digest of the request it answered (a
    second request with the same key and another body is refused), the HTTP status
    (:data:`IN_FLIGHT` while the first request runs) and the JSON body."""

    request_hash: str
    status: int = IN_FLIGHT
    body: str = ""

    @property
    def in_flight(self) -> bool:
        return self.status == IN_FLIGHT
