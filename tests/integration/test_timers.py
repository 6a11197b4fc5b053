"""The session timers (SMPP 3.4 §7.2) with small values, observed on the socket: every
wait is a read with a timeout, never a sleep."""

from __future__ import annotations

import asyncio

import pytest

from smppbridge.smpp import pdu as P
from smppbridge.smpp.constants import CommandStatus

from .conftest import OpenPeer, Peer, StartNode

_S = CommandStatus
#: Bound on how late a timer may fire on a loaded CI machine.
LATE = 2.0
#: Timers never fire early; allow for clock granularity between the two sides.
EARLY = 0.05


async def bound(node_address: tuple[str, int], open_peer: OpenPeer) -> Peer:
    """A bound peer that has sent one request after its bind.

    The request matters: the server arms its bound-state timers only when it next
    handles input after the bind (see test_silent_esme_probed_right_after_bind).
    """
    peer = await open_peer(node_address)
    assert (await peer.bind()).command_status == _S.ESME_ROK
    assert isinstance(await peer.request(P.EnquireLink(sequence_number=peer.next_seq())),
                      P.EnquireLinkResp)
    return peer


async def test_session_init_timeout_closes_unbound_connection(start_node: StartNode,
                                                              open_peer: OpenPeer) -> None:
    """A connection that does not bind within session_init_timeout is closed without a
    PDU, not before the timeout; enquire_link does not count as a bind."""
    node = await start_node(smpp={"session_init_timeout": 0.3})
    loop = asyncio.get_running_loop()
    peer = await open_peer(node.smpp.addresses["smpp"])
    opened = loop.time()
    assert isinstance(await peer.request(P.EnquireLink(sequence_number=1)), P.EnquireLinkResp)
    assert await peer.expect_closed(0.3 + LATE) == b""
    assert loop.time() - opened >= 0.3 - EARLY


async def test_bound_session_outlives_session_init_timeout(start_node: StartNode,
                                                           open_peer: OpenPeer) -> None:
    """session_init_timeout stops applying once bound: the session still answers after
    it would have fired."""
    node = await start_node(smpp={"session_init_timeout": 0.2, "enquire_link_interval": 0.6})
    peer = await bound(node.smpp.addresses["smpp"], open_peer)
    # The first thing the server sends is its enquire_link probe at 0.6 s, proving the
    # connection was kept well past the 0.2 s session_init_timeout.
    probe = await peer.read(0.6 + LATE)
    assert isinstance(probe, P.EnquireLink)
    peer.send(P.EnquireLinkResp(sequence_number=probe.sequence_number))
    assert (await peer.submit()).command_status == _S.ESME_ROK


async def test_server_probes_silent_esme_with_enquire_link(start_node: StartNode,
                                                           open_peer: OpenPeer) -> None:
    """After enquire_link_interval of silence the server sends enquire_link; answering
    keeps the session up, and the probe repeats after the next silence."""
    node = await start_node(smpp={"enquire_link_interval": 0.2})
    loop = asyncio.get_running_loop()
    peer = await bound(node.smpp.addresses["smpp"], open_peer)
    for _ in range(3):
        quiet_since = loop.time()
        probe = await peer.read(0.2 + LATE)
        assert isinstance(probe, P.EnquireLink)
        assert loop.time() - quiet_since >= 0.2 - EARLY
        peer.send(P.EnquireLinkResp(sequence_number=probe.sequence_number))
    assert (await peer.submit()).command_status == _S.ESME_ROK


@pytest.mark.parametrize("session_init_timeout", [10.0, 0.0])
async def test_silent_esme_probed_right_after_bind(start_node: StartNode, open_peer: OpenPeer,
                                                   session_init_timeout: float) -> None:
    """An ESME that binds and then says nothing is probed after enquire_link_interval,
    whatever session_init_timeout is (it stops applying at the bind)."""
    node = await start_node(smpp={"enquire_link_interval": 0.2,
                                  "session_init_timeout": session_init_timeout})
    peer = await open_peer(node.smpp.addresses["smpp"])
    assert (await peer.bind()).command_status == _S.ESME_ROK
    assert isinstance(await peer.read(0.2 + 0.8), P.EnquireLink)


