"""Flow control and access limits over real sockets: the window, account throughput,
max_binds, allowed_networks, hashed passwords, per-IP connections and back-pressure."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from typing import Any

import pytest

from smppbridge.core.passwords import hash_password
from smppbridge.server.connection import SmppConnection
from smppbridge.smpp import pdu as P
from smppbridge.smpp.codec import encode
from smppbridge.smpp.constants import HEADER_LENGTH, CommandStatus
from tests.netutil import connect_small_buffers, shrink_buffers

from .conftest import (
    DEMO_ACCOUNT,
    ROUND_TRIP,
    GatedHandler,
    OpenPeer,
    Peer,
    StartNode,
    submit_sm,
)

_S = CommandStatus


async def bound_peer(address: tuple[str, int], open_peer: OpenPeer, **bind: Any) -> Peer:
    peer = await open_peer(address)
    resp = await peer.bind(**bind)
    assert resp.command_status == _S.ESME_ROK
    return peer


@pytest.mark.parametrize(("smpp", "account"), [
    ({"window": 3}, DEMO_ACCOUNT),
    ({"window": 50}, {**DEMO_ACCOUNT, "window": 3}),
], ids=["smpp-window", "account-window"])
async def test_window_full_is_throttled_and_session_survives(
        start_node: StartNode, open_peer: OpenPeer, smpp: dict[str, Any],
        account: dict[str, Any]) -> None:
    """With 3 submits held in flight, a 4th gets ESME_RTHROTTLED (0x58) at once; the
    held ones are answered ESME_ROK when released and the session keeps working. The
    account's window overrides [smpp] window."""
    handler = GatedHandler()
    node = await start_node(smpp=smpp, accounts=[account], handler=handler)
    peer = await bound_peer(node.smpp.addresses["smpp"], open_peer)

    held = [peer.next_seq() for _ in range(3)]
    for seq in held:
        peer.send(submit_sm(seq))
    await handler.wait_in_flight(3)
    extra = peer.next_seq()
    resp = await peer.request(submit_sm(extra))
    assert (resp.command_id, resp.command_status, resp.sequence_number) == (
        P.SubmitSmResp.command_id, _S.ESME_RTHROTTLED, extra)
    assert len(peer.last_frame) == HEADER_LENGTH

    handler.gate.set()
    answers = [await peer.read() for _ in held]
    assert sorted(a.sequence_number for a in answers) == held
    assert all(a.command_status == _S.ESME_ROK for a in answers)
    assert handler.peak == 3
    resp = await peer.submit()
    assert resp.command_status == _S.ESME_ROK


async def test_account_throughput_throttles_back_to_back_submits(
        start_node: StartNode, open_peer: OpenPeer) -> None:
    """An account with throughput 5/s and burst 5 gets its burst through and
    ESME_RTHROTTLED for most of 20 back-to-back submits; every one is answered once."""
    account = {**DEMO_ACCOUNT, "throughput": 5, "burst": 5}
    node = await start_node(accounts=[account])
    peer = await bound_peer(node.smpp.addresses["smpp"], open_peer)
    seqs = [peer.next_seq() for _ in range(20)]
    peer.send_raw(b"".join(encode(submit_sm(seq)) for seq in seqs))
    answers = [await peer.read() for _ in seqs]
    assert sorted(a.sequence_number for a in answers) == seqs
    statuses = Counter(a.command_status for a in answers)
    assert set(statuses) == {_S.ESME_ROK, _S.ESME_RTHROTTLED}
    assert statuses[_S.ESME_ROK] >= 5
    # 20 submits go out in one write; at 5/s at most a token or two refills meanwhile.
    assert statuses[_S.ESME_RTHROTTLED] >= 10


