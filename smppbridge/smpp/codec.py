"""Sans-IO encoding and decoding of SMPP 3.4 PDUs.

:func:`encode` turns a :class:`~smppbridge.smpp.pdu.Pdu` into bytes; :class:`FrameReader`
cuts a byte stream into frames (one PDU each) and :func:`decode` turns a frame into a
PDU. Nothing here does I/O.

Decoding errors are :class:`~smppbridge.smpp.errors.RemoteProtocolError` subclasses
carrying the command_status to answer with; a frame whose header is readable always
yields an error that knows the command_id and sequence_number, so the session can
answer the offending request rather than drop it.
"""

from __future__ import annotations

import struct
from typing import Any

from smppbridge.smpp.constants import HEADER_LENGTH, CommandStatus, Tag
from smppbridge.smpp.errors import (
    BodyError,
    InvalidCommandId,
    InvalidCommandLength,
    LocalProtocolError,
)
from smppbridge.smpp.pdu import (
    PDU_CLASSES,
    U8,
    U32,
    CStr,
    DestAddress,
    Dests,
    Octets,
    Pdu,
    Tlv,
    Unsuccesses,
    UnsuccessSme,
)

__all__ = ["DEFAULT_MAX_COMMAND_LENGTH", "FrameReader", "decode", "encode"]

#: Default cap on command_length. message_payload (0x0424) may carry up to 64 KiB of
#: text (SMPP 3.4 §5.3.2.32 leaves the size to the SMSC; 64 KiB is what its 2-octet TLV
#: length field can express), plus the largest mandatory body (submit_multi with 255
#: destinations, ~6 KiB) and other TLVs. 72 KiB bounds the memory one half-received PDU
#: can pin per connection while accepting every legal PDU we serve.
DEFAULT_MAX_COMMAND_LENGTH = 72 * 1024

_HEADER = struct.Struct(">IIII")
_TLV_HEAD = struct.Struct(">HH")
_S = CommandStatus

#: Octet lengths of TLVs whose size is fixed by SMPP 3.4 §5.3.2; a different length is
#: ESME_RINVPARLEN. Variable-size TLVs are not listed.
_TLV_SIZES: dict[int, tuple[int, ...]] = {
    Tag.DEST_ADDR_SUBUNIT: (1,), Tag.DEST_NETWORK_TYPE: (1,), Tag.DEST_BEARER_TYPE: (1,),
    Tag.DEST_TELEMATICS_ID: (2,), Tag.SOURCE_ADDR_SUBUNIT: (1,), Tag.SOURCE_NETWORK_TYPE: (1,),
    Tag.SOURCE_BEARER_TYPE: (1,), Tag.SOURCE_TELEMATICS_ID: (1,), Tag.QOS_TIME_TO_LIVE: (4,),
    Tag.PAYLOAD_TYPE: (1,), Tag.MS_MSG_WAIT_FACILITIES: (1,), Tag.PRIVACY_INDICATOR: (1,),
    Tag.USER_MESSAGE_REFERENCE: (2,), Tag.USER_RESPONSE_CODE: (1,), Tag.SOURCE_PORT: (2,),
    Tag.DESTINATION_PORT: (2,), Tag.SAR_MSG_REF_NUM: (2,), Tag.LANGUAGE_INDICATOR: (1,),
    Tag.SAR_TOTAL_SEGMENTS: (1,), Tag.SAR_SEGMENT_SEQNUM: (1,), Tag.SC_INTERFACE_VERSION: (1,),
    Tag.CALLBACK_NUM_PRES_IND: (1,), Tag.NUMBER_OF_MESSAGES: (1,), Tag.DPF_RESULT: (1,),
    Tag.SET_DPF: (1,), Tag.MS_AVAILABILITY_STATUS: (1,), Tag.NETWORK_ERROR_CODE: (3,),
    Tag.DELIVERY_FAILURE_REASON: (1,), Tag.MORE_MESSAGES_TO_SEND: (1,), Tag.MESSAGE_STATE: (1,),
    Tag.USSD_SERVICE_OP: (1,), Tag.DISPLAY_TIME: (1,), Tag.SMS_SIGNAL: (2,), Tag.MS_VALIDITY: (1,),
    Tag.ALERT_ON_MESSAGE_DELIVERY: (0,), Tag.ITS_REPLY_TYPE: (1,), Tag.ITS_SESSION_INFO: (2,),
}


# --- encoding ----------------------------------------------------------------------------


