"""SMPP over TLS: protocol floor, client certificates, certificate reload (trustme
certificates on the loopback)."""

from __future__ import annotations

import asyncio
import ssl
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from smppbridge.node.node import Node
from smppbridge.smpp.constants import CommandStatus
from tests.security.conftest import Connect, StartNode
from tests.security.net import Client, node_toml

_S = CommandStatus


@dataclass
class Pki:
    ca: trustme.CA
    cert: Path
    key: Path
    ca_file: Path

    def issue(self, common_name: str) -> None:
        """Write a fresh server certificate (and key) over the configured files."""
        leaf = self.ca.issue_cert("localhost", "127.0.0.1", common_name=common_name)
        leaf.cert_chain_pems[0].write_to_path(str(self.cert))
        leaf.private_key_pem.write_to_path(str(self.key))


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = trustme.CA()
    pki = Pki(ca, tmp_path / "server.pem", tmp_path / "server.key", tmp_path / "ca.pem")
    ca.cert_pem.write_to_path(str(pki.ca_file))
    pki.issue("smppbridge-a")
    return pki


def _toml(pki: Pki, *, client_ca: bool = False) -> str:
    smpp: dict[str, object] = {"tls_listen": "127.0.0.1:0", "tls_cert": str(pki.cert),
                               "tls_key": str(pki.key)}
    if client_ca:
        smpp["tls_client_ca"] = str(pki.ca_file)
    return node_toml(smpp)


def _client_context(pki: Pki, version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    pki.ca.configure_trust(ctx)
    if version is not None:
        with warnings.catch_warnings():  # setting TLS 1.1 is deprecated, on purpose here
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ctx.maximum_version = version
        if version < ssl.TLSVersion.TLSv1_2:
            # OpenSSL 3 refuses to offer TLS 1.0/1.1 at the default security level; a
            # legacy client at level 0 does offer it, which is what we want to refuse.
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    return ctx


def _offered_version(ctx: ssl.SSLContext) -> bytes:
    """legacy_version of the ClientHello ``ctx`` sends (RFC 5246 §7.4.1.2)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    hello = outgoing.read()
    return hello[9:11]  # record header (5), handshake header (4), then client_version


async def _tls_connect(connect: Connect, node: Node, ctx: ssl.SSLContext) -> Client:
    return await connect(node.smpp.addresses["smpp_tls"], ssl=ctx,
                         server_hostname="localhost")


async def test_tls_1_1_client_is_refused(nodes: StartNode, connect: Connect, pki: Pki) -> None:
    """A client that offers at most TLS 1.1 (its ClientHello says 3.2) cannot complete
    a handshake: the listener's floor is TLS 1.2. The listener keeps serving."""
    node = await nodes(_toml(pki))
    legacy = _client_context(pki, ssl.TLSVersion.TLSv1_1)
    assert _offered_version(legacy) == b"\x03\x02"
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await _tls_connect(connect, node, legacy)
    modern = await _tls_connect(connect, node, _client_context(pki))
    assert (await modern.bind()).command_status == _S.ESME_ROK


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
async def test_tls_1_2_and_1_3_clients_bind(nodes: StartNode, connect: Connect, pki: Pki,
                                            version: ssl.TLSVersion) -> None:
    """TLS 1.2 and TLS 1.3 clients complete the handshake, bind and submit."""
    node = await nodes(_toml(pki))
    client = await _tls_connect(connect, node, _client_context(pki, version))
    tls = client.writer.get_extra_info("ssl_object")
    assert tls.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2",
                             ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
    assert (await client.bind()).command_status == _S.ESME_ROK
    assert (await client.submit()).command_status == _S.ESME_ROK


async def test_client_certificate_required_with_tls_client_ca(
        nodes: StartNode, connect: Connect, pki: Pki) -> None:
    """With tls_client_ca, a client without a certificate gets no SMPP session (the
    handshake fails or the server drops it before any PDU); a client with a
    certificate the CA signed binds."""
    node = await nodes(_toml(pki, client_ca=True))
    anonymous = _client_context(pki)

    async def attempt() -> None:
        # TLS 1.3 finishes the client's side of the handshake before the server checks
        # the (missing) certificate, so the refusal may surface at the first read.
        client = await _tls_connect(connect, node, anonymous)
        await client.bind()

    with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
        await attempt()

    with_cert = _client_context(pki)
    pki.ca.issue_cert("esme.example", common_name="esme").configure_cert(with_cert)
    client = await _tls_connect(connect, node, with_cert)
    assert (await client.bind()).command_status == _S.ESME_ROK


async def test_certificate_reload_serves_the_new_certificate(
        nodes: StartNode, connect: Connect, pki: Pki) -> None:
    """After the certificate files are replaced, reload_tls() (what SIGHUP runs) makes
    new connections see the new certificate; a session opened before keeps working."""
    node = await nodes(_toml(pki))
    ctx = _client_context(pki)
    before = await _tls_connect(connect, node, ctx)
    old = before.writer.get_extra_info("peercert")
    assert dict(x[0] for x in old["subject"])["commonName"] == "smppbridge-a"
    assert (await before.bind()).command_status == _S.ESME_ROK

    pki.issue("smppbridge-b")
    node.smpp.reload_tls()
    after = await _tls_connect(connect, node, ctx)
    new = after.writer.get_extra_info("peercert")
    assert dict(x[0] for x in new["subject"])["commonName"] == "smppbridge-b"
    assert new["serialNumber"] != old["serialNumber"]
    assert (await after.bind()).command_status == _S.ESME_ROK
    assert (await before.submit()).command_status == _S.ESME_ROK
