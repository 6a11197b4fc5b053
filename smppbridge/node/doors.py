"""What the HTTP doors share: the JSON submit API (node/submit_api.py) and the Jasmin
and Kannel drop-in endpoints (node/compat.py) turn their requests into
:class:`~smppbridge.ingest.texts.TextMessage` and hand them here.

:class:`SubmitDoors` takes the account's throughput tokens (the same token bucket as
its SMPP binds, on the same clock: one token per part, as its submit_sm parts would
take; a message of more parts than the bucket's depth takes the whole depth), runs the
messages through the content stage (:meth:`ContentHandler.submit_texts
<smppbridge.ingest.submit.ContentHandler.submit_texts>`: parts and ids, macros, limits,
flood rules, routing, the durable accept) and counts the outcomes
(``smppbridge_http_submits_total{account, door, outcome}``).
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from smppbridge.config import Config
from smppbridge.core.accounts import Account
from smppbridge.core.callback_urls import url_problem
from smppbridge.core.message import Address
from smppbridge.core.session import BindType, SessionContext
from smppbridge.ingest.submit import ContentHandler
from smppbridge.ingest.texts import TextMessage, TextResult, count_parts, data_coding_of
from smppbridge.observability.metrics import METRICS
from smppbridge.server.admission import Admission
from smppbridge.smpp.constants import INTERFACE_VERSION_34, CommandStatus
from smppbridge.text.encoding import ContentError

__all__ = ["AddressProblem", "SubmitDoors", "destination", "source"]

_S = CommandStatus
_DIGITS = re.compile(r"\+?[0-9]{1,20}")
#: an alphanumeric sender: at most 11 characters (GSM 03.40 §9.1.2.5), printable
_ALPHANUMERIC = re.compile(r"[^\x00-\x1f\x7f]{1,11}")
#: the text of a throttled message's refusal
THROTTLED = "throttled: over the account's throughput"


class AddressProblem(ValueError):
    """An address the doors do not take (the message says why)."""


def destination(value: str, name: str = "to") -> Address:
    """A destination: 1-20 digits, an optional leading ``+`` (dropped); international
    (TON 1, NPI 1)."""
    if not _DIGITS.fullmatch(value):
        msg = f"{name}: 1-20 digits with an optional leading +"
        raise AddressProblem(msg)
    return Address(value.lstrip("+"), 1, 1)


def source(value: str, name: str = "from") -> Address:
    """A sender: digits as :func:`destination` does, or an alphanumeric name of 1-11
    characters (TON 5, NPI 0)."""
    if _DIGITS.fullmatch(value):
        return Address(value.lstrip("+"), 1, 1)
    if not _ALPHANUMERIC.fullmatch(value):
        msg = f"{name}: 1-20 digits, or a name of 1-11 printable characters"
        raise AddressProblem(msg)
    return Address(value, 5, 0)


@dataclass
class SubmitDoors:
    """The submit side of the HTTP doors, see the module docstring. ``config`` gives
    the config in force (a reload swaps it)."""

    content: ContentHandler
    admission: Admission
    config: Callable[[], Config]
    #: steady time (core.clock): the Idempotency-Key TTLs
    clock: Callable[[], float]
    #: wall time: Jasmin's sdt and Kannel's deferred count from it
    wall: Callable[[], float]

    def account(self, system_id: str) -> Account | None:
        return self.admission.accounts.get(system_id)

    def callback_problem(self, url: str) -> str | None:
        """What is wrong with ``url`` as a callback URL (core.callback_urls), or None."""
        return url_problem(url, self.config().http.callback_allow_networks)

    @staticmethod
    def registered_delivery(account: Account) -> int:
        """An HTTP message asks for a final receipt over SMPP unless the account's
        statuses go to HTTP callbacks only (``receipts = "http"``)."""
        return 0 if account.receipts == "http" else 1

    def retry_after(self, account: Account, throttled: int) -> int:
        """Seconds until ``throttled`` more tokens are back (at least 1)."""
        rate = account.throughput
        return max(1, math.ceil(throttled / rate)) if rate > 0 else 1

    async def submit(self, account: Account, peer: str, items: Sequence[TextMessage],
                     door: str) -> list[TextResult]:
        """Every message of one request, answered in order. Messages past the
        account's throughput are answered ESME_RTHROTTLED (not stored)."""
        now = asyncio.get_running_loop().time()  # the SMPP binds' clock: one bucket
        max_parts = self.content.reassembler.config.max_parts
        granted = 0
        for item in items:
            if not self.admission.take_token(account.system_id, now,
                                             _parts(item, max_parts)):
                break
            granted += 1
        ctx = SessionContext(0, account, BindType.TRANSMITTER, "", INTERFACE_VERSION_34,
                             f"{door}:{peer}")
        results = await self.content.submit_texts(ctx, items[:granted]) if granted else []
        results += [TextResult(_S.ESME_RTHROTTLED, reason=THROTTLED)] * (len(items) - granted)
        for result in results:
            METRICS.http_submit(account.system_id, door, result.status).inc()
        return results


def _parts(item: TextMessage, max_parts: int) -> int:
    """The tokens a message takes: its parts (1 for a text the content stage will
    refuse anyway)."""
    try:
        return count_parts(item, data_coding_of(item), max_parts)
    except ContentError:
        return 1
