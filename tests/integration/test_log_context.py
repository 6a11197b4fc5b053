"""Events logged deep in the pipeline carry the connection's context."""

from __future__ import annotations

from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from smppbridge.smpp import pdu as P
from smppbridge.smpp.constants import CommandStatus
from tests.integration.conftest import OpenPeer, StartNode


async def test_content_stage_refusal_carries_peer_and_system_id(
        start_node: StartNode, open_peer: OpenPeer) -> None:
    """A submit refused by the content stage logs `submit.refused` with the bind's
    system_id, bind type and peer (bound per connection with contextvars)."""
    node = await start_node(content_pipeline=True, extra="[[providers]]\nname = \"sim\"\n"
                            "type = \"simulator\"\n")
    peer = await open_peer(node.smpp.addresses["smpp"])
    assert (await peer.bind()).command_status == CommandStatus.ESME_ROK
    with capture_logs(processors=[merge_contextvars]) as logs:
        resp = await peer.request(P.SubmitSm(sequence_number=peer.next_seq(),
                                             destination_addr="79001", data_coding=0x05,
                                             short_message=b"x"))
    assert resp.command_status == CommandStatus.VENDOR_INVALID_DATA_CODING
    refused = [e for e in logs if e["event"] == "submit.refused" and "reason" in e]
    assert refused, logs
    assert refused[0]["system_id"] == "demo"
    assert refused[0]["bind_type"] == "transceiver"
    assert refused[0]["peer"].startswith("127.0.0.1:")