def _put_cstr(out: bytearray, spec: CStr, value: str, pdu: Pdu) -> None:
    try:
        raw = value.encode("ascii")
    except UnicodeEncodeError as exc:
        raise LocalProtocolError(f"{type(pdu).__name__}.{spec.name}: not ASCII",
                                 status=spec.status) from exc
    if len(raw) >= spec.size or (spec.lengths and len(raw) not in spec.lengths) or b"\0" in raw:
        raise LocalProtocolError(
            f"{type(pdu).__name__}.{spec.name}: {len(raw)} characters, the limit is "
            f"{spec.size - 1}", status=spec.status)
    out += raw
    out.append(0)


def encode(pdu: Pdu) -> bytes:
    """Encode ``pdu`` to wire bytes.

    A response with a non-zero command_status is header-only: "the ... PDU Body is not
    returned if the command_status field contains a non-zero value" (SMPP 3.4 Table
    4-11 note; the same note stands under bind_*_resp, §4.1.2). Raises
    :class:`LocalProtocolError` when a field breaks its limit.
    """
    body = bytearray()
    cls = type(pdu)
    if not (pdu.command_status and _is_response(cls)):
        for kind, name, spec in _plan(cls):
            value: Any = getattr(pdu, name)
            if kind == _K_U8:
                body.append(value)
            elif kind == _K_CSTR:
                if value.isascii() and len(value) < spec.size and not spec.lengths \
                        and "\0" not in value:
                    body += value.encode("ascii")  # the common case, checks inline
                    body.append(0)
                else:
                    _put_cstr(body, spec, value, pdu)
            elif kind == _K_OCTETS:
                if len(value) > spec.size:
                    raise LocalProtocolError(
                        f"{spec.name}: {len(value)} octets, the limit is {spec.size}",
                        status=spec.status)
                body.append(len(value))
                body += value
            elif kind == _K_U32:
                body += value.to_bytes(4, "big")
            elif kind == _K_DESTS:
                _put_dests(body, value, pdu)
            else:
                _put_unsuccesses(body, value, pdu)
        for tlv in pdu.tlvs:
            body += _TLV_HEAD.pack(tlv.tag, len(tlv.value))
            body += tlv.value
    header = _HEADER.pack(HEADER_LENGTH + len(body), pdu.command_id, pdu.command_status,
                          pdu.sequence_number)
    return header + bytes(body)


_RESPONSE_CLASSES: dict[type[Pdu], bool] = {}


def _is_response(cls: type[Pdu]) -> bool:
    known = _RESPONSE_CLASSES.get(cls)
    if known is None:
        known = _RESPONSE_CLASSES[cls] = cls.command_id.is_response
    return known


#: number_of_dests is one octet; SMPP 3.4 §4.5.1 allows up to 255 destinations.
MAX_DESTS = 255
_DEST_ADDR = CStr("destination_addr", 21, _S.ESME_RINVDSTADR)
_DL_NAME = CStr("dl_name", 21, _S.ESME_RINVDLNAME)


def _put_dests(out: bytearray, dests: tuple[DestAddress, ...], pdu: Pdu) -> None:
    if not 1 <= len(dests) <= MAX_DESTS:
        raise LocalProtocolError(f"number_of_dests {len(dests)}", status=_S.ESME_RINVNUMDESTS)
    out.append(len(dests))
    for d in dests:
        out.append(d.dest_flag)
        if d.dest_flag == 1:
            out.append(d.dest_addr_ton)
            out.append(d.dest_addr_npi)
            _put_cstr(out, _DEST_ADDR, d.destination_addr, pdu)
        else:
            _put_cstr(out, _DL_NAME, d.dl_name, pdu)


def _put_unsuccesses(out: bytearray, items: tuple[UnsuccessSme, ...], pdu: Pdu) -> None:
    out.append(len(items))
    for u in items:
        out.append(u.dest_addr_ton)
        out.append(u.dest_addr_npi)
        _put_cstr(out, _DEST_ADDR, u.destination_addr, pdu)
        out += u.error_status_code.to_bytes(4, "big")


# --- decoding ----------------------------------------------------------------------------


