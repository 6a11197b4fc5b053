"""Every bad-input rule of the session, over a real socket with raw bytes: the
response a peer gets, that error responses are header-only, and whether the session
survives."""

from __future__ import annotations

import struct

import pytest

from smppbridge.node.node import Node
from smppbridge.smpp import pdu as P
from smppbridge.smpp.codec import DEFAULT_MAX_COMMAND_LENGTH, decode
from smppbridge.smpp.constants import HEADER_LENGTH, CommandId, CommandStatus, Tag

from .conftest import OpenPeer, Peer, frame, submit_body, submit_sm

_S = CommandStatus


async def bound_peer(node: Node, open_peer: OpenPeer,
                     cls: type[P.Pdu] = P.BindTransceiver) -> Peer:
    peer = await open_peer(node.smpp.addresses["smpp"])
    resp = await peer.bind(cls)
    assert resp.command_status == _S.ESME_ROK
    return peer


async def assert_usable(peer: Peer) -> None:
    """The session still answers: a valid submit_sm gets ESME_ROK."""
    resp = await peer.submit()
    assert isinstance(resp, P.SubmitSmResp)
    assert resp.command_status == _S.ESME_ROK
    assert resp.message_id


def assert_header_only(peer: Peer, command_id: CommandId, status: int, seq: int) -> None:
    """The last frame read is exactly a 16-octet error response (SMPP 3.4 Table 4-11
    note: no body when command_status is non-zero)."""
    length, cid, got_status, got_seq = struct.unpack(">IIII", peer.last_frame)
    assert (cid, got_status, got_seq) == (command_id, status, seq)
    assert length == len(peer.last_frame) == HEADER_LENGTH


# --- state rules -------------------------------------------------------------------------


async def test_enquire_link_answered_before_bind(node: Node, open_peer: OpenPeer) -> None:
    """enquire_link is answered ESME_ROK in the OPEN state (SMPP v5.0 §2.4 matrix),
    and the connection can still bind afterwards."""
    peer = await open_peer(node.smpp.addresses["smpp"])
    resp = await peer.request(P.EnquireLink(sequence_number=7))
    assert isinstance(resp, P.EnquireLinkResp)
    assert (resp.command_status, resp.sequence_number) == (_S.ESME_ROK, 7)
    assert (await peer.bind()).command_status == _S.ESME_ROK


async def test_enquire_link_answered_when_bound(node: Node, open_peer: OpenPeer) -> None:
    """enquire_link on a bound session gets enquire_link_resp with the same sequence."""
    peer = await bound_peer(node, open_peer)
    resp = await peer.request(P.EnquireLink(sequence_number=0x7FFFFFFF))
    assert isinstance(resp, P.EnquireLinkResp)
    assert (resp.command_status, resp.sequence_number) == (_S.ESME_ROK, 0x7FFFFFFF)


async def test_submit_before_bind_is_invalid_bind_status(node: Node,
                                                         open_peer: OpenPeer) -> None:
    """submit_sm in the OPEN state gets a header-only submit_sm_resp ESME_RINVBNDSTS and
    the connection stays open for a bind."""
    peer = await open_peer(node.smpp.addresses["smpp"])
    await peer.request(submit_sm(5))
    assert_header_only(peer, CommandId.SUBMIT_SM_RESP, _S.ESME_RINVBNDSTS, 5)
    assert (await peer.bind()).command_status == _S.ESME_ROK
    await assert_usable(peer)


async def test_submit_on_receiver_bind_is_invalid_bind_status(node: Node,
                                                              open_peer: OpenPeer) -> None:
    """A receiver may not submit (SMPP 3.4 Table 2-1): ESME_RINVBNDSTS, session kept."""
    peer = await bound_peer(node, open_peer, P.BindReceiver)
    await peer.request(submit_sm(9))
    assert_header_only(peer, CommandId.SUBMIT_SM_RESP, _S.ESME_RINVBNDSTS, 9)
    resp = await peer.request(P.EnquireLink(sequence_number=10))
    assert isinstance(resp, P.EnquireLinkResp)


@pytest.mark.parametrize("second", [P.BindTransmitter, P.BindReceiver, P.BindTransceiver])
async def test_bind_when_bound_is_already_bound(node: Node, open_peer: OpenPeer,
                                                second: type[P.Pdu]) -> None:
    """Any bind on a bound session gets its bind_resp with ESME_RALYBND, header-only,
    and the first bind keeps working."""
    peer = await bound_peer(node, open_peer)
    await peer.request(second(sequence_number=42, system_id="demo", password="demo"))
    assert_header_only(peer, second.command_id | 0x80000000, _S.ESME_RALYBND, 42)
    await assert_usable(peer)