async def test_throughput_is_shared_by_all_binds_of_an_account(
        start_node: StartNode, open_peer: OpenPeer) -> None:
    """The token bucket belongs to the account: a second bind does not get a fresh
    burst."""
    account = {**DEMO_ACCOUNT, "throughput": 1, "burst": 3}
    node = await start_node(accounts=[account])
    address = node.smpp.addresses["smpp"]
    first, second = [await bound_peer(address, open_peer) for _ in range(2)]
    statuses = [(await peer.submit()).command_status
                for peer in (first, second, first, second, first, second)]
    assert statuses.count(_S.ESME_ROK) <= 4
    assert statuses.count(_S.ESME_RTHROTTLED) >= 2


async def test_max_binds(start_node: StartNode, open_peer: OpenPeer) -> None:
    """With max_binds 2 a third bind of the account gets ESME_RBINDFAIL (0x0D); once
    one bind unbinds, a new bind succeeds."""
    node = await start_node(accounts=[{**DEMO_ACCOUNT, "max_binds": 2}])
    address = node.smpp.addresses["smpp"]
    first = await bound_peer(address, open_peer, cls=P.BindTransmitter)
    await bound_peer(address, open_peer, cls=P.BindReceiver)
    third = await open_peer(address)
    assert (await third.bind()).command_status == _S.ESME_RBINDFAIL

    resp = await first.request(P.Unbind(sequence_number=first.next_seq()))
    assert isinstance(resp, P.UnbindResp)
    await first.expect_closed()
    assert (await third.bind()).command_status == _S.ESME_ROK


@pytest.mark.parametrize(("networks", "status"), [
    (["10.0.0.0/8"], _S.ESME_RBINDFAIL),
    (["10.0.0.0/8", "127.0.0.0/8"], _S.ESME_ROK),
    (["::1/128", "127.0.0.1/32"], _S.ESME_ROK),
])
async def test_allowed_networks(start_node: StartNode, open_peer: OpenPeer,
                                networks: list[str], status: CommandStatus) -> None:
    """A bind from 127.0.0.1 is refused ESME_RBINDFAIL unless allowed_networks covers it."""
    node = await start_node(accounts=[{**DEMO_ACCOUNT, "allowed_networks": networks}])
    peer = await open_peer(node.smpp.addresses["smpp"])
    assert (await peer.bind()).command_status == status


async def test_allowed_networks_checked_before_password(start_node: StartNode,
                                                        open_peer: OpenPeer) -> None:
    """A refused network gets ESME_RBINDFAIL whatever the password, so it learns nothing
    about the password."""
    node = await start_node(accounts=[{**DEMO_ACCOUNT, "allowed_networks": ["10.0.0.0/8"]}])
    peer = await open_peer(node.smpp.addresses["smpp"])
    assert (await peer.bind(password="wrong")).command_status == _S.ESME_RBINDFAIL


async def test_hashed_password_bind(start_node: StartNode, open_peer: OpenPeer) -> None:
    """An account with an scrypt hash accepts the right password (twice: the second
    check comes from the cache) and refuses a wrong one with ESME_RINVPASWD."""
    hashed = hash_password("s3cret", log2_n=10)
    node = await start_node(accounts=[{"system_id": "hashed", "password": hashed}])
    address = node.smpp.addresses["smpp"]
    for _ in range(2):
        peer = await open_peer(address)
        assert (await peer.bind(system_id="hashed", password="s3cret")).command_status == \
            _S.ESME_ROK
    wrong = await open_peer(address)
    assert (await wrong.bind(system_id="hashed", password="s3cre")).command_status == \
        _S.ESME_RINVPASWD
    # The hash itself is not a password.
    assert (await wrong.bind(system_id="hashed", password=hashed[:8])).command_status == \
        _S.ESME_RINVPASWD


async def test_second_bind_while_first_is_decided(start_node: StartNode,
                                                  open_peer: OpenPeer) -> None:
    """A bind sent while the first bind is still being checked (scrypt runs off the
    loop) gets ESME_RALYBND at once; the first bind then succeeds."""
    hashed = hash_password("demo", log2_n=12)
    node = await start_node(accounts=[{"system_id": "demo", "password": hashed}])
    peer = await open_peer(node.smpp.addresses["smpp"])
    peer.send(P.BindTransmitter(sequence_number=1, system_id="demo", password="demo"))
    peer.send(P.BindReceiver(sequence_number=2, system_id="demo", password="demo"))
    first, second = await peer.read(), await peer.read()
    assert isinstance(first, P.BindReceiverResp)
    assert (first.sequence_number, first.command_status) == (2, _S.ESME_RALYBND)
    assert isinstance(second, P.BindTransmitterResp)
    assert (second.sequence_number, second.command_status) == (1, _S.ESME_ROK)
    assert (await peer.submit()).command_status == _S.ESME_ROK


