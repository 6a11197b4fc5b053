"""The simulator's outage mode on the ASGI app: what an HTTP client sees when the
simulated provider is down, and that only the deliberate drops are kept out of the log."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from smppbridge.core.errors import ProviderUnavailable
from smppbridge.providers.http_json import HttpJsonProvider
from smppbridge.providers.simulator.settings import SimConfig
from smppbridge.simulator.app import Simulator
from tests.providers.helpers import FakeClock, message, running_simulator, settings

#: every API endpoint, each with a body it accepts when the simulator is up
API_CALLS: list[tuple[str, bytes]] = [
    ("/xml", b'<request><message type_send_1="sms"><sender>S</sender><text>t</text>'
             b'<abonent phone="79030000000" number_sms="1"/></message></request>'),
    ("/xml/state.php", b"<request><get_state/></request>"),
    ("/json", b'{"message": []}'),
    ("/api/v2/api.php", b'{"auth": {"key": "k"}, "action": "GETBALANCE", "data": {}}'),
    ("/http-json/send", b'{"messages": []}'),
    ("/http-json/status", b'{"ids": []}'),
]


@pytest.fixture
async def sim() -> AsyncIterator[tuple[Simulator, str, FakeClock]]:
    clock = FakeClock()
    async with running_simulator(SimConfig(), clock) as (s, url):
        yield s, url, clock


async def test_outage_closes_the_connection_without_a_response(
        sim: tuple[Simulator, str, FakeClock], caplog: pytest.LogCaptureFixture) -> None:
    """During ``down_for`` every API request ends in an httpx TransportError (the
    connection closed before a complete response), never an HTTP status; /control still
    answers; the drops are counted, not logged as errors; the outage ends on the clock."""
    s, url, clock = sim
    caplog.set_level(logging.INFO)
    async with httpx.AsyncClient(base_url=url) as client:
        r = await client.post("/control", json={"down_for": 30})
        assert r.json()["down"] is True
        for path, body in API_CALLS:
            with pytest.raises(httpx.TransportError):
                await client.post(path, content=body)
        assert s.engine.counters["dropped"] == len(API_CALLS)
        assert (await client.get("/control")).status_code == 200
        clock.advance(30)
        for path, body in API_CALLS:
            r = await client.post(path, content=body)
            assert r.status_code == 200, path
    assert [rec for rec in caplog.records if rec.levelno >= logging.ERROR] == []


async def test_outage_is_provider_unavailable_to_the_adapters(
        sim: tuple[Simulator, str, FakeClock]) -> None:
    """An adapter sending during an outage raises ProviderUnavailable (transient: retried,
    then failover), as it would for a dead server; after ``up`` it is accepted again."""
    s, url, _ = sim
    s.engine.control({"down_for": 60})
    p = HttpJsonProvider(settings("http-json", url))
    try:
        with pytest.raises(ProviderUnavailable, match="RemoteProtocolError"):
            await p.send([message("1", "79030000000")])
        s.engine.control({"up": True})
        [outcome] = await p.send([message("1", "79030000000")])
        assert outcome.provider_id
    finally:
        await p.aclose()


async def test_a_failing_handler_is_still_answered_500_and_logged(
        sim: tuple[Simulator, str, FakeClock], caplog: pytest.LogCaptureFixture) -> None:
    """Keeping the deliberate drops out of the log hides nothing else: a handler that
    raises is answered 500 and its traceback is logged at error level."""
    s, url, _ = sim

    async def boom(request: Request) -> Response:
        raise RuntimeError("handler bug")

    s.app.router.routes.append(Route("/boom", boom))
    async with httpx.AsyncClient(base_url=url) as client:
        r = await client.get("/boom")
    assert r.status_code == 500
    errors = [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert [type(rec.exc_info[1]) for rec in errors if rec.exc_info] == [RuntimeError]
