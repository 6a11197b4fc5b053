"""End to end on real sockets: smpplib submits, the whole pipeline (content stage,
SQLite store, router, in-process simulator provider, status, receipt dispatcher) runs,
and receipts come back over SMPP."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import smpplib.client
import smpplib.consts
from structlog.testing import capture_logs

from smppbridge.config import parse_config
from smppbridge.core.records import DeliveryState
from smppbridge.node.node import Node
from smppbridge.smpp.receipts import parse_receipt
from smppbridge.text.encoding import gsm_encode
from tests.integration.esme import Esme

TEXT = "Привет 😀 emoji cut across parts: " + "😀" * 40 + " the end ✓"


def _config(tmp_path: Path, deliver_after: float = 0.2) -> str:
    return f"""
[smpp]
listen = "127.0.0.1:0"
shutdown_grace = 2.0
[http]
listen = ""
[store]
url = "sqlite:///{tmp_path}/e2e.db"
[[accounts]]
system_id = "acme"
password = "pw"
providers = ["sim"]
[[providers]]
name = "sim"
type = "simulator"
poll_interval = 0.1
simulator = {{ deliver_after = {deliver_after} }}
"""


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    n = Node(parse_config(_config(tmp_path), env={}))
    await n.start()
    try:
        yield n
    finally:
        await n.stop()


def _ucs2_parts_16bit_ref(text: str, ref: int) -> list[bytes]:
    """Split UTF-16BE octets into 3 parts with a 16-bit reference UDH (06 08 04), cutting
    at fixed octet positions — deliberately through surrogate pairs."""
    data = text.encode("utf-16-be")
    size = -(-len(data) // 3)
    size += size % 2
    chunks = [data[i:i + size] for i in range(0, len(data), size)]
    assert len(chunks) == 3
    return [bytes([6, 8, 4, ref >> 8, ref & 0xFF, 3, i + 1]) + c for i, c in enumerate(chunks)]


def _submit_parts(esme: Esme, parts: list[bytes]) -> None:
    for part in parts:
        esme.client.send_message(source_addr_ton=5, source_addr="Shop", dest_addr_ton=1,
                                 dest_addr_npi=1, destination_addr="79001234567",
                                 short_message=part, data_coding=8, esm_class=0x40,
                                 registered_delivery=1)


async def test_three_part_ucs2_emoji_with_16bit_udh_is_one_message(node: Node) -> None:
    """smpplib sends a 3-part UCS2 message split through emoji with 16-bit UDH: the
    pipeline stores exactly one message with the original text and three ids, and a
    DELIVRD receipt comes back for each part id."""
    esme = await asyncio.to_thread(Esme, node.smpp.addresses["smpp"][1])
    try:
        esme.thread.start()
        parts = _ucs2_parts_16bit_ref(TEXT, ref=0xBEEF)
        await asyncio.to_thread(_submit_parts, esme, parts)
        assert await asyncio.to_thread(esme.wait, lambda e: len(e.resps) == 3, 5)
        ids = [r.message_id.decode() for r in esme.resps]
        assert all(r.status == 0 for r in esme.resps)
        assert len(set(ids)) == 3
        stored = await node.store.find(ids[0])
        assert stored is not None
        assert stored.message.content.text == TEXT
        assert stored.message.part_ids == tuple(ids)
        assert await node.store.count(DeliveryState.QUEUED) + \
            await node.store.count(DeliveryState.SENT) + \
            await node.store.count(DeliveryState.FINAL) == 1
        assert await asyncio.to_thread(esme.wait, lambda e: len(e.receipts) == 3, 10)
        got = sorted(parse_receipt(r)["id"] for r in esme.receipts)
        assert got == sorted(ids)
        assert all(parse_receipt(r)["stat"] == "DELIVRD" for r in esme.receipts)
    finally:
        await asyncio.to_thread(esme.close)


async def test_duplicate_long_message_fails_on_its_final_part(node: Node) -> None:
    """The same long message twice within a minute: the second's final part carries
    0x400, and its earlier parts (acked) get REJECTD receipts."""
    esme = await asyncio.to_thread(Esme, node.smpp.addresses["smpp"][1])
    try:
        esme.thread.start()
        await asyncio.to_thread(_submit_parts, esme, _ucs2_parts_16bit_ref(TEXT, 1))
        assert await asyncio.to_thread(esme.wait, lambda e: len(e.resps) == 3, 5)
        await asyncio.to_thread(_submit_parts, esme, _ucs2_parts_16bit_ref(TEXT, 2))
        assert await asyncio.to_thread(esme.wait, lambda e: len(e.resps) == 6, 5)
        assert [r.status for r in esme.resps[3:]] == [0, 0, 0x400]
        rejected = {r.message_id.decode() for r in esme.resps[3:5]}

        def has_rejects(e: Esme) -> bool:
            return {parse_receipt(r)["id"] for r in e.receipts
                    if parse_receipt(r)["stat"] == "REJECTD"} == rejected
        assert await asyncio.to_thread(esme.wait, has_rejects, 10)
    finally:
        await asyncio.to_thread(esme.close)


async def test_receipts_wait_for_a_receiver(node: Node) -> None:
    """A transmitter submits; the receipt is stored until a receiver binds, then
    delivered to it."""
    port = node.smpp.addresses["smpp"][1]

    def submit() -> str:
        c = smpplib.client.Client("127.0.0.1", port, timeout=5, allow_unknown_opt_params=True)
        got: list[str] = []
        c.set_message_sent_handler(lambda pdu, **_: got.append(pdu.message_id.decode()))
        c.connect()
        try:
            c.bind_transmitter(system_id="acme", password="pw")
            c.send_message(source_addr="Shop", source_addr_ton=5, destination_addr="79005",
                           dest_addr_ton=1, short_message=b"hello later", data_coding=0,
                           registered_delivery=1)
            c.read_once()
            c.unbind()
        finally:
            c.disconnect()
        return got[0]

    message_id = await asyncio.to_thread(submit)

    async def final() -> None:
        while True:
            stored = await node.store.find(message_id)
            if stored is not None and stored.state is DeliveryState.FINAL:
                return
            await asyncio.sleep(0.05)
    await asyncio.wait_for(final(), 10)
    (waiting,) = await node.store.receipts_for("acme", time.time(), 10)
    assert waiting.message_id == message_id
    esme = await asyncio.to_thread(Esme, port)
    try:
        esme.thread.start()
        assert await asyncio.to_thread(esme.wait, lambda e: len(e.receipts) == 1, 10)
        assert parse_receipt(esme.receipts[0])["id"] == message_id
        assert parse_receipt(esme.receipts[0])["text"] == "hello later"
    finally:
        await asyncio.to_thread(esme.close)


async def test_hlr_lookup_returns_the_hlr_receipt_format(node: Node) -> None:
    """`__HLR__` goes to the provider as an HLR lookup; the receipt comes back in the SMS
    Center HLR format (id stat err imsi msc mcc mnc cn net rcn rnet, urlencoded)."""
    esme = await asyncio.to_thread(Esme, node.smpp.addresses["smpp"][1])
    try:
        esme.thread.start()

        def send() -> None:
            esme.client.send_message(source_addr="Shop", source_addr_ton=5,
                                     destination_addr="79001112233", dest_addr_ton=1,
                                     short_message=gsm_encode("__HLR__"), data_coding=0,
                                     registered_delivery=1)
        await asyncio.to_thread(send)
        assert await asyncio.to_thread(esme.wait, lambda e: len(e.receipts) == 1, 10)
        text = esme.receipts[0]
        message_id = esme.resps[0].message_id.decode()
        assert re.fullmatch(
            rf"id:{message_id} stat:DELIVRD err:000 imsi:\d* msc:\d* mcc:\d* mnc:\d* "
            r"cn:[^ ]* net:[^ ]* rcn:[^ ]* rnet:[^ ]*", text), text
    finally:
        await asyncio.to_thread(esme.close)


async def test_each_step_of_a_message_is_a_debug_line(node: Node) -> None:
    """At debug level a message leaves one line per step — accepted, sent (with its
    provider id), final, receipt delivered — each carrying its message_id, account and
    destination, so grep finds a message's life in the log."""
    with capture_logs() as logs:
        esme = await asyncio.to_thread(Esme, node.smpp.addresses["smpp"][1])
        try:
            esme.thread.start()
            await asyncio.to_thread(esme.client.send_message, source_addr="Shop",
                                    destination_addr="79001230000",
                                    short_message=b"trace me", registered_delivery=1)
            assert await asyncio.to_thread(esme.wait, lambda e: len(e.receipts) == 1, 10)
            message_id = esme.resps[0].message_id.decode()
            deadline = time.monotonic() + 5
            while not any(e["event"] == "receipt.delivered" for e in logs):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
        finally:
            await asyncio.to_thread(esme.close)
    steps = {e["event"]: e for e in logs if e.get("message_id") == message_id}
    assert {"message.accepted", "message.sent", "message.final",
            "receipt.delivered"} <= set(steps)
    for step in ("message.accepted", "message.sent", "message.final", "receipt.delivered"):
        assert (steps[step]["account"], steps[step]["destination"]) == ("acme",
                                                                         "79001230000")
        assert steps[step]["log_level"] == "debug"
    assert steps["message.sent"]["provider_id"]
    assert steps["message.final"]["stat"] == "DELIVRD"
