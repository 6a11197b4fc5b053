"""What nodes of a cluster tell each other through their shared store: who is alive,
which binds each holds, each node's traffic second by second, and requests to unbind a
bind another node holds. The operator API of any node shows every live node from it
(docs/cluster.md, *The operator API in a cluster*)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["BindInfo", "NodeReport", "Second"]


@dataclass(slots=True)
class Second:
    """What happened on one node in one second (UNIX second ``at``)."""

    at: int
    submitted: int = 0
    #: refusals by reason (the command_status name, e.g. ESME_RTHROTTLED)
    refused: dict[str, int] = field(default_factory=dict)
    sent: int = 0
    delivered: int = 0
    #: final statuses other than DELIVRD
    failed: int = 0
    receipts_delivered: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, d: dict[str, Any]) -> Second:
        return cls(int(d["at"]), int(d.get("submitted", 0)),
                   {str(k): int(v) for k, v in dict(d.get("refused", {})).items()},
                   int(d.get("sent", 0)), int(d.get("delivered", 0)),
                   int(d.get("failed", 0)), int(d.get("receipts_delivered", 0)))


@dataclass(frozen=True, slots=True)
class BindInfo:
    """One open bind, as the operator API lists it."""

    node: str
    number: int
    system_id: str
    bind_type: str
    peer: str
    tls: bool
    since: float
    window_in_use: int
    window: int
    submit_rate: float

    @property
    def id(self) -> str:
        return f"{self.node}:{self.number}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, d: dict[str, Any]) -> BindInfo:
        return cls(str(d["node"]), int(d["number"]), str(d["system_id"]),
                   str(d["bind_type"]), str(d["peer"]), bool(d["tls"]), float(d["since"]),
                   int(d["window_in_use"]), int(d["window"]), float(d["submit_rate"]))


@dataclass(frozen=True, slots=True)
class NodeReport:
    """A node's heartbeat: alive at ``at``, holding ``binds``."""

    node_id: str
    at: float
    binds: tuple[BindInfo, ...] = ()
