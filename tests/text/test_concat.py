"""UDH, SAR TLVs, message_payload and reassembly (SMPP 3.4 §5.3.2, GSM 03.40 §9.2.3.24)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smppbridge.smpp.constants import CommandStatus, EsmClass, Tag
from smppbridge.text.concat import (
    AddResult,
    Concat,
    IncompleteSar,
    InformationElement,
    InvalidConcat,
    InvalidSarLength,
    InvalidSarValue,
    MalformedUdh,
    PartKey,
    PayloadConflict,
    Reassembler,
    ReassemblyConfig,
    ReassemblyFull,
    Segment,
    build_udh,
    concat_udh,
    parse_udh,
    read_segment,
    split_text,
)
from smppbridge.text.encoding import ContentError, MessageTooLong, decode, encode_text

UDHI = EsmClass.UDHI
KEY = PartKey("acct", "100", "200", 7)


def tlvs(**values: bytes) -> dict[int, bytes]:
    names = {"payload": Tag.MESSAGE_PAYLOAD, "ref": Tag.SAR_MSG_REF_NUM,
             "total": Tag.SAR_TOTAL_SEGMENTS, "seq": Tag.SAR_SEGMENT_SEQNUM,
             "port": Tag.DESTINATION_PORT}
    return {names[k]: v for k, v in values.items()}


def seg(esm_class: int, sm: bytes, **tlv_values: bytes) -> Segment:
    table = tlvs(**tlv_values)
    return read_segment(esm_class, sm, table.get)


# --- UDH ----------------------------------------------------------------------------------

def test_8bit_reference_concatenation() -> None:
    """`05 00 03 ref total seq` (GSM 03.40 §9.2.3.24.1) gives reference, total and seq."""
    s = seg(UDHI, bytes.fromhex("050003AB0302") + b"text")
    assert s.concat == Concat(0xAB, 3, 2, "udh8")
    assert s.payload == b"text"
    assert s.elements == ()


def test_16bit_reference_concatenation() -> None:
    """`06 08 04 refHi refLo total seq` (GSM 03.40 §9.2.3.24.8) reads a 16-bit reference."""
    s = seg(UDHI, bytes.fromhex("060804BEEF0201") + b"abc")
    assert s.concat == Concat(0xBEEF, 2, 1, "udh16")
    assert s.payload == b"abc"


def test_other_ies_are_skipped_by_their_length_and_kept() -> None:
    """Unknown IEs are stepped over by IEDL; the concat IE is found after them."""
    udh = build_udh([InformationElement(0x70, b"\x01\x02\x03\x04"),
                     InformationElement(0x00, b"\x09\x02\x02"),
                     InformationElement(0x24, b"")])
    s = seg(UDHI, udh + b"payload")
    assert s.concat == Concat(9, 2, 2, "udh8")
    assert s.payload == b"payload"
    assert s.elements == (InformationElement(0x70, b"\x01\x02\x03\x04"),
                          InformationElement(0x24, b""))


def test_repeated_concat_ie_uses_the_last() -> None:
    """GSM 03.40 §9.2.3.24: when an IE is repeated the last occurrence is used."""
    udh = build_udh([InformationElement(0x00, b"\x01\x02\x01"),
                     InformationElement(0x00, b"\x05\x03\x03")])
    assert seg(UDHI, udh + b"x").concat == Concat(5, 3, 3, "udh8")


def test_port_addressing_ie_marks_the_segment() -> None:
    """IE 0x04/0x05 (application ports) or the destination_port TLV: port-addressed."""
    assert seg(UDHI, bytes.fromhex("0605040B8423F0") + b"\x01").port_addressed
    assert seg(UDHI, bytes.fromhex("040402E2E2") + b"\x01").port_addressed
    assert seg(0, b"\x01", port=b"\x0b\x84").port_addressed
    assert not seg(UDHI, bytes.fromhex("050003010101") + b"\x01").port_addressed


def test_udhi_clear_leaves_the_payload_alone() -> None:
    """Without UDHI a payload that happens to look like a UDH is just text."""
    s = seg(0, bytes.fromhex("050003AB0302") + b"text")
    assert s.concat is None
    assert s.payload == bytes.fromhex("050003AB0302") + b"text"


def test_empty_udh_is_allowed() -> None:
    """UDHL 0 is a header with no IEs."""
    s = seg(UDHI, b"\x00hello")
    assert s.payload == b"hello"
    assert s.concat is None


@pytest.mark.parametrize(
    "user_data",
    [
        b"",  # UDHI with no data at all
        bytes.fromhex("0A000301"),  # UDHL beyond the message
        bytes.fromhex("05000301"),  # UDHL 5 but only 3 octets follow
        bytes.fromhex("0300050102") + b"x",  # IE length 5 overruns a 3-octet UDH
        bytes.fromhex("0100") + b"x",  # UDH ends inside an IE header
    ],
)
def test_malformed_udh_is_refused(user_data: bytes) -> None:
    """Length overruns → ESME_RINVESMCLASS: esm_class announces a header that is not there."""
    with pytest.raises(MalformedUdh) as info:
        seg(UDHI, user_data)
    assert info.value.status == CommandStatus.ESME_RINVESMCLASS


@pytest.mark.parametrize(
    "udh",
    ["050003010001",  # seq 0
     "050003010203",  # seq > total
     "050003010000",  # total 0
     "0400020102",  # 8-bit concat IE of length 2
     "060804000102",  # 16-bit concat IE of length 3 (UDHL 6 says so)
     "0708050001020300"],  # 16-bit concat IE of length 5
)
def test_bad_concatenation_values_are_refused(udh: str) -> None:
    """seq 0, seq > total, total 0 or a wrong IE length → ESME_RINVESMCLASS."""
    with pytest.raises((InvalidConcat, MalformedUdh)) as info:
        seg(UDHI, bytes.fromhex(udh) + b"x")
    assert info.value.status == CommandStatus.ESME_RINVESMCLASS


def test_parse_and_build_udh_are_inverse() -> None:
    """build_udh writes what parse_udh reads."""
    ies = (InformationElement(0x08, b"\x12\x34\x02\x01"), InformationElement(0x05, b"1234"))
    assert parse_udh(build_udh(ies) + b"rest") == (ies, b"rest")
    assert concat_udh(0x1234, 2, 1, wide=True) == bytes.fromhex("060804123402 01".replace(" ", ""))
    assert concat_udh(7, 3, 1) == bytes.fromhex("050003070301")


# --- SAR TLVs ----------------------------------------------------------------------------

def test_sar_tlvs_give_concatenation() -> None:
    """sar_msg_ref_num / sar_total_segments / sar_segment_seqnum (SMPP 3.4 §5.3.2.22-24)."""
    s = seg(0, b"part", ref=b"\x01\x02", total=b"\x03", seq=b"\x02")
    assert s.concat == Concat(0x0102, 3, 2, "sar")


@pytest.mark.parametrize(
    "present", [{"ref"}, {"total"}, {"seq"}, {"ref", "total"}, {"ref", "seq"}, {"total", "seq"}]
)
def test_partial_sar_set_is_refused(present: set[str]) -> None:
    """All three SAR TLVs or none (docs/content.md) → ESME_RMISSINGOPTPARAM."""
    values = {"ref": b"\x00\x01", "total": b"\x02", "seq": b"\x01"}
    with pytest.raises(IncompleteSar) as info:
        seg(0, b"x", **{k: v for k, v in values.items() if k in present})
    assert info.value.status == CommandStatus.ESME_RMISSINGOPTPARAM


def test_sar_wrong_length_is_refused() -> None:
    """sar_msg_ref_num is 2 octets, the others 1 → ESME_RINVPARLEN otherwise."""
    with pytest.raises(InvalidSarLength) as info:
        seg(0, b"x", ref=b"\x01", total=b"\x02", seq=b"\x01")
    assert info.value.status == CommandStatus.ESME_RINVPARLEN


@pytest.mark.parametrize(("total", "seq"), [(0, 0), (2, 0), (2, 3), (0, 1)])
def test_sar_bad_values_are_refused(total: int, seq: int) -> None:
    """SAR total 0, seq 0, seq > total → ESME_RINVOPTPARAMVAL."""
    with pytest.raises(InvalidSarValue) as info:
        seg(0, b"x", ref=b"\x00\x01", total=bytes([total]), seq=bytes([seq]))
    assert info.value.status == CommandStatus.ESME_RINVOPTPARAMVAL


def test_udh_wins_over_sar() -> None:
    """Both a UDH concat IE and SAR TLVs: the UDH (what a handset sees) is used."""
    s = seg(UDHI, bytes.fromhex("050003090201") + b"x", ref=b"\x00\x01", total=b"\x03",
            seq=b"\x03")
    assert s.concat == Concat(9, 2, 1, "udh8")


# --- message_payload ---------------------------------------------------------------------

def test_message_payload_is_used_when_short_message_is_empty() -> None:
    """message_payload (0x0424) with sm_length 0 carries the user data (§5.3.2.32)."""
    s = seg(0, b"", payload=b"long text" * 50)
    assert s.payload == b"long text" * 50


def test_message_payload_may_carry_a_udh() -> None:
    """With UDHI the UDH sits at the start of message_payload too."""
    s = seg(UDHI, b"", payload=bytes.fromhex("050003010201") + b"abc")
    assert s.concat == Concat(1, 2, 1, "udh8")
    assert s.payload == b"abc"


def test_short_message_and_message_payload_together_are_refused() -> None:
    """SMPP 3.4 §5.2.21: both must not be used → ESME_RINVMSGLEN."""
    with pytest.raises(PayloadConflict) as info:
        seg(0, b"a", payload=b"b")
    assert info.value.status == CommandStatus.ESME_RINVMSGLEN


def test_empty_message_payload_with_short_message_is_fine() -> None:
    """An empty message_payload TLV does not conflict with short_message."""
    assert seg(0, b"abc", payload=b"").payload == b"abc"


# --- reassembly --------------------------------------------------------------------------

def add(r: Reassembler[int], seq: int, total: int, payload: bytes, mid: str, now: float,
        key: PartKey = KEY) -> AddResult[int]:
    return r.add(key, Concat(key.reference, total, seq), payload, message_id=mid, now=now,
                 meta=seq)


def test_parts_out_of_order_reassemble_in_part_order() -> None:
    """Parts may arrive in any order; payload and ids come back in part order."""
    r: Reassembler[int] = Reassembler()
    assert add(r, 3, 3, b"C", "id3", 0).completed is None
    assert add(r, 1, 3, b"A", "id1", 1).completed is None
    assert r.holds("id1")
    done = add(r, 2, 3, b"B", "id2", 2).completed
    assert done is not None
    assert done.payload == b"ABC"
    assert done.part_ids == ("id1", "id2", "id3")
    assert [p.meta for p in done.parts] == [1, 2, 3]
    assert len(r) == 0
    assert not r.holds("id1")


def test_repeated_part_does_not_duplicate_text_but_keeps_its_id() -> None:
    """A repeat keeps the first copy's octets; its id follows the original's (it is owed
    a receipt too)."""
    r: Reassembler[int] = Reassembler()
    add(r, 1, 2, b"A", "a", 0)
    add(r, 1, 2, b"X", "a-again", 1)
    done = add(r, 2, 2, b"B", "b", 2).completed
    assert done is not None
    assert done.payload == b"AB"
    assert done.part_ids == ("a", "a-again", "b")


def test_single_part_message_completes_at_once() -> None:
    """total 1 is a whole message."""
    r: Reassembler[int] = Reassembler()
    done = add(r, 1, 1, b"solo", "s", 0).completed
    assert done is not None
    assert done.payload == b"solo"


def test_window_expiry_returns_incomplete_with_part_ids() -> None:
    """After the window, expire() fails the message and lists the ids that got an ack."""
    r: Reassembler[int] = Reassembler(ReassemblyConfig(window=60.0))
    add(r, 2, 3, b"B", "b", 10.0)
    add(r, 1, 3, b"A", "a", 20.0)
    assert r.next_deadline() == 70.0
    assert r.expire(69.9) == []
    gone = r.expire(70.0)
    assert len(gone) == 1
    assert gone[0].part_ids == ("a", "b")
    assert gone[0].missing == (3,)
    assert gone[0].key == KEY
    assert len(r) == 0
    assert r.next_deadline() is None


def test_late_part_after_window_starts_a_new_message() -> None:
    """A part arriving after the window (before expire ran) evicts the stale message."""
    r: Reassembler[int] = Reassembler(ReassemblyConfig(window=60.0))
    add(r, 1, 2, b"A", "a", 0.0)
    result = add(r, 2, 2, b"B", "b", 61.0)
    assert result.completed is None
    assert [m.part_ids for m in result.evicted] == [("a",)]
    assert r.holds("b")


def test_different_total_under_the_same_key_replaces_the_message() -> None:
    """A reused reference with another total is a new message; the old one is evicted."""
    r: Reassembler[int] = Reassembler()
    add(r, 1, 3, b"A", "a", 0)
    result = add(r, 1, 2, b"X", "x", 1)
    assert [m.part_ids for m in result.evicted] == [("a",)]
    done = add(r, 2, 2, b"Y", "y", 2).completed
    assert done is not None
    assert done.payload == b"XY"


def test_keys_are_independent() -> None:
    """Different account, source, destination or reference: different messages."""
    r: Reassembler[int] = Reassembler()
    keys = [KEY, PartKey("other", "100", "200", 7), PartKey("acct", "101", "200", 7),
            PartKey("acct", "100", "201", 7), PartKey("acct", "100", "200", 8)]
    for i, k in enumerate(keys):
        add(r, 1, 2, b"A", f"a{i}", 0, key=k)
    assert len(r) == len(keys)


def test_too_many_parts_is_refused() -> None:
    """total above max_parts → VENDOR_MESSAGE_TOO_LONG, nothing stored."""
    r: Reassembler[int] = Reassembler(ReassemblyConfig(max_parts=4))
    with pytest.raises(MessageTooLong) as info:
        add(r, 1, 5, b"A", "a", 0)
    assert info.value.status == CommandStatus.VENDOR_MESSAGE_TOO_LONG
    assert len(r) == 0


def test_too_many_pending_messages_is_a_temporary_refusal() -> None:
    """More than max_pending messages waiting → ESME_RMSGQFUL; existing ones continue."""
    r: Reassembler[int] = Reassembler(ReassemblyConfig(max_pending=1))
    add(r, 1, 2, b"A", "a", 0)
    with pytest.raises(ReassemblyFull) as info:
        add(r, 1, 2, b"A", "z", 0, key=PartKey("acct", "100", "200", 8))
    assert info.value.status == CommandStatus.ESME_RMSGQFUL
    assert add(r, 2, 2, b"B", "b", 1).completed is not None


def test_surrogate_pair_split_across_parts_decodes_after_reassembly() -> None:
    """smpplib cuts UCS2 text inside a surrogate pair: decoding the joined octets works
    where decoding part by part would fail."""
    octets = "ab😀cd".encode("utf-16-be")
    cut = 6  # inside the 4-octet emoji
    r: Reassembler[int] = Reassembler()
    add(r, 2, 2, octets[cut:], "2", 0)
    done = add(r, 1, 2, octets[:cut], "1", 0).completed
    assert done is not None
    assert decode(done.payload, 0x08).text == "ab😀cd"
    with pytest.raises(ContentError):
        decode(octets[:cut], 0x08)


def test_gsm_escape_split_across_parts_decodes_after_reassembly() -> None:
    """A € (escape + 0x65) cut between two parts is whole again after reassembly."""
    octets = encode_text("price 5€", 0x00)
    r: Reassembler[int] = Reassembler()
    add(r, 1, 2, octets[:-1], "1", 0)
    done = add(r, 2, 2, octets[-1:], "2", 0).completed
    assert done is not None
    assert decode(done.payload, 0x00).text == "price 5€"


# --- split_text ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "data_coding", "wide", "sizes"),
    [
        ("x" * 160, 0x00, False, [160]),
        ("x" * 161, 0x00, False, [153, 8]),
        ("x" * 161, 0x00, True, [152, 9]),
        ("€" * 80, 0x00, False, [160]),
        ("€" * 81, 0x00, False, [152, 10]),  # never cut escape + code
        ("ж" * 70, 0x08, False, [140]),
        ("ж" * 71, 0x08, False, [134, 8]),
        ("ж" * 71, 0x08, True, [132, 10]),
        ("😀" * 40, 0x08, False, [132, 28]),  # never cut a surrogate pair
        ("é" * 141, 0x03, False, [134, 7]),
    ],
)
def test_split_text_sizes(text: str, data_coding: int, wide: bool, sizes: list[int]) -> None:
    """Parts fit one SMS with its concatenation UDH (docs/smpp.md) and cut no character."""
    parts = split_text(text, data_coding, wide=wide)
    assert [len(p) for p in parts] == sizes
    assert decode(b"".join(parts), data_coding).text == text
    for p in parts:
        decode(p, data_coding)  # every part decodes alone too


# --- properties ---------------------------------------------------------------------------

@st.composite
def split_and_order(draw: st.DrawFn) -> tuple[str, list[bytes], list[int]]:
    text = draw(st.text(min_size=1, max_size=300))
    octets = text.encode("utf-16-be")
    n = draw(st.integers(min_value=1, max_value=min(10, len(octets))))
    cuts = sorted(draw(st.sets(st.integers(1, len(octets) - 1), min_size=n - 1,
                               max_size=n - 1))) if n > 1 else []
    bounds = [0, *cuts, len(octets)]
    parts = [octets[a:b] for a, b in itertools.pairwise(bounds)]
    order = draw(st.permutations(list(range(len(parts)))))
    return text, parts, order


@given(split_and_order(), st.integers(0, 0xFFFF), st.booleans())
def test_any_split_in_any_order_reassembles(
    case: tuple[str, list[bytes], list[int]], ref: int, repeat_one: bool
) -> None:
    """Property: whatever the cut points (even inside a surrogate pair) and the arrival
    order (with or without a repeated part), the reassembled UCS2 decodes to the original
    text, with the ids in part order."""
    text, parts, order = case
    total = len(parts)
    key = PartKey("a", "s", "d", ref)
    r: Reassembler[int] = Reassembler(ReassemblyConfig(max_parts=255))
    done = None
    for i, idx in enumerate(order):
        if repeat_one and i == 1:
            first = order[0]
            r.add(key, Concat(ref, total, first + 1), b"junk", message_id=f"r{first}", now=0,
                  meta=0)
        result = r.add(key, Concat(ref, total, idx + 1), parts[idx], message_id=f"p{idx}",
                       now=float(i), meta=idx)
        if i < total - 1:
            assert result.completed is None
        else:
            done = result.completed
    assert done is not None
    assert decode(done.payload, 0x08).text == text
    assert [i for i in done.part_ids if i.startswith("p")] == [f"p{i}" for i in range(total)]
    assert len(r) == 0


@given(st.binary(max_size=300), st.integers(0, 0xFF), st.booleans())
def test_read_segment_parses_or_raises_content_error(data: bytes, esm: int,
                                                      sar: bool) -> None:
    """Fuzz: any user data is read or refused with a ContentError, never anything else."""
    extra = {"ref": data[:2], "total": data[2:3], "seq": data[3:4]} if sar else {}
    try:
        s = seg(esm, data, **extra)
    except ContentError:
        return
    if s.concat is not None:
        assert 1 <= s.concat.seq <= s.concat.total
