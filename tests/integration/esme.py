"""A real ESME for the integration tests: smpplib's client as a transceiver, its read
loop in a thread, recording every response and receipt."""

from __future__ import annotations

import threading
import time
from typing import Any

import smpplib.client
import smpplib.exceptions


class Esme:
    """smpplib transceiver running its read loop in a thread."""

    def __init__(self, port: int, system_id: str = "acme", password: str = "pw") -> None:
        self.client = smpplib.client.Client("127.0.0.1", port, timeout=5,
                                            allow_unknown_opt_params=True)
        self.resps: list[Any] = []
        self.receipts: list[str] = []
        #: every deliver_sm as smpplib read it (receipts and mobile-originated)
        self.delivered: list[Any] = []
        self.lock = threading.Lock()
        self.client.set_message_sent_handler(self._sent)
        self.client.set_message_received_handler(self._received)
        # smpplib raises on error statuses by default; here they are answers to record
        # (read_once passes them on to the sent handler after this one)
        self.client.set_error_pdu_handler(lambda pdu: None)
        self.client.connect()
        self.client.bind_transceiver(system_id=system_id, password=password)
        self._stop = False
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _sent(self, pdu: Any, **_: Any) -> None:
        with self.lock:
            self.resps.append(pdu)

    def _received(self, pdu: Any, **_: Any) -> int:
        with self.lock:
            self.delivered.append(pdu)
            if pdu.esm_class & 0x3C:  # a receipt (a mobile-originated one is not text)
                self.receipts.append(pdu.short_message.decode("ascii"))
        return 0

    def _loop(self) -> None:
        self.client._socket.settimeout(0.2)
        while not self._stop:
            try:
                self.client.read_once(auto_send_enquire_link=False)
            except (TimeoutError, OSError):
                continue
            except smpplib.exceptions.ConnectionError:
                return  # the server closed the session

    def wait(self, pred: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if pred(self):
                    return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        self._stop = True
        if self.thread.is_alive():
            self.thread.join(2)
        self.client.disconnect()
