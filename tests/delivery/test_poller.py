"""Status mapping tables and the polling scheduler (injected clock, in-process
simulator provider)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from structlog.testing import capture_logs

from smppbridge.core.errors import StoreUnavailable
from smppbridge.core.outcomes import Err, StatusUpdate
from smppbridge.delivery.poller import STORE_RETRY, StatusPoller
from smppbridge.observability.metrics import METRICS
from smppbridge.providers.base import combine_channels
from smppbridge.providers.mysmpp_xml import mysmpp_error, mysmpp_state
from smppbridge.providers.simulator.provider import SimulatorProvider
from smppbridge.providers.smsfly import smsfly_error, smsfly_status
from smppbridge.smpp.receipts import Stat
from tests.providers.helpers import T0, FakeClock, message, settings


@pytest.mark.parametrize(("state", "expected"), [
    ("send", (Stat.ENROUTE, Err.OK)),
    ("deliver", (Stat.DELIVRD, Err.OK)),
    ("read", (Stat.DELIVRD, Err.OK)),
    ("not_deliver", (Stat.UNDELIV, Err.UNDELIVERABLE)),
    ("expired", (Stat.EXPIRED, Err.EXPIRED)),
    ("partly_deliver", (Stat.ENROUTE, Err.PARTLY_DELIVERED)),
    ("something new", (Stat.ENROUTE, Err.OK)),
])
def test_mysmpp_states(state: str, expected: tuple[Stat, Err]) -> None:
    """Every state of mysmpp's state.php maps as docs/providers.md says."""
    assert mysmpp_state(state) == expected


@pytest.mark.parametrize(("text", "err"), [
    ("We have run out of SMS. Please contact your manager to resolve the problem",
     Err.OUT_OF_FUNDS),
    ("Out of SMS", Err.OUT_OF_FUNDS),
    ("Account blocked", Err.ACCOUNT_BLOCKED),
    ("Specify phone number", Err.NUMBER_INVALID),
    ("Phone number is on the stop list", Err.STOP_LIST),
    ("This destination is closed for you", Err.DESTINATION_CLOSED),
    ("This destination is closed", Err.DESTINATION_CLOSED),
    ("SMS text rejected by moderator", Err.MODERATION),
    ("No sender", Err.SENDER_INVALID),
    ("The sender must not exceed 15 characters for numeric numbers and 11 characters for "
     "alphanumeric numbers", Err.SENDER_INVALID),
    ("Phone number must be less than 15 characters", Err.NUMBER_INVALID),
    ("No message text", Err.TEXT_INVALID),
    ("No link", Err.CONTENT_INVALID),
    ("Provide the contact name and at least one parameter for a business card",
     Err.CONTENT_INVALID),
    ("There is no such sender", Err.SENDER_INVALID),
    ("The sender has not been moderated", Err.SENDER_INVALID),
    ("Incorrect XML document format", Err.REQUEST_INVALID),
    ("Incorrect login or password", Err.ACCOUNT_BLOCKED),
    ("POST data is missing", Err.REQUEST_INVALID),
    ("Something unheard of", Err.REJECTED_OTHER),
])
def test_mysmpp_error_texts(text: str, err: Err) -> None:
    """Each error text the mysmpp send spec lists has its err code."""
    assert mysmpp_error(text) is err


def test_smsfly_statuses_and_codes() -> None:
    """SMS-fly's status and error tables map as documented; 3-digit err renders padded."""
    assert smsfly_status("ACCEPTD") == (Stat.ACCEPTD, Err.OK)
    assert smsfly_status("MODERATION") == (Stat.ENROUTE, Err.OK)
    assert smsfly_status("VIEWED") == (Stat.DELIVRD, Err.OK)
    assert smsfly_status("REFUND") == (Stat.UNDELIV, Err.REFUNDED)
    assert smsfly_status("INSUFFICIENTFUND") == (Stat.REJECTD, Err.OUT_OF_FUNDS)
    assert smsfly_error("INVSOURCE") is Err.SENDER_INVALID
    assert smsfly_error("NEWCODE") is Err.REJECTED_OTHER
    assert str(Err.STOP_LIST) == "101"
    assert str(Err.OK) == "000"
    assert Stat.UNDELIV.message_state == 5


def test_combine_channels() -> None:
    """Cascade: any delivered channel wins; a channel still moving keeps ENROUTE; else
    the last channel's status."""
    undeliv = (Stat.UNDELIV, Err.UNDELIVERABLE)
    assert combine_channels([undeliv, (Stat.DELIVRD, Err.OK)]) == (Stat.DELIVRD, Err.OK)
    assert combine_channels([undeliv, (Stat.ENROUTE, Err.OK)]) == (Stat.ENROUTE, Err.OK)
    assert combine_channels([undeliv, (Stat.EXPIRED, Err.EXPIRED)]) == (Stat.EXPIRED,
                                                                        Err.EXPIRED)


