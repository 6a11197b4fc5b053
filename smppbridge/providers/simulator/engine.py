"""The simulator's state, shared by every API it serves (and the in-process provider).

Statuses are computed from the clock when asked, not driven by timers, so a message
costs one small record and no work until someone asks about it: a message is
``accepted`` when taken, ``progress`` after half of ``deliver_after``, and reaches its
outcome at ``deliver_after``. Client-side ids (mysmpp ``client_id_sms``, our message
id for the other APIs) are remembered per account: the same id again returns the first
message, as the real API does, and is counted as a duplicate.

Provider ids (mysmpp ``id_sms``, SMS-fly ``messageID``, http-json ``provider_id``) come
from one counter that starts at the wall clock in microseconds (:func:`first_id`), so a
restarted simulator never hands out an id an earlier run gave: a node that still holds
messages of the earlier run would otherwise match a later status to the wrong one.
"""

from __future__ import annotations

import heapq
import itertools
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from smppbridge.providers.simulator.settings import SEND_ERRORS, SimConfig

__all__ = ["MAX_ID", "Fault", "HlrData", "SimEngine", "SimMessage", "first_id"]


@dataclass(slots=True)
class SimMessage:
    id: str
    api: str
    account: str
    phone: str
    kind: str
    created: float
    outcome: str
    parts: int = 1
    channels: tuple[str, ...] = ("sms",)
    client_id: str = ""
    callback: str = ""
    our_id: str = ""


@dataclass(frozen=True, slots=True)
class HlrData:
    imsi: str
    msc: str
    mcc: str
    mnc: str
    cn: str
    net: str
    rcn: str = ""
    rnet: str = ""


@dataclass(frozen=True, slots=True)
class Fault:
    """What the fault switches say about one request: drop it, or answer ``status``."""

    drop: bool = False
    status: int = 0


#: (prefix, mcc, mnc, country, network) for the fake HLR answers.
_NETWORKS = (
    ("380", "255", "01", "Ukraine", "Kyivstar"),
    ("7", "250", "02", "Russian Federation", "MegaFon"),
    ("", "001", "01", "Test Country", "Test Network"),
)
#: Characters per SMS part: GSM 7-bit alone / concatenated (3GPP TS 23.040).
_GSM_SINGLE, _GSM_PART = 160, 153
_UCS2_SINGLE, _UCS2_PART = 70, 67


#: Ids stay below 2**53 (16 decimal digits, 14 hex digits): exact as a JSON number or
#: a double, within a signed 64-bit integer (mysmpp documents ``id_sms`` as an Int), and
#: within the 16 hex digits of an SMS-fly ``FAPI…`` id. Microseconds since the epoch
#: reach 2**53 in the year 2255.
MAX_ID = 2**53 - 1


def first_id(now: float) -> int:
    """The first provider id of an engine started at ``now`` (seconds since the epoch):
    the start time in microseconds, then one more per message.

    Why a later run never repeats an earlier run's id: a run that started at ``t0`` µs
    and gave ``n`` ids used ``t0 .. t0+n-1``; a run started after it stopped, at ``t1``
    µs, begins at ``t1``. They meet only if ``t0 + n > t1``, i.e. if the earlier run gave
    more than one id per microsecond of its whole uptime — a million messages a second,
    where the simulator takes some thousands. (What this cannot survive is a wall clock
    stepped back by more than the earlier run's uptime between the two starts; two
    simulators running at once are two providers, with ids of their own.)
    """
    return max(1, int(now * 1_000_000))


