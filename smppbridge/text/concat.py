"""Long messages: UDH, SAR TLVs, message_payload, and reassembly of the parts.

Size: over 500 lines because reading the three concatenation forms, splitting a text
into parts and reassembling them share one set of limits and part types.

Theory of operation
-------------------
:func:`read_segment` looks at one submit_sm and says where its octets are (short_message
or the message_payload TLV), strips the User Data Header when esm_class has UDHI set, and
reads the concatenation information from the UDH (IE 0x00 with an 8-bit reference, IE
0x08 with a 16-bit one) or from the SAR TLVs. It does not decode text.

:class:`Reassembler` collects the parts of one message, keyed by (account, source,
destination, reference), and hands the whole message back once every part is in. The
caller then joins the *octets* of all parts and decodes once: ESMEs (smpplib, for one)
split a UCS2 surrogate pair or a GSM escape sequence across two parts, so decoding part
by part would fail on text that is perfectly valid as a whole.

Time is a parameter (``now``), as in aioquic: nothing here reads the clock.

Decisions (each cited where it is made):

* Malformed UDH (UDHI set but the UDH overruns the message, or an IE overruns the UDH):
  ``ESME_RINVESMCLASS`` — esm_class announces a header that is not there.
* Concatenation IE with a wrong length, total 0, seq 0 or seq > total:
  ``ESME_RINVESMCLASS`` too (GSM 03.40 §9.2.3.24.1 would have a handset ignore such an
  IE; an SMSC should tell the ESME instead of sending a part as a message of its own).
* SAR TLVs: only some of the three → ``ESME_RMISSINGOPTPARAM``; a wrong length →
  ``ESME_RINVPARLEN``; total 0, seq 0 or seq > total → ``ESME_RINVOPTPARAMVAL``.
  (SMPP 3.4 §5.3.2.22-24 say a partial set "is ignored"; docs/content.md says all three or
  none, and refusing tells the ESME its long message would arrive as fragments.)
  When a UDH concatenation IE and SAR TLVs are both present, the UDH wins: it travels
  with the payload and is what a handset would see.
* short_message and message_payload both non-empty → ``ESME_RINVMSGLEN``
  (SMPP 3.4 §5.2.21/§5.3.2.32: sm_length must be 0 when message_payload is used).
* More parts than ``max_parts`` → ``VENDOR_MESSAGE_TOO_LONG``; more messages in
  reassembly than ``max_pending`` → ``ESME_RMSGQFUL`` (temporary, the ESME retries).
* A repeated part (same seq) does not repeat text: the first copy's octets are kept. Its
  message id is kept too (listed right after the original's), because the ESME was
  given that id and is owed a receipt for it.
* A part whose ``total`` differs from the message being collected under the same key, or
  a part arriving after that message's window closed, starts a new message; the old
  one is returned as evicted so its parts can be failed.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from smppbridge.smpp.constants import CommandStatus, EsmClass, Tag
from smppbridge.text.encoding import (
    Alphabet,
    ContentError,
    MessageTooLong,
    encode_text,
    parse_data_coding,
)

__all__ = [
    "IEI_CONCAT_8BIT",
    "IEI_CONCAT_16BIT",
    "IEI_PORTS_8BIT",
    "IEI_PORTS_16BIT",
    "AddResult",
    "CompleteMessage",
    "Concat",
    "IncompleteMessage",
    "IncompleteSar",
    "InformationElement",
    "InvalidConcat",
    "InvalidSarLength",
    "InvalidSarValue",
    "MalformedUdh",
    "Part",
    "PartKey",
    "PayloadConflict",
    "Reassembler",
    "ReassemblyConfig",
    "ReassemblyFull",
    "Segment",
    "build_udh",
    "concat_udh",
    "parse_udh",
    "read_segment",
    "split_text",
]

# --- errors ------------------------------------------------------------------------------


class MalformedUdh(ContentError):
    """UDHI is set but the UDH does not fit (GSM 03.40 §9.2.3.24)."""

    status = CommandStatus.ESME_RINVESMCLASS


class InvalidConcat(ContentError):
    """A UDH concatenation IE with a wrong length, total 0, seq 0 or seq > total."""

    status = CommandStatus.ESME_RINVESMCLASS


class IncompleteSar(ContentError):
    """One or two of the three SAR TLVs (SMPP 3.4 §5.3.2.22-24)."""

    status = CommandStatus.ESME_RMISSINGOPTPARAM


class InvalidSarLength(ContentError):
    """A SAR TLV of the wrong size (2, 1 and 1 octets)."""

    status = CommandStatus.ESME_RINVPARLEN


class InvalidSarValue(ContentError):
    """SAR total 0, seq 0 or seq > total."""

    status = CommandStatus.ESME_RINVOPTPARAMVAL


class PayloadConflict(ContentError):
    """short_message and message_payload both carry data (SMPP 3.4 §5.2.21)."""

    status = CommandStatus.ESME_RINVMSGLEN


class ReassemblyFull(ContentError):
    """Too many long messages are waiting for parts; the ESME should retry later."""

    status = CommandStatus.ESME_RMSGQFUL


# --- UDH ---------------------------------------------------------------------------------

#: Concatenated short messages, 8-bit reference (GSM 03.40 §9.2.3.24.1).
IEI_CONCAT_8BIT = 0x00
#: Application port addressing, 8-bit and 16-bit ports (GSM 03.40 §9.2.3.24.3-4).
IEI_PORTS_8BIT = 0x04
IEI_PORTS_16BIT = 0x05
#: Concatenated short messages, 16-bit reference (GSM 03.40 §9.2.3.24.8).
IEI_CONCAT_16BIT = 0x08

_CONCAT_8BIT_LEN = 3  # ref, total, seq
_CONCAT_16BIT_LEN = 4  # ref hi, ref lo, total, seq
_SAR_REF_LEN = 2
_SAR_COUNT_LEN = 1


@dataclass(frozen=True, slots=True)
class InformationElement:
    """One UDH information element: identifier and data (GSM 03.40 §9.2.3.24)."""

    iei: int
    data: bytes


def parse_udh(user_data: bytes) -> tuple[tuple[InformationElement, ...], bytes]:
    """Split user data that starts with a UDH into its IEs and the rest.

    The first octet is UDHL, the length of the IEs that follow; each IE is IEI, IEDL
    and IEDL octets. Unknown IEs are kept as they are and skipped by their length.
    Raises :class:`MalformedUdh` when a length runs past the data.
    """
    if not user_data:
        msg = "UDHI is set but the message is empty"
        raise MalformedUdh(msg)
    udhl = user_data[0]
    end = 1 + udhl
    if end > len(user_data):
        msg = f"UDH length {udhl} overruns the {len(user_data) - 1} octets that follow"
        raise MalformedUdh(msg)
    elements: list[InformationElement] = []
    i = 1
    while i < end:
        if i + 2 > end:
            msg = f"UDH ends inside the header of an information element at octet {i}"
            raise MalformedUdh(msg)
        iei, iedl = user_data[i], user_data[i + 1]
        if i + 2 + iedl > end:
            msg = f"information element 0x{iei:02X} (length {iedl}) overruns the UDH"
            raise MalformedUdh(msg)
        elements.append(InformationElement(iei, bytes(user_data[i + 2 : i + 2 + iedl])))
        i += 2 + iedl
    return tuple(elements), bytes(user_data[end:])


def build_udh(elements: Iterable[InformationElement]) -> bytes:
    """The UDH (with its UDHL octet) for ``elements`` — the inverse of :func:`parse_udh`."""
    body = b"".join(bytes([e.iei, len(e.data)]) + e.data for e in elements)
    return bytes([len(body)]) + body


def concat_udh(reference: int, total: int, seq: int, *, wide: bool = False) -> bytes:
    """``05 00 03 ref total seq``, or ``06 08 04 refHi refLo total seq`` when ``wide``."""
    if wide:
        data = reference.to_bytes(2, "big") + bytes([total, seq])
        ie = InformationElement(IEI_CONCAT_16BIT, data)
    else:
        ie = InformationElement(IEI_CONCAT_8BIT, bytes([reference, total, seq]))
    return build_udh([ie])


# --- one part ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Concat:
    """Which part of which long message this is. ``source`` is "udh8", "udh16" or "sar"."""

    reference: int
    total: int
    seq: int
    source: str = "udh8"


@dataclass(frozen=True, slots=True)
class Segment:
    """One submit_sm's user data: payload octets without UDH, the other IEs, concat info."""

    payload: bytes
    elements: tuple[InformationElement, ...] = ()
    concat: Concat | None = None
    #: SMPP 3.4 §5.3.2.21 destination_port TLV present
    port_tlv: bool = False

    @property
    def port_addressed(self) -> bool:
        """Addressed to an application port, by UDH IE 0x04/0x05 or the port TLV.

        Such a message is data for an application (WAP push, vCard, OTA), so an 8-bit
        payload is kept as binary instead of being read as Latin-1 text.
        """
        if self.port_tlv:
            return True
        # most segments have no IEs at all: no generator for them
        return bool(self.elements) and any(
            e.iei in (IEI_PORTS_8BIT, IEI_PORTS_16BIT) for e in self.elements
        )


