"""What a node keeps per message while it waits for the provider's status is invisible to
the garbage collector after one collection (exact tuples of plain values), so young
collections do not walk thousands of in-flight messages (docs/performance.md)."""

from __future__ import annotations

import gc

from smppbridge.core.outcomes import Err, StatusUpdate
from smppbridge.core.receipts import make_receipts, receipt_basis
from smppbridge.delivery.poller import StatusPoller
from smppbridge.smpp.receipts import Stat
from tests.providers.helpers import T0, FakeClock, message, settings


def test_receipt_basis_is_untracked_after_a_collection() -> None:
    m = message("1001", text="hello there", expire_at=T0 + 3600)
    basis = receipt_basis(m)
    _two_collections()
    assert not gc.is_tracked(basis)
    # and it makes the same receipts as the message itself
    assert make_receipts(basis, "DELIVRD", 0, T0 + 5) == make_receipts(m, "DELIVRD", 0,
                                                                      T0 + 5)


def _two_collections() -> None:
    # A tuple is dropped from the collector's lists once its items are untracked; a
    # collection may look at the outer tuple before an inner one (part_ids, ``last``),
    # so the outer goes at the next.
    gc.collect()
    gc.collect()


async def _unused(_provider: str, _update: StatusUpdate) -> None:
    return None


def test_followed_messages_are_untracked_after_a_collection() -> None:
    clock = FakeClock()
    s = settings("simulator")
    poller = StatusPoller({}, {"p": s}, _unused, clock=clock)
    poller.track("p", "pid-1", "1001", expire_at=T0 + 600)
    item = poller._items[("p", "pid-1")]
    # a status noted (not final) replaces the entry; still plain values
    poller._note(item, StatusUpdate("pid-1", Stat.ENROUTE, Err.PARTLY_DELIVERED))
    _two_collections()
    entry = poller._items[("p", "pid-1")]
    assert entry[-1] == ("ENROUTE", int(Err.PARTLY_DELIVERED))
    assert not gc.is_tracked(entry)
    assert not any(gc.is_tracked(e) for e in poller._heap)
