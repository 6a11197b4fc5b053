"""Operations, end to end on real sockets: ``/metrics`` moves with real traffic,
``/readyz`` reports providers without failing on them, bind events are logged without
the password, SIGHUP reloads a running process (and refuses a bad file), and
``smppbridge send`` reports as JSON or draws progress on a terminal.

METRICS is process-global, so the metric assertions compare scrapes taken before and
after the traffic (deltas), never absolute counter values.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from smppbridge import __version__
from smppbridge.config import parse_config
from smppbridge.node.node import Node
from smppbridge.smpp import pdu as P
from smppbridge.smpp.constants import CommandStatus

from .conftest import ROUND_TRIP, OpenPeer, Peer, StartNode, answer_unasked, free_port

#: Receipts need a provider poll and the dispatcher: well under a second here
#: (deliver_after 0.2 s, poll_interval 0.1 s); the bound is generous for loaded CI.
RECEIPT_TIMEOUT = 10.0
#: Python start-up and imports dominate a subprocess's start; the work takes ms.
PROCESS_TIMEOUT = 30.0

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


# --- helpers -------------------------------------------------------------------------------


def _node_toml(*, system_id: str, password: str = "pw", http: str = "127.0.0.1:0",
               extra: str = "") -> str:
    """One account routed to an in-process simulator that delivers within 0.2 s."""
    return f"""
