"""One dataclass per SMPP 3.4 PDU, with the layout of its mandatory body.

Each class names its ``command_id`` and lists its mandatory fields in wire order as
``LAYOUT``; :mod:`smppbridge.smpp.codec` walks that layout in both directions, so a
field's size limit and the command_status for a bad value are written down once, here.
Field names follow SMPP 3.4 §4 exactly.

PDUs are values: nothing changes one after it is made (``with_`` makes a copy). They
are not declared frozen because a frozen dataclass sets each field through
``object.__setattr__``, which made decoding a submit_sm ~2 µs (20 %) slower — a cost paid
for every PDU in and out.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar, Self

from smppbridge.smpp.constants import CommandId, CommandStatus

__all__ = [
    "PDU_CLASSES",
    "RESPONSE_CLASS",
    "U8",
    "U32",
    "AlertNotification",
    "BindReceiver",
    "BindReceiverResp",
    "BindTransceiver",
    "BindTransceiverResp",
    "BindTransmitter",
    "BindTransmitterResp",
    "CStr",
    "CancelSm",
    "CancelSmResp",
    "DataSm",
    "DataSmResp",
    "DeliverSm",
    "DeliverSmResp",
    "DestAddress",
    "Dests",
    "EnquireLink",
    "EnquireLinkResp",
    "GenericNack",
    "Octets",
    "Pdu",
    "QuerySm",
    "QuerySmResp",
    "ReplaceSm",
    "ReplaceSmResp",
    "SubmitMulti",
    "SubmitMultiResp",
    "SubmitSm",
    "SubmitSmResp",
    "Tlv",
    "Unbind",
    "UnbindResp",
    "UnsuccessSme",
    "Unsuccesses",
]

_S = CommandStatus


# --- field kinds -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CStr:
    """C-octet string (§3.1): at most ``size`` octets *including* the NUL terminator.

    ``lengths`` restricts the number of characters (e.g. SMPP times are empty or 16
    characters, §7.1.1). A value over the limit is refused with ``status``, never
    truncated.
    """

    name: str
    size: int
    status: CommandStatus = _S.ESME_RINVPARLEN
    lengths: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class U8:
    name: str


@dataclass(frozen=True, slots=True)
class U32:
    name: str


@dataclass(frozen=True, slots=True)
class Octets:
    """short_message: preceded by its one-octet sm_length, 0-254 octets (§5.2.21)."""

    name: str
    size: int = 254
    status: CommandStatus = _S.ESME_RINVMSGLEN


@dataclass(frozen=True, slots=True)
class Dests:
    """submit_multi: number_of_dests then that many dest_address entries (§4.5.1.1)."""

    name: str


@dataclass(frozen=True, slots=True)
class Unsuccesses:
    """submit_multi_resp: no_unsuccess then that many unsuccess_sme entries (§4.5.2)."""

    name: str


Field = CStr | U8 | U32 | Octets | Dests | Unsuccesses


# --- values ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tlv:
    """An optional parameter (§3.2.4); unknown tags are kept as raw bytes."""

    tag: int
    value: bytes


@dataclass(frozen=True, slots=True)
class DestAddress:
    """One submit_multi destination: an SME address (dest_flag 1) or a list name (2)."""

    dest_flag: int = 1
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    dl_name: str = ""


@dataclass(frozen=True, slots=True)
class UnsuccessSme:
    """One failed submit_multi destination and why (§4.5.2, unsuccess_sme)."""

    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    error_status_code: int = 0


# --- PDUs --------------------------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class Pdu:
    """Base of every PDU: the header fields a caller may set, and the TLVs."""

    command_id: ClassVar[CommandId]
    LAYOUT: ClassVar[tuple[Field, ...]] = ()

    sequence_number: int = 0
    command_status: int = 0
    tlvs: tuple[Tlv, ...] = ()

    def tlv(self, tag: int) -> bytes | None:
        """The value of the first TLV with ``tag``, or None."""
        for t in self.tlvs:
            if t.tag == tag:
                return t.value
        return None

    def with_(self, **changes: Any) -> Self:
        return replace(self, **changes)

    @property
    def is_response(self) -> bool:
        return self.command_id.is_response


# Field layouts shared by several PDUs.
_SOURCE_21 = (U8("source_addr_ton"), U8("source_addr_npi"),
              CStr("source_addr", 21, _S.ESME_RINVSRCADR))
_DEST_21 = (U8("dest_addr_ton"), U8("dest_addr_npi"),
            CStr("destination_addr", 21, _S.ESME_RINVDSTADR))
_TIMES = (CStr("schedule_delivery_time", 17, _S.ESME_RINVSCHED, (0, 16)),
          CStr("validity_period", 17, _S.ESME_RINVEXPIRY, (0, 16)))
_SM_TAIL = (U8("esm_class"), U8("protocol_id"), U8("priority_flag"), *_TIMES,
            U8("registered_delivery"), U8("replace_if_present_flag"), U8("data_coding"),
            U8("sm_default_msg_id"), Octets("short_message"))
_BIND = (CStr("system_id", 16, _S.ESME_RINVSYSID), CStr("password", 9, _S.ESME_RINVPASWD),
         CStr("system_type", 13, _S.ESME_RINVSYSTYP), U8("interface_version"),
         U8("addr_ton"), U8("addr_npi"), CStr("address_range", 41))
_MESSAGE_ID = CStr("message_id", 65, _S.ESME_RINVMSGID)


@dataclass(slots=True, kw_only=True)
class GenericNack(Pdu):
    command_id = CommandId.GENERIC_NACK


@dataclass(slots=True, kw_only=True)
class _Bind(Pdu):
    LAYOUT = _BIND
    system_id: str = ""
    password: str = ""
    system_type: str = ""
    interface_version: int = 0x34
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""


@dataclass(slots=True, kw_only=True)
class BindTransmitter(_Bind):
    command_id = CommandId.BIND_TRANSMITTER


@dataclass(slots=True, kw_only=True)
class BindReceiver(_Bind):
    command_id = CommandId.BIND_RECEIVER


@dataclass(slots=True, kw_only=True)
class BindTransceiver(_Bind):
    command_id = CommandId.BIND_TRANSCEIVER


@dataclass(slots=True, kw_only=True)
class _BindResp(Pdu):
    LAYOUT = (CStr("system_id", 16, _S.ESME_RINVSYSID),)
    system_id: str = ""


@dataclass(slots=True, kw_only=True)
class BindTransmitterResp(_BindResp):
    command_id = CommandId.BIND_TRANSMITTER_RESP


@dataclass(slots=True, kw_only=True)
class BindReceiverResp(_BindResp):
    command_id = CommandId.BIND_RECEIVER_RESP


@dataclass(slots=True, kw_only=True)
class BindTransceiverResp(_BindResp):
    command_id = CommandId.BIND_TRANSCEIVER_RESP


@dataclass(slots=True, kw_only=True)
class QuerySm(Pdu):
    command_id = CommandId.QUERY_SM
    LAYOUT = (_MESSAGE_ID, *_SOURCE_21)
    message_id: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""


@dataclass(slots=True, kw_only=True)
class QuerySmResp(Pdu):
    command_id = CommandId.QUERY_SM_RESP
    LAYOUT = (_MESSAGE_ID, CStr("final_date", 17, _S.ESME_RINVPARLEN, (0, 16)),
              U8("message_state"), U8("error_code"))
    message_id: str = ""
    final_date: str = ""
    message_state: int = 0
    error_code: int = 0


@dataclass(slots=True, kw_only=True)
class _ShortMessage(Pdu):
    LAYOUT = (CStr("service_type", 6, _S.ESME_RINVSERTYP), *_SOURCE_21, *_DEST_21, *_SM_TAIL)
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""


@dataclass(slots=True, kw_only=True)
class SubmitSm(_ShortMessage):
    """submit_sm (§4.4.1)."""

    command_id = CommandId.SUBMIT_SM


@dataclass(slots=True, kw_only=True)
class DeliverSm(_ShortMessage):
    """deliver_sm (§4.6.1): what we send to carry delivery receipts."""

    command_id = CommandId.DELIVER_SM


@dataclass(slots=True, kw_only=True)
class _MessageIdResp(Pdu):
    LAYOUT = (_MESSAGE_ID,)
    message_id: str = ""


@dataclass(slots=True, kw_only=True)
class SubmitSmResp(_MessageIdResp):
    command_id = CommandId.SUBMIT_SM_RESP


@dataclass(slots=True, kw_only=True)
class DeliverSmResp(_MessageIdResp):
    command_id = CommandId.DELIVER_SM_RESP


@dataclass(slots=True, kw_only=True)
class DataSmResp(_MessageIdResp):
    command_id = CommandId.DATA_SM_RESP


@dataclass(slots=True, kw_only=True)
class Unbind(Pdu):
    command_id = CommandId.UNBIND


@dataclass(slots=True, kw_only=True)
class UnbindResp(Pdu):
    command_id = CommandId.UNBIND_RESP


@dataclass(slots=True, kw_only=True)
class ReplaceSm(Pdu):
    """replace_sm (§4.10.1)."""

    command_id = CommandId.REPLACE_SM
    LAYOUT = (_MESSAGE_ID, *_SOURCE_21, *_TIMES, U8("registered_delivery"),
              U8("sm_default_msg_id"), Octets("short_message"))
    message_id: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""


@dataclass(slots=True, kw_only=True)
class ReplaceSmResp(Pdu):
    command_id = CommandId.REPLACE_SM_RESP


@dataclass(slots=True, kw_only=True)
class CancelSm(Pdu):
    """cancel_sm (§4.9.1)."""

    command_id = CommandId.CANCEL_SM
    LAYOUT = (CStr("service_type", 6, _S.ESME_RINVSERTYP), _MESSAGE_ID, *_SOURCE_21, *_DEST_21)
    service_type: str = ""
    message_id: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""


@dataclass(slots=True, kw_only=True)
class CancelSmResp(Pdu):
    command_id = CommandId.CANCEL_SM_RESP


@dataclass(slots=True, kw_only=True)
class EnquireLink(Pdu):
    command_id = CommandId.ENQUIRE_LINK


@dataclass(slots=True, kw_only=True)
class EnquireLinkResp(Pdu):
    command_id = CommandId.ENQUIRE_LINK_RESP


@dataclass(slots=True, kw_only=True)
class SubmitMulti(Pdu):
    """submit_multi (§4.5.1): up to 255 destinations."""

    command_id = CommandId.SUBMIT_MULTI
    LAYOUT = (CStr("service_type", 6, _S.ESME_RINVSERTYP), *_SOURCE_21, Dests("dest_addresses"),
              *_SM_TAIL)
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addresses: tuple[DestAddress, ...] = ()
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    short_message: bytes = b""


@dataclass(slots=True, kw_only=True)
class SubmitMultiResp(Pdu):
    command_id = CommandId.SUBMIT_MULTI_RESP
    LAYOUT = (_MESSAGE_ID, Unsuccesses("unsuccess_smes"))
    message_id: str = ""
    unsuccess_smes: tuple[UnsuccessSme, ...] = ()


@dataclass(slots=True, kw_only=True)
class AlertNotification(Pdu):
    """alert_notification (§4.12.1); SMSC → ESME only, no response."""

    command_id = CommandId.ALERT_NOTIFICATION
    LAYOUT = (U8("source_addr_ton"), U8("source_addr_npi"),
              CStr("source_addr", 65, _S.ESME_RINVSRCADR),
              U8("esme_addr_ton"), U8("esme_addr_npi"), CStr("esme_addr", 65, _S.ESME_RINVPARLEN))
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    esme_addr_ton: int = 0
    esme_addr_npi: int = 0
    esme_addr: str = ""


@dataclass(slots=True, kw_only=True)
class DataSm(Pdu):
    """data_sm (§4.7.1): the text travels in message_payload."""

    command_id = CommandId.DATA_SM
    LAYOUT = (CStr("service_type", 6, _S.ESME_RINVSERTYP), U8("source_addr_ton"),
              U8("source_addr_npi"), CStr("source_addr", 65, _S.ESME_RINVSRCADR),
              U8("dest_addr_ton"), U8("dest_addr_npi"),
              CStr("destination_addr", 65, _S.ESME_RINVDSTADR),
              U8("esm_class"), U8("registered_delivery"), U8("data_coding"))
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    source_addr: str = ""
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    destination_addr: str = ""
    esm_class: int = 0
    registered_delivery: int = 0
    data_coding: int = 0


#: Every PDU we decode, by command_id (outbind is never accepted from an ESME).
PDU_CLASSES: dict[int, type[Pdu]] = {
    cls.command_id: cls
    for cls in (
        GenericNack, BindTransmitter, BindTransmitterResp, BindReceiver, BindReceiverResp,
        BindTransceiver, BindTransceiverResp, QuerySm, QuerySmResp, SubmitSm, SubmitSmResp,
        DeliverSm, DeliverSmResp, Unbind, UnbindResp, ReplaceSm, ReplaceSmResp, CancelSm,
        CancelSmResp, EnquireLink, EnquireLinkResp, SubmitMulti, SubmitMultiResp,
        AlertNotification, DataSm, DataSmResp,
    )
}

#: The response class of each request class.
RESPONSE_CLASS: dict[type[Pdu], type[Pdu]] = {
    req: PDU_CLASSES[req.command_id | 0x80000000]
    for req in PDU_CLASSES.values()
    if not req.command_id.is_response and (req.command_id | 0x80000000) in PDU_CLASSES
}
