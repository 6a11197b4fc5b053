"""The simulator app over real HTTP: control endpoint, fault switches, API validation."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
from collections.abc import AsyncIterator

import httpx
import pytest

from smppbridge.providers.simulator.settings import SimConfig
from smppbridge.simulator.app import Simulator, main, run_simulator
from tests.providers.helpers import FakeClock, running_simulator

XML_SMS = (
    '<?xml version="1.0" encoding="utf-8" ?><request>'
    '<message type_send_1="sms"><sender>{sender}</sender><text>{text}</text>'
    '<abonent phone="{phone}" number_sms="1" client_id_sms="1"/></message>'
    '<security><login value="l"/><password value="p"/></security></request>')


@pytest.fixture
async def sim() -> AsyncIterator[tuple[Simulator, httpx.AsyncClient, FakeClock]]:
    clock = FakeClock()
    async with running_simulator(SimConfig(seed=7), clock) as (s, url), \
            httpx.AsyncClient(base_url=url) as client:
        yield s, client, clock


async def test_control_changes_rules_and_reports_counters(
        sim: tuple[Simulator, httpx.AsyncClient, FakeClock]) -> None:
    """POST /control sets rules and switches; GET /control shows them with counters;
    reset forgets messages; bad keys are 400."""
    _, client, _ = sim
    r = await client.post("/control", json={"rules": [{"pattern": "7666*",
                                                       "outcome": "stop_list"}],
                                            "deliver_after": 5})
    assert r.status_code == 200
    assert r.json()["rules"] == [{"pattern": "7666*", "outcome": "stop_list"}]
    body = XML_SMS.format(sender="S", text="t", phone="76660000000").encode()
    r = await client.post("/xml", content=body)
    assert "Phone number is on the stop list" in r.text
    snap = (await client.get("/control")).json()
    assert snap["counters"]["rejected"] == 1
    assert snap["deliver_after"] == 5.0
    r = await client.post("/control", json={"reset": True})
    assert r.json()["counters"]["requests"] == 0
    r = await client.post("/control", json={"rules": [{"pattern": "1", "outcome": "lost"}]})
    assert r.status_code == 400
    assert "unknown outcome" in r.json()["error"]
    r = await client.post("/control", json={"speed": 1})
    assert r.json() == {"error": "speed: unknown key"}


async def test_down_for_drops_connections_until_the_clock_passes(
        sim: tuple[Simulator, httpx.AsyncClient, FakeClock]) -> None:
    """During an outage every API request is dropped unanswered; it ends on the clock."""
    _, client, clock = sim
    await client.post("/control", json={"down_for": 30})
    body = XML_SMS.format(sender="S", text="t", phone="79030000000").encode()
    with pytest.raises(httpx.RemoteProtocolError):
        await client.post("/xml", content=body)
    clock.advance(30)
    r = await client.post("/xml", content=body)
    assert 'id_sms="' in r.text


async def test_routes_answer_404_and_405_with_allow(
        sim: tuple[Simulator, httpx.AsyncClient, FakeClock]) -> None:
    """An unknown path is 404; a known path under another method is 405 with an Allow
    header naming its methods (/control: GET and POST; the APIs: POST only)."""
    _, client, _ = sim
    assert (await client.get("/nope")).status_code == 404
    r = await client.put("/control")
    assert r.status_code == 405
    assert {"GET", "POST"} <= {m.strip() for m in r.headers["allow"].split(",")}
    r = await client.get("/xml")
    assert r.status_code == 405
    assert r.headers["allow"] == "POST"


async def test_fail_rate_is_seeded_and_reproducible(
        sim: tuple[Simulator, httpx.AsyncClient, FakeClock]) -> None:
    """fail_rate answers that share of requests with fail_status, the same ones for the
    same seed."""
    s, client, _ = sim

    async def run() -> list[int]:
        await client.post("/control", json={"fail_rate": 0.5, "fail_status": 502, "seed": 3})
        codes = []
        for _ in range(20):
            r = await client.post("/api/v2/api.php", json={"auth": {"key": "k"},
                                                           "action": "GETBALANCE", "data": {}})
            codes.append(r.status_code)
        return codes

    first = await run()
    assert set(first) == {200, 502}
    assert await run() == first
    assert s.engine.counters["failed"] == 2 * first.count(502)


@pytest.mark.parametrize(("sender", "text", "phone", "error"), [
    ("", "t", "79030000000", "No sender"),
    ("S", "", "79030000000", "No message text"),
    ("S", "t", "", "Specify phone number"),
    ("S", "t", "790300000001234", "Phone number must be less than 15 characters"),
    ("ABCDEFGHIJKL", "t", "79030000000", "The sender must not exceed 15 characters"),
])
async def test_xml_send_validates_like_the_api(
        sim: tuple[Simulator, httpx.AsyncClient, FakeClock], sender: str, text: str,
        phone: str, error: str) -> None:
    """The XML send refuses a message with the spec's error texts, without id_sms."""
    _, client, _ = sim
    r = await client.post("/xml", content=XML_SMS.format(sender=sender, text=text,
                                                         phone=phone).encode())
    assert r.status_code == 200
    assert f'<information number_sms="1">{error}' in r.text