[smpp]
listen = "127.0.0.1:0"
shutdown_grace = 1.0
bind_max_failures = 0
[http]
listen = "{http}"
[store]
url = "memory://"
[[accounts]]
system_id = "{system_id}"
password = "{password}"
providers = ["sim"]
[[providers]]
name = "sim"
type = "simulator"
poll_interval = 0.1
simulator = {{ deliver_after = 0.2 }}
{extra}"""


async def _start(start_node: StartNode, toml: str) -> Node:
    return await start_node(config=parse_config(toml, env={}), content_pipeline=True)


def _url(node: Node, path: str) -> str:
    assert node.http_address is not None
    host, port = node.http_address
    return f"http://{host}:{port}{path}"


async def _scrape(client: httpx.AsyncClient, node: Node) -> Samples:
    resp = await client.get(_url(node, "/metrics"))
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(resp.text)
            for s in family.samples}


def _value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; an absent series counts as 0 (a counter not yet touched)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def _submit(peer: Peer, text: str, destination: str = "79000000001",
            receipt: bool = True) -> P.SubmitSm:
    return P.SubmitSm(sequence_number=peer.next_seq(), source_addr_ton=1, source_addr_npi=1,
                      source_addr="12345", dest_addr_ton=1, dest_addr_npi=1,
                      destination_addr=destination, short_message=text.encode(),
                      registered_delivery=1 if receipt else 0)


async def _exchange(peer: Peer, request: P.Pdu, receipts: list[dict[str, str]]) -> P.Pdu:
    """Send ``request`` and return its response; receipts that arrive first are
    acknowledged and collected in ``receipts``."""
    peer.send(request)
    while True:
        pdu = await peer.read()
        if pdu.is_response and pdu.sequence_number == request.sequence_number:
            return pdu
        answer_unasked(peer, pdu, receipts)


async def _receipts(peer: Peer, receipts: list[dict[str, str]], count: int) -> None:
    """Read (and acknowledge) until ``count`` receipts were collected, within a bound."""
    deadline = time.monotonic() + RECEIPT_TIMEOUT
    while len(receipts) < count:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"only {len(receipts)} of {count} receipts arrived"
        answer_unasked(peer, await peer.read(timeout=remaining), receipts)


async def _until(condition: Callable[[], Awaitable[bool]], what: str,
                 timeout: float = RECEIPT_TIMEOUT) -> None:
    """Poll ``condition`` with a deadline (for effects with no event to wait on)."""
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


# --- /metrics ------------------------------------------------------------------------------


async def test_metrics_move_with_real_traffic(start_node: StartNode,
                                              open_peer: OpenPeer) -> None:
    """After a bind, three accepted submits and one duplicate, /metrics shows: the
    account's accepted and refused submits, the flood refusal by rule, submit_sm in and
    submit_sm_resp out by status, one open transceiver bind and connection, four submit
    latency observations, provider requests, receipts sent, stored messages by state,
    store commits; the bind gauge drops back when the client leaves."""
    account = "opsmetrics"
    node = await _start(start_node, _node_toml(system_id=account))
    receipts: list[dict[str, str]] = []
    async with httpx.AsyncClient(timeout=ROUND_TRIP) as client:
        before = await _scrape(client, node)
        peer = await open_peer(node.smpp.addresses["smpp"])
        bound = await peer.bind(system_id=account, password="pw")
        assert bound.command_status == CommandStatus.ESME_ROK
        ids = []
        for i in range(3):
            resp = await _exchange(peer, _submit(peer, f"metrics {i}"), receipts)
            assert resp.command_status == CommandStatus.ESME_ROK
            ids.append(resp.message_id)  # type: ignore[attr-defined]
        dup = await _exchange(peer, _submit(peer, "metrics 0"), receipts)
        assert dup.command_status == CommandStatus.VENDOR_DUPLICATE
        await _receipts(peer, receipts, 3)
        assert sorted(r["id"] for r in receipts) == sorted(ids)

        async def receipts_counted() -> bool:
            now = await _scrape(client, node)
            return (_value(now, "smppbridge_receipts_total", event="sent")
                    - _value(before, "smppbridge_receipts_total", event="sent")) >= 3

        await _until(receipts_counted, "smppbridge_receipts_total{event=sent} to move")
        after = await _scrape(client, node)

        def delta(name: str, **labels: str) -> float:
            return _value(after, name, **labels) - _value(before, name, **labels)

        assert delta("smppbridge_submits_total", account=account, outcome="accepted") == 3
        assert delta("smppbridge_submits_total", account=account,
                     outcome="VENDOR_DUPLICATE") == 1
        assert delta("smppbridge_flood_refusals_total", rule="duplicate") == 1
        assert delta("smppbridge_pdus_total", direction="in", command="bind_transceiver",
                     status="ESME_ROK") == 1
        assert delta("smppbridge_pdus_total", direction="in", command="submit_sm",
                     status="ESME_ROK") == 4
        assert delta("smppbridge_pdus_total", direction="out", command="submit_sm_resp",
                     status="ESME_ROK") == 3
        assert delta("smppbridge_pdus_total", direction="out", command="submit_sm_resp",
                     status="VENDOR_DUPLICATE") == 1
        assert delta("smppbridge_pdus_total", direction="out", command="deliver_sm",
                     status="ESME_ROK") >= 3
        assert delta("smppbridge_submit_ack_seconds_count") == 4
        assert _value(after, "smppbridge_binds", account=account, bind_type="transceiver") == 1
        assert delta("smppbridge_connections") == 1
        assert delta("smppbridge_provider_requests_total", provider="sim", outcome="ok") >= 1
        assert delta("smppbridge_provider_request_seconds_count", provider="sim") >= 1
        assert delta("smppbridge_store_write_seconds_count") > 0
        # Gauges read from this node's own (fresh) store at scrape time.
        assert _value(after, "smppbridge_messages", state="final") == 3
        assert _value(after, "smppbridge_messages", state="queued") == 0
        assert _value(after, "smppbridge_receipts_waiting") == 0
        assert _value(after, "smppbridge_provider_breaker_open", provider="sim") == 0
        assert _value(after, "smppbridge_build_info", version=__version__) == 1

        await peer.close()

        async def unbound() -> bool:
            now = await _scrape(client, node)
            return _value(now, "smppbridge_binds", account=account,
                          bind_type="transceiver") == 0

        await _until(unbound, "the bind gauge to drop", timeout=ROUND_TRIP)


# --- /readyz, /healthz ---------------------------------------------------------------------


async def test_readyz_lists_provider_health_and_stays_ready_when_one_is_down(
        start_node: StartNode) -> None:
    """/readyz answers 200 ``ready: true`` with the listener and store checks, and
    lists each provider's health: an http-json provider whose port is closed is
    reported false without making the node unready (providers fail over; an unready
    node would be pulled from the load balancer for nothing). /healthz answers ok."""
    dead = free_port()  # bound and released: nothing listens there now
    extra = f"""