def read_segment(
    esm_class: int, short_message: bytes, tlv: Callable[[int], bytes | None]
) -> Segment:
    """The user data of one submit_sm/data_sm; ``tlv`` is ``pdu.tlv``.

    Raises a :class:`ContentError` subclass for a malformed UDH, an inconsistent SAR set
    or data in both short_message and message_payload (see the module docstring).
    """
    payload_tlv = tlv(Tag.MESSAGE_PAYLOAD)
    if payload_tlv and short_message:
        msg = "short_message and message_payload are both set"
        raise PayloadConflict(msg)
    data = payload_tlv if payload_tlv else short_message
    elements: tuple[InformationElement, ...] = ()
    concat: Concat | None = None
    if esm_class & EsmClass.UDHI:
        elements, data = parse_udh(data)
        concat = _udh_concat(elements)
        # Concatenation is consumed here; what remains is forwarded information.
        elements = tuple(e for e in elements if e.iei not in (IEI_CONCAT_8BIT, IEI_CONCAT_16BIT))
    sar = _sar_concat(tlv)
    if concat is None:
        concat = sar
    return Segment(
        payload=bytes(data),
        elements=elements,
        concat=concat,
        port_tlv=tlv(Tag.DESTINATION_PORT) is not None,
    )


def _udh_concat(elements: tuple[InformationElement, ...]) -> Concat | None:
    found: Concat | None = None
    # GSM 03.40 §9.2.3.24: when an IE is repeated, the last occurrence is the one used.
    for e in elements:
        if e.iei == IEI_CONCAT_8BIT:
            if len(e.data) != _CONCAT_8BIT_LEN:
                msg = f"concatenation IE 0x00 has length {len(e.data)}, not 3"
                raise InvalidConcat(msg)
            found = Concat(e.data[0], e.data[1], e.data[2], "udh8")
        elif e.iei == IEI_CONCAT_16BIT:
            if len(e.data) != _CONCAT_16BIT_LEN:
                msg = f"concatenation IE 0x08 has length {len(e.data)}, not 4"
                raise InvalidConcat(msg)
            found = Concat(int.from_bytes(e.data[:2], "big"), e.data[2], e.data[3], "udh16")
    if found is not None and not 1 <= found.seq <= found.total:
        msg = f"concatenation part {found.seq} of {found.total}"
        raise InvalidConcat(msg)
    return found


