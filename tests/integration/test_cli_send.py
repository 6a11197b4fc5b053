"""``smppbridge send`` as a real process against a running node."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time

from smppbridge.config import parse_config
from smppbridge.core.records import DeliveryState
from smppbridge.node.node import Node
from smppbridge.smpp import pdu as P
from smppbridge.smpp.receipts import parse_receipt
from smppbridge.testing import MemoryHandler

from .conftest import OpenPeer, Peer, StartNode, answer_unasked

#: Python start-up and imports dominate; the SMPP exchange itself takes milliseconds.
CLI_TIMEOUT = 30.0


async def run_cli(*args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMPPBRIDGE_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "smppbridge", *args, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), CLI_TIMEOUT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_send_prints_message_id_and_exits_zero(start_node: StartNode) -> None:
    """``smppbridge send --no-receipt`` binds, submits, prints ``message_id: <id>`` for
    the id the server stored the text under, and exits 0."""
    handler = MemoryHandler()
    node = await start_node(handler=handler)
    port = node.smpp.addresses["smpp"][1]
    code, out, err = await run_cli("send", "--port", str(port), "--system-id", "demo",
                                   "--password", "demo", "--to", "79000000001", "--text", "hi",
                                   "--no-receipt")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 1, out
    prefix, _, message_id = lines[0].partition(": ")
    assert prefix == "message_id"
    _, pdu = handler.messages[message_id]
    assert pdu.destination_addr == "79000000001"
    assert pdu.short_message == b"hi"
    assert pdu.registered_delivery == 0


async def test_send_reports_refused_bind(start_node: StartNode) -> None:
    """A wrong password makes ``smppbridge send`` fail with a non-zero exit and name the
    bind status (0x0000000E) on stderr, printing no message id."""
    node = await start_node()
    port = node.smpp.addresses["smpp"][1]
    code, out, err = await run_cli("send", "--port", str(port), "--system-id", "demo",
                                   "--password", "nope", "--to", "79000000001", "--text", "hi",
                                   "--no-receipt")
    assert code != 0
    assert "message_id" not in out
    assert "0x0000000E" in err


# --- against the real pipeline: receipts, throttling, query_sm and cancel_sm -------------

#: Generous bound for a receipt on loopback: the simulator delivers within 0.2 s.
RECEIPT_TIMEOUT = 10.0
#: A number the simulator refuses at send time (stat REJECTD), and one it delivers.
REFUSED, DELIVERED = "76660000001", "79000000001"


def _pipeline_toml(*, throughput: float = 0.0) -> str:
    """Account ``ops``/``pw`` routed to the in-process simulator (delivers within 0.2 s,
    refuses 7666*); a refused receipt is retried after 0.1-0.2 s."""
    return f"""
[smpp]
listen = "127.0.0.1:0"
shutdown_grace = 1.0
[http]
listen = ""
[store]
url = "memory://"
[receipts]
retry_backoff = 0.1
retry_max = 0.2
[[accounts]]
system_id = "ops"
password = "pw"
providers = ["sim"]
throughput = {throughput!r}
[[providers]]
name = "sim"
type = "simulator"
poll_interval = 0.1
simulator = {{ deliver_after = 0.2, rules = [{{ pattern = "7666*", outcome = "stop_list" }}] }}
"""


async def _pipeline_node(start_node: StartNode, **kwargs: float) -> tuple[Node, int]:
    node = await start_node(config=parse_config(_pipeline_toml(**kwargs), env={}),
                            content_pipeline=True)
    return node, node.smpp.addresses["smpp"][1]


def _submit(peer: Peer, to: str, text: bytes, *, registered_delivery: int = 0,
            schedule_delivery_time: str = "") -> P.SubmitSm:
    return P.SubmitSm(sequence_number=peer.next_seq(), source_addr_ton=5, source_addr="ops",
                      dest_addr_ton=1, dest_addr_npi=1, destination_addr=to,
                      short_message=text, registered_delivery=registered_delivery,
                      schedule_delivery_time=schedule_delivery_time)


async def _until_final(node: Node, message_id: str) -> None:
    """Poll the store until the message is final (its receipt is written in the same
    transaction), with a deadline."""
    deadline = time.monotonic() + RECEIPT_TIMEOUT
    while True:
        stored = await node.store.find(message_id)
        if stored is not None and stored.state is DeliveryState.FINAL:
            return
        assert time.monotonic() < deadline, f"{message_id} never became final"
        await asyncio.sleep(0.05)


async def test_send_prints_only_its_own_receipt_after_a_stale_one(
        start_node: StartNode, open_peer: OpenPeer) -> None:
    """The issue's scenario: a REJECTD receipt waits for account ``ops`` while no
    receiver is bound; then ``send --text "smoke two"`` binds, gets that receipt first
    and its own later. It prints its own message id and only its own (DELIVRD) receipt,
    reports the other one on stderr, exits 0 — and the stale receipt is still there for
    the account's receiver that binds afterwards."""
    node, port = await _pipeline_node(start_node)
    esme = await open_peer(("127.0.0.1", port))
    assert (await esme.bind(P.BindTransmitter, "ops", "pw")).command_status == 0
    resp = await esme.request(_submit(esme, REFUSED, b"smoke one", registered_delivery=1))
    assert isinstance(resp, P.SubmitSmResp)
    assert resp.command_status == 0
    stale = resp.message_id
    await _until_final(node, stale)
    await esme.close()

    code, out, err = await run_cli("send", "--port", str(port), "--system-id", "ops",
                                   "--password", "pw", "--to", DELIVERED,
                                   "--text", "smoke two", "--wait", str(RECEIPT_TIMEOUT))
    assert code == 0, err
    [id_line, receipt_line] = out.splitlines()
    own = id_line.removeprefix("message_id: ")
    assert own != stale
    fields = parse_receipt(receipt_line.removeprefix("receipt: "))
    assert (fields["id"], fields["stat"], fields["text"]) == (own, "DELIVRD", "smoke two")
    assert f"id:{stale}" not in out
    assert "other receipts: 1 (not for this run's messages" in err

    receiver = await open_peer(("127.0.0.1", port))
    assert (await receiver.bind(P.BindReceiver, "ops", "pw")).command_status == 0
    kept: list[dict[str, str]] = []
    while not kept:
        answer_unasked(receiver, await receiver.read(timeout=RECEIPT_TIMEOUT), kept)
    assert (kept[0]["id"], kept[0]["stat"]) == (stale, "REJECTD")