class _Body:
    """A cursor over one frame's body; every read raises BodyError on a short body."""

    __slots__ = ("command_id", "data", "end", "pos", "seq")

    def __init__(self, data: bytes, command_id: int, seq: int) -> None:
        self.data = data
        self.pos = HEADER_LENGTH
        self.end = len(data)
        self.command_id = command_id
        self.seq = seq

    def error(self, message: str, status: CommandStatus) -> BodyError:
        return BodyError(message, status=status, command_id=self.command_id,
                         sequence_number=self.seq)

    def short(self, name: str) -> BodyError:
        # The frame ended inside a mandatory field: command_length does not cover the
        # mandatory body (SMPP 3.4 §3.2: command_length is the whole PDU).
        return self.error(f"body ends inside mandatory field {name}", _S.ESME_RINVCMDLEN)

    def u8(self, name: str) -> int:
        if self.pos >= self.end:
            raise self.short(name)
        v = self.data[self.pos]
        self.pos += 1
        return v

    def u32(self, name: str) -> int:
        if self.pos + 4 > self.end:
            raise self.short(name)
        v = int.from_bytes(self.data[self.pos:self.pos + 4], "big")
        self.pos += 4
        return v

    def cstr(self, spec: CStr) -> str:
        stop = min(self.end, self.pos + spec.size)
        nul = self.data.find(b"\0", self.pos, stop)
        if nul < 0:
            if stop == self.end and self.end - self.pos < spec.size:
                raise self.short(spec.name)
            raise self.error(f"{spec.name}: longer than {spec.size - 1} characters",
                             spec.status)
        raw = self.data[self.pos:nul]
        self.pos = nul + 1
        if spec.lengths and len(raw) not in spec.lengths:
            raise self.error(f"{spec.name}: {len(raw)} characters, expected one of "
                             f"{spec.lengths}", spec.status)
        # C-octet strings are ASCII (§3.1); latin-1 keeps any stray octet lossless.
        return raw.decode("latin-1")

    def octets(self, spec: Octets) -> bytes:
        n = self.u8("sm_length")
        if n > spec.size:
            raise self.error(f"sm_length {n} over {spec.size}", spec.status)
        if self.pos + n > self.end:
            raise self.error(f"sm_length {n} runs past the end of the PDU", spec.status)
        v = self.data[self.pos:self.pos + n]
        self.pos += n
        return v

    def tlvs(self) -> tuple[Tlv, ...]:
        out: list[Tlv] = []
        data, pos, end = self.data, self.pos, self.end
        while pos < end:
            if pos + 4 > end:
                raise self.error("truncated TLV header", _S.ESME_RINVOPTPARSTREAM)
            tag, length = _TLV_HEAD.unpack_from(data, pos)
            pos += 4
            if pos + length > end:
                raise self.error(f"TLV 0x{tag:04X} length {length} runs past the end",
                                 _S.ESME_RINVOPTPARSTREAM)
            sizes = _TLV_SIZES.get(tag)
            if sizes is not None and length not in sizes:
                raise self.error(f"TLV 0x{tag:04X} has length {length}, expected {sizes}",
                                 _S.ESME_RINVPARLEN)
            out.append(Tlv(tag, data[pos:pos + length]))
            pos += length
        self.pos = pos
        return tuple(out)


def decode(frame: bytes) -> Pdu:
    """Decode one whole frame (header included) produced by :class:`FrameReader`."""
    length, command_id, status, seq = _HEADER.unpack_from(frame)
    if length != len(frame):
        raise InvalidCommandLength(f"command_length {length} != frame {len(frame)}",
                                   command_id=command_id, sequence_number=seq)
    cls = PDU_CLASSES.get(command_id)
    if cls is None:
        raise InvalidCommandId(f"unknown command_id 0x{command_id:08X}",
                               command_id=command_id, sequence_number=seq)
    kw: dict[str, Any] = {"sequence_number": seq, "command_status": status}
    body = _Body(frame, command_id, seq)
    # A failed response may come header-only (see encode); its fields keep defaults.
    if cls.command_id.is_response and status and length == HEADER_LENGTH:
        return cls(**kw)
    # The common fields are read inline (no method call per field: decoding submit_sm
    # went from 11.6 to ~7 µs); anything unusual — a short body, an over-long string —
    # is handed to the _Body method, which raises the same error as it always did.
    data = frame
    pos = HEADER_LENGTH
    for kind, name, spec in _plan(cls):
        if kind == _K_U8:
            if pos >= length:
                raise body.short(name)
            kw[name] = data[pos]
            pos += 1
        elif kind == _K_CSTR:
            nul = data.find(b"\0", pos, pos + spec.size)
            if nul < 0 or (spec.lengths and nul - pos not in spec.lengths):
                body.pos = pos
                kw[name] = body.cstr(spec)  # raises
                pos = body.pos
            else:
                kw[name] = data[pos:nul].decode("latin-1")
                pos = nul + 1
        elif (kind == _K_OCTETS and pos < length and data[pos] <= spec.size
              and pos + 1 + data[pos] <= length):
            kw[name] = data[pos + 1:pos + 1 + data[pos]]
            pos += 1 + data[pos]
        else:
            body.pos = pos
            if kind == _K_OCTETS:
                kw[name] = body.octets(spec)  # raises
            elif kind == _K_U32:
                kw[name] = body.u32(name)
            elif kind == _K_DESTS:
                kw[name] = _get_dests(body)
            else:
                kw[name] = _get_unsuccesses(body)
            pos = body.pos
    body.pos = pos
    if pos < length:
        kw["tlvs"] = body.tlvs()
    return cls(**kw)