async def test_unbind_is_answered_then_closed(node: Node, open_peer: OpenPeer) -> None:
    """unbind from the ESME gets unbind_resp ESME_ROK, then the server closes."""
    peer = await bound_peer(node, open_peer)
    resp = await peer.request(P.Unbind(sequence_number=77))
    assert isinstance(resp, P.UnbindResp)
    assert (resp.command_status, resp.sequence_number) == (_S.ESME_ROK, 77)
    assert await peer.expect_closed() == b""


async def test_responses_from_esme_are_never_answered(node: Node, open_peer: OpenPeer) -> None:
    """generic_nack and unsolicited responses from the ESME get no reply (a response is
    never answered, SMPP 3.4 §2.4): the next PDU the ESME reads answers its next
    request."""
    peer = await bound_peer(node, open_peer)
    peer.send(P.GenericNack(sequence_number=5, command_status=_S.ESME_RINVCMDID))
    peer.send(P.DeliverSmResp(sequence_number=6))
    peer.send(P.EnquireLinkResp(sequence_number=7))
    resp = await peer.request(P.EnquireLink(sequence_number=8))
    assert isinstance(resp, P.EnquireLinkResp)
    assert resp.sequence_number == 8
    await assert_usable(peer)


# --- bind outcomes -----------------------------------------------------------------------


@pytest.mark.parametrize(("system_id", "password", "status"), [
    ("nobody", "demo", _S.ESME_RINVSYSID),
    ("demo", "wrong", _S.ESME_RINVPASWD),
])
async def test_bind_refused(node: Node, open_peer: OpenPeer, system_id: str, password: str,
                            status: CommandStatus) -> None:
    """An unknown system_id gets ESME_RINVSYSID (0x0F), a wrong password ESME_RINVPASWD
    (0x0E); the response is header-only and the connection may try again."""
    peer = await open_peer(node.smpp.addresses["smpp"])
    await peer.bind(P.BindTransmitter, system_id=system_id, password=password)
    assert_header_only(peer, CommandId.BIND_TRANSMITTER_RESP, status, 1)
    assert (await peer.bind(P.BindTransmitter)).command_status == _S.ESME_ROK


async def test_v34_bind_resp_carries_sc_interface_version(node: Node,
                                                          open_peer: OpenPeer) -> None:
    """A 3.4 bind gets bind_resp with our system_id and TLV sc_interface_version = 0x34,
    and 15-digit message ids."""
    peer = await open_peer(node.smpp.addresses["smpp"])
    resp = await peer.bind(P.BindTransmitter, interface_version=0x34)
    assert isinstance(resp, P.BindTransmitterResp)
    assert resp.system_id == "smppbridge"
    assert resp.tlvs == (P.Tlv(Tag.SC_INTERFACE_VERSION, b"\x34"),)
    submit = await peer.submit()
    assert isinstance(submit, P.SubmitSmResp)
    assert len(submit.message_id) == 15


async def test_v33_bind_gets_no_tlvs_and_short_ids(node: Node, open_peer: OpenPeer) -> None:
    """A 3.3 bind (interface_version 0x33) gets a bind_resp without TLVs and message ids
    of at most 8 octets (SMPP 3.4 §3.4)."""
    peer = await open_peer(node.smpp.addresses["smpp"])
    resp = await peer.bind(P.BindTransceiver, interface_version=0x33)
    assert resp.command_status == _S.ESME_ROK
    assert resp.tlvs == ()
    assert len(peer.last_frame) == HEADER_LENGTH + len(b"smppbridge\0")
    for _ in range(3):
        submit = await peer.submit()
        assert isinstance(submit, P.SubmitSmResp)
        assert submit.command_status == _S.ESME_ROK
        assert 1 <= len(submit.message_id) <= 8


# --- framing errors ----------------------------------------------------------------------


async def test_unknown_command_id_is_generic_nack(node: Node, open_peer: OpenPeer) -> None:
    """An unknown command_id (a reserved one, and the never-accepted outbind) gets
    generic_nack ESME_RINVCMDID with its sequence_number; the session survives."""
    peer = await bound_peer(node, open_peer)
    for seq, command_id in ((31, 0x0000000A), (32, 0x00010203), (33, CommandId.OUTBIND)):
        await peer.request_raw(frame(command_id, b"\0" * 8, sequence_number=seq))
        assert_header_only(peer, CommandId.GENERIC_NACK, _S.ESME_RINVCMDID, seq)
    await assert_usable(peer)


