"""The Redis store's URL options, and the ``[store] url`` of a Redis Cluster (its seed
nodes, its partitions), parsed without importing redis-py (``smppbridge check-config``
validates them on a machine without the ``redis`` extra too).

Form (docs/cluster.md, *Running on a Redis Cluster*)::

    redis-cluster://[USER:PASSWORD@]HOST:PORT[,HOST:PORT...]/?partitions=16&min_replicas=1

``rediss-cluster://`` is the same over TLS. The seeds are only where the store first
asks for the cluster's layout (``CLUSTER SLOTS``); it then talks to whichever masters
own the partitions' slots. Every other query parameter is one of the Redis store's
URL options (``prefix``, ``node_id``, ``claim_after``, ``min_replicas``, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

__all__ = ["CLUSTER_SCHEMES", "DEFAULT_PARTITIONS", "MAX_PARTITIONS", "STORE_OPTIONS",
           "ClusterUrl", "parse_cluster_url"]

#: The query parameters of a store URL that are the store's own (RedisStore keyword
#: arguments), with their types; a plain redis:// URL leaves the others to redis-py.
STORE_OPTIONS: dict[str, Callable[[str], Any]] = {
    "prefix": str, "node_id": str, "claim_after": float, "final_ttl": float,
    "history_days": float, "receipt_lease": float, "min_replicas": int,
    "replica_timeout": float, "callback_lease": float,
}

CLUSTER_SCHEMES = ("redis-cluster", "rediss-cluster")
#: Partitions when the URL names none: 16 spread the work over up to 16 masters.
DEFAULT_PARTITIONS = 16
#: A partition costs each node a batcher, a heartbeat and a script per claim poll.
MAX_PARTITIONS = 256
_FORM = "redis-cluster://[USER:PASSWORD@]HOST:PORT[,HOST:PORT...]/?partitions=N"


@dataclass(frozen=True, slots=True)
class ClusterUrl:
    """A parsed ``redis-cluster://`` URL."""

    seeds: tuple[tuple[str, int], ...]
    partitions: int = DEFAULT_PARTITIONS
    username: str | None = None
    password: str | None = None
    tls: bool = False
    #: the other query parameters: the Redis store's options (STORE_OPTIONS), typed
    options: dict[str, Any] = field(default_factory=dict)


def parse_cluster_url(url: str) -> ClusterUrl:
    """Parse ``url``; ValueError says what is wrong (never echoing a password)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in CLUSTER_SCHEMES:
        msg = f"expected {_FORM}"
        raise ValueError(msg)
    netloc, _, tail = rest.partition("/")
    path, _, query = tail.partition("?")
    if path:
        msg = f"a Redis Cluster has no database number (db 0 only): expected {_FORM}"
        raise ValueError(msg)
    username = password = None
    if "@" in netloc:
        auth, _, netloc = netloc.rpartition("@")
        user, colon, secret = auth.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    seeds: list[tuple[str, int]] = []
    for item in netloc.split(","):
        host, colon, port = item.strip().rpartition(":")
        host = host.strip("[]")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            msg = f"seed {item.strip()!r} is not HOST:PORT: expected {_FORM}"
            raise ValueError(msg)
        seeds.append((host, int(port)))
    options = dict(parse_qsl(query, keep_blank_values=True))
    raw = options.pop("partitions", str(DEFAULT_PARTITIONS))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PARTITIONS:
        msg = f"partitions must be a whole number from 1 to {MAX_PARTITIONS}, got {raw!r}"
        raise ValueError(msg)
    typed: dict[str, Any] = {}
    for key, value in options.items():
        convert = STORE_OPTIONS.get(key)
        if convert is None:
            msg = (f"unknown parameter {key!r} (partitions or one of "
                   f"{', '.join(sorted(STORE_OPTIONS))})")
            raise ValueError(msg)
        try:
            typed[key] = convert(value)
        except ValueError:
            msg = f"parameter {key} must be a {convert.__name__}, got {value!r}"
            raise ValueError(msg) from None
    if "{" in typed.get("prefix", "") or "}" in typed.get("prefix", ""):
        msg = "prefix must not contain { or }: each partition adds its own hash tag"
        raise ValueError(msg)
    return ClusterUrl(tuple(seeds), int(raw), username, password,
                      scheme == "rediss-cluster", typed)