async def test_max_connections_per_ip(start_node: StartNode, open_peer: OpenPeer) -> None:
    """Over max_connections_per_ip a new connection is dropped without a PDU; the
    admitted ones work, and the slot frees when one of them ends."""
    node = await start_node(smpp={"max_connections_per_ip": 2})
    address = node.smpp.addresses["smpp"]
    first = await bound_peer(address, open_peer)
    await bound_peer(address, open_peer)
    refused = await open_peer(address)
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await refused.bind()

    # The server closes after unbind_resp; by the time the EOF arrives here it has
    # already released the slot (connection_lost runs before the socket closes).
    assert isinstance(await first.request(P.Unbind(sequence_number=99)), P.UnbindResp)
    await first.expect_closed()
    await bound_peer(address, open_peer)


def _server_side(node_connections: set[SmppConnection], client: socket.socket
                 ) -> SmppConnection:
    """The server's connection object for the client socket ``client``."""
    port = client.getsockname()[1]
    (conn,) = [c for c in node_connections if c.peer[1] == port]
    return conn


async def test_back_pressure_pauses_a_peer_that_does_not_read(
        start_node: StartNode, open_peer: OpenPeer) -> None:
    """A peer that writes submits and never reads its responses is paused: the server
    stops reading it (its writes block), the handler never holds more than the window,
    other sessions keep working meanwhile, and when the peer reads again every request
    gets exactly one response."""
    handler = GatedHandler()
    handler.gate.set()  # answer at once; only the peer's not-reading stops the flow
    node = await start_node(smpp={"write_buffer_high": 4096, "window": 10}, handler=handler)
    address = node.smpp.addresses["smpp"]
    # Small kernel buffers on both ends (see tests/netutil.py).
    sock = await connect_small_buffers(address, ROUND_TRIP)
    slow = await open_peer(sock=sock)
    assert (await slow.bind()).command_status == _S.ESME_ROK
    conn = _server_side(node.smpp.connections, sock)
    server_sock = conn.transport.get_extra_info("socket")
    shrink_buffers(server_sock)

    sent: list[int] = []

    async def write_until_blocked() -> None:
        while True:
            seqs = [slow.next_seq() for _ in range(100)]
            slow.send_raw(b"".join(encode(submit_sm(seq)) for seq in seqs))
            sent.extend(seqs)
            try:
                # Writes that cannot drain for half a second: the server is not reading.
                await asyncio.wait_for(slow.writer.drain(), 0.5)
            except TimeoutError:
                return

    await asyncio.wait_for(write_until_blocked(), 20)
    assert not conn.transport.is_reading()
    assert handler.peak <= 10

    other = await bound_peer(address, open_peer)
    for _ in range(3):
        resp = await asyncio.wait_for(other.submit(), ROUND_TRIP)
        assert resp.command_status == _S.ESME_ROK
    assert not conn.transport.is_reading()

    # Read again with roomy buffers: 4 KiB windows would crawl at delayed-ACK pace.
    for end in (sock, server_sock):
        end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)

    async def read_all() -> list[P.Pdu]:
        return [await slow.read() for _ in sent]

    answers = await asyncio.wait_for(read_all(), 20)
    assert sorted(a.sequence_number for a in answers) == sent
    assert {a.command_status for a in answers} <= {_S.ESME_ROK, _S.ESME_RTHROTTLED}
    assert handler.peak <= 10
    assert conn.transport.is_reading()
    resp = await slow.submit()
    assert resp.command_status == _S.ESME_ROK

