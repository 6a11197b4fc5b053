"""WorkerProvider: a provider's send/poll/ready in a real child process.

The wire forms are checked field by field (a field the wire forgets fails here), then a
real child runs the in-process simulator adapter: outcomes, statuses, errors crossing
the boundary, a child killed mid-request, a graceful close, a child that cannot start.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import socket
import sys
from typing import Any

import pytest

from smppbridge.core.errors import ProviderRejected, ProviderTimeout, ProviderUnavailable
from smppbridge.core.message import Address, OutboundMessage
from smppbridge.core.outcomes import Err, HlrResult, SendOutcome, SendResult, StatusUpdate
from smppbridge.observability.metrics import METRICS
from smppbridge.providers import build_provider
from smppbridge.providers.settings import parse_provider
from smppbridge.providers.simulator.provider import SimulatorProvider
from smppbridge.providers.worker import (
    WorkerProvider,
    error_from_wire,
    error_to_wire,
    message_from_wire,
    message_to_wire,
    outcome_from_wire,
    outcome_to_wire,
    update_from_wire,
    update_to_wire,
)
from smppbridge.smpp.receipts import Stat
from smppbridge.text.content import Content, Kind
from tests.providers.helpers import message

#: a child's start is a Python start-up and imports; the work itself takes ms
START = 30.0


def _non_default(cls: type, overrides: dict[str, Any]) -> Any:
    """An instance of dataclass ``cls`` with every field set to a value that differs
    from its default, so a field the wire form drops cannot pass unnoticed."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in overrides:
            values[f.name] = overrides[f.name]
            continue
        kind = str(f.type)
        if "bool" in kind:
            values[f.name] = True
        elif "float" in kind:
            values[f.name] = 1234.5
        elif "int" in kind:
            values[f.name] = 7
        elif "str" in kind:
            values[f.name] = f"{f.name}-value"
        else:
            raise AssertionError(f"{cls.__name__}.{f.name}: add a value for {kind}")
    return cls(**values)


def test_message_wire_form_keeps_every_field() -> None:
    content = _non_default(Content, {"kind": Kind.VIBER})
    m = _non_default(OutboundMessage, {
        "part_ids": ("11", "12"), "source": Address("Sender", 5, 0),
        "destination": Address("79001234567", 1, 1), "content": content,
        "extra": {"part_registered_delivery": "1,0"}})
    assert message_from_wire(message_to_wire(m)) == m


def test_outcome_and_update_wire_forms_keep_every_field() -> None:
    outcome = SendOutcome("42", SendResult.REJECTED, "p-1", 3, Stat.REJECTD, Err.STOP_LIST,
                          "stop list", "mysmpp")
    assert outcome_from_wire(outcome_to_wire(outcome)) == outcome
    hlr = _non_default(HlrResult, {})
    for update in (StatusUpdate("p-1", Stat.DELIVRD, Err.OK, "delivered", 1234.5, "42", hlr),
                   StatusUpdate("p-2", Stat.ENROUTE)):
        assert update_from_wire(update_to_wire(update)) == update


@pytest.mark.parametrize("cls", [ProviderTimeout, ProviderUnavailable, ProviderRejected])
def test_provider_errors_keep_class_message_err_and_stat(cls: type) -> None:
    exc = cls("p: refused", err=Err.ACCOUNT_BLOCKED, stat=Stat.REJECTD)
    back = error_from_wire(error_to_wire(exc))
    assert type(back) is cls
    assert (str(back), back.err, back.stat) == ("p: refused", Err.ACCOUNT_BLOCKED,
                                                 Stat.REJECTD)


def test_other_exceptions_come_back_as_a_runtime_error_naming_them() -> None:
    back = error_from_wire(error_to_wire(KeyError("boom")))
    assert isinstance(back, RuntimeError)
    assert "KeyError" in str(back)
    assert "boom" in str(back)


def _worker(restart_delay: float = 1.0, **sim: Any) -> WorkerProvider:
    settings = parse_provider({"name": "sim", "type": "simulator", "worker": True,
                               "simulator": {"deliver_after": 0.0, **sim}})
    return WorkerProvider(build_provider(settings), settings, restart_delay=restart_delay,
                          start_timeout=START)


def _exits(provider: str) -> float:
    return METRICS.registry.get_sample_value("smppbridge_provider_worker_exits_total",
                                             {"provider": provider}) or 0.0


def _messages(n: int, first: int = 0) -> list[OutboundMessage]:
    return [message(str(1000 + i), to=f"7903{i:07d}", text=f"hello {i}")
            for i in range(first, first + n)]