def sms_parts(text: str) -> int:
    """How many SMS parts a text takes (ASCII counted as GSM 7-bit, anything else UCS2)."""
    single, part = (_GSM_SINGLE, _GSM_PART) if text.isascii() else (_UCS2_SINGLE, _UCS2_PART)
    n = len(text)
    return 1 if n <= single else -(-n // part)


@dataclass
class SimEngine:
    config: SimConfig = field(default_factory=SimConfig)
    clock: Callable[[], float] = time.time
    #: oldest first; an OrderedDict, because evicting the oldest of a plain dict
    #: (next(iter(...))) walks the deleted slots at its front: ~50 µs a message at the
    #: 100,000-message cap
    messages: OrderedDict[str, SimMessage] = field(default_factory=OrderedDict)
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("requests", "accepted", "rejected", "duplicates", "failed", "dropped", "mo"), 0))
    _by_client: dict[tuple[str, str, str], str] = field(default_factory=dict)
    #: provider ids: from the start time on (see :func:`first_id`); never reset
    _ids: itertools.count[int] = field(init=False)
    _webhooks: list[tuple[float, str]] = field(default_factory=list)
    fail_next: int = 0
    down_until: float = 0.0
    _rng: random.Random = field(default_factory=random.Random)

    #: when the last scheduled MO was made (``mo_every``)
    _mo_at: float = 0.0

    def __post_init__(self) -> None:
        self._rng.seed(self.config.seed)
        self._ids = itertools.count(first_id(self.clock()))
        self._mo_at = self.clock()

    def mo(self, raw: Mapping[str, Any] | None = None) -> dict[str, str]:
        """One mobile-originated message in the http-json MO shape (``from``, ``to``,
        ``text``), the settings' ``mo_from``/``mo_to``/``mo_text`` where ``raw`` gives
        none; raises ValueError for a value that is not a string."""
        c = self.config
        out = {"from": c.mo_from, "to": c.mo_to, "text": c.mo_text}
        for key, value in (raw or {}).items():
            if key not in out or not isinstance(value, str):
                raise ValueError(f"{key}: expected from, to or text (strings)")
            out[key] = value
        self.counters["mo"] += 1
        return out

    def due_mo(self) -> list[dict[str, str]]:
        """The scheduled MO due now (one per ``mo_every`` seconds passed, at most 100)."""
        every = self.config.mo_every
        now = self.clock()
        if not every:
            self._mo_at = now
            return []
        count = min(100, int((now - self._mo_at) / every))
        if count:
            self._mo_at = now if count == 100 else self._mo_at + count * every
        return [self.mo() for _ in range(count)]

    # --- control ------------------------------------------------------------------------

    def control(self, raw: dict[str, Any]) -> None:
        """Apply a ``POST /control`` body: settings (SimConfig keys) plus the switches
        ``fail_next`` (answer the next N requests with fail_status), ``down_for`` (drop
        every request for N seconds), ``up`` (end an outage) and ``reset`` (forget
        messages and counters)."""
        raw = dict(raw)
        if raw.pop("reset", False):
            self.messages.clear()
            self._by_client.clear()
            self._webhooks.clear()
            for key in self.counters:
                self.counters[key] = 0
        fail_next = raw.pop("fail_next", None)
        down_for = raw.pop("down_for", None)
        up = raw.pop("up", False)
        for key, value in (("fail_next", fail_next), ("down_for", down_for)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                      or value < 0):
                raise ValueError(f"{key}: expected a number >= 0")
        config = SimConfig.from_dict(raw, self.config)
        if "seed" in raw:
            self._rng.seed(config.seed)
        self.config = config
        if fail_next is not None:
            self.fail_next = int(fail_next)
        if down_for is not None:
            self.down_until = self.clock() + float(down_for)
        if up:
            self.down_until = 0.0

    def snapshot(self) -> dict[str, Any]:
        c = self.config
        return {
            "default_outcome": c.default_outcome,
            "rules": [{"pattern": r.pattern, "outcome": r.outcome} for r in c.rules],
            "deliver_after": c.deliver_after,
            "latency": c.latency,
            "fail_rate": c.fail_rate,
            "fail_status": c.fail_status,
            "fail_next": self.fail_next,
            "down": self.down_until > self.clock(),
            "messages": len(self.messages),
            "counters": dict(self.counters),
        }

    def fault(self) -> Fault:
        """Count a request and decide whether the fault switches hit it."""
        self.counters["requests"] += 1
        if self.down_until and self.clock() < self.down_until:
            self.counters["dropped"] += 1
            return Fault(drop=True)
        if self.fail_next > 0:
            self.fail_next -= 1
            self.counters["failed"] += 1
            return Fault(status=self.config.fail_status)
        if self.config.fail_rate and self._rng.random() < self.config.fail_rate:
            self.counters["failed"] += 1
            return Fault(status=self.config.fail_status)
        return Fault()

    def authorized(self, *, login: str = "", password: str = "", token: str = "",
                   key: str = "") -> bool:
        c = self.config
        if key or c.key:
            return not c.key or key == c.key
        if c.token and token == c.token:
            return True
        if c.login or c.password:
            return login == c.login and password == c.password
        return not c.token

    # --- messages -----------------------------------------------------------------------

    def accept(self, api: str, account: str, phone: str, *, client_id: str = "",
               kind: str = "sms", text: str = "", channels: tuple[str, ...] = ("sms",),
               callback: str = "", our_id: str = "",
               id_format: str = "{}") -> tuple[SimMessage | None, str]:
        """Take one message. Returns ``(message, "")`` or ``(None, send error outcome)``.
        A known client id returns the first message again."""
        if client_id:
            known = self._by_client.get((api, account, client_id))
            if known is not None and known in self.messages:
                self.counters["duplicates"] += 1
                return self.messages[known], ""
        outcome = self.config.outcome_for(phone)
        if outcome in SEND_ERRORS:
            self.counters["rejected"] += 1
            return None, outcome
        msg = SimMessage(
            id=id_format.format(next(self._ids)), api=api, account=account, phone=phone,
            kind=kind, created=self.clock(), outcome=outcome, parts=sms_parts(text),
            channels=channels, client_id=client_id, callback=callback, our_id=our_id)
        self.messages[msg.id] = msg
        if client_id:
            self._by_client[(api, account, client_id)] = msg.id
        if callback:
            heapq.heappush(self._webhooks, (msg.created + self.config.deliver_after, msg.id))
        self.counters["accepted"] += 1
        if len(self.messages) > self.config.max_messages:
            _, old = self.messages.popitem(last=False)
            self._by_client.pop((old.api, old.account, old.client_id), None)
        return msg, ""

    def phase(self, msg: SimMessage) -> str:
        """``accepted``, ``progress``, or the message's outcome."""
        age = self.clock() - msg.created
        after = self.config.deliver_after
        if age >= after and msg.outcome != "never":
            return msg.outcome
        return "progress" if age >= after / 2 else "accepted"

    def final_time(self, msg: SimMessage) -> float:
        return msg.created + self.config.deliver_after

    def due_webhooks(self) -> list[SimMessage]:
        """Messages with a callback whose final status is due (each returned once)."""
        now = self.clock()
        due = []
        while self._webhooks and self._webhooks[0][0] <= now:
            _, mid = heapq.heappop(self._webhooks)
            msg = self.messages.get(mid)
            if msg is not None:
                due.append(msg)
        return due

    @staticmethod
    def hlr(msg: SimMessage) -> HlrData:
        """A made-up but well-formed HLR answer for the number's country."""
        for prefix, mcc, mnc, country, net in _NETWORKS:
            if msg.phone.startswith(prefix):
                imsi = (mcc + mnc + msg.phone[-10:].rjust(10, "0"))[:15]
                return HlrData(imsi=imsi, msc=(prefix or "1") + "9000000001", mcc=mcc,
                               mnc=mnc, cn=country, net=net)
        raise AssertionError("the last network matches every number")  # pragma: no cover