async def test_unanswered_enquire_link_closes_session(start_node: StartNode,
                                                      open_peer: OpenPeer) -> None:
    """An enquire_link the ESME leaves unanswered for response_timeout closes the
    connection."""
    node = await start_node(smpp={"enquire_link_interval": 0.2, "response_timeout": 0.3})
    peer = await bound(node.smpp.addresses["smpp"], open_peer)
    assert isinstance(await peer.read(0.2 + LATE), P.EnquireLink)
    assert await peer.expect_closed(0.3 + LATE) == b""


async def test_inactivity_timeout_sends_unbind(start_node: StartNode,
                                               open_peer: OpenPeer) -> None:
    """After inactivity_timeout without requests the server sends unbind; answering it
    with unbind_resp ends the session."""
    node = await start_node(smpp={"inactivity_timeout": 0.3, "enquire_link_interval": 0})
    loop = asyncio.get_running_loop()
    peer = await bound(node.smpp.addresses["smpp"], open_peer)
    assert (await peer.submit()).command_status == _S.ESME_ROK
    active = loop.time()
    unbind = await peer.read(0.3 + LATE)
    assert isinstance(unbind, P.Unbind)
    assert loop.time() - active >= 0.3 - EARLY
    peer.send(P.UnbindResp(sequence_number=unbind.sequence_number))
    assert await peer.expect_closed() == b""


async def test_probe_answers_do_not_count_as_activity(start_node: StartNode,
                                                      open_peer: OpenPeer) -> None:
    """An ESME that only answers enquire_link probes is still unbound after
    inactivity_timeout."""
    node = await start_node(smpp={"inactivity_timeout": 0.5, "enquire_link_interval": 0.1})
    peer = await bound(node.smpp.addresses["smpp"], open_peer)

    async def answer_probes_until_unbind() -> tuple[int, P.Pdu]:
        probes = 0
        while True:
            pdu = await peer.read(LATE)
            if not isinstance(pdu, P.EnquireLink):
                return probes, pdu
            probes += 1
            peer.send(P.EnquireLinkResp(sequence_number=pdu.sequence_number))

    probes, pdu = await asyncio.wait_for(answer_probes_until_unbind(), 0.5 + 2 * LATE)
    assert isinstance(pdu, P.Unbind)
    assert probes >= 2
    peer.send(P.UnbindResp(sequence_number=pdu.sequence_number))
    assert await peer.expect_closed() == b""


async def test_requests_reset_inactivity(start_node: StartNode, open_peer: OpenPeer) -> None:
    """Each request from the ESME restarts the inactivity timer: a session busy for
    longer than inactivity_timeout is not unbound while it keeps sending."""
    node = await start_node(smpp={"inactivity_timeout": 0.4, "enquire_link_interval": 0})
    loop = asyncio.get_running_loop()
    peer = await bound(node.smpp.addresses["smpp"], open_peer)
    started = loop.time()
    # Send a request, then check the link stays quiet (no unbind) for a while; repeat
    # until the session has lived past two inactivity timeouts.
    while loop.time() - started < 0.8:
        resp = await peer.request(P.EnquireLink(sequence_number=peer.next_seq()))
        assert isinstance(resp, P.EnquireLinkResp), resp
        await assert_quiet(peer, 0.1)
    assert (await peer.submit()).command_status == _S.ESME_ROK


async def assert_quiet(peer: Peer, seconds: float) -> None:
    """Nothing arrives from the server for ``seconds`` (a read that must time out)."""
    try:
        data = await asyncio.wait_for(peer.reader.read(1), seconds)
    except TimeoutError:
        return
    raise AssertionError(f"server sent {data!r} on a link that should be quiet")
