"""One HTTP request and its answer as the node's own code reads and writes them (provider
webhooks, the simulator's APIs): plain values, whatever server carries them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["HttpRequest", "HttpResponse"]


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One complete HTTP request. Header names are lower-case; repeated headers are
    joined with ``", "`` (RFC 9110 §5.3); ``query`` maps each parameter to its values."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    client: tuple[str, int]

    def json(self) -> Any:
        """The body parsed as JSON (raises ``ValueError`` when it is not)."""
        return json.loads(self.body)


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """What a handler answers; ``headers`` are extra headers beside Content-Type and
    Content-Length."""

    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(cls, obj: Any, status: int = 200) -> HttpResponse:
        """``obj`` as compact UTF-8 JSON with ``application/json``."""
        body = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
        return cls(status=status, body=body, content_type="application/json")

    @classmethod
    def text(cls, text: str, status: int = 200) -> HttpResponse:
        """``text`` as UTF-8 plain text."""
        return cls(status=status, body=text.encode())


