"""Wire numbers of SMPP 3.4 (Issue 1.2): command ids, statuses, TLV tags and field limits.

Every number that appears on the wire lives here, named after the specification.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum, IntFlag
from types import MappingProxyType

__all__ = [
    "HEADER_LENGTH",
    "INTERFACE_VERSION_34",
    "RESPONSE_BIT",
    "STATUS_DESCRIPTIONS",
    "CommandId",
    "CommandStatus",
    "DataCoding",
    "EsmClass",
    "MessageState",
    "RegisteredDelivery",
    "Tag",
    "describe_status",
]

#: command_length, command_id, command_status, sequence_number — four octets each (§3.2).
HEADER_LENGTH = 16
#: A response's command_id is the request's with bit 31 set (§5.1.2.1).
RESPONSE_BIT = 0x80000000
#: interface_version 0x34 = SMPP 3.4; 0x00-0x33 are 3.3 and earlier (§5.2.4).
INTERFACE_VERSION_34 = 0x34
#: Highest valid sequence_number (§5.1.2.4: 0x00000001 - 0x7FFFFFFF).
MAX_SEQUENCE = 0x7FFFFFFF


class CommandId(IntEnum):
    """command_id values (SMPP 3.4 §5.1.2.1, Table 5-1)."""

    GENERIC_NACK = 0x80000000
    BIND_RECEIVER = 0x00000001
    BIND_RECEIVER_RESP = 0x80000001
    BIND_TRANSMITTER = 0x00000002
    BIND_TRANSMITTER_RESP = 0x80000002
    QUERY_SM = 0x00000003
    QUERY_SM_RESP = 0x80000003
    SUBMIT_SM = 0x00000004
    SUBMIT_SM_RESP = 0x80000004
    DELIVER_SM = 0x00000005
    DELIVER_SM_RESP = 0x80000005
    UNBIND = 0x00000006
    UNBIND_RESP = 0x80000006
    REPLACE_SM = 0x00000007
    REPLACE_SM_RESP = 0x80000007
    CANCEL_SM = 0x00000008
    CANCEL_SM_RESP = 0x80000008
    BIND_TRANSCEIVER = 0x00000009
    BIND_TRANSCEIVER_RESP = 0x80000009
    OUTBIND = 0x0000000B
    ENQUIRE_LINK = 0x00000015
    ENQUIRE_LINK_RESP = 0x80000015
    SUBMIT_MULTI = 0x00000021
    SUBMIT_MULTI_RESP = 0x80000021
    ALERT_NOTIFICATION = 0x00000102
    DATA_SM = 0x00000103
    DATA_SM_RESP = 0x80000103

    @property
    def is_response(self) -> bool:
        return bool(self & RESPONSE_BIT)


class CommandStatus(IntEnum):
    """command_status values (SMPP 3.4 §5.1.3, Table 5-2), plus our vendor codes.

    0x400-0x4FF is "reserved for SMSC vendor specific errors"; the vendor codes below are
    smppbridge's and are documented in docs/smpp.md.
    """

    ESME_ROK = 0x00000000
    ESME_RINVMSGLEN = 0x00000001
    ESME_RINVCMDLEN = 0x00000002
    ESME_RINVCMDID = 0x00000003
    ESME_RINVBNDSTS = 0x00000004
    ESME_RALYBND = 0x00000005
    ESME_RINVPRTFLG = 0x00000006
    ESME_RINVREGDLVFLG = 0x00000007
    ESME_RSYSERR = 0x00000008
    ESME_RINVSRCADR = 0x0000000A
    ESME_RINVDSTADR = 0x0000000B
    ESME_RINVMSGID = 0x0000000C
    ESME_RBINDFAIL = 0x0000000D
    ESME_RINVPASWD = 0x0000000E
    ESME_RINVSYSID = 0x0000000F
    ESME_RCANCELFAIL = 0x00000011
    ESME_RREPLACEFAIL = 0x00000013
    ESME_RMSGQFUL = 0x00000014
    ESME_RINVSERTYP = 0x00000015
    ESME_RINVNUMDESTS = 0x00000033
    ESME_RINVDLNAME = 0x00000034
    ESME_RINVDESTFLAG = 0x00000040
    ESME_RINVSUBREP = 0x00000042
    ESME_RINVESMCLASS = 0x00000043
    ESME_RCNTSUBDL = 0x00000044
    ESME_RSUBMITFAIL = 0x00000045
    ESME_RINVSRCTON = 0x00000048
    ESME_RINVSRCNPI = 0x00000049
    ESME_RINVDSTTON = 0x00000050
    ESME_RINVDSTNPI = 0x00000051
    ESME_RINVSYSTYP = 0x00000053
    ESME_RINVREPFLAG = 0x00000054
    ESME_RINVNUMMSGS = 0x00000055
    ESME_RTHROTTLED = 0x00000058
    ESME_RINVSCHED = 0x00000061
    ESME_RINVEXPIRY = 0x00000062
    ESME_RINVDFTMSGID = 0x00000063
    ESME_RX_T_APPN = 0x00000064
    ESME_RX_P_APPN = 0x00000065
    ESME_RX_R_APPN = 0x00000066
    ESME_RQUERYFAIL = 0x00000067
    ESME_RINVOPTPARSTREAM = 0x000000C0
    ESME_ROPTPARNOTALLWD = 0x000000C1
    ESME_RINVPARLEN = 0x000000C2
    ESME_RMISSINGOPTPARAM = 0x000000C3
    ESME_RINVOPTPARAMVAL = 0x000000C4
    ESME_RDELIVERYFAILURE = 0x000000FE
    ESME_RUNKNOWNERR = 0x000000FF
    # --- smppbridge vendor codes (0x400-0x4FF, SMPP 3.4 Table 5-2) ---
    #: identical message (account, source, destination, text) within the duplicate window
    VENDOR_DUPLICATE = 0x00000400
    #: more than N messages to one destination with gaps under the flood gap
    VENDOR_SUBSCRIBER_FLOOD = 0x00000401
    #: data_coding we do not accept, or bytes that do not decode in it
    VENDOR_INVALID_DATA_CODING = 0x00000402
    #: a text macro with a missing or invalid part (e.g. unknown voice)
    VENDOR_INVALID_MACRO = 0x00000403
    #: no provider of the route can carry this kind of message
    VENDOR_NO_ROUTE = 0x00000404
    #: text too long / too many parts for this kind
    VENDOR_MESSAGE_TOO_LONG = 0x00000405


_S = CommandStatus
#: What each command_status means, in a few words: the specification's statuses after
#: SMPP 3.4 Table 5-2, smppbridge's vendor codes as docs/smpp.md lists them (the
#: command_status tables there say when each is returned). Rendered by
#: :func:`describe_status`; tests/tools/test_send.py checks every status has one.
STATUS_DESCRIPTIONS: Mapping[CommandStatus, str] = MappingProxyType({
    _S.ESME_ROK: "no error",
    _S.ESME_RINVMSGLEN: "message length is invalid",
    _S.ESME_RINVCMDLEN: "command length is invalid",
    _S.ESME_RINVCMDID: "invalid command id",
    _S.ESME_RINVBNDSTS: "incorrect bind status for the command",
    _S.ESME_RALYBND: "already bound",
    _S.ESME_RINVPRTFLG: "invalid priority flag",
    _S.ESME_RINVREGDLVFLG: "invalid registered delivery flag",
    _S.ESME_RSYSERR: "system error",
    _S.ESME_RINVSRCADR: "invalid source address",
    _S.ESME_RINVDSTADR: "invalid destination address",
    _S.ESME_RINVMSGID: "message id is invalid",
    _S.ESME_RBINDFAIL: "bind failed",
    _S.ESME_RINVPASWD: "invalid password",
    _S.ESME_RINVSYSID: "invalid system id",
    _S.ESME_RCANCELFAIL: "cancel_sm failed",
    _S.ESME_RREPLACEFAIL: "replace_sm failed",
    _S.ESME_RMSGQFUL: "message queue full",
    _S.ESME_RINVSERTYP: "invalid service type",
    _S.ESME_RINVNUMDESTS: "invalid number of destinations",
    _S.ESME_RINVDLNAME: "invalid distribution list name",
    _S.ESME_RINVDESTFLAG: "invalid destination flag",
    _S.ESME_RINVSUBREP: "invalid submit with replace request",
    _S.ESME_RINVESMCLASS: "invalid esm_class",
    _S.ESME_RCNTSUBDL: "cannot submit to distribution list",
    _S.ESME_RSUBMITFAIL: "submit failed",
    _S.ESME_RINVSRCTON: "invalid source address TON",
    _S.ESME_RINVSRCNPI: "invalid source address NPI",
    _S.ESME_RINVDSTTON: "invalid destination address TON",
    _S.ESME_RINVDSTNPI: "invalid destination address NPI",
    _S.ESME_RINVSYSTYP: "invalid system_type",
    _S.ESME_RINVREPFLAG: "invalid replace_if_present flag",
    _S.ESME_RINVNUMMSGS: "invalid number of messages",
    _S.ESME_RTHROTTLED: "throttled",
    _S.ESME_RINVSCHED: "invalid scheduled delivery time",
    _S.ESME_RINVEXPIRY: "invalid validity period",
    _S.ESME_RINVDFTMSGID: "predefined message invalid or not found",
    _S.ESME_RX_T_APPN: "ESME receiver temporary application error",
    _S.ESME_RX_P_APPN: "ESME receiver permanent application error",
    _S.ESME_RX_R_APPN: "ESME receiver reject message error",
    _S.ESME_RQUERYFAIL: "query_sm failed",
    _S.ESME_RINVOPTPARSTREAM: "error in the optional part of the PDU body",
    _S.ESME_ROPTPARNOTALLWD: "optional parameter not allowed",
    _S.ESME_RINVPARLEN: "invalid parameter length",
    _S.ESME_RMISSINGOPTPARAM: "expected optional parameter missing",
    _S.ESME_RINVOPTPARAMVAL: "invalid optional parameter value",
    _S.ESME_RDELIVERYFAILURE: "delivery failure",
    _S.ESME_RUNKNOWNERR: "unknown error",
    _S.VENDOR_DUPLICATE: "duplicate message (flood rule)",
    _S.VENDOR_SUBSCRIBER_FLOOD: "too many messages to one subscriber (flood rule)",
    _S.VENDOR_INVALID_DATA_CODING: "data_coding not accepted, or text not valid in it",
    _S.VENDOR_INVALID_MACRO: "invalid text macro",
    _S.VENDOR_NO_ROUTE: "no route for this message kind",
    _S.VENDOR_MESSAGE_TOO_LONG: "message too long for its kind",
})
#: SMPP 3.4 Table 5-2: "reserved for SMSC vendor specific errors".
_VENDOR_RANGE = range(0x400, 0x500)


def describe_status(status: int) -> str:
    """``status`` in hex with its meaning: ``0x00000058 ESME_RTHROTTLED (throttled)``.

    A vendor code is named by its meaning alone (``0x00000400 duplicate message (flood
    rule)``): its name is ours, not the specification's, and an ESME's operator reads it
    in docs/smpp.md by the number. A status we do not know says so.
    """
    try:
        known = CommandStatus(status)
    except ValueError:
        where = "vendor status" if status in _VENDOR_RANGE else "status"
        return f"0x{status:08X} (unknown {where})"
    description = STATUS_DESCRIPTIONS[known]
    if status in _VENDOR_RANGE:
        return f"0x{status:08X} {description}"
    return f"0x{status:08X} {known.name} ({description})"


class Tag(IntEnum):
    """Optional parameter (TLV) tags (SMPP 3.4 §5.3.2, Table 5-3)."""

    DEST_ADDR_SUBUNIT = 0x0005
    DEST_NETWORK_TYPE = 0x0006
    DEST_BEARER_TYPE = 0x0007
    DEST_TELEMATICS_ID = 0x0008
    SOURCE_ADDR_SUBUNIT = 0x000D
    SOURCE_NETWORK_TYPE = 0x000E
    SOURCE_BEARER_TYPE = 0x000F
    SOURCE_TELEMATICS_ID = 0x0010
    QOS_TIME_TO_LIVE = 0x0017
    PAYLOAD_TYPE = 0x0019
    ADDITIONAL_STATUS_INFO_TEXT = 0x001D
    RECEIPTED_MESSAGE_ID = 0x001E
    MS_MSG_WAIT_FACILITIES = 0x0030
    PRIVACY_INDICATOR = 0x0201
    SOURCE_SUBADDRESS = 0x0202
    DEST_SUBADDRESS = 0x0203
    USER_MESSAGE_REFERENCE = 0x0204
    USER_RESPONSE_CODE = 0x0205
    SOURCE_PORT = 0x020A
    DESTINATION_PORT = 0x020B
    SAR_MSG_REF_NUM = 0x020C
    LANGUAGE_INDICATOR = 0x020D
    SAR_TOTAL_SEGMENTS = 0x020E
    SAR_SEGMENT_SEQNUM = 0x020F
    SC_INTERFACE_VERSION = 0x0210
    CALLBACK_NUM_PRES_IND = 0x0302
    CALLBACK_NUM_ATAG = 0x0303
    NUMBER_OF_MESSAGES = 0x0304
    CALLBACK_NUM = 0x0381
    DPF_RESULT = 0x0420
    SET_DPF = 0x0421
    MS_AVAILABILITY_STATUS = 0x0422
    NETWORK_ERROR_CODE = 0x0423
    MESSAGE_PAYLOAD = 0x0424
    DELIVERY_FAILURE_REASON = 0x0425
    MORE_MESSAGES_TO_SEND = 0x0426
    MESSAGE_STATE = 0x0427
    USSD_SERVICE_OP = 0x0501
    DISPLAY_TIME = 0x1201
    SMS_SIGNAL = 0x1203
    MS_VALIDITY = 0x1204
    ALERT_ON_MESSAGE_DELIVERY = 0x130C
    ITS_REPLY_TYPE = 0x1380
    ITS_SESSION_INFO = 0x1383


class EsmClass(IntFlag):
    """esm_class bits (SMPP 3.4 §5.2.12)."""

    DEFAULT = 0x00
    DATAGRAM = 0x01
    FORWARD = 0x02
    STORE_AND_FORWARD = 0x03
    DELIVERY_RECEIPT = 0x04  # SMSC -> ESME: SMSC delivery receipt
    SME_DELIVERY_ACK = 0x08
    USER_ACK = 0x10
    INTERMEDIATE_NOTIFICATION = 0x20
    UDHI = 0x40
    REPLY_PATH = 0x80


class RegisteredDelivery(IntEnum):
    """registered_delivery bits 1-0 (SMPP 3.4 §5.2.17); intermediate is bit 4 (0x10)."""

    NONE = 0
    FINAL = 1
    FAILURE_ONLY = 2


#: registered_delivery mask for the SMSC delivery receipt choice (bits 1-0).
RECEIPT_MASK = 0x03
#: registered_delivery bit asking for intermediate notifications (pattern xxx1xxxx).
INTERMEDIATE_BIT = 0x10


class MessageState(IntEnum):
    """message_state values (SMPP 3.4 §5.2.28)."""

    ENROUTE = 1
    DELIVERED = 2
    EXPIRED = 3
    DELETED = 4
    UNDELIVERABLE = 5
    ACCEPTED = 6
    UNKNOWN = 7
    REJECTED = 8


class DataCoding(IntEnum):
    """data_coding values we name (SMPP 3.4 §5.2.19)."""

    DEFAULT = 0x00
    IA5 = 0x01
    BINARY_2 = 0x02
    LATIN1 = 0x03
    BINARY = 0x04
    UCS2 = 0x08
