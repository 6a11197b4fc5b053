"""Network abuse over real sockets, each while a well-behaved ESME keeps working.

Every test starts a :class:`~smppbridge.node.node.Node` (content stage, memory store, the
in-process simulator provider), binds a :class:`~tests.security.net.Watchdog` that
submits in a loop, runs one abuse from another connection, and then asserts that the
watchdog got further answers during the abuse, each within 2 s (a generous bound for
loopback, not a timing race). The basic bad-input statuses are pinned in
``tests/integration``; these tests are about isolation and resource bounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import socket
from collections import Counter
from collections.abc import Iterator

import pytest

from smppbridge.server.connection import SmppConnection
from smppbridge.smpp import pdu as P
from smppbridge.smpp.codec import decode, encode
from smppbridge.smpp.constants import HEADER_LENGTH, CommandStatus
from tests.netutil import connect_small_buffers, shrink_buffers
from tests.security.conftest import Connect, StartNode, StartWatchdog
from tests.security.net import GOOD, ROUND_TRIP, Client, node_toml

_S = CommandStatus
#: Largest response we write for one request: a submit_sm_resp with a 64-octet
#: message_id (SMPP 3.4 Table 4-11: 65 octets with the NUL).
_MAX_RESPONSE = HEADER_LENGTH + 65


def _server_side(node_connections: set[SmppConnection], client: Client) -> SmppConnection:
    port = client.writer.get_extra_info("sockname")[1]
    (conn,) = [c for c in node_connections if c.peer[1] == port]
    return conn


def _header(length: int, command_id: int, seq: int = 1) -> bytes:
    return length.to_bytes(4, "big") + command_id.to_bytes(4, "big") + bytes(4) \
        + seq.to_bytes(4, "big")


# --- bytes that cannot be framed -------------------------------------------------------------


@pytest.mark.parametrize("data", [
    pytest.param(b"GET / HTTP/1.1\r\nHost: smsc\r\n\r\n", id="http-request"),
    pytest.param(bytes.fromhex("16030100a5010000a103031f") + bytes(150), id="tls-hello"),
    pytest.param(_header(0, 0x15), id="command_length-0"),
    pytest.param(_header(15, 0x15) + b"\0", id="command_length-15"),
    pytest.param(_header(0x7FFFFFFF, 0x04), id="command_length-huge"),
])
async def test_unframeable_input_closes_only_its_connection(
        nodes: StartNode, connect: Connect, watchdog: StartWatchdog, data: bytes) -> None:
    """Garbage (an HTTP request, a TLS ClientHello on the plain port) or an impossible
    command_length gets one generic_nack ESME_RINVCMDLEN and that connection is closed;
    the well-behaved client keeps getting answers."""
    node = await nodes(node_toml())
    address = node.smpp.addresses["smpp"]
    dog = await watchdog(address)
    bad = await connect(address)
    bad.send_raw(data)
    got = await bad.expect_closed()
    nack = decode(got)
    assert (type(nack), nack.command_status) == (P.GenericNack, _S.ESME_RINVCMDLEN)
    assert len(got) == HEADER_LENGTH
    await dog.more(3)
    await dog.check()


async def test_header_only_pdus_keep_the_session(
        nodes: StartNode, connect: Connect, watchdog: StartWatchdog) -> None:
    """command_length 16 (a header and nothing else) frames fine: an unknown command
    gets generic_nack ESME_RINVCMDID, a body-less submit_sm its own response with
    ESME_RINVCMDLEN, and the session goes on."""
    node = await nodes(node_toml())
    address = node.smpp.addresses["smpp"]
    dog = await watchdog(address)
    peer = await connect(address)
    assert (await peer.bind()).command_status == _S.ESME_ROK
    peer.send_raw(_header(16, 0x000000FF, seq=7) + _header(16, 0x04, seq=8))
    unknown, empty = await peer.read(), await peer.read()
    assert (type(unknown), unknown.sequence_number, unknown.command_status) == (
        P.GenericNack, 7, _S.ESME_RINVCMDID)
    assert (type(empty), empty.sequence_number, empty.command_status) == (
        P.SubmitSmResp, 8, _S.ESME_RINVCMDLEN)
    assert (await peer.submit()).command_status == _S.ESME_ROK
    await dog.more(3)
    await dog.check()


# --- slow peers ------------------------------------------------------------------------------


async def test_half_a_pdu_then_silence_is_closed_by_the_timers(
        nodes: StartNode, connect: Connect, watchdog: StartWatchdog) -> None:
    """Half a bind and then nothing: session_init_timeout closes the connection. Bound,
    then half a submit_sm and nothing: inactivity_timeout sends unbind, and the
    unanswered unbind closes it after response_timeout. The half PDUs are all the
    server holds for them meanwhile."""
    node = await nodes(node_toml({"session_init_timeout": 0.5, "inactivity_timeout": 1.0,
                                  "response_timeout": 0.5}))
    address = node.smpp.addresses["smpp"]
    dog = await watchdog(address)
    loop = asyncio.get_running_loop()

    # The session-init timer starts at the server's accept, which comes before connect()
    # returns here: take the reference time before connecting.
    started = loop.time()
    unbound = await connect(address)
    bind = encode(P.BindTransmitter(sequence_number=1, system_id="good", password="goodpw"))
    unbound.send_raw(bind[:len(bind) // 2])
    await unbound.writer.drain()

    bound = await connect(address)
    assert (await bound.bind()).command_status == _S.ESME_ROK
    half = encode(bound.submit_pdu())[:20]
    bound.send_raw(half)
    await bound.writer.drain()
    conn = _server_side(node.smpp.connections, bound)

    async def buffered() -> None:
        while conn.session is None or conn.session.buffered < len(half):
            await asyncio.sleep(0.01)

    await asyncio.wait_for(buffered(), ROUND_TRIP)
    assert conn.session is not None
    assert conn.session.buffered == len(half)

    assert await unbound.expect_closed(5 * ROUND_TRIP) == b""
    assert loop.time() - started >= 0.5
    got = await bound.expect_closed(5 * ROUND_TRIP)
    unbind = decode(got)
    assert isinstance(unbind, P.Unbind)
    await dog.more(3)
    await dog.check()


@pytest.fixture
def many_fds() -> Iterator[int]:
    """Raise the soft open-files limit (bounded by the hard one) for this test only."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
    if want < 3300:
        pytest.skip(f"open-files hard limit {hard} is too low")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    try:
        yield want
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_thousands_of_connections_over_the_per_ip_limit(
        nodes: StartNode, watchdog: StartWatchdog, many_fds: int) -> None:
    """1500 connections from one address with max_connections_per_ip 20: 19 are
    admitted (the watchdog holds the 20th), every other one is closed at once without
    a PDU, the server never holds more than the limit, and the admitted ones work."""
    node = await nodes(node_toml({"max_connections_per_ip": 20}))
    address = node.smpp.addresses["smpp"]
    dog = await watchdog(address)
    clients: list[Client] = []
    peak = 0

    async def probe(client: Client) -> bool:
        """True when the server answers, False when it closed the connection."""
        try:
            resp = await client.request(P.EnquireLink(sequence_number=1), 5 * ROUND_TRIP)
        except (ConnectionError, asyncio.IncompleteReadError):
            return False
        assert isinstance(resp, P.EnquireLinkResp)
        return True

    try:
        for _ in range(6):  # in batches, so that the listen backlog never overflows
            batch = await asyncio.gather(*(Client.connect(address) for _ in range(250)))
            clients += batch
            peak = max(peak, len(node.smpp.connections))
        answered = await asyncio.gather(*(probe(c) for c in clients))
        peak = max(peak, len(node.smpp.connections))
        assert Counter(answered) == {True: 19, False: 1481}
        assert peak <= 20
        await dog.more(3)
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    await dog.check()