async def test_send_poll_and_ready_through_a_child_match_the_adapter_in_process() -> None:
    worker = _worker()
    try:
        await worker.start()
        assert worker.pid is not None
        assert worker.pid != os.getpid()
        batch = _messages(5)
        outcomes = await worker.send(batch)
        in_process = await SimulatorProvider(worker.settings).send(batch)
        assert [o.message_id for o in outcomes] == [m.message_id for m in batch]
        assert [o.result for o in outcomes] == [o.result for o in in_process]
        assert all(o.result is SendResult.ACCEPTED for o in outcomes)
        assert len({o.provider_id for o in outcomes}) == 5
        updates = await worker.poll([o.provider_id for o in outcomes])
        assert [(u.stat, u.message_id) for u in updates] == [
            (Stat.DELIVRD, m.message_id) for m in batch]
        assert await worker.ready()
    finally:
        await worker.aclose()


async def test_a_provider_error_in_the_child_is_raised_in_the_node() -> None:
    worker = _worker(fail_rate=1.0)
    try:
        with pytest.raises(ProviderUnavailable):
            await worker.send(_messages(1))
    finally:
        await worker.aclose()


async def test_a_killed_child_fails_its_requests_and_a_new_one_takes_over() -> None:
    worker = _worker(restart_delay=0.0, latency=30.0)
    exits = _exits("sim")
    try:
        await worker.start()
        first_pid = worker.pid
        assert first_pid is not None
        held = asyncio.ensure_future(worker.send(_messages(1)))
        await asyncio.sleep(0)  # the request is written to the child
        os.kill(first_pid, signal.SIGKILL)
        async with asyncio.timeout(10):  # far below the 30 s the request would take
            with pytest.raises(ProviderUnavailable, match="exited"):
                await held
        async with asyncio.timeout(10):  # counted once the node has seen it go
            while _exits("sim") == exits:
                await asyncio.sleep(0.01)
        assert _exits("sim") == exits + 1
        # the next call starts a new child (the old one is gone for good)
        async with asyncio.timeout(START):
            assert await worker.ready()
        assert worker.pid not in (None, first_pid)
    finally:
        await worker.aclose()


async def test_after_a_death_restarts_wait_for_the_restart_delay() -> None:
    worker = _worker(restart_delay=3600.0)
    try:
        await worker.start()
        assert worker.pid is not None
        os.kill(worker.pid, signal.SIGKILL)
        async with asyncio.timeout(10):
            while worker.pid is not None:
                await asyncio.sleep(0.01)
        with pytest.raises(ProviderUnavailable, match="restarting"):
            await worker.send(_messages(1))
        assert not await worker.ready()
    finally:
        await worker.aclose()


async def test_close_lets_a_request_in_flight_finish_and_the_child_exit() -> None:
    worker = _worker(latency=0.5)
    await worker.start()
    process = worker._process
    assert process is not None
    held = asyncio.ensure_future(worker.send(_messages(2)))
    await asyncio.sleep(0)
    await worker.aclose()
    outcomes = await held
    assert [o.result for o in outcomes] == [SendResult.ACCEPTED, SendResult.ACCEPTED]
    assert process.returncode == 0


async def test_a_child_that_cannot_build_its_adapter_stops_the_start() -> None:
    settings = parse_provider({"name": "sim", "type": "simulator", "worker": True})
    broken = dataclasses.replace(settings, type="no-such-type")
    worker = WorkerProvider(build_provider(settings), broken, start_timeout=START)
    with pytest.raises(ProviderUnavailable, match="no-such-type"):
        await worker.start()
    await worker.aclose()


async def test_the_child_exits_when_the_node_end_closes() -> None:
    worker = _worker()
    await worker.start()
    process = worker._process
    assert process is not None
    assert worker._writer is not None
    worker._writer.close()  # as when the node dies: the child sees end-of-file
    async with asyncio.timeout(10):
        code = await process.wait()
    assert code == 0
    await worker.aclose()


async def test_requests_fail_at_once_when_the_socket_closes_and_a_lingering_child_is_killed(
) -> None:
    """The child's end of the socket closes but the process does not exit: requests in
    flight fail at once (not after the process), and the process is killed after
    ``exit_grace``."""
    worker = _worker()
    worker.exit_grace = 0.5
    ours, theirs = socket.socketpair()
    lingering = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import time; time.sleep(60)")
    try:
        reader, writer = await asyncio.open_connection(sock=ours)
        pending: dict[int, asyncio.Future[Any]] = {
            1: asyncio.get_running_loop().create_future()}
        reading = asyncio.ensure_future(
            worker._read_answers(reader, writer, lingering, pending))
        theirs.close()
        async with asyncio.timeout(0.4):  # well before the grace ends
            with pytest.raises(ProviderUnavailable, match="exited"):
                await pending[1]
        async with asyncio.timeout(10):
            await reading
        assert lingering.returncode == -signal.SIGKILL
    finally:
        theirs.close()
        if lingering.returncode is None:
            lingering.kill()
            await lingering.wait()
        await worker.aclose()