[[providers]]
name = "down"
type = "http-json"
url = "http://127.0.0.1:{dead}/send"
status_url = "http://127.0.0.1:{dead}/status"
"""
    node = await _start(start_node, _node_toml(system_id="opsready", extra=extra))
    async with httpx.AsyncClient(timeout=ROUND_TRIP * 3) as client:
        ready = await client.get(_url(node, "/readyz"))
        health = await client.get(_url(node, "/healthz"))
    assert ready.status_code == 200
    body = ready.json()
    assert body["ready"] is True
    assert body["checks"] == {"smpp_listeners": True, "store": True}
    assert body["providers"] == {"sim": True, "down": False}
    assert health.status_code == 200
    assert health.text == "ok\n"


# --- logs ----------------------------------------------------------------------------------


async def test_bind_events_are_logged_with_context_and_never_the_password(
        start_node: StartNode, open_peer: OpenPeer) -> None:
    """A refused bind logs ``bind.refused`` and a good one ``bind.accepted``, each with
    ``system_id``, ``bind_type`` and the client's ``peer`` address; neither the wrong
    nor the right password appears anywhere in any event of the whole exchange (binds
    and a submit)."""
    secret, wrong = "s3cr3tpw", "wr0ngpw!"
    node = await _start(start_node, _node_toml(system_id="opslogs", password=secret,
                                               http=""))
    address = node.smpp.addresses["smpp"]
    with capture_logs() as logs:
        bad = await open_peer(address)
        refused = await bad.bind(P.BindTransmitter, system_id="opslogs", password=wrong)
        good = await open_peer(address)
        accepted = await good.bind(system_id="opslogs", password=secret)
        sent = await _exchange(good, _submit(good, "logged", receipt=False), [])
    assert refused.command_status == CommandStatus.ESME_RINVPASWD
    assert accepted.command_status == CommandStatus.ESME_ROK
    assert sent.command_status == CommandStatus.ESME_ROK

    def peer_of(p: Peer) -> str:
        host, port = p.writer.get_extra_info("sockname")[:2]
        return f"{host}:{port}"

    (refusal,) = [e for e in logs if e["event"] == "bind.refused"]
    assert refusal["system_id"] == "opslogs"
    assert refusal["bind_type"] == "transmitter"
    assert refusal["peer"] == peer_of(bad)
    assert refusal["status"] == "0x0000000E"
    (acceptance,) = [e for e in logs if e["event"] == "bind.accepted"]
    assert acceptance["system_id"] == "opslogs"
    assert acceptance["bind_type"] == "transceiver"
    assert acceptance["peer"] == peer_of(good)
    assert acceptance["log_level"] == "info"
    everything = repr(logs)
    assert secret not in everything
    assert wrong not in everything


# --- SIGHUP reload of a running process ----------------------------------------------------


def _serve_toml(tmp_path: Path, port: int, *, beta: bool, route: bool,
                invalid: bool = False) -> str:
    """alpha always; beta and a 7999 → sim_bad route after the reload; ``invalid``
    adds an account whose password no bind could carry (a config error)."""
    text = f"""
[smpp]
listen = "127.0.0.1:{port}"
shutdown_grace = 1.0
bind_max_failures = 0
[http]
listen = ""
[store]
url = "sqlite:///{tmp_path}/ops.db"
[log]
level = "info"
format = "json"
[[accounts]]
system_id = "alpha"
password = "pwalpha"
providers = ["sim"]
[[providers]]
name = "sim"
type = "simulator"
poll_interval = 0.1
simulator = {{ deliver_after = 0.2 }}
[[providers]]
name = "sim_bad"
type = "simulator"
poll_interval = 0.1
simulator = {{ deliver_after = 0.2, default_outcome = "undeliverable" }}
"""
    if beta:
        text += '[[accounts]]\nsystem_id = "beta"\npassword = "pwbeta"\nproviders = ["sim"]\n'
    if invalid:
        text += ('[[accounts]]\nsystem_id = "gamma"\npassword = "much-too-long-pw"\n'
                 'providers = ["sim"]\n')
    if route:
        text += '[[routes]]\nprefix = "7999"\nproviders = ["sim_bad"]\n'
    return text


def _write_atomically(path: Path, text: str) -> None:
    """As an operator's editor or config management should: never a half-written file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


class _Served:
    """``smppbridge serve`` as a child process, its JSON log lines in a file."""

    def __init__(self, config: Path) -> None:
        self.log = config.with_suffix(".log")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SMPPBRIDGE_")}
        with self.log.open("wb") as err:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "smppbridge", "serve", "--config", str(config)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env)

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text().splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    async def wait_event(self, name: str, count: int = 1) -> dict[str, Any]:
        """The ``count``-th log event named ``name``, polled with a deadline."""
        async def logged() -> bool:
            assert self.proc.poll() is None, f"serve exited: {self.log.read_text()[-2000:]}"
            return len([e for e in self.events() if e.get("event") == name]) >= count

        await _until(logged, f"log event {name}", timeout=PROCESS_TIMEOUT)
        return [e for e in self.events() if e.get("event") == name][count - 1]

    async def wait_exit(self) -> int:
        deadline = time.monotonic() + PROCESS_TIMEOUT
        while (code := self.proc.poll()) is None:
            assert time.monotonic() < deadline, "serve did not exit"
            await asyncio.sleep(0.05)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(PROCESS_TIMEOUT)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Callable[[Path], _Served]]:
    """Factory for child ``serve`` processes; any still running at teardown is killed."""
    children: list[_Served] = []

    def start(config: Path) -> _Served:
        child = _Served(config)
        children.append(child)
        return child

    yield start
    for child in children:
        child.kill()