# --- binds -----------------------------------------------------------------------------------


async def _connect_from(connect: Connect, address: tuple[str, int], host: str) -> Client:
    try:
        return await connect(address, local_addr=(host, 0))
    except OSError as exc:
        pytest.skip(f"cannot connect from {host}: {exc}")


async def test_bind_brute_force_locks_out_then_releases(
        nodes: StartNode, connect: Connect, watchdog: StartWatchdog) -> None:
    """Five wrong passwords lock the source IP and the system_id: even the right
    password then gets ESME_RBINDFAIL (0x0D), from that IP for any account and from any
    IP for that account, until bind_lockout has passed; then the right password binds.
    Binds already open (the watchdog's) are untouched."""
    lockout = 1.0
    toml = node_toml({"bind_max_failures": 5, "bind_failure_window": 60,
                      "bind_lockout": lockout},
                     accounts=[GOOD, {"system_id": "other", "password": "otherpw"}])
    node = await nodes(toml)
    address = node.smpp.addresses["smpp"]
    dog = await watchdog(address)
    loop = asyncio.get_running_loop()

    attacker = await connect(address)
    statuses = []
    for guess in ("a", "b", "c", "d"):
        statuses.append((await attacker.bind(password=guess)).command_status)
    last_failure_sent = loop.time()
    statuses.append((await attacker.bind(password="e")).command_status)
    assert statuses == [_S.ESME_RINVPASWD] * 5
    assert (await attacker.bind()).command_status == _S.ESME_RBINDFAIL

    same_ip = await connect(address)
    assert (await same_ip.bind("other", "otherpw")).command_status == _S.ESME_RBINDFAIL
    elsewhere = await _connect_from(connect, address, "127.0.0.2")
    assert (await elsewhere.bind()).command_status == _S.ESME_RBINDFAIL
    assert (await elsewhere.bind("other", "otherpw")).command_status == _S.ESME_ROK
    await dog.more(3)

    async def until_bound() -> float:
        while (await attacker.bind()).command_status != _S.ESME_ROK:
            await asyncio.sleep(0.05)  # bounded polling (the caller's deadline)
        return loop.time()

    bound_at = await asyncio.wait_for(until_bound(), lockout + 5 * ROUND_TRIP)
    assert bound_at >= last_failure_sent + lockout
    assert (await attacker.submit()).command_status == _S.ESME_ROK
    await dog.check()


