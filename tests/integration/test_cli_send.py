"""``smppbridge send`` as a real process against a running node."""

from __future__ import annotations

import asyncio
import os
import sys

from smppbridge.testing import MemoryHandler

from .conftest import StartNode

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
