"""Codec: golden vectors both ways, chunking independence, limits and a round trip."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smppbridge.smpp import pdu as P
from smppbridge.smpp.codec import FrameReader, decode, encode
from smppbridge.smpp.constants import CommandStatus, Tag
from smppbridge.smpp.errors import (
    BodyError,
    InvalidCommandId,
    InvalidCommandLength,
    LocalProtocolError,
)

S = CommandStatus

# (PDU, hex) pairs written out from SMPP 3.4 §4 field by field (header | body | TLVs).
GOLDEN: list[tuple[P.Pdu, str]] = [
    (P.BindTransmitter(sequence_number=1, system_id="smppclient1", password="password",
                       interface_version=0x34),
     "0000002a 00000002 00000000 00000001 736d7070636c69656e743100 70617373776f726400"
     " 00 34 00 00 00"),
    (P.BindTransceiverResp(sequence_number=1, system_id="smppbridge",
                           tlvs=(P.Tlv(Tag.SC_INTERFACE_VERSION, b"\x34"),)),
     "00000020 80000009 00000000 00000001 736d707062726964676500 0210 0001 34"),
    (P.BindReceiverResp(sequence_number=4, command_status=S.ESME_RINVPASWD),
     "00000010 80000001 0000000e 00000004"),
    (P.EnquireLink(sequence_number=7), "00000010 00000015 00000000 00000007"),
    (P.EnquireLinkResp(sequence_number=7), "00000010 80000015 00000000 00000007"),
    (P.GenericNack(sequence_number=9, command_status=S.ESME_RINVCMDID),
     "00000010 80000000 00000003 00000009"),
    (P.Unbind(sequence_number=3), "00000010 00000006 00000000 00000003"),
    (P.UnbindResp(sequence_number=3), "00000010 80000006 00000000 00000003"),
    (P.SubmitSm(sequence_number=2, source_addr_ton=1, source_addr_npi=1, source_addr="447700",
                dest_addr_ton=1, dest_addr_npi=1, destination_addr="447911",
                registered_delivery=1, short_message=b"hello",
                tlvs=(P.Tlv(Tag.USER_MESSAGE_REFERENCE, b"\x00\x01"),)),
     "00000038 00000004 00000000 00000002 00 0101 34343737303000 0101 34343739313100"
     " 000000 00 00 01000000 05 68656c6c6f 0204 0002 0001"),
    (P.SubmitSmResp(sequence_number=2, message_id="1234"),
     "00000015 80000004 00000000 00000002 3132333400"),
    # An error submit_sm_resp has no body (SMPP 3.4 Table 4-11 note).
    (P.SubmitSmResp(sequence_number=2, command_status=S.ESME_RTHROTTLED),
     "00000010 80000004 00000058 00000002"),
    (P.SubmitMulti(sequence_number=5, source_addr="123", data_coding=8,
                   dest_addresses=(P.DestAddress(1, 1, 1, "111"),
                                   P.DestAddress(2, dl_name="list")),
                   short_message=b"\x00A"),
     "00000031 00000021 00000000 00000005 00 0000 31323300 02 01 0101 31313100"
     " 02 6c69737400 000000 00 00 00000800 02 0041"),
    (P.SubmitMultiResp(sequence_number=5, message_id="7",
                       unsuccess_smes=(P.UnsuccessSme(1, 1, "111", S.ESME_RINVDSTADR),)),
     "0000001d 80000021 00000000 00000005 3700 01 0101 31313100 0000000b"),
    (P.QuerySm(sequence_number=6, message_id="7", source_addr="1"),
     "00000016 00000003 00000000 00000006 3700 0000 3100"),
    (P.QuerySmResp(sequence_number=6, message_id="7", message_state=2),
     "00000015 80000003 00000000 00000006 3700 00 02 00"),
    (P.DataSm(sequence_number=8, source_addr="1", dest_addr_ton=1, dest_addr_npi=1,
              destination_addr="2", tlvs=(P.Tlv(Tag.MESSAGE_PAYLOAD, b"abc"),)),
     "00000023 00000103 00000000 00000008 00 0000 3100 0101 3200 000000 0424 0003 616263"),
    (P.DataSmResp(sequence_number=8, message_id="9"),
     "00000012 80000103 00000000 00000008 3900"),
    (P.CancelSm(sequence_number=10, message_id="7", source_addr="1", destination_addr="2"),
     "0000001b 00000008 00000000 0000000a 00 3700 0000 3100 0000 3200"),
    (P.CancelSmResp(sequence_number=10), "00000010 80000008 00000000 0000000a"),
    (P.ReplaceSm(sequence_number=11, message_id="7", source_addr="1", short_message=b"x"),
     "0000001c 00000007 00000000 0000000b 3700 0000 3100 00 00 00 00 01 78"),
    (P.ReplaceSmResp(sequence_number=11), "00000010 80000007 00000000 0000000b"),
    (P.DeliverSm(sequence_number=12, source_addr="2", destination_addr="1", esm_class=4,
                 short_message=b"id:1", tlvs=(P.Tlv(Tag.RECEIPTED_MESSAGE_ID, b"1\x00"),
                                              P.Tlv(Tag.MESSAGE_STATE, b"\x02"))),
     "00000032 00000005 00000000 0000000c 00 0000 3200 0000 3100 04 00 00 00 00 00 00 00 00"
     " 04 69643a31 001e 0002 3100 0427 0001 02"),
    (P.DeliverSmResp(sequence_number=12), "00000011 80000005 00000000 0000000c 00"),
    (P.AlertNotification(sequence_number=13, source_addr="1", esme_addr="2"),
     "00000018 00000102 00000000 0000000d 0000 3100 0000 3200"),
]


def _hex(s: str) -> bytes:
    return bytes.fromhex(s.replace(" ", ""))


@pytest.mark.parametrize(("pdu", "wire"), GOLDEN, ids=lambda v: type(v).__name__)
def test_golden_encode(pdu: P.Pdu, wire: str) -> None:
    """Each PDU encodes to exactly the octets SMPP 3.4 §4 lays out."""
    assert encode(pdu).hex() == _hex(wire).hex()


@pytest.mark.parametrize(("pdu", "wire"), GOLDEN, ids=lambda v: type(v).__name__)
def test_golden_decode(pdu: P.Pdu, wire: str) -> None:
    """Each golden frame decodes to exactly the PDU it was written from."""
    assert decode(_hex(wire)) == pdu


def test_every_pdu_class_has_a_golden_vector() -> None:
    """The golden table covers every PDU the codec knows (except generic resp reuse)."""
    covered = {type(p) for p, _ in GOLDEN}
    missing = set(P.PDU_CLASSES.values()) - covered
    # bind_transmitter/receiver share their layout; their resp classes too.
    assert missing <= {P.BindReceiver, P.BindTransceiver, P.BindTransmitterResp}


def test_byte_at_a_time_gives_the_same_pdus() -> None:
    """Feeding the stream one octet at a time yields the same PDUs as whole frames."""
    stream = b"".join(_hex(w) for _, w in GOLDEN)
    reader = FrameReader()
    got = []
    for i in range(len(stream)):
        reader.feed(stream[i:i + 1])
        while (frame := reader.next_frame()) is not None:
            got.append(decode(frame))
    assert got == [p for p, _ in GOLDEN]
    assert reader.buffered == 0


def test_whole_stream_in_one_chunk() -> None:
    """Many PDUs arriving in one read are all framed."""
    reader = FrameReader()
    reader.feed(b"".join(_hex(w) for _, w in GOLDEN))
    frames = []
    while (frame := reader.next_frame()) is not None:
        frames.append(frame)
    assert len(frames) == len(GOLDEN)


@pytest.mark.parametrize("length", [0, 1, 15])
def test_command_length_under_header_is_fatal(length: int) -> None:
    """command_length below 16 cannot frame a PDU: InvalidCommandLength (RINVCMDLEN)."""
    reader = FrameReader()
    reader.feed(length.to_bytes(4, "big") + bytes.fromhex("00000015 00000000 00000001"))
    with pytest.raises(InvalidCommandLength) as exc:
        reader.next_frame()
    assert exc.value.status == S.ESME_RINVCMDLEN
    assert exc.value.sequence_number == 1


def test_command_length_over_cap_is_fatal_before_the_body_arrives() -> None:
    """A length over the cap is refused from the header alone (no buffering of it)."""
    reader = FrameReader(max_command_length=1024)
    reader.feed((1025).to_bytes(4, "big"))
    with pytest.raises(InvalidCommandLength):
        reader.next_frame()


def test_unknown_command_id() -> None:
    """An unknown command_id decodes to InvalidCommandId carrying the sequence."""
    with pytest.raises(InvalidCommandId) as exc:
        decode(_hex("00000010 00000099 00000000 0000002a"))
    assert exc.value.status == S.ESME_RINVCMDID
    assert exc.value.sequence_number == 42


def test_outbind_is_not_accepted() -> None:
    """outbind is SMSC→ESME only; from an ESME it is an invalid command id."""
    with pytest.raises(InvalidCommandId):
        decode(_hex("00000012 0000000b 00000000 00000001 0000"))


SUBMIT_HEAD = "00000004 00000000 00000005"


def _submit_frame(body_hex: str) -> bytes:
    body = _hex(body_hex)
    return (16 + len(body)).to_bytes(4, "big") + _hex(SUBMIT_HEAD) + body


@pytest.mark.parametrize(
    ("body", "status"),
    [
        # source_addr of 21 characters: over its 21-octet limit (with NUL).
        ("00 0101" + "31" * 21 + "00 0101 3200 000000 00 00 01000000 00", S.ESME_RINVSRCADR),
        ("00 0101 3100 0101" + "32" * 25 + "00 000000 00 00 01000000 00", S.ESME_RINVDSTADR),
        ("41414141414141 00 0101 3100 0101 3200 000000 00 00 01000000 00", S.ESME_RINVSERTYP),
        # schedule_delivery_time must be empty or 16 characters.
        ("00 0101 3100 0101 3200 000000 313233 00 00 01000000 00", S.ESME_RINVSCHED),
        ("00 0101 3100 0101 3200 000000 00 313233 00 01000000 00", S.ESME_RINVEXPIRY),
        # sm_length 10 but 2 octets follow.
        ("00 0101 3100 0101 3200 000000 00 00 01000000 0a 4141", S.ESME_RINVMSGLEN),
        # sm_length 255 is not allowed (0-254, §5.2.21).
        ("00 0101 3100 0101 3200 000000 00 00 01000000 ff" + "41" * 255, S.ESME_RINVMSGLEN),
        # the body stops inside the mandatory fields.
        ("00 0101 3100 0101", S.ESME_RINVCMDLEN),
        # a TLV header cut short / a TLV value running past the end.
        ("00 0101 3100 0101 3200 000000 00 00 01000000 00 0204", S.ESME_RINVOPTPARSTREAM),
        ("00 0101 3100 0101 3200 000000 00 00 01000000 00 0424 0010 41",
         S.ESME_RINVOPTPARSTREAM),
        # sar_msg_ref_num must be 2 octets.
        ("00 0101 3100 0101 3200 000000 00 00 01000000 00 020c 0001 01", S.ESME_RINVPARLEN),
    ],
)
def test_malformed_submit_sm_body_maps_to_its_status(body: str, status: S) -> None:
    """A malformed body raises BodyError naming the status of the offending field."""
    with pytest.raises(BodyError) as exc:
        decode(_submit_frame(body))
    assert exc.value.status == status
    assert exc.value.command_id == 0x00000004
    assert exc.value.sequence_number == 5


def test_unknown_tlv_is_kept_raw() -> None:
    """An unknown TLV survives decode and re-encode as raw bytes."""
    pdu = P.SubmitSm(sequence_number=1, tlvs=(P.Tlv(0x1401, b"\x01\x02\x03"),))
    assert decode(encode(pdu)) == pdu
    assert decode(encode(pdu)).tlv(0x1401) == b"\x01\x02\x03"


@pytest.mark.parametrize(
    ("pdu", "status"),
    [
        (P.SubmitSm(source_addr="1" * 21), S.ESME_RINVSRCADR),
        (P.SubmitSm(short_message=b"x" * 255), S.ESME_RINVMSGLEN),
        (P.SubmitSmResp(message_id="9" * 65), S.ESME_RINVMSGID),
        (P.BindTransmitter(password="123456789"), S.ESME_RINVPASWD),
        (P.SubmitSm(validity_period="1"), S.ESME_RINVEXPIRY),
    ],
)
def test_encoding_a_field_over_its_limit_is_refused_not_truncated(pdu: P.Pdu, status: S) -> None:
    """C-octet string limits hold on the way out too: an error, never a truncation."""
    with pytest.raises(LocalProtocolError) as exc:
        encode(pdu)
    assert exc.value.status == status


def test_submit_multi_with_no_destinations_is_refused() -> None:
    """number_of_dests 0 → ESME_RINVNUMDESTS; dest_flag 3 → ESME_RINVDESTFLAG."""
    head = "00000021 00000000 00000001"
    for body, status in (("00 0000 3100 00", S.ESME_RINVNUMDESTS),
                         ("00 0000 3100 01 03", S.ESME_RINVDESTFLAG)):
        raw = _hex(body)
        with pytest.raises(BodyError) as exc:
            decode((16 + len(raw)).to_bytes(4, "big") + _hex(head) + raw)
        assert exc.value.status == status


# --- property: encode/decode round trip ---------------------------------------------

_ascii = st.characters(min_codepoint=0x20, max_codepoint=0x7E)


def _cstr(limit: int) -> st.SearchStrategy[str]:
    return st.text(_ascii, max_size=limit - 1)


_time = st.one_of(st.just(""), st.text(_ascii, min_size=16, max_size=16))
_u8 = st.integers(0, 255)
_tlvs = st.lists(st.builds(P.Tlv, st.integers(0x1400, 0x3FFF), st.binary(max_size=40)),
                 max_size=3).map(tuple)

submit_sms = st.builds(
    P.SubmitSm, sequence_number=st.integers(1, 0x7FFFFFFF), service_type=_cstr(6),
    source_addr_ton=_u8, source_addr_npi=_u8, source_addr=_cstr(21), dest_addr_ton=_u8,
    dest_addr_npi=_u8, destination_addr=_cstr(21), esm_class=_u8, protocol_id=_u8,
    priority_flag=_u8, schedule_delivery_time=_time, validity_period=_time,
    registered_delivery=_u8, replace_if_present_flag=_u8, data_coding=_u8,
    sm_default_msg_id=_u8, short_message=st.binary(max_size=254), tlvs=_tlvs)

submit_multis = st.builds(
    P.SubmitMulti, sequence_number=st.integers(1, 0x7FFFFFFF), source_addr=_cstr(21),
    dest_addresses=st.lists(
        st.one_of(st.builds(P.DestAddress, st.just(1), _u8, _u8, _cstr(21)),
                  st.builds(P.DestAddress, st.just(2), dl_name=_cstr(21))),
        min_size=1, max_size=20).map(tuple),
    short_message=st.binary(max_size=254), tlvs=_tlvs)

binds = st.builds(
    P.BindTransceiver, sequence_number=st.integers(1, 0x7FFFFFFF), system_id=_cstr(16),
    password=_cstr(9), system_type=_cstr(13), interface_version=_u8, addr_ton=_u8,
    addr_npi=_u8, address_range=_cstr(41))


@given(st.one_of(submit_sms, submit_multis, binds))
def test_round_trip(pdu: P.Pdu) -> None:
    """decode(encode(pdu)) == pdu for any PDU within the field limits."""
    assert decode(encode(pdu)) == pdu


@given(st.binary(max_size=300))
def test_any_bytes_frame_or_raise_protocol_errors(data: bytes) -> None:
    """Arbitrary input either frames and decodes or raises a RemoteProtocolError."""
    from smppbridge.smpp.errors import RemoteProtocolError

    reader = FrameReader(max_command_length=4096)
    reader.feed(data)
    try:
        while (frame := reader.next_frame()) is not None:
            with contextlib.suppress(RemoteProtocolError):
                decode(frame)
    except InvalidCommandLength:
        pass