# --- floods ----------------------------------------------------------------------------------


async def test_pdu_flood_above_the_window_is_throttled_and_the_session_kept(
        nodes: StartNode, connect: Connect, watchdog: StartWatchdog) -> None:
    """500 submit_sm written at once on a bind with window 5: each gets exactly one
    answer, ESME_ROK or ESME_RTHROTTLED (0x58), throttling does happen, and the same
    session then submits normally."""
    node = await nodes(node_toml(accounts=[GOOD, {"system_id": "flood", "password": "fl",
                                                   "window": 5}]))
    address = node.smpp.addresses["smpp"]
    dog = await watchdog(address)
    flood = await connect(address)
    assert (await flood.bind("flood", "fl")).command_status == _S.ESME_ROK

    pdus = [flood.submit_pdu(f"flood {i}".encode()) for i in range(500)]
    flood.send_raw(b"".join(encode(p) for p in pdus))
    answers = [await flood.read(5 * ROUND_TRIP) for _ in pdus]
    assert sorted(a.sequence_number for a in answers) == [p.sequence_number for p in pdus]
    statuses = Counter(a.command_status for a in answers)
    assert set(statuses) <= {_S.ESME_ROK, _S.ESME_RTHROTTLED}
    assert statuses[_S.ESME_RTHROTTLED] > 0
    await dog.more(3)
    assert (await flood.submit()).command_status == _S.ESME_ROK
    await dog.check()


async def test_client_that_never_reads_is_paused_with_bounded_memory(
        nodes: StartNode, connect: Connect, watchdog: StartWatchdog) -> None:
    """A client that writes submits and never reads its responses: the server stops
    reading it, and what the server holds for it — unsent responses, the half PDU,
    requests in flight — stays bounded by write_buffer_high plus one read plus one
    window of responses, however long the client keeps trying."""
    high, window = 16 * 1024, 10
    node = await nodes(node_toml({"write_buffer_high": high, "window": window}))
    address = node.smpp.addresses["smpp"]
    dog = await watchdog(address)
    # Small kernel buffers on both ends (see tests/netutil.py).
    sock = await connect_small_buffers(address, ROUND_TRIP)
    hog = await connect(None, sock=sock)
    assert (await hog.bind()).command_status == _S.ESME_ROK
    conn = _server_side(node.smpp.connections, hog)
    assert conn.transport is not None
    assert conn.session is not None
    server_sock = conn.transport.get_extra_info("socket")
    shrink_buffers(server_sock)
    one_read = server_sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    bound = high + one_read + window * _MAX_RESPONSE

    held: list[int] = []

    def sample() -> None:
        assert conn.transport is not None
        assert conn.session is not None
        held.append(conn.transport.get_write_buffer_size())
        assert conn.session.pending_requests <= window
        assert conn.session.buffered < node.config.smpp.max_command_length

    async def write_until_blocked() -> None:
        while True:
            hog.send_raw(b"".join(encode(hog.submit_pdu()) for _ in range(100)))
            sample()
            try:
                # Writes that cannot drain for half a second: the server is not reading.
                await asyncio.wait_for(hog.writer.drain(), 0.5)
            except TimeoutError:
                return

    await asyncio.wait_for(write_until_blocked(), 30)
    assert not conn.transport.is_reading()
    await dog.more(3)  # other sessions are served meanwhile
    for _ in range(20):
        sample()
        await asyncio.sleep(0.01)  # spread the samples over a little time
    assert max(held) <= bound, (max(held), bound)
    assert not conn.transport.is_reading()
    await dog.check()
    # Let the server see the hog go: it does not read, so abort rather than wait.
    conn.abort()
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, TimeoutError):
        await hog.expect_closed()