def _sar_concat(tlv: Callable[[int], bytes | None]) -> Concat | None:
    ref = tlv(Tag.SAR_MSG_REF_NUM)
    total = tlv(Tag.SAR_TOTAL_SEGMENTS)
    seq = tlv(Tag.SAR_SEGMENT_SEQNUM)
    present = sum(v is not None for v in (ref, total, seq))
    if present == 0:
        return None
    if ref is None or total is None or seq is None:
        msg = "sar_msg_ref_num, sar_total_segments and sar_segment_seqnum go together"
        raise IncompleteSar(msg)
    if len(ref) != _SAR_REF_LEN or len(total) != _SAR_COUNT_LEN or len(seq) != _SAR_COUNT_LEN:
        msg = "SAR TLVs must be 2, 1 and 1 octets long"
        raise InvalidSarLength(msg)
    concat = Concat(int.from_bytes(ref, "big"), total[0], seq[0], "sar")
    if not 1 <= concat.seq <= concat.total:
        msg = f"SAR segment {concat.seq} of {concat.total}"
        raise InvalidSarValue(msg)
    return concat


# --- reassembly --------------------------------------------------------------------------

M = TypeVar("M")


@dataclass(frozen=True, slots=True)
class ReassemblyConfig:
    """Limits of the reassembly buffer (shared by all accounts)."""

    #: All parts must arrive within this many seconds of the first (docs/content.md, Long
    #: messages; the SMS Center rule: "all SMS parts must be transmitted to the server
    #: within a minute").
    window: float = 60.0
    #: Most parts of one message. 255 is the wire maximum; 32 parts (4896 GSM characters)
    #: is more than any provider takes and bounds memory per message to ~8 KB.
    max_parts: int = 32
    #: Most messages waiting for parts, all accounts together (memory bound: ~80 MB).
    max_pending: int = 10_000