async def test_bad_documents_are_400(sim: tuple[Simulator, httpx.AsyncClient, FakeClock]) -> None:
    """Unparseable XML is 400 "Incorrect XML document format"; JSON send answers
    {"error": "Incorrect JSON document format"}."""
    _, client, _ = sim
    r = await client.post("/xml", content=b"<request>")
    assert r.status_code == 400
    assert "<error>Incorrect XML document format</error>" in r.text
    r = await client.post("/json", content=b"{")
    assert r.json() == {"error": "Incorrect JSON document format"}


async def test_smsfly_request_validation(
        sim: tuple[Simulator, httpx.AsyncClient, FakeClock]) -> None:
    """SMS-fly: unknown action INVACTION, bad channels INVCHANNELS, bad image
    INVIMAGEURL, ttl out of range INVREQUEST; GETBALANCEEXT answers per channel."""
    _, client, _ = sim

    async def call(action: str, data: dict[str, object]) -> httpx.Response:
        return await client.post("/api/v2/api.php", json={
            "auth": {"key": "k"}, "action": action, "data": data})

    assert (await call("NOPE", {})).json()["error"]["code"] == "INVACTION"
    send = {"recipient": "380501234567", "channels": ["fax"]}
    assert (await call("SENDMESSAGE", send)).json()["error"]["code"] == "INVCHANNELS"
    send = {"recipient": "380501234567", "channels": ["viber"],
            "viber": {"source": "P", "ttl": 5, "image": "http://insecure"}}
    assert (await call("SENDMESSAGE", send)).json()["error"]["code"] == "INVIMAGEURL"
    send = {"recipient": "380501234567", "channels": ["sms"],
            "sms": {"source": "P", "ttl": 0, "text": "t"}}
    assert (await call("SENDMESSAGE", send)).json()["error"]["code"] == "INVREQUEST"
    r = await call("GETBALANCEEXT", {})
    assert r.json()["data"]["balance"] == {"sms": "91.477", "viber": "191.477"}


async def test_mysmpp_state_shows_cascade_channels(
        sim: tuple[Simulator, httpx.AsyncClient, FakeClock]) -> None:
    """A Viber→SMS cascade whose Viber failed reports viber="not_deliver" sms="deliver"."""
    s, client, clock = sim
    s.engine.control({"default_outcome": "fallback", "deliver_after": 1})
    body = ('<request><message type_send_1="viber" type_send_2="sms">'
            "<sender_viber>V</sender_viber><text_viber>v</text_viber><sender>S</sender>"
            '<text>s</text><abonent phone="79030000000" number_sms="1"/></message></request>')
    r = await client.post("/xml", content=body.encode())
    id_sms = r.text.split('id_sms="')[1].split('"')[0]
    clock.advance(1)
    r = await client.post("/xml/state.php", content=(
        f"<request><get_state><id_sms>{id_sms}</id_sms></get_state></request>").encode())
    assert f'id_sms="{id_sms}"' in r.text
    assert 'viber="not_deliver" sms="deliver">deliver</state>' in r.text


async def test_run_simulator_serves_until_cancelled() -> None:
    """run_simulator binds, reports its address, serves, and closes when cancelled."""
    bound: asyncio.Future[tuple[str, int]] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(run_simulator("127.0.0.1", 0, {"deliver_after": 1},
                                             on_ready=bound.set_result))
    host, port = await bound
    async with httpx.AsyncClient() as client:
        r = await client.get(f"http://{host}:{port}/control")
    assert json.loads(r.content)["deliver_after"] == 1.0
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_main_runs_as_a_process_and_stops_on_sigterm() -> None:
    """`smppbridge simulator` (main) prints its address, serves, and exits 0 on SIGTERM."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c",
        "import sys; from smppbridge.simulator.app import main; "
        "sys.exit(main('127.0.0.1', 0))",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = ""
        for _ in range(10):  # structlog's own line may come first
            line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
            if line.startswith("simulator listening on "):
                break
        url = line.strip().rpartition(" ")[2]
        assert url.startswith("http://127.0.0.1:")
        async with httpx.AsyncClient() as client:
            r = await client.get(f"{url}/control")
        assert r.status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_main_returns_1_when_it_cannot_bind() -> None:
    """A port already in use is reported and main returns 1."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main("127.0.0.1", taken.getsockname()[1]) == 1