@pytest.mark.parametrize("command_length", [0, 15, DEFAULT_MAX_COMMAND_LENGTH + 1, 0xFFFFFFFF])
async def test_impossible_command_length_nacks_and_closes(node: Node, open_peer: OpenPeer,
                                                          command_length: int) -> None:
    """command_length under 16 or over max_command_length gets generic_nack
    ESME_RINVCMDLEN and the connection is closed (the stream cannot be re-framed)."""
    peer = await bound_peer(node, open_peer)
    peer.send_raw(frame(CommandId.SUBMIT_SM, sequence_number=55,
                        command_length=command_length))
    nack = decode(await peer.read_frame())
    assert isinstance(nack, P.GenericNack)
    assert nack.command_status == _S.ESME_RINVCMDLEN
    assert len(peer.last_frame) == HEADER_LENGTH
    assert await peer.expect_closed() == b""


# --- malformed bodies --------------------------------------------------------------------

#: (case, submit_sm body, status) — each body breaks exactly one rule of SMPP 3.4 §4.4.1.
_BAD_SUBMITS = [
    ("source_addr over 20 characters", submit_body(source_addr=b"1" * 21), _S.ESME_RINVSRCADR),
    ("destination_addr over 20 characters", submit_body(destination_addr=b"7" * 21),
     _S.ESME_RINVDSTADR),
    ("sm_length past the end", submit_body(short_message=b"hi", sm_length=200),
     _S.ESME_RINVMSGLEN),
    ("sm_length 255", submit_body(short_message=b"x" * 255, sm_length=255),
     _S.ESME_RINVMSGLEN),
    ("body ends inside the mandatory fields", submit_body()[:12], _S.ESME_RINVCMDLEN),
    ("empty body", b"", _S.ESME_RINVCMDLEN),
    ("truncated TLV header", submit_body(tlvs=b"\x02\x04\x00"), _S.ESME_RINVOPTPARSTREAM),
    ("TLV value past the end", submit_body(tlvs=b"\x04\x24\x00\x10abc"),
     _S.ESME_RINVOPTPARSTREAM),
    ("user_message_reference of 1 octet", submit_body(tlvs=b"\x02\x04\x00\x01\x07"),
     _S.ESME_RINVPARLEN),
    ("sar_msg_ref_num of 3 octets", submit_body(tlvs=b"\x02\x0c\x00\x03abc"),
     _S.ESME_RINVPARLEN),
]


@pytest.mark.parametrize(("body", "status"), [(b, s) for _, b, s in _BAD_SUBMITS],
                         ids=[case for case, _, _ in _BAD_SUBMITS])
async def test_malformed_submit_gets_field_status(node: Node, open_peer: OpenPeer,
                                                  body: bytes, status: CommandStatus) -> None:
    """A malformed submit_sm body gets submit_sm_resp with the offending field's status,
    header-only, with the request's sequence_number; the session stays usable."""
    peer = await bound_peer(node, open_peer)
    await peer.request_raw(frame(CommandId.SUBMIT_SM, body, sequence_number=0x1234))
    assert_header_only(peer, CommandId.SUBMIT_SM_RESP, status, 0x1234)
    await assert_usable(peer)


async def test_malformed_bind_gets_bind_resp(node: Node, open_peer: OpenPeer) -> None:
    """A bind whose system_id has no NUL within 16 octets gets bind_resp ESME_RINVSYSID,
    and the connection can still bind properly."""
    peer = await open_peer(node.smpp.addresses["smpp"])
    await peer.request_raw(frame(CommandId.BIND_TRANSMITTER, b"x" * 40, sequence_number=3))
    assert_header_only(peer, CommandId.BIND_TRANSMITTER_RESP, _S.ESME_RINVSYSID, 3)
    assert (await peer.bind()).command_status == _S.ESME_ROK


async def test_valid_submit_with_tlvs_is_accepted(node: Node, open_peer: OpenPeer) -> None:
    """The control case for the table above: a well-formed raw submit_sm with
    correctly sized TLVs is accepted."""
    peer = await bound_peer(node, open_peer)
    tlvs = b"\x02\x04\x00\x02\x00\x07" + b"\x02\x0a\x00\x02\x0b\xb8"  # user ref, port
    resp = await peer.request_raw(frame(CommandId.SUBMIT_SM, submit_body(tlvs=tlvs),
                                        sequence_number=8))
    assert isinstance(resp, P.SubmitSmResp)
    assert (resp.command_status, resp.sequence_number) == (_S.ESME_ROK, 8)
