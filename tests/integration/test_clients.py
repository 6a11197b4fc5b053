"""Real ESME libraries against a running node: smpplib (sync, in a thread) and aiosmpplib
(asyncio), in each bind mode, over plain TCP and TLS."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import pytest
import smpplib.client
import smpplib.smpp
import trustme
from aiosmpplib import (
    ESME,
    AbstractHook,
    BindMode,
    BindReceiverResp,
    BindTransceiverResp,
    BindTransmitterResp,
    EnquireLinkResp,
    PhoneNumber,
    SmppCommandStatus,
    SmppMessage,
    SubmitSm,
    SubmitSmResp,
    UnbindResp,
)

from smppbridge.smpp import pdu as P
from smppbridge.smpp.constants import CommandStatus
from smppbridge.testing import MemoryHandler

from .conftest import ROUND_TRIP, OpenPeer, StartNode, build_config

# --- smpplib -----------------------------------------------------------------------------


def smpplib_session(address: tuple[str, int], mode: str,
                    ssl_context: ssl.SSLContext | None = None) -> list[str]:
    """Bind in ``mode``, enquire_link, submit one text unless receiver, unbind.

    Runs in a worker thread (smpplib is blocking); returns the message ids received.
    """
    client = smpplib.client.Client(address[0], address[1], timeout=5,
                                   allow_unknown_opt_params=True, ssl_context=ssl_context)
    ids: list[str] = []
    try:
        client.connect()
        bind_resp = getattr(client, f"bind_{mode}")(system_id="demo", password="demo")
        assert bind_resp.status == CommandStatus.ESME_ROK
        client.send_pdu(smpplib.smpp.make_pdu("enquire_link", client=client))
        link_resp = client.read_pdu()
        assert (link_resp.command, link_resp.status) == ("enquire_link_resp", 0)
        if mode != "receiver":
            client.send_message(source_addr_ton=1, source_addr_npi=1, source_addr="12345",
                                dest_addr_ton=1, dest_addr_npi=1,
                                destination_addr="79000000001", short_message=b"hello")
            resp = client.read_pdu()
            assert (resp.command, resp.status) == ("submit_sm_resp", 0)
            ids.append(resp.message_id.decode("ascii"))
        unbind_resp = client.unbind()
        assert (unbind_resp.command, unbind_resp.status) == ("unbind_resp", 0)
    finally:
        client.disconnect()
    return ids


@pytest.mark.parametrize("mode", ["transmitter", "receiver", "transceiver"])
async def test_smpplib_bind_submit_enquire_unbind(start_node: StartNode, mode: str) -> None:
    """smpplib binds in every mode, gets enquire_link_resp, submits (TX/TRX) and the
    server stores exactly what was accepted, then unbinds cleanly."""
    handler = MemoryHandler()
    node = await start_node(handler=handler)
    ids = await asyncio.wait_for(
        asyncio.to_thread(smpplib_session, node.smpp.addresses["smpp"], mode), 10)
    assert len(ids) == (0 if mode == "receiver" else 1)
    for message_id in ids:
        assert len(message_id) == 15
        ctx, pdu = handler.messages[message_id]
        assert ctx.system_id == "demo"
        assert pdu.short_message == b"hello"
        assert pdu.destination_addr == "79000000001"


# --- aiosmpplib --------------------------------------------------------------------------


class RecordingHook(AbstractHook):
    """Queues every message aiosmpplib receives, so a test can await them in order."""

    def __init__(self) -> None:
        self.received_messages: asyncio.Queue[SmppMessage | None] = asyncio.Queue()
        self.errors: list[Exception] = []

    async def sending(self, smpp_message: SmppMessage, pdu: bytes, client_id: str) -> None:
        return None

    async def received(self, smpp_message: SmppMessage | None, pdu: bytes,
                       client_id: str) -> None:
        await self.received_messages.put(smpp_message)

    async def send_error(self, smpp_message: SmppMessage, error: Exception,
                         client_id: str) -> None:
        self.errors.append(error)

    async def next(self, kind: type[Any]) -> Any:
        """The next received message, which must be a ``kind``."""
        message = await asyncio.wait_for(self.received_messages.get(), ROUND_TRIP)
        assert isinstance(message, kind), message
        return message


@pytest.mark.parametrize(("mode", "resp_cls"), [
    (BindMode.TRANSMITTER, BindTransmitterResp),
    (BindMode.RECEIVER, BindReceiverResp),
    (BindMode.TRANSCEIVER, BindTransceiverResp),
])
async def test_aiosmpplib_bind_submit_enquire_unbind(start_node: StartNode, mode: BindMode,
                                                     resp_cls: type[Any]) -> None:
    """aiosmpplib binds in every mode and sees sc_interface_version 0x34, gets its
    own enquire_link answered, submits (TX/TRX) and gets a message id, and its unbind
    is answered with unbind_resp."""
    handler = MemoryHandler()
    node = await start_node(handler=handler)
    host, port = node.smpp.addresses["smpp"]
    hook = RecordingHook()
    # A short enquire_link_interval makes the client probe the link on its own.
    esme = ESME(host, port, "demo", "demo", bind_mode=mode, hook=hook,
                enquire_link_interval=0.1, socket_timeout=ROUND_TRIP, log_level="ERROR")
    runner = asyncio.create_task(esme.start())
    writer = None
    try:
        bind_resp = await hook.next(resp_cls)
        assert type(bind_resp) is resp_cls
        assert bind_resp.command_status == SmppCommandStatus.ESME_ROK
        assert bind_resp.sc_interface_version == 0x34
        # aiosmpplib half-closes on stop and never closes its StreamWriter (it would
        # leak as a ResourceWarning); keep it to close it ourselves.
        writer = esme._writer
        if mode is not BindMode.RECEIVER:
            await esme.broker.enqueue(SubmitSm(
                short_message="hello", source=PhoneNumber("12345"),
                destination=PhoneNumber("79000000001"), log_id="m1"))
            resp = await hook.next(SubmitSmResp)
            assert resp.command_status == SmppCommandStatus.ESME_ROK
            assert resp.log_id == "m1"
            _, stored = handler.messages[resp.message_id]
            assert stored.short_message == b"hello"
        await hook.next(EnquireLinkResp)
        await asyncio.wait_for(esme.stop(), ROUND_TRIP)
        # Link probes may still be in flight; the unbind_resp must follow.
        while not isinstance(await hook.next(SmppMessage), UnbindResp):
            pass
        await asyncio.wait_for(runner, ROUND_TRIP)
        assert hook.errors == []
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        if writer is not None:
            writer.close()
            await asyncio.gather(writer.wait_closed(), return_exceptions=True)


# --- TLS ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _tls_files(ca: trustme.CA, tmp_path: Path) -> dict[str, str]:
    server = ca.issue_cert("127.0.0.1", "localhost")
    cert, key, client_ca = tmp_path / "server.pem", tmp_path / "server.key", tmp_path / "ca.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    server.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(client_ca))
    return {"cert": str(cert), "key": str(key), "ca": str(client_ca)}


def _client_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(ctx)
    return ctx


async def test_tls_bind_with_verified_certificate(start_node: StartNode, open_peer: OpenPeer,
                                                  ca: trustme.CA, tmp_path: Path) -> None:
    """The TLS listener serves SMPP: a client that verifies the certificate and the
    host name binds and submits; smpplib binds over TLS too."""
    files = _tls_files(ca, tmp_path)
    node = await start_node(smpp={"tls_listen": "127.0.0.1:0", "tls_cert": files["cert"],
                                  "tls_key": files["key"]})
    address = node.smpp.addresses["smpp_tls"]
    assert address != node.smpp.addresses["smpp"]

    peer = await open_peer(address, ssl=_client_context(ca), server_hostname="localhost")
    resp = await peer.bind()
    assert resp.command_status == CommandStatus.ESME_ROK
    submit_resp = await peer.submit()
    assert isinstance(submit_resp, P.SubmitSmResp)
    assert submit_resp.command_status == CommandStatus.ESME_ROK
    assert peer.writer.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")

    # smpplib wraps its socket without server_hostname, so it can only check the chain.
    smpplib_ctx = _client_context(ca)
    smpplib_ctx.check_hostname = False
    ids = await asyncio.wait_for(
        asyncio.to_thread(smpplib_session, address, "transceiver", smpplib_ctx), 10)
    assert len(ids) == 1


async def test_tls_client_certificate_required(start_node: StartNode, open_peer: OpenPeer,
                                               ca: trustme.CA, tmp_path: Path) -> None:
    """With tls_client_ca set, a client without a certificate gets no SMPP session,
    and one with a certificate signed by that CA binds."""
    files = _tls_files(ca, tmp_path)
    config = build_config(smpp={"tls_listen": "127.0.0.1:0", "tls_cert": files["cert"],
                                "tls_key": files["key"], "tls_client_ca": files["ca"]})
    node = await start_node(config=config)
    address = node.smpp.addresses["smpp_tls"]

    anonymous = await _connect_or_refused(open_peer, address, _client_context(ca))
    if anonymous is not None:  # TLS 1.3: the refusal arrives after the handshake
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
            await anonymous.bind()

    ctx = _client_context(ca)
    ca.issue_cert("esme.example").configure_cert(ctx)
    peer = await open_peer(address, ssl=ctx, server_hostname="localhost")
    resp = await peer.bind()
    assert resp.command_status == CommandStatus.ESME_ROK


async def _connect_or_refused(open_peer: OpenPeer, address: tuple[str, int],
                              ctx: ssl.SSLContext) -> Any:
    try:
        return await open_peer(address, ssl=ctx, server_hostname="localhost")
    except (ssl.SSLError, ConnectionError):
        return None