class _Collector:
    def __init__(self) -> None:
        self.updates: list[tuple[str, StatusUpdate]] = []
        self.event = asyncio.Event()

    async def __call__(self, name: str, update: StatusUpdate) -> None:
        self.updates.append((name, update))
        self.event.set()

    def stats(self) -> list[tuple[str, Stat]]:
        return [(u.message_id, u.stat) for _, u in self.updates]


def _poller(clock: FakeClock, sim: dict[str, object], **raw: object) -> tuple[
        StatusPoller, SimulatorProvider, _Collector]:
    s = settings("simulator", name="sim", simulator=sim, **raw)
    provider = SimulatorProvider(s, clock=clock)
    collector = _Collector()
    return StatusPoller({"sim": provider}, {"sim": s}, collector, clock=clock), provider, \
        collector


async def _send(provider: SimulatorProvider, mid: str, to: str = "79030000000") -> str:
    [out] = await provider.send([message(mid, to)])
    return out.provider_id


async def test_polls_until_final_with_a_growing_interval() -> None:
    """First poll after poll_interval; each unchanged answer doubles the interval; the
    final status is reported once and ends tracking."""
    clock = FakeClock()
    poller, provider, got = _poller(clock, {"deliver_after": 7}, poll_interval=2,
                                    poll_max_interval=3)
    pid = await _send(provider, "m1")
    poller.track("sim", pid, "m1", sent_at=T0)
    assert poller.next_due() == T0 + 2
    assert await poller.poll_due() == 0  # not due yet
    clock.advance(2)
    assert await poller.poll_due() == 1
    assert got.stats() == [("m1", Stat.ACCEPTD)]
    assert poller.next_due() == T0 + 2 + 3  # doubled to 4, capped at 3
    clock.advance(3)
    assert await poller.poll_due() == 1  # in progress now
    clock.advance(2)
    assert await poller.poll_due() == 0  # not due: the next poll is 3 s after the last
    clock.advance(1)
    assert await poller.poll_due() == 1
    assert got.stats() == [("m1", Stat.ACCEPTD), ("m1", Stat.ENROUTE), ("m1", Stat.DELIVRD)]
    assert len(poller) == 0
    assert poller.next_due() is None


async def test_many_due_messages_share_a_request() -> None:
    """Due messages of one provider are asked poll_batch ids per request."""
    clock = FakeClock()
    poller, provider, got = _poller(clock, {"deliver_after": 1}, poll_interval=1,
                                    poll_batch=3)
    for i in range(7):
        poller.track("sim", await _send(provider, str(i)), str(i), sent_at=T0)
    before = provider.engine.counters["requests"]
    clock.advance(1)
    await poller.poll_due()
    assert provider.engine.counters["requests"] - before == 3  # 3 + 3 + 1
    assert {stat for _, stat in got.stats()} == {Stat.DELIVRD}


async def test_deadline_ends_a_message_expired_or_unknown() -> None:
    """A message without a final status ends EXPIRED err 003 at validity end + grace, or
    UNKNOWN err 003 at max_status_age when it has no validity."""
    clock = FakeClock()
    poller, provider, got = _poller(clock, {"default_outcome": "never"}, poll_interval=10,
                                    status_grace=5, max_status_age=100)
    poller.track("sim", await _send(provider, "v"), "v", sent_at=T0, expire_at=T0 + 20)
    poller.track("sim", await _send(provider, "n"), "n", sent_at=T0)
    for _ in range(20):
        clock.advance(10)
        await poller.poll_due()
    finals = {u.message_id: u for _, u in got.updates if u.final}
    assert (finals["v"].stat, finals["v"].err) == (Stat.EXPIRED, Err.NO_FINAL_STATUS)
    assert (finals["n"].stat, finals["n"].err) == (Stat.UNKNOWN, Err.NO_FINAL_STATUS)
    assert finals["v"].done_at == T0 + 30  # 20 + 5 grace, seen at the next 10 s step
    assert len(poller) == 0


async def test_partly_delivered_ends_unknown_004() -> None:
    """mysmpp partly_deliver stays in flight and ends UNKNOWN err 004 at the deadline."""
    clock = FakeClock()
    poller, provider, got = _poller(clock, {"default_outcome": "partly", "deliver_after": 1},
                                    poll_interval=1, max_status_age=5)
    poller.track("sim", await _send(provider, "p"), "p", sent_at=T0)
    for _ in range(6):
        clock.advance(1)
        await poller.poll_due()
    last = got.updates[-1][1]
    assert (last.stat, last.err) == (Stat.UNKNOWN, Err.PARTLY_DELIVERED)