async def test_sighup_reloads_accounts_and_routes_without_dropping_binds(
        tmp_path: Path, open_peer: OpenPeer, served: Callable[[Path], _Served]) -> None:
    """In a running ``smppbridge serve``: SIGHUP with an edited file lets a new account
    bind and applies a new route, while a client bound before the reload stays bound
    (answers enquire_link on the same connection). SIGHUP with an invalid file logs
    ``config.reload_refused`` (naming the key, not the secret) and keeps the old
    config. SIGTERM then exits 0."""
    port = free_port()
    config = tmp_path / "ops.toml"
    _write_atomically(config, _serve_toml(tmp_path, port, beta=False, route=False))
    child = served(config)
    await child.wait_event("node.ready")  # logged after the signal handlers are set
    address = ("127.0.0.1", port)
    receipts: list[dict[str, str]] = []

    alpha = await open_peer(address)
    assert (await alpha.bind(system_id="alpha", password="pwalpha")).command_status == 0
    early = await open_peer(address)
    refused = await early.bind(system_id="beta", password="pwbeta")
    assert refused.command_status == CommandStatus.ESME_RINVSYSID
    await early.close()
    resp = await _exchange(alpha, _submit(alpha, "before", "79990000001"), receipts)
    assert resp.command_status == CommandStatus.ESME_ROK
    await _receipts(alpha, receipts, 1)
    assert receipts[-1]["stat"] == "DELIVRD"  # no route yet: the account's "sim"

    _write_atomically(config, _serve_toml(tmp_path, port, beta=True, route=True))
    child.proc.send_signal(signal.SIGHUP)

    bound: list[Peer] = []

    async def beta_binds() -> bool:
        peer = await open_peer(address)
        resp = await peer.bind(system_id="beta", password="pwbeta")
        if resp.command_status != CommandStatus.ESME_ROK:
            await peer.close()
            return False
        bound.append(peer)
        return True

    await _until(beta_binds, "beta to bind after SIGHUP", timeout=PROCESS_TIMEOUT)
    reloaded = await child.wait_event("config.reloaded")
    assert reloaded["accounts"] == 2
    probe = await _exchange(alpha, P.EnquireLink(sequence_number=alpha.next_seq()), receipts)
    assert isinstance(probe, P.EnquireLinkResp)
    assert probe.command_status == CommandStatus.ESME_ROK
    resp = await _exchange(alpha, _submit(alpha, "after", "79990000002"), receipts)
    assert resp.command_status == CommandStatus.ESME_ROK
    await _receipts(alpha, receipts, 2)
    assert receipts[-1]["stat"] == "UNDELIV"  # the new route: sim_bad

    _write_atomically(config, _serve_toml(tmp_path, port, beta=True, route=True,
                                          invalid=True))
    child.proc.send_signal(signal.SIGHUP)
    refusal = await child.wait_event("config.reload_refused")
    assert "password" in refusal["error"]
    assert "much-too-long-pw" not in child.log.read_text()
    beta = await open_peer(address)
    assert (await beta.bind(system_id="beta", password="pwbeta")).command_status == 0
    gamma = await open_peer(address)
    refused = await gamma.bind(system_id="gamma", password="pw")
    assert refused.command_status == CommandStatus.ESME_RINVSYSID
    await gamma.close()
    probe = await _exchange(alpha, P.EnquireLink(sequence_number=alpha.next_seq()), receipts)
    assert probe.command_status == CommandStatus.ESME_ROK

    child.proc.send_signal(signal.SIGTERM)
    # Bound clients get unbind: answer it so that shutdown need not wait out its grace.
    for peer in (alpha, *bound, beta):
        with contextlib.suppress(asyncio.IncompleteReadError, TimeoutError):
            pdu = await peer.read(timeout=PROCESS_TIMEOUT)
            while not isinstance(pdu, P.Unbind):
                answer_unasked(peer, pdu, receipts)
                pdu = await peer.read(timeout=PROCESS_TIMEOUT)
            peer.send(P.UnbindResp(sequence_number=pdu.sequence_number))
    assert await child.wait_exit() == 0
    events = [e["event"] for e in child.events()]
    assert "shutdown.finished" in events
    assert "shutdown.forced" not in events  # every bound client unbound within the grace