_K_U8, _K_CSTR, _K_OCTETS, _K_U32, _K_DESTS, _K_UNSUCCESSES = range(6)
_KINDS: dict[type, int] = {U8: _K_U8, CStr: _K_CSTR, Octets: _K_OCTETS, U32: _K_U32,
                           Dests: _K_DESTS, Unsuccesses: _K_UNSUCCESSES}
_PLANS: dict[type[Pdu], tuple[tuple[int, str, Any], ...]] = {}


def _plan(cls: type[Pdu]) -> tuple[tuple[int, str, Any], ...]:
    """``cls.LAYOUT`` as (kind, name, spec) triples, made once per class."""
    plan = _PLANS.get(cls)
    if plan is None:
        plan = _PLANS[cls] = tuple((_KINDS[type(spec)], spec.name, spec)
                                   for spec in cls.LAYOUT)
    return plan


def _get_dests(body: _Body) -> tuple[DestAddress, ...]:
    n = body.u8("number_of_dests")
    if n == 0:
        raise body.error("number_of_dests is 0", _S.ESME_RINVNUMDESTS)
    out = []
    for _ in range(n):
        flag = body.u8("dest_flag")
        if flag == 1:
            ton = body.u8("dest_addr_ton")
            npi = body.u8("dest_addr_npi")
            out.append(DestAddress(1, ton, npi, body.cstr(_DEST_ADDR)))
        elif flag == 2:
            out.append(DestAddress(2, dl_name=body.cstr(_DL_NAME)))
        else:
            raise body.error(f"dest_flag {flag}", _S.ESME_RINVDESTFLAG)
    return tuple(out)


def _get_unsuccesses(body: _Body) -> tuple[UnsuccessSme, ...]:
    n = body.u8("no_unsuccess")
    out = []
    for _ in range(n):
        ton = body.u8("dest_addr_ton")
        npi = body.u8("dest_addr_npi")
        addr = body.cstr(_DEST_ADDR)
        out.append(UnsuccessSme(ton, npi, addr, body.u32("error_status_code")))
    return tuple(out)


# --- framing -----------------------------------------------------------------------------


class FrameReader:
    """Cuts a byte stream into frames, each exactly one PDU long.

    Feeding the same bytes in any chunking yields the same frames. A command_length
    under 16 or over ``max_command_length`` raises :class:`InvalidCommandLength`
    (fatal: the stream cannot be re-synchronised, SMPP 3.4 §5.1.1).
    """

    __slots__ = ("_buf", "_pos", "max_command_length")

    def __init__(self, max_command_length: int = DEFAULT_MAX_COMMAND_LENGTH) -> None:
        self._buf = bytearray()
        self._pos = 0
        self.max_command_length = max_command_length

    def feed(self, data: bytes) -> None:
        if self._pos and self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        self._buf += data

    @property
    def buffered(self) -> int:
        """Octets received but not yet returned as a frame (a half PDU)."""
        return len(self._buf) - self._pos

    def next_frame(self) -> bytes | None:
        """The next whole frame, or None when more data is needed."""
        buf, pos = self._buf, self._pos
        if len(buf) - pos < 4:
            return None
        length = int.from_bytes(buf[pos:pos + 4], "big")
        if length < HEADER_LENGTH or length > self.max_command_length:
            command_id = seq = 0
            if len(buf) - pos >= HEADER_LENGTH:
                _, command_id, _, seq = _HEADER.unpack_from(buf, pos)
            raise InvalidCommandLength(
                f"command_length {length} outside {HEADER_LENGTH}..{self.max_command_length}",
                command_id=command_id, sequence_number=seq)
        if len(buf) - pos < length:
            return None
        frame = bytes(buf[pos:pos + length])
        self._pos = pos + length
        if self._pos > 65536 and self._pos * 2 > len(buf):
            del buf[:self._pos]
            self._pos = 0
        return frame