async def test_poll_failure_is_retried_later() -> None:
    """A failed status request is logged and the messages are asked again later."""
    clock = FakeClock()
    poller, provider, got = _poller(clock, {"deliver_after": 1}, poll_interval=1)
    poller.track("sim", await _send(provider, "f"), "f", sent_at=T0)
    provider.engine.control({"fail_next": 1})
    clock.advance(1)
    assert await poller.poll_due() == 0
    clock.advance(2)
    assert await poller.poll_due() == 1
    assert got.stats() == [("f", Stat.DELIVRD)]


async def test_forget_stops_polling() -> None:
    """forget() (a webhook brought the final status) removes the message."""
    clock = FakeClock()
    poller, _provider, _got = _poller(clock, {}, poll_interval=1)
    poller.track("sim", "x", "x", sent_at=T0)
    poller.forget("sim", "x")
    clock.advance(5)
    assert await poller.poll_due() == 0
    assert poller.next_due() is None


async def test_run_polls_what_is_due() -> None:
    """run() wakes for a newly tracked message that is already due and reports it."""
    clock = FakeClock()
    poller, provider, got = _poller(clock, {"deliver_after": 0}, poll_interval=1)
    task = asyncio.create_task(poller.run())
    try:
        poller.track("sim", await _send(provider, "r"), "r", sent_at=T0 - 1)
        await got.event.wait()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert got.stats() == [("r", Stat.DELIVRD)]


class _Batches:
    """on_updates: records each call's updates as (message_id, stat)."""

    def __init__(self) -> None:
        self.calls: list[list[tuple[str, Stat]]] = []

    async def __call__(self, name: str, updates: Sequence[StatusUpdate]) -> None:
        self.calls.append([(u.message_id, u.stat) for u in updates])


class _Scripted:
    """A provider whose poll answers are scripted, one list per poll."""

    def __init__(self, answers: list[list[StatusUpdate]]) -> None:
        self.answers = answers

    async def poll(self, provider_ids: Sequence[str]) -> list[StatusUpdate]:
        return self.answers.pop(0)


async def test_updates_of_one_poll_answer_arrive_in_one_on_updates_call() -> None:
    """With on_updates, each poll answer's updates (message ids filled in) come in one
    call — one per request of poll_batch ids — and on_update is not called."""
    clock = FakeClock()
    s = settings("simulator", name="sim", simulator={"deliver_after": 1}, poll_interval=1,
                 poll_batch=3)
    provider = SimulatorProvider(s, clock=clock)
    single, batches = _Collector(), _Batches()
    poller = StatusPoller({"sim": provider}, {"sim": s}, single, on_updates=batches,
                          clock=clock)
    for i in range(5):
        poller.track("sim", await _send(provider, str(i)), str(i), sent_at=T0)
    clock.advance(1)
    assert await poller.poll_due() == 5
    assert batches.calls == [[(str(i), Stat.DELIVRD) for i in range(3)],
                             [(str(i), Stat.DELIVRD) for i in (3, 4)]]
    assert single.updates == []


async def test_on_updates_gets_no_repeat_of_an_unchanged_status() -> None:
    """A status repeated unchanged in a later poll answer is not reported again; a poll
    that brings nothing new makes no on_updates call."""
    clock = FakeClock()
    s = settings("simulator", name="sim", poll_interval=1, poll_max_interval=1)
    provider = _Scripted([
        [StatusUpdate("pa", Stat.ENROUTE), StatusUpdate("pb", Stat.ENROUTE)],
        [StatusUpdate("pa", Stat.ENROUTE), StatusUpdate("pb", Stat.DELIVRD)],
        [StatusUpdate("pa", Stat.ENROUTE)],
        [StatusUpdate("pa", Stat.UNDELIV, Err.UNDELIVERABLE)],
    ])
    single, batches = _Collector(), _Batches()
    poller = StatusPoller({"sim": provider}, {"sim": s}, single,  # type: ignore[dict-item]
                          on_updates=batches, clock=clock)
    poller.track("sim", "pa", "a", sent_at=T0)
    poller.track("sim", "pb", "b", sent_at=T0)
    counts = []
    for _ in range(4):
        clock.advance(1)
        counts.append(await poller.poll_due())
    assert counts == [2, 1, 0, 1]
    assert batches.calls == [[("a", Stat.ENROUTE), ("b", Stat.ENROUTE)],
                             [("b", Stat.DELIVRD)],
                             [("a", Stat.UNDELIV)]]
    assert single.updates == []
    assert len(poller) == 0