# --- smppbridge send: --json and the terminal progress -------------------------------------


async def _run_send(*args: str, tty: bool = False) -> tuple[int, str, str]:
    """``python -m smppbridge send ARGS`` with stdout to a pipe, or to a pseudo-terminal
    (80 columns, xterm) when ``tty``; returns (exit code, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMPPBRIDGE_")}
    argv = [sys.executable, "-m", "smppbridge", "send", *args]
    if not tty:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), PROCESS_TIMEOUT)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()
    env.update(TERM="xterm-256color", COLUMNS="80", LINES="24")
    env.pop("NO_COLOR", None)
    master, slave = os.openpty()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=slave,
            stderr=asyncio.subprocess.PIPE, env=env)
        os.close(slave)
        slave = -1
        reader = asyncio.create_task(asyncio.to_thread(_read_pty, master))
        try:
            _, err = await asyncio.wait_for(proc.communicate(), PROCESS_TIMEOUT)
            out = await asyncio.wait_for(reader, PROCESS_TIMEOUT)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.returncode is not None
        return proc.returncode, out.decode(errors="replace"), err.decode()
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)


def _read_pty(master: int) -> bytes:
    """Everything written to the terminal until the child closes it (EIO on Linux)."""
    got = bytearray()
    deadline = time.monotonic() + PROCESS_TIMEOUT
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if not ready:
            continue
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every writer closed the terminal
            break
        if not chunk:
            break
        got += chunk
    return bytes(got)


async def test_send_json_reports_ids_and_parsed_receipts(start_node: StartNode) -> None:
    """``smppbridge send --json`` against a running node prints exactly one JSON object:
    the message ids, each receipt as raw text plus parsed fields (id, stat, err ...)
    matching the id, and ``exit_status`` 0, which is also the process's exit code."""
    node = await _start(start_node, _node_toml(system_id="opsjson", http=""))
    port = node.smpp.addresses["smpp"][1]
    code, out, err = await _run_send("--port", str(port), "--system-id", "opsjson",
                                     "--password", "pw", "--to", "79000000001",
                                     "--text", "json please", "--wait", "10", "--json")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 1, out
    report = json.loads(lines[0])
    assert report["exit_status"] == 0
    assert "error" not in report
    (message_id,) = report["message_ids"]
    (receipt,) = report["receipts"]
    assert receipt["raw"].startswith(f"id:{message_id} ")
    assert receipt["fields"]["id"] == message_id
    assert receipt["fields"]["stat"] == "DELIVRD"
    assert receipt["fields"]["err"] == "000"
    assert receipt["fields"]["text"] == "json please"


async def test_send_json_reports_a_refused_bind(start_node: StartNode) -> None:
    """A refused bind under ``--json`` is still one JSON object on stdout: no ids, the
    bind status in ``error``, and ``exit_status`` 1 (the exit code too)."""
    node = await _start(start_node, _node_toml(system_id="opsjson", http=""))
    port = node.smpp.addresses["smpp"][1]
    code, out, _ = await _run_send("--port", str(port), "--system-id", "opsjson",
                                   "--password", "nope", "--to", "79000000001",
                                   "--text", "hi", "--no-receipt", "--json")
    assert code == 1
    report = json.loads(out)
    assert report["message_ids"] == []
    assert report["exit_status"] == 1
    assert "0x0000000E" in report["error"]


async def test_send_draws_progress_on_a_terminal_but_not_with_json(
        start_node: StartNode) -> None:
    """On a terminal, ``send`` draws rich's live progress (it hides the cursor while
    drawing) and still prints the ``message_id:`` line; with ``--json`` on the same
    terminal the output is the bare JSON document, no escape sequences."""
    node = await _start(start_node, _node_toml(system_id="opstty", http=""))
    port = node.smpp.addresses["smpp"][1]
    common = ("--port", str(port), "--system-id", "opstty", "--password", "pw",
              "--to", "79000000001", "--no-receipt")
    code, out, err = await _run_send(*common, "--text", "on a tty", tty=True)
    assert code == 0, err
    assert "\x1b[?25l" in out  # rich Live: cursor hidden while the bars are drawn
    assert "message_id: " in out
    code, out, err = await _run_send(*common, "--text", "json on a tty", "--json", tty=True)
    assert code == 0, err
    assert "\x1b" not in out
    assert json.loads(out)["exit_status"] == 0
