"""``smppbridge send``: a small ESME on smpplib that binds as a transceiver, submits one
text (split into UDH parts when long) and waits for the receipts."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import smpplib.client
import smpplib.consts
import smpplib.exceptions

from smppbridge.text.encoding import gsm_encodable, gsm_encode

__all__ = ["SendError", "SendObserver", "SendResult", "encode_parts", "send"]

#: Octets of user data in one SMS (GSM 03.40 §9.2.3.24: 140 octets).
_SMS_OCTETS = 140
#: 8-bit concatenation UDH: UDHL, IEI 0x00, IEDL 3, ref, total, seq (6 octets).
_UDH_LEN = 6
_UCS2 = 8


@dataclass
class SendResult:
    message_ids: list[str] = field(default_factory=list)
    receipts: list[str] = field(default_factory=list)


class SendError(Exception):
    """Bind or submit failed; the message says why. ``result`` holds what was done
    before the failure (ids of parts already accepted)."""

    def __init__(self, message: str, result: SendResult | None = None) -> None:
        super().__init__(message)
        self.result = result if result is not None else SendResult()


class SendObserver(Protocol):
    """Progress hooks (the CLI draws a progress bar with them on a TTY)."""

    def submitting(self, parts: int, receipts: bool) -> None:
        """Bound; ``parts`` submit_sm are about to go, receipts awaited or not."""

    def message_id(self, message_id: str) -> None:
        """One submit_sm_resp arrived with this id."""

    def receipt(self, text: str) -> None:
        """One receipt (deliver_sm short_message) arrived."""


def encode_parts(text: str, ref: int) -> tuple[int, list[bytes], bool]:
    """(data_coding, short_message of each part, udhi) for ``text``.

    GSM 03.38 unpacked septets (data_coding 0) when every character is in the
    alphabet, else UCS2 (data_coding 8). Long texts are cut into parts with an 8-bit
    concatenation UDH; a part never ends inside an escape sequence or a surrogate pair.
    """
    if gsm_encodable(text):
        coding, payload, unit = 0, gsm_encode(text), 1
    else:
        coding, payload, unit = _UCS2, text.encode("utf-16-be"), 2
    if len(payload) <= _SMS_OCTETS:
        return coding, [payload], False
    size = _SMS_OCTETS - _UDH_LEN
    size -= size % unit
    chunks: list[bytes] = []
    pos = 0
    while pos < len(payload):
        end = min(pos + size, len(payload))
        if end < len(payload):
            if coding == 0 and payload[end - 1] == 0x1B:  # keep ESC with its character
                end -= 1
            elif coding == _UCS2 and 0xD8 <= payload[end - 2] <= 0xDB:  # high surrogate
                end -= 2
        chunks.append(payload[pos:end])
        pos = end
    total = len(chunks)
    parts = [bytes([5, 0, 3, ref & 0xFF, total, i + 1]) + c for i, c in enumerate(chunks)]
    return coding, parts, True


def send(*, host: str, port: int, system_id: str, password: str, source: str,
         destination: str, text: str, wait: float = 10.0, receipt: bool = True,
         timeout: float = 5.0, observer: SendObserver | None = None) -> SendResult:
    """Bind, submit ``text``, collect submit_sm_resp ids and (optionally) receipts."""
    result = SendResult()
    client = smpplib.client.Client(host, port, timeout=timeout, allow_unknown_opt_params=True)

    def on_sent(pdu: Any, **_: Any) -> None:
        result.message_ids.append(pdu.message_id.decode() if isinstance(pdu.message_id, bytes)
                                  else str(pdu.message_id))
        if observer is not None:
            observer.message_id(result.message_ids[-1])

    def on_received(pdu: Any, **_: Any) -> int:
        body = pdu.short_message
        result.receipts.append(body.decode("latin-1") if isinstance(body, bytes) else str(body))
        if observer is not None:
            observer.receipt(result.receipts[-1])
        return 0

    def on_error(pdu: Any) -> None:
        desc = smpplib.consts.DESCRIPTIONS.get(pdu.status, "vendor-specific status")
        raise SendError(f"{pdu.command} refused: 0x{pdu.status:08X} ({desc})")

    client.set_message_sent_handler(on_sent)
    client.set_message_received_handler(on_received)
    client.set_error_pdu_handler(on_error)
    try:
        try:
            client.connect()
            client.bind_transceiver(system_id=system_id, password=password)
        except smpplib.exceptions.PDUError as exc:
            status = exc.args[1] if len(exc.args) > 1 else 0
            raise SendError(f"bind refused: 0x{status:08X} ({exc.args[0]})") from None
        except (OSError, smpplib.exceptions.ConnectionError) as exc:
            raise SendError(f"cannot connect to {host}:{port}: {exc}") from None
        coding, parts, udhi = encode_parts(text, ref=int(time.time()) & 0xFF)
        if observer is not None:
            observer.submitting(len(parts), receipt)
        for part in parts:
            client.send_message(
                source_addr_ton=5 if not source.isdigit() else 1, source_addr_npi=0,
                source_addr=source, dest_addr_ton=1, dest_addr_npi=1,
                destination_addr=destination, short_message=part, data_coding=coding,
                esm_class=0x40 if udhi else 0, registered_delivery=1 if receipt else 0)
        deadline = time.monotonic() + timeout
        while len(result.message_ids) < len(parts) and time.monotonic() < deadline:
            client.read_once(auto_send_enquire_link=False)
        deadline = time.monotonic() + wait
        while receipt and len(result.receipts) < len(parts) and time.monotonic() < deadline:
            client._socket.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                client.read_once(auto_send_enquire_link=False)
            except TimeoutError:
                break
        return result
    except SendError as exc:
        exc.result = result
        raise
    except (smpplib.exceptions.ConnectionError, OSError) as exc:
        raise SendError(f"connection failed: {exc}", result) from None
    finally:
        try:
            if client.state in (smpplib.consts.SMPP_CLIENT_STATE_BOUND_TRX,):
                client.unbind()
        except Exception:  # noqa: S110 - best effort on the way out
            pass
        client.disconnect()
