"""Pre-encoded PDUs for the load generator and the echo server.

A benchmark that runs the full codec for every PDU would measure the codec. The
templates here are encoded **once** by :func:`smppbridge.smpp.codec.encode` with marker
values in the fields that change per message; the wire bytes of each message are then
the template's pieces joined around the real values. The layout therefore comes from
our codec, and ``tests/bench/test_wire.py`` checks that the result is byte-identical to
``encode`` of the same PDU.
"""

from __future__ import annotations

import struct
import time

from smppbridge.smpp import pdu as P
from smppbridge.smpp.codec import encode
from smppbridge.smpp.constants import HEADER_LENGTH, CommandId, EsmClass
from smppbridge.smpp.receipts import Receipt, receipt_deliver_sm

__all__ = [
    "HEADER",
    "LENGTH_OCTET",
    "RECEIPT_ESM",
    "RECEIPT_ID_WIDTH",
    "UCS2_CHARS_PER_PART",
    "ReceiptTemplate",
    "SubmitTemplate",
    "concat_udh",
    "esm_class_of_deliver",
    "response_header",
    "ucs2_parts",
]

#: command_length, command_id, command_status, sequence_number (SMPP 3.4 §3.2).
HEADER = struct.Struct(">IIII")
#: sm_length octet for each possible length (saves a ``bytes((n,))`` per message).
LENGTH_OCTET = tuple(bytes((n,)) for n in range(256))

#: UCS2 characters per part behind a 16-bit-reference UDH: 140 octets of user data
#: minus the 7-octet UDH leaves 133, i.e. 66 two-octet characters (docs/smpp.md).
UCS2_CHARS_PER_PART = 66
_UCS2_OCTETS_PER_PART = UCS2_CHARS_PER_PART * 2
#: UDH: UDHL 6, IEI 0x08 (concatenated SM, 16-bit reference), IEDL 4 (3GPP TS 23.040
#: §9.2.3.24.8): reference (2 octets), total parts, this part's number (1-based).
_UDHL = 6
_IEI_CONCAT_16 = 0x08
_IEDL_CONCAT_16 = 4
_MAX_PARTS = 255
_HIGH_SURROGATE = range(0xD800, 0xDC00)

# Marker values: ASCII control characters that the codec accepts in a C-octet string
# and that no real field of ours contains, so each occurs in the template exactly once.
_DEST_MARK = "\x01\x02\x03"
_SRC_MARK = "\x04\x05\x06"
_SM_MARK = b"\x07\x08\x09\x0b"
#: Receipt message ids are zero-padded to this width so that the receipt template has a
#: fixed length; SMPP 3.4 Table B-1 gives the ``id:`` field 10 octets.
RECEIPT_ID_WIDTH = 10
_ID_MARK = "\x0e" * RECEIPT_ID_WIDTH


def response_header(command_id: int, status: int, seq: int, body_length: int = 0) -> bytes:
    """The 16-octet header of a PDU with ``body_length`` body octets."""
    return HEADER.pack(HEADER_LENGTH + body_length, command_id, status, seq)


def _cut(wire: bytes, mark: bytes, start: int) -> tuple[bytes, int]:
    """The bytes of ``wire`` from ``start`` up to ``mark``, and the offset after it."""
    at = wire.index(mark, start)
    return wire[start:at], at + len(mark)


class SubmitTemplate:
    """submit_sm wire bytes with destination_addr and short_message left open.

    Every other field is fixed when the template is made. :meth:`build` costs one
    ``struct.pack`` and one join per message.
    """

    __slots__ = ("_head", "_mid", "_tail", "fixed_length")

    def __init__(self, *, source_addr: str = "bench", source_ton: int = 5,
                 source_npi: int = 0, dest_ton: int = 1, dest_npi: int = 1,
                 esm_class: int = 0, registered_delivery: int = 1,
                 data_coding: int = 0, tlvs: tuple[P.Tlv, ...] = ()) -> None:
        model = P.SubmitSm(
            source_addr_ton=source_ton, source_addr_npi=source_npi, source_addr=source_addr,
            dest_addr_ton=dest_ton, dest_addr_npi=dest_npi, destination_addr=_DEST_MARK,
            esm_class=esm_class, registered_delivery=registered_delivery,
            data_coding=data_coding, short_message=_SM_MARK, tlvs=tlvs)
        wire = encode(model)
        # head: service_type .. dest_addr_npi; mid: the C-string NUL .. sm_default_msg_id;
        # tail: the TLVs. sm_length and short_message go between mid and tail.
        self._head, pos = _cut(wire, _DEST_MARK.encode(), HEADER_LENGTH)
        self._mid, pos = _cut(wire, LENGTH_OCTET[len(_SM_MARK)] + _SM_MARK, pos)
        self._tail = wire[pos:]
        #: octets of every message apart from destination_addr and short_message
        self.fixed_length = HEADER_LENGTH + len(self._head) + len(self._mid) + 1 \
            + len(self._tail)

    def build(self, seq: int, destination: bytes, short_message: bytes) -> bytes:
        """The submit_sm with this sequence_number, destination and short_message."""
        length = self.fixed_length + len(destination) + len(short_message)
        return b"".join((
            HEADER.pack(length, CommandId.SUBMIT_SM, 0, seq), self._head, destination,
            self._mid, LENGTH_OCTET[len(short_message)], short_message, self._tail))