@dataclass(frozen=True, slots=True)
class PartKey:
    """What identifies one long message (docs/content.md, Long messages)."""

    account: str
    source: str
    destination: str
    reference: int


@dataclass(frozen=True, slots=True)
class Part(Generic[M]):
    """One received part; ``meta`` is whatever the caller needs back (e.g. its PDU)."""

    seq: int
    message_id: str
    payload: bytes
    received_at: float
    meta: M


@dataclass(frozen=True, slots=True)
class _Collected(Generic[M]):
    key: Hashable
    total: int
    first_seen: float
    #: one part per seq, in seq order
    parts: tuple[Part[M], ...]
    #: repeated parts (same seq again), in arrival order
    repeats: tuple[Part[M], ...]

    @property
    def part_ids(self) -> tuple[str, ...]:
        """Every message id handed out, in part order; a repeat follows its original."""
        ids: list[str] = []
        for p in self.parts:
            ids.append(p.message_id)
            ids.extend(r.message_id for r in self.repeats if r.seq == p.seq)
        # Repeats of a seq that never arrived cannot exist (a repeat needs an original).
        return tuple(ids)


@dataclass(frozen=True, slots=True)
class CompleteMessage(_Collected[M]):
    """Every part is in: ``payload`` is their octets joined in part order."""

    @property
    def payload(self) -> bytes:
        return b"".join(p.payload for p in self.parts)


@dataclass(frozen=True, slots=True)
class IncompleteMessage(_Collected[M]):
    """A message given up on (window closed, or replaced); ``parts`` are those received."""

    @property
    def missing(self) -> tuple[int, ...]:
        have = {p.seq for p in self.parts}
        return tuple(s for s in range(1, self.total + 1) if s not in have)


@dataclass(frozen=True, slots=True)
class AddResult(Generic[M]):
    """What :meth:`Reassembler.add` did: maybe completed a message, maybe evicted one."""

    completed: CompleteMessage[M] | None = None
    evicted: tuple[IncompleteMessage[M], ...] = ()


@dataclass
class _Group(Generic[M]):
    total: int
    first_seen: float
    parts: dict[int, Part[M]] = field(default_factory=dict)
    repeats: list[Part[M]] = field(default_factory=list)

    def ordered(self) -> tuple[Part[M], ...]:
        return tuple(self.parts[s] for s in sorted(self.parts))


