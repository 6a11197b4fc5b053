"""The simulator engine's provider ids: unique across restarts of the simulator, and in
the shape each API gives them (mysmpp: an integer; SMS-fly: ``FAPI`` + 16 hex digits)."""

from __future__ import annotations

import re

import httpx

from smppbridge.providers.simulator.engine import MAX_ID, SimEngine, first_id
from smppbridge.providers.simulator.settings import SimConfig
from smppbridge.simulator.app import Simulator
from tests.providers.helpers import T0, FakeClock

#: mysmpp ``id_sms`` (an Int in its API): decimal digits, no leading zero.
MYSMPP_ID = re.compile(r"[1-9][0-9]{0,15}")
#: SMS-fly ``messageID``, as in its API's examples (``FAPI00040A3AFA000002``).
SMSFLY_ID = re.compile(r"FAPI[0-9A-F]{16}")
#: Year 2250, still inside the id range: an id is microseconds since the epoch.
YEAR_2250 = 8_835_000_000.0


def _run(clock: FakeClock, messages: int, rate: float) -> list[str]:
    """Start an engine on ``clock`` and take ``messages`` at ``rate`` a second."""
    engine = SimEngine(SimConfig(), clock)
    ids = []
    for _ in range(messages):
        msg, _ = engine.accept("mysmpp", "acct", "79000000001")
        assert msg is not None
        ids.append(msg.id)
        clock.advance(1 / rate)
    return ids


def test_a_restarted_engine_never_repeats_an_earlier_runs_id() -> None:
    """Two engines started one after the other (the second 0.1 s after the first took
    its last message at 2,000 a second) give disjoint ids, the second's all above the
    first's: a status for an id of the first run cannot land on a message of the second."""
    clock = FakeClock()
    first = _run(clock, 2_000, rate=2_000)
    clock.advance(0.1)
    second = _run(clock, 2_000, rate=2_000)
    assert not set(first) & set(second)
    assert len(set(first)) == len(first)
    assert min(map(int, second)) > max(map(int, first))


def test_the_first_id_is_the_start_time_in_microseconds() -> None:
    """A run's first id is its start in microseconds, so a run that gave fewer ids than
    the microseconds it lasted ends below the next run's first id; restarting within a
    second gives a different first id."""
    assert first_id(T0) == int(T0) * 1_000_000
    assert first_id(T0 + 1) - first_id(T0) == 1_000_000
    assert first_id(T0 + 0.5) != first_id(T0)
    assert first_id(0.0) == 1  # a clock at the epoch still gives a positive id


def test_reset_does_not_restart_the_ids() -> None:
    """``POST /control {"reset": true}`` forgets the messages but not where the ids were:
    the next id is still a new one."""
    engine = SimEngine(SimConfig(), FakeClock())
    before, _ = engine.accept("mysmpp", "acct", "79000000001")
    engine.control({"reset": True})
    after, _ = engine.accept("mysmpp", "acct", "79000000001")
    assert before is not None
    assert after is not None
    assert int(after.id) > int(before.id)


XML_SEND = (
    '<?xml version="1.0" encoding="utf-8" ?><request>'
    '<message type_send_1="sms"><sender>S</sender><text>t</text>'
    '<abonent phone="79000000001" number_sms="1"/></message>'
    '<security><login value="l"/><password value="p"/></security></request>')
JSON_SEND = {"login": "l", "password": "p", "message": [
    {"type_send_1": "sms", "sender": "S", "text": "t", "phones": [{"phone": "79000000001"}]}]}
FLY_SEND = {"auth": {"key": "k"}, "action": "SENDMESSAGE", "data": {
    "recipient": "380501234567", "channels": ["sms"],
    "sms": {"source": "S", "ttl": 10, "text": "t"}}}


async def _rendered_ids(now: float) -> tuple[str, str, str]:
    """(mysmpp XML id_sms, mysmpp JSON id_sms, SMS-fly messageID) as the simulator's APIs
    answer them on a clock at ``now``."""
    sim = Simulator(SimConfig(), clock=FakeClock(now))
    transport = httpx.ASGITransport(app=sim.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
        xml = (await client.post("/xml", content=XML_SEND.encode())).text
        [xml_id] = re.findall(r'id_sms="([^"]*)"', xml)
        [info] = (await client.post("/json", json=JSON_SEND)).json()["information"]
        fly = (await client.post("/api/v2/api.php", json=FLY_SEND)).json()
    return xml_id, str(info["id_sms"]), str(fly["data"]["messageID"])


async def test_ids_keep_each_apis_format_now_and_in_2250() -> None:
    """mysmpp ids are decimal integers of at most 16 digits (below 2**53: exact in JSON
    and in a signed 64-bit integer) and SMS-fly ids ``FAPI`` + 16 hex digits, both for
    a clock of today and one of the year 2250."""
    for now in (T0, YEAR_2250):
        xml_id, json_id, fly_id = await _rendered_ids(now)
        for mysmpp_id in (xml_id, json_id):
            assert MYSMPP_ID.fullmatch(mysmpp_id), mysmpp_id
            assert int(mysmpp_id) <= MAX_ID
        assert SMSFLY_ID.fullmatch(fly_id), fly_id
        assert int(fly_id[4:], 16) <= MAX_ID
