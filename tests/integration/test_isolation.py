"""One misbehaving connection never holds up another: half PDUs, garbage and impossible
lengths stay on their own socket."""

from __future__ import annotations

import asyncio

from smppbridge.node.node import Node
from smppbridge.smpp import pdu as P
from smppbridge.smpp.codec import DEFAULT_MAX_COMMAND_LENGTH, encode
from smppbridge.smpp.constants import CommandId, CommandStatus

from .conftest import ROUND_TRIP, OpenPeer, Peer, frame, submit_sm

_S = CommandStatus


async def bound_peer(node: Node, open_peer: OpenPeer) -> Peer:
    peer = await open_peer(node.smpp.addresses["smpp"])
    assert (await peer.bind()).command_status == _S.ESME_ROK
    return peer


async def round_trip_ok(peer: Peer) -> None:
    """A submit_sm round trip completes within ROUND_TRIP with ESME_ROK."""
    resp = await asyncio.wait_for(peer.submit(), ROUND_TRIP)
    assert isinstance(resp, P.SubmitSmResp)
    assert resp.command_status == _S.ESME_ROK


async def test_half_pdus_do_not_block_other_sessions(node: Node, open_peer: OpenPeer) -> None:
    """Peers stuck in the middle of a PDU (a partial length field, a header promising
    more than was sent, a body cut short) do not delay another session's bind and
    submit; each stuck PDU is answered as soon as its remaining bytes arrive."""
    wire = encode(submit_sm(900))
    cuts = [2, 10, 16, len(wire) - 1]  # inside command_length, header, body, last octet
    stuck = [await bound_peer(node, open_peer) for _ in cuts]
    for peer, cut in zip(stuck, cuts, strict=True):
        peer.send_raw(wire[:cut])
        await peer.writer.drain()

    fresh = await open_peer(node.smpp.addresses["smpp"])
    bind = await asyncio.wait_for(fresh.bind(), ROUND_TRIP)
    assert bind.command_status == _S.ESME_ROK
    for _ in range(3):
        await round_trip_ok(fresh)

    for peer, cut in zip(stuck, cuts, strict=True):
        resp = await peer.request_raw(wire[cut:])
        assert isinstance(resp, P.SubmitSmResp)
        assert (resp.command_status, resp.sequence_number) == (_S.ESME_ROK, 900)


async def test_pdu_sent_one_octet_at_a_time(node: Node, open_peer: OpenPeer) -> None:
    """A PDU trickled in one octet per write is reassembled and answered once."""
    peer = await bound_peer(node, open_peer)
    for octet in encode(submit_sm(61)):
        peer.send_raw(bytes([octet]))
        await peer.writer.drain()
    resp = await peer.read()
    assert isinstance(resp, P.SubmitSmResp)
    assert (resp.command_status, resp.sequence_number) == (_S.ESME_ROK, 61)


async def test_garbage_closes_only_its_own_connection(node: Node, open_peer: OpenPeer) -> None:
    """Random-looking bytes (command_length 0xDEADBEEF) get generic_nack
    ESME_RINVCMDLEN and close that connection; a bound neighbour keeps working, before
    and after."""
    neighbour = await bound_peer(node, open_peer)
    bad = await bound_peer(node, open_peer)
    bad.send_raw(b"\xde\xad\xbe\xef" * 16)
    nack = await bad.read()
    assert isinstance(nack, P.GenericNack)
    assert nack.command_status == _S.ESME_RINVCMDLEN
    await bad.expect_closed()
    await round_trip_ok(neighbour)


async def test_oversized_command_length_closes_only_that_connection(
        node: Node, open_peer: OpenPeer) -> None:
    """A header announcing max_command_length + 1 octets is refused at once (the server
    does not wait for, or buffer, the promised body): generic_nack ESME_RINVCMDLEN,
    close; other sessions, bound and unbound, are unaffected."""
    neighbour = await bound_peer(node, open_peer)
    unbound = await open_peer(node.smpp.addresses["smpp"])
    bad = await bound_peer(node, open_peer)
    bad.send_raw(frame(CommandId.SUBMIT_SM, b"\0" * 64, sequence_number=3,
                       command_length=DEFAULT_MAX_COMMAND_LENGTH + 1))
    nack = await bad.read()
    assert isinstance(nack, P.GenericNack)
    assert (nack.command_status, nack.sequence_number) == (_S.ESME_RINVCMDLEN, 3)
    await bad.expect_closed()

    await round_trip_ok(neighbour)
    assert (await unbound.bind()).command_status == _S.ESME_ROK
    await round_trip_ok(unbound)


async def test_well_framed_garbage_keeps_the_session(node: Node, open_peer: OpenPeer) -> None:
    """Garbage inside a correctly framed PDU (unknown command_id, random body) is nacked
    ESME_RINVCMDID without losing framing: the next PDU on the same socket works."""
    peer = await bound_peer(node, open_peer)
    resp = await peer.request_raw(frame(0x41414141, b"\x41" * 48, sequence_number=12))
    assert isinstance(resp, P.GenericNack)
    assert (resp.command_status, resp.sequence_number) == (_S.ESME_RINVCMDID, 12)
    await round_trip_ok(peer)
