"""submit_multi over a real socket: each SME destination submitted, distribution lists
refused per destination in unsuccess_sme."""

from __future__ import annotations

from smppbridge.smpp import pdu as P
from smppbridge.smpp.codec import encode
from smppbridge.smpp.constants import CommandStatus
from tests.integration.conftest import OpenPeer, StartNode

S = CommandStatus


def _multi(seq: int) -> P.SubmitMulti:
    return P.SubmitMulti(sequence_number=seq, source_addr="Shop", dest_addresses=(
        P.DestAddress(1, 1, 1, "79001"), P.DestAddress(2, dl_name="list"),
        P.DestAddress(1, 1, 1, "79002")), short_message=b"hi")


async def test_submit_multi_accepts_smes_and_refuses_lists(start_node: StartNode,
                                                           open_peer: OpenPeer) -> None:
    """Two SME destinations are accepted (the first id is returned); the distribution
    list comes back in unsuccess_sme with ESME_RINVDLNAME."""
    node = await start_node()
    peer = await open_peer(node.smpp.addresses["smpp"])
    assert (await peer.bind()).command_status == S.ESME_ROK
    resp = await peer.request(_multi(peer.next_seq()))
    assert isinstance(resp, P.SubmitMultiResp)
    assert resp.command_status == S.ESME_ROK
    assert resp.message_id
    assert resp.unsuccess_smes == (P.UnsuccessSme(0, 0, "list", S.ESME_RINVDLNAME),)
    handler = node.smpp.handler
    stored = [pdu.destination_addr for _, pdu in handler.messages.values()]  # type: ignore[attr-defined]
    assert sorted(stored) == ["79001", "79002"]


async def test_non_ascii_list_name_still_gets_an_answer(start_node: StartNode,
                                                        open_peer: OpenPeer) -> None:
    """A list name with a non-ASCII octet cannot be echoed back: the answer still comes,
    with the entry's name left empty (not ESME_RSYSERR after the SMEs were accepted)."""
    node = await start_node()
    peer = await open_peer(node.smpp.addresses["smpp"])
    assert (await peer.bind()).command_status == S.ESME_ROK
    wire = encode(_multi(peer.next_seq())).replace(b"list\x00", b"l\xe9st\x00")
    resp = await peer.request_raw(wire)
    assert isinstance(resp, P.SubmitMultiResp)
    assert resp.command_status == S.ESME_ROK
    assert resp.unsuccess_smes == (P.UnsuccessSme(0, 0, "", S.ESME_RINVDLNAME),)