class ReceiptTemplate:
    """The DELIVRD receipt deliver_sm of :func:`receipt_deliver_sm`, pre-encoded.

    The receipt text carries submit and done dates to the minute (YYMMDDhhmm), so the
    template is rebuilt when the minute changes. Addresses, their TON/NPI and the
    message id are filled in per receipt; ids are zero-padded to
    :data:`RECEIPT_ID_WIDTH` digits so the text and the receipted_message_id TLV keep
    their lengths.
    """

    __slots__ = ("_fixed", "_minute", "_pieces")

    def __init__(self) -> None:
        self._minute = -1
        self._pieces: tuple[bytes, ...] = ()
        self._fixed = 0

    def _refresh(self, now: float) -> None:
        receipt = Receipt(message_id=_ID_MARK, stat="DELIVRD", submit_date=now,
                          done_date=now)
        model = receipt_deliver_sm(receipt, source_addr=_SRC_MARK, source_ton=0,
                                   source_npi=0, dest_addr=_DEST_MARK, dest_ton=0,
                                   dest_npi=0)
        wire = encode(model)
        # The TON and NPI octets sit right before each address; they are cut off the
        # piece before it and written per receipt.
        before_src, pos = _cut(wire, _SRC_MARK.encode(), HEADER_LENGTH)
        before_dst, pos = _cut(wire, _DEST_MARK.encode(), pos)
        before_id1, pos = _cut(wire, _ID_MARK.encode(), pos)
        before_id2, pos = _cut(wire, _ID_MARK.encode(), pos)
        self._pieces = (before_src[:-2], before_dst[:-2], before_id1, before_id2, wire[pos:])
        self._fixed = HEADER_LENGTH + sum(len(p) for p in self._pieces) + 4 \
            + 2 * RECEIPT_ID_WIDTH
        self._minute = int(now // 60)

    def build(self, seq: int, message_id: int, *, source: bytes, source_ton: int,
              source_npi: int, dest: bytes, dest_ton: int, dest_npi: int,
              now: float | None = None) -> bytes:
        """A receipt deliver_sm *from* ``source`` *to* ``dest`` for ``message_id``.

        The caller swaps the submit's addresses: the receipt comes from the original
        destination (SMPP 3.4 §4.6.1).
        """
        if now is None:
            now = time.time()
        if int(now // 60) != self._minute:
            self._refresh(now)
        p0, p1, p2, p3, p4 = self._pieces
        mid = b"%0*d" % (RECEIPT_ID_WIDTH, message_id % 10**RECEIPT_ID_WIDTH)
        length = self._fixed + len(source) + len(dest)
        return b"".join((
            HEADER.pack(length, CommandId.DELIVER_SM, 0, seq), p0,
            LENGTH_OCTET[source_ton], LENGTH_OCTET[source_npi], source, p1,
            LENGTH_OCTET[dest_ton], LENGTH_OCTET[dest_npi], dest, p2, mid, p3, mid, p4))


def concat_udh(ref: int, total: int, seq: int) -> bytes:
    """A concatenation UDH with a 16-bit reference: ``06 08 04 refHi refLo total seq``."""
    if not 1 <= seq <= total <= _MAX_PARTS:
        raise ValueError(f"part {seq} of {total}: parts are numbered 1..total, total <= 255")
    return bytes((_UDHL, _IEI_CONCAT_16, _IEDL_CONCAT_16, (ref >> 8) & 0xFF, ref & 0xFF,
                  total, seq))


def ucs2_parts(text: str, ref: int) -> list[bytes]:
    """``text`` as UCS2 (UTF-16BE) short_messages, each behind a 16-bit-ref UDH.

    Parts carry at most :data:`UCS2_CHARS_PER_PART` code units; a surrogate pair is
    never cut between two parts. Send them with esm_class UDHI (0x40) and
    data_coding 8.
    """
    data = text.encode("utf-16-be")
    chunks: list[bytes] = []
    pos = 0
    while pos < len(data):
        end = min(pos + _UCS2_OCTETS_PER_PART, len(data))
        if end < len(data) and int.from_bytes(data[end - 2:end], "big") in _HIGH_SURROGATE:
            end -= 2  # keep the pair together: the low half is the next part's first unit
        chunks.append(data[pos:end])
        pos = end
    if len(chunks) > _MAX_PARTS:
        raise ValueError(f"{len(chunks)} parts; the UDH counts at most {_MAX_PARTS}")
    total = len(chunks)
    return [concat_udh(ref, total, i) + chunk for i, chunk in enumerate(chunks, 1)]


def esm_class_of_deliver(frame: bytes) -> int:
    """esm_class of a deliver_sm frame: after service_type and both addresses (§4.6.1).

    Raises ValueError or IndexError on a frame too short to hold them.
    """
    pos = frame.index(0, HEADER_LENGTH) + 3  # service_type NUL, source TON and NPI
    pos = frame.index(0, pos) + 3  # source_addr NUL, dest TON and NPI
    pos = frame.index(0, pos) + 1  # destination_addr NUL
    return frame[pos]


#: esm_class bits that mark an SMSC delivery receipt (SMPP 3.4 §5.2.12).
RECEIPT_ESM = int(EsmClass.DELIVERY_RECEIPT)