class Reassembler(Generic[M]):
    """Collects the parts of long messages until each is whole or its window closes.

    Not thread-safe; safe under asyncio because no method awaits.
    """

    def __init__(self, config: ReassemblyConfig | None = None) -> None:
        self.config = config or ReassemblyConfig()
        self._groups: dict[Hashable, _Group[M]] = {}
        self._ids: dict[str, Hashable] = {}

    def __len__(self) -> int:
        """Messages waiting for parts."""
        return len(self._groups)

    @property
    def pending_parts(self) -> int:
        """Parts held, all waiting messages together (a metric)."""
        return len(self._ids)

    def holds(self, message_id: str) -> bool:
        """True when ``message_id`` is a part of a message still waiting for parts."""
        return message_id in self._ids

    def add(
        self,
        key: Hashable,
        concat: Concat,
        payload: bytes,
        *,
        message_id: str,
        now: float,
        meta: M,
    ) -> AddResult[M]:
        """Add one part; returns the whole message when this part completes it.

        Raises :class:`MessageTooLong` (more than ``max_parts``) or
        :class:`ReassemblyFull` (``max_pending`` messages already waiting); the part is
        then not stored.
        """
        if concat.total > self.config.max_parts:
            msg = f"{concat.total} parts, at most {self.config.max_parts} are reassembled"
            raise MessageTooLong(msg)
        evicted: tuple[IncompleteMessage[M], ...] = ()
        group = self._groups.get(key)
        if group is not None and (
            now >= group.first_seen + self.config.window or group.total != concat.total
        ):
            evicted = (self._drop(key, group),)
            group = None
        if group is None:
            if len(self._groups) >= self.config.max_pending:
                msg = f"{len(self._groups)} long messages are waiting for parts"
                raise ReassemblyFull(msg)
            group = _Group(total=concat.total, first_seen=now)
            self._groups[key] = group
        part = Part(concat.seq, message_id, payload, now, meta)
        if concat.seq in group.parts:
            group.repeats.append(part)
        else:
            group.parts[concat.seq] = part
        self._ids[message_id] = key
        if len(group.parts) < group.total:
            return AddResult(evicted=evicted)
        self._forget(key, group)
        done = CompleteMessage(key, group.total, group.first_seen, group.ordered(),
                               tuple(group.repeats))
        return AddResult(completed=done, evicted=evicted)

    def expire(self, now: float) -> list[IncompleteMessage[M]]:
        """Give up on every message whose window has closed; returns them, oldest first."""
        deadline = now - self.config.window
        late = [(k, g) for k, g in self._groups.items() if g.first_seen <= deadline]
        return [self._drop(k, g) for k, g in late]

    def next_deadline(self) -> float | None:
        """When the oldest waiting message's window closes (for the caller's timer)."""
        if not self._groups:
            return None
        return min(g.first_seen for g in self._groups.values()) + self.config.window

    def _drop(self, key: Hashable, group: _Group[M]) -> IncompleteMessage[M]:
        self._forget(key, group)
        return IncompleteMessage(key, group.total, group.first_seen, group.ordered(),
                                 tuple(group.repeats))

    def _forget(self, key: Hashable, group: _Group[M]) -> None:
        del self._groups[key]
        for p in (*group.parts.values(), *group.repeats):
            self._ids.pop(p.message_id, None)


# --- splitting (for ``smppbridge send`` and tests) ---------------------------------------

# Octets of user data in one SMS (GSM 03.40 §9.2.3.16: 140 octets = 160 septets).
_SM_OCTETS = 140
_SM_SEPTETS = 160
_CONCAT_UDH_8BIT = 6  # 05 00 03 ref total seq
_CONCAT_UDH_16BIT = 7  # 06 08 04 refHi refLo total seq
_SEPTET_BITS = 7


def split_text(
    text: str, data_coding: int, *, iso: bool = False, wide: bool = False
) -> list[bytes]:
    """Encode ``text`` and cut it into SMS-sized payloads (without UDH).

    One payload when it fits a single SMS; otherwise parts sized for a concatenation UDH
    (8-bit reference: 153 GSM septets / 134 octets, 16-bit: 152 / 133; docs/smpp.md,
    Concatenated-part capacities), never cutting a GSM escape sequence or a UTF-16
    surrogate pair in two.
    """
    alphabet = parse_data_coding(data_coding).alphabet
    septets = alphabet is Alphabet.GSM7 and not iso
    units = [encode_text(ch, data_coding, iso=iso) for ch in text]
    whole = b"".join(units)
    single = _SM_SEPTETS if septets else _SM_OCTETS
    if len(whole) <= single:
        return [whole]
    udh = _CONCAT_UDH_16BIT if wide else _CONCAT_UDH_8BIT
    if septets:
        # The UDH takes ceil(udh*8/7) septets of the 160 (GSM 03.40 §9.2.3.24 fill bits).
        size = _SM_SEPTETS - -(-udh * 8 // _SEPTET_BITS)
    else:
        size = _SM_OCTETS - udh
        if alphabet is Alphabet.UCS2:
            size -= size % 2
    parts: list[bytes] = []
    current = b""
    for unit in units:
        if len(current) + len(unit) > size:
            parts.append(current)
            current = b""
        current += unit
    parts.append(current)
    return parts
