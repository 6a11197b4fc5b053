"""A message as the submit_sm PDUs one upstream SMSC gets (docs/providers.md, The
smpp provider): the data_coding policy, TON/NPI overrides and long messages."""

from __future__ import annotations

from typing import TYPE_CHECKING

from smppbridge.smpp import pdu as P
from smppbridge.smpp.constants import DataCoding, EsmClass, Tag
from smppbridge.smpp.times import relative_smpp_time
from smppbridge.text.concat import concat_udh, split_text
from smppbridge.text.content import Kind
from smppbridge.text.encoding import (
    Alphabet,
    ContentError,
    choose_data_coding,
    encode_text,
    parse_data_coding,
)

if TYPE_CHECKING:
    from smppbridge.core.message import OutboundMessage
    from smppbridge.core.provider_settings import UpstreamSettings

__all__ = ["submit_pdus", "upstream_data_coding"]

#: message class 0 (flash) in the data_coding's coding group 00xx (§5.2.19)
_FLASH_GSM = 0x10
_FLASH_UCS2 = 0x18
_UDHI = int(EsmClass.UDHI)
#: registered_delivery: always ask the upstream for the final receipt (our statuses)
_FINAL_RECEIPT = 1
#: protocol_id of a silent SMS (TP-PID "Short Message Type 0")
_SILENT = 0x40


def upstream_data_coding(message: OutboundMessage, policy: str) -> int:
    return _coding(message, policy)[0]


def _coding(message: OutboundMessage, policy: str) -> tuple[int, bytes | None]:
    """(data_coding, the text encoded in it where that was already done)."""
    dc, whole = _choose(message, policy)
    return dc, whole


def _choose(message: OutboundMessage, policy: str) -> tuple[int, bytes | None]:
    """The data_coding the upstream gets for ``message``.

    ``pass``: what the ESME sent (UCS2 if the text no longer fits it); ``gsm`` /
    ``latin1``: that alphabet when the text fits it, else UCS2; ``ucs2``: UCS2. A flash
    message keeps message class 0 where the alphabet has it (GSM, UCS2).
    """
    text = message.content.text
    flash = message.content.flash
    if policy == "pass":
        dc = message.data_coding
        try:
            return dc, encode_text(text, dc)
        except ContentError:
            dc = choose_data_coding(text)
            return ((_FLASH_UCS2 if dc == DataCoding.UCS2 else _FLASH_GSM) if flash
                    else dc), None
    if policy == "latin1":
        try:
            return int(DataCoding.LATIN1), encode_text(text, DataCoding.LATIN1)
        except ContentError:
            return (_FLASH_UCS2 if flash else int(DataCoding.UCS2)), None
    dc = choose_data_coding(text) if policy == "gsm" else int(DataCoding.UCS2)
    if flash:
        return (_FLASH_UCS2 if dc == DataCoding.UCS2 else _FLASH_GSM), None
    return dc, None


def submit_pdus(message: OutboundMessage, s: UpstreamSettings, reference: int,
                now: float = 0.0) -> list[P.SubmitSm]:
    """The submit_sm of ``message``: one, or one per part (``udh``: a concatenation UDH
    with 8-bit ``reference``; ``sar``: the sar_* TLVs), or one with message_payload.

    ``now`` is steady time (core.clock), the timeline of ``expire_at``: what is left of
    the message's validity goes upstream as a relative validity_period. A ping (silent
    SMS) goes with protocol_id 0x40 (GSM 03.40 §9.2.3.9, "Short Message Type 0")."""
    dc, whole = _coding(message, s.data_coding)
    validity = ""
    if message.expire_at is not None and now:
        validity = relative_smpp_time(message.expire_at - now)
    protocol_id = _SILENT if message.content.kind is Kind.PING else 0
    text = message.content.text
    if whole is None:
        whole = encode_text(text, dc)
    src, dst = message.source, message.destination

    def pdu(short_message: bytes, esm_class: int = 0,
            tlvs: tuple[P.Tlv, ...] = ()) -> P.SubmitSm:
        return P.SubmitSm(
            service_type=message.service_type,
            source_addr_ton=src.ton if s.source_ton is None else s.source_ton,
            source_addr_npi=src.npi if s.source_npi is None else s.source_npi,
            source_addr=src.addr,
            dest_addr_ton=dst.ton if s.dest_ton is None else s.dest_ton,
            dest_addr_npi=dst.npi if s.dest_npi is None else s.dest_npi,
            destination_addr=dst.addr, esm_class=esm_class, protocol_id=protocol_id,
            validity_period=validity, registered_delivery=_FINAL_RECEIPT, data_coding=dc,
            short_message=short_message, tlvs=tlvs)

    if len(whole) <= _single_limit(dc):
        return [pdu(whole)]
    if s.long_messages == "payload":
        return [pdu(b"", tlvs=(P.Tlv(Tag.MESSAGE_PAYLOAD, whole),))]
    parts = split_text(text, dc)
    total = len(parts)
    ref = reference & 0xFF
    if s.long_messages == "sar":
        return [pdu(part, tlvs=(
            P.Tlv(Tag.SAR_MSG_REF_NUM, (reference & 0xFFFF).to_bytes(2, "big")),
            P.Tlv(Tag.SAR_TOTAL_SEGMENTS, bytes([total])),
            P.Tlv(Tag.SAR_SEGMENT_SEQNUM, bytes([i])))) for i, part in enumerate(parts, 1)]
    return [pdu(concat_udh(ref, total, i) + part, esm_class=_UDHI)
            for i, part in enumerate(parts, 1)]


def _single_limit(dc: int) -> int:
    # 160 GSM septets (one octet each, unpacked) or 140 octets
    return 160 if parse_data_coding(dc).alphabet is Alphabet.GSM7 else 140