async def test_a_status_the_store_cannot_take_is_asked_again_not_lost() -> None:
    """The final status's write fails (StoreUnavailable: a full disk): the message stays
    followed, is polled again STORE_RETRY seconds later, and its final status is
    reported then."""
    clock = FakeClock()
    s = settings("simulator", name="sim", simulator={"deliver_after": 1}, poll_interval=2)
    provider = SimulatorProvider(s, clock=clock)
    got: list[StatusUpdate] = []
    down = True

    async def write(_name: str, update: StatusUpdate) -> None:
        if down:
            raise StoreUnavailable("disk full")
        got.append(update)

    poller = StatusPoller({"sim": provider}, {"sim": s}, write, clock=clock)
    pid = await _send(provider, "m1")
    poller.track("sim", pid, "m1", sent_at=T0)
    clock.advance(2)
    assert await poller.poll_due() == 0  # nothing written
    assert poller.next_due() == clock() + STORE_RETRY
    down = False
    clock.advance(STORE_RETRY)
    assert await poller.poll_due() == 1
    assert [(u.message_id, u.stat) for u in got] == [("m1", Stat.DELIVRD)]
    assert poller.next_due() is None


async def test_a_provider_id_given_twice_is_logged_and_attached_to_neither_silently(
) -> None:
    """A provider id already followed for another live message: the conflict is logged
    (provider.id_conflict naming both messages) and counted; statuses go to the newer
    message; the older one is not polled any more and ends UNKNOWN err 003 at its
    deadline instead of taking the newer one's status."""
    clock = FakeClock()
    s = settings("simulator", name="sim", simulator={"deliver_after": 1}, poll_interval=2,
                 max_status_age=60)
    provider = SimulatorProvider(s, clock=clock)
    got: list[StatusUpdate] = []

    async def write(_name: str, update: StatusUpdate) -> None:
        got.append(update)

    poller = StatusPoller({"sim": provider}, {"sim": s}, write, clock=clock)
    pid = await _send(provider, "new")
    before = METRICS.provider_id_conflicts.labels("sim").collect()[0].samples[0].value
    with capture_logs() as logs:
        poller.track("sim", pid, "old", sent_at=T0)
        poller.track("sim", pid, "new", sent_at=T0)
    assert [(e["event"], e["message_id"], e["other_message_id"]) for e in logs] == [
        ("provider.id_conflict", "new", "old")]
    after = METRICS.provider_id_conflicts.labels("sim").collect()[0].samples[0].value
    assert after - before == 1
    clock.advance(2)
    await poller.poll_due()
    assert [(u.message_id, u.stat) for u in got] == [("new", Stat.DELIVRD)]
    clock.advance(60)
    await poller.poll_due()
    assert [(u.message_id, u.stat, u.err) for u in got[1:]] == [
        ("old", Stat.UNKNOWN, Err.NO_FINAL_STATUS)]


async def test_a_message_of_a_provider_no_longer_configured_ends_at_its_deadline() -> None:
    """A restarted node may find messages sent to a provider its config no longer names:
    they are followed without polls (nothing to ask) and end UNKNOWN err 003 at the
    default max_status_age, instead of stopping the poller with a KeyError."""
    clock = FakeClock()
    got = _Collector()
    poller = StatusPoller({}, {}, got, clock=clock)
    poller.track("gone", "P1", "m1", sent_at=T0)
    assert poller.next_due() == T0 + 172_800.0  # the default max_status_age, no polls
    clock.advance(172_800.0)
    assert await poller.poll_due() == 1
    [(provider, update)] = got.updates
    assert (provider, update.message_id, update.stat, update.err) == (
        "gone", "m1", Stat.UNKNOWN, Err.NO_FINAL_STATUS)
    assert len(poller) == 0


async def test_a_provider_removed_while_its_messages_are_followed_is_not_polled() -> None:
    """A reload removes a provider (the node's dicts are changed in place): its messages
    due for a poll are not asked (no client) and not lost; they still end at their
    deadline."""
    clock = FakeClock()
    poller, provider, got = _poller(clock, {"default_outcome": "never"}, poll_interval=1,
                                    max_status_age=10)
    poller.track("sim", await _send(provider, "r"), "r", sent_at=T0)
    assert isinstance(poller.providers, dict)
    assert isinstance(poller.settings, dict)
    poller.providers.clear()
    poller.settings.clear()
    clock.advance(1)
    assert await poller.poll_due() == 0
    assert len(poller) == 1
    clock.advance(20)
    assert await poller.poll_due() == 1
    assert got.stats() == [("r", Stat.UNKNOWN)]