async def test_send_retries_a_throttled_first_submit(start_node: StartNode,
                                                     open_peer: OpenPeer) -> None:
    """Account throughput 0.3/s (one submit per 3.3 s, burst 1): another bind spends the
    token just before, so ``send``'s first submit is answered ESME_RTHROTTLED. It says
    so on stderr (the status named, the try to come), tries again after its backoff
    (0.5, 1, 2 s: by then the token is back), is accepted and exits 0 with the id the
    node stored the text under."""
    handler = MemoryHandler()
    node = await start_node(accounts=[{"system_id": "demo", "password": "demo",
                                       "throughput": 0.3}], handler=handler)
    port = node.smpp.addresses["smpp"][1]
    other = await open_peer(("127.0.0.1", port))
    assert (await other.bind(P.BindTransmitter)).command_status == 0
    assert (await other.submit(b"spends the token")).command_status == 0

    code, out, err = await run_cli("send", "--port", str(port), "--to", DELIVERED,
                                   "--text", "after the throttle", "--no-receipt")
    assert code == 0, err
    assert "submit_sm: 0x00000058 ESME_RTHROTTLED (throttled); try 2 of 6 in 0.5 s" in err
    [line] = out.splitlines()
    _, pdu = handler.messages[line.removeprefix("message_id: ")]
    assert pdu.short_message == b"after the throttle"


async def test_send_query_and_cancel_against_a_node(start_node: StartNode,
                                                    open_peer: OpenPeer) -> None:
    """``--query ID`` prints the state as SMPP names it with its final date and error
    code; ``--cancel ID`` cancels a message still queued (scheduled an hour ahead:
    ESME_ROK, and a query then says DELETED) and names the refusal for one already
    final (ESME_RCANCELFAIL, exit 1); an unknown id is ESME_RQUERYFAIL (exit 1)."""
    node, port = await _pipeline_node(start_node)
    esme = await open_peer(("127.0.0.1", port))
    assert (await esme.bind(P.BindTransmitter, "ops", "pw")).command_status == 0
    sent = await esme.request(_submit(esme, DELIVERED, b"query me"))
    later = await esme.request(_submit(esme, DELIVERED, b"cancel me",
                                       schedule_delivery_time="000000010000000R"))
    assert isinstance(sent, P.SubmitSmResp)
    assert isinstance(later, P.SubmitSmResp)
    await _until_final(node, sent.message_id)
    common = ("--port", str(port), "--system-id", "ops", "--password", "pw", "--from", "ops")

    code, out, err = await run_cli("send", *common, "--query", sent.message_id)
    assert code == 0, err
    lines = dict(line.split(": ", 1) for line in out.splitlines())
    assert lines["message_id"] == sent.message_id
    assert lines["message_state"] == "DELIVERED (2)"
    assert re.fullmatch(r"\d{12}\d00\+ \(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)",
                        lines["final_date"]), lines["final_date"]
    assert lines["error_code"] == "0"

    code, out, err = await run_cli("send", *common, "--cancel", later.message_id)
    assert (code, out) == (0, "cancel_sm: 0x00000000 ESME_ROK (no error)\n"), err
    code, out, err = await run_cli("send", *common, "--query", later.message_id, "--json")
    assert code == 0, err
    assert json.loads(out)["message_state"] == "DELETED"

    code, out, err = await run_cli("send", *common, "--cancel", sent.message_id)
    assert code == 1
    assert "cancel_sm refused: 0x00000011 ESME_RCANCELFAIL (cancel_sm failed)" in err
    code, out, err = await run_cli("send", *common, "--query", "999999999")
    assert code == 1
    assert "query_sm refused: 0x00000067 ESME_RQUERYFAIL (query_sm failed)" in err
