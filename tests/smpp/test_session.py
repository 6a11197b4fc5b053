"""The SMSC session state machine, driven in memory with an injected clock."""

from __future__ import annotations

import pytest

from smppbridge.smpp import pdu as P
from smppbridge.smpp.codec import FrameReader, decode, encode
from smppbridge.smpp.constants import CommandStatus, Tag
from smppbridge.smpp.errors import LocalProtocolError
from smppbridge.smpp.session import (
    NEED_DATA,
    Closed,
    ResponseTimeout,
    SessionConfig,
    SmscSession,
    State,
)

S = CommandStatus


class Esme:
    """The ESME end of an in-memory session: sends PDUs, reads what the SMSC wrote."""

    def __init__(self, config: SessionConfig | None = None, now: float = 0.0) -> None:
        self.session = SmscSession(config or SessionConfig(), now)
        self.reader = FrameReader()
        self.seq = 0

    def send(self, pdu: P.Pdu, now: float = 0.0) -> P.Pdu:
        if not pdu.sequence_number:
            self.seq += 1
            pdu = pdu.with_(sequence_number=self.seq)
        self.session.receive_data(encode(pdu), now)
        return pdu

    def send_raw(self, data: bytes, now: float = 0.0) -> None:
        self.session.receive_data(data, now)

    def received(self) -> list[P.Pdu]:
        self.reader.feed(self.session.data_to_send())
        out = []
        while (frame := self.reader.next_frame()) is not None:
            out.append(decode(frame))
        return out

    def events(self) -> list[object]:
        out = []
        while (e := self.session.next_event()) is not NEED_DATA:
            out.append(e)
        return out

    def bind(self, cls: type[P.Pdu] = P.BindTransceiver, version: int = 0x34) -> P.Pdu:
        req = self.send(cls(system_id="acme", password="pw",  # type: ignore[call-arg]
                            interface_version=version))
        (event,) = self.events()
        assert event == req
        resp_cls = P.RESPONSE_CLASS[cls]
        self.session.send(resp_cls(sequence_number=req.sequence_number,  # type: ignore[call-arg]
                                   system_id="smppbridge"), 0.0)
        (resp,) = self.received()
        return resp


def test_bind_moves_to_bound_state_with_sc_interface_version() -> None:
    """A 3.4 bind answered ESME_ROK binds the session and carries sc_interface_version."""
    esme = Esme()
    resp = esme.bind(P.BindTransmitter)
    assert esme.session.state is State.BOUND_TX
    assert resp.command_status == S.ESME_ROK
    assert resp.tlv(Tag.SC_INTERFACE_VERSION) == b"\x34"


@pytest.mark.parametrize(("cls", "state"), [(P.BindReceiver, State.BOUND_RX),
                                            (P.BindTransceiver, State.BOUND_TRX)])
def test_each_bind_type_reaches_its_state(cls: type[P.Pdu], state: State) -> None:
    """bind_receiver → BOUND_RX, bind_transceiver → BOUND_TRX."""
    esme = Esme()
    esme.bind(cls)
    assert esme.session.state is state


def test_refused_bind_stays_open_and_may_retry() -> None:
    """A bind answered with an error leaves the session OPEN; a new bind is accepted."""
    esme = Esme()
    req = esme.send(P.BindTransmitter(system_id="x", password="bad"))
    esme.events()
    esme.session.send(P.BindTransmitterResp(sequence_number=req.sequence_number,
                                            command_status=S.ESME_RINVPASWD), 0.0)
    (resp,) = esme.received()
    assert resp.command_status == S.ESME_RINVPASWD
    assert esme.session.state is State.OPEN
    esme.bind(P.BindTransmitter)
    assert esme.session.state is State.BOUND_TX


def test_v33_bind_gets_no_tlvs_and_short_message_ids() -> None:
    """A v3.3 ESME gets no TLVs (even sc_interface_version) and ids of at most 8 chars."""
    esme = Esme()
    resp = esme.bind(P.BindTransceiver, version=0x33)
    assert resp.tlvs == ()
    sub = esme.send(P.SubmitSm(destination_addr="1", short_message=b"x"))
    esme.events()
    with pytest.raises(LocalProtocolError):
        esme.session.send(P.SubmitSmResp(sequence_number=sub.sequence_number,
                                         message_id="123456789"), 0.0)
    esme.session.send(P.SubmitSmResp(sequence_number=sub.sequence_number,
                                     message_id="12345678"), 0.0)
    assert esme.received()[0].message_id == "12345678"
    esme.session.send(P.DeliverSm(esm_class=4, tlvs=(P.Tlv(Tag.MESSAGE_STATE, b"\x02"),)), 0.0)
    (deliver,) = esme.received()
    assert deliver.tlvs == ()


@pytest.mark.parametrize("state_bind", [None, P.BindTransmitter, P.BindReceiver,
                                        P.BindTransceiver])
def test_enquire_link_answered_in_every_state(state_bind: type[P.Pdu] | None) -> None:
    """enquire_link gets enquire_link_resp ESME_ROK unbound and in every bound state."""
    esme = Esme()
    if state_bind is not None:
        esme.bind(state_bind)
    req = esme.send(P.EnquireLink())
    assert esme.events() == []
    (resp,) = esme.received()
    assert resp == P.EnquireLinkResp(sequence_number=req.sequence_number)


@pytest.mark.parametrize(
    ("bind", "request_pdu"),
    [
        (None, P.SubmitSm()),
        (None, P.Unbind()),
        (None, P.QuerySm()),
        (P.BindReceiver, P.SubmitSm()),
        (P.BindReceiver, P.SubmitMulti(dest_addresses=(P.DestAddress(1, 0, 0, "1"),))),
        (P.BindReceiver, P.ReplaceSm()),
        (P.BindTransmitter, P.DeliverSm()),
        (None, P.DataSm()),
    ],
)
def test_command_not_allowed_in_state_gets_rinvbndsts(bind: type[P.Pdu] | None,
                                                       request_pdu: P.Pdu) -> None:
    """A request the state table does not allow → its own response with ESME_RINVBNDSTS."""
    esme = Esme()
    if bind is not None:
        esme.bind(bind)
    req = esme.send(request_pdu)
    assert esme.events() == []
    (resp,) = esme.received()
    assert resp.command_id == req.command_id | 0x80000000
    assert resp.command_status == S.ESME_RINVBNDSTS
    assert resp.sequence_number == req.sequence_number


def test_bind_when_bound_is_already_bound() -> None:
    """A second bind on a bound session → ESME_RALYBND, the session stays bound."""
    esme = Esme()
    esme.bind(P.BindTransmitter)
    req = esme.send(P.BindReceiver(system_id="acme"))
    (resp,) = esme.received()
    assert resp.command_id == P.BindReceiverResp.command_id
    assert resp.command_status == S.ESME_RALYBND
    assert esme.session.state is State.BOUND_TX
    assert resp.sequence_number == req.sequence_number


def test_bind_while_a_bind_is_pending_is_already_bound() -> None:
    """Two binds in a row before the first is answered: the second gets ESME_RALYBND."""
    esme = Esme()
    esme.send(P.BindTransmitter(system_id="a"))
    esme.send(P.BindTransmitter(system_id="a"))
    assert len(esme.events()) == 1
    (resp,) = esme.received()
    assert resp.command_status == S.ESME_RALYBND


def test_unknown_command_id_gets_generic_nack() -> None:
    """An unknown command_id → generic_nack ESME_RINVCMDID with its sequence; session lives."""
    esme = Esme()
    esme.send_raw(bytes.fromhex("00000010 00000099 00000000 00000007".replace(" ", "")))
    (resp,) = esme.received()
    assert resp == P.GenericNack(sequence_number=7, command_status=S.ESME_RINVCMDID)
    assert esme.session.state is State.OPEN


@pytest.mark.parametrize("length", [0, 8, 15, 10_000_000])
def test_bad_command_length_nacks_and_closes(length: int) -> None:
    """command_length < 16 or over the cap → generic_nack ESME_RINVCMDLEN and close."""
    esme = Esme()
    esme.send_raw(length.to_bytes(4, "big") + bytes.fromhex("00000004000000000000000b"))
    (resp,) = esme.received()
    assert resp.command_id == P.GenericNack.command_id
    assert resp.command_status == S.ESME_RINVCMDLEN
    assert esme.session.state is State.CLOSED
    assert isinstance(esme.events()[-1], Closed)


def test_malformed_body_gets_the_commands_own_response() -> None:
    """A submit_sm with a 21-character source_addr → submit_sm_resp ESME_RINVSRCADR."""
    esme = Esme()
    esme.bind(P.BindTransmitter)
    body = bytes.fromhex("00 0101".replace(" ", "")) + b"1" * 21 + bytes(20)
    esme.send_raw((16 + len(body)).to_bytes(4, "big") +
                  bytes.fromhex("000000040000000000000009") + body)
    (resp,) = esme.received()
    assert resp == P.SubmitSmResp(sequence_number=9, command_status=S.ESME_RINVSRCADR)
    assert esme.session.state is State.BOUND_TX


def test_malformed_request_in_wrong_state_is_bind_status_first() -> None:
    """The state decides before the body: a malformed submit_sm unbound → RINVBNDSTS."""
    esme = Esme()
    esme.send_raw(bytes.fromhex("00000012 00000004 00000000 00000003 0000".replace(" ", "")))
    (resp,) = esme.received()
    assert resp.command_status == S.ESME_RINVBNDSTS


def test_window_overflow_is_throttled_and_session_kept() -> None:
    """More outstanding submits than the window → ESME_RTHROTTLED; answering frees slots."""
    esme = Esme(SessionConfig(window=2))
    esme.bind(P.BindTransmitter)
    reqs = [esme.send(P.SubmitSm(short_message=b"x")) for _ in range(3)]
    events = esme.events()
    assert events == reqs[:2]
    (resp,) = esme.received()
    assert resp == P.SubmitSmResp(sequence_number=reqs[2].sequence_number,
                                  command_status=S.ESME_RTHROTTLED)
    esme.session.send(P.SubmitSmResp(sequence_number=reqs[0].sequence_number,
                                     message_id="1"), 0.0)
    again = esme.send(P.SubmitSm(short_message=b"y"))
    assert esme.events() == [again]
    assert esme.session.pending_requests == 2


def test_enquire_link_does_not_use_the_window() -> None:
    """A full window still answers enquire_link."""
    esme = Esme(SessionConfig(window=1))
    esme.bind(P.BindTransmitter)
    esme.send(P.SubmitSm())
    esme.events()
    req = esme.send(P.EnquireLink())
    assert esme.received() == [P.EnquireLinkResp(sequence_number=req.sequence_number)]


def test_response_must_answer_an_outstanding_request() -> None:
    """Sending a response nobody asked for is a local error."""
    esme = Esme()
    esme.bind(P.BindTransmitter)
    with pytest.raises(LocalProtocolError):
        esme.session.send(P.SubmitSmResp(sequence_number=99, message_id="1"), 0.0)


def test_cannot_send_deliver_sm_to_a_transmitter() -> None:
    """deliver_sm goes only to receiver/transceiver binds."""
    esme = Esme()
    esme.bind(P.BindTransmitter)
    with pytest.raises(LocalProtocolError):
        esme.session.send(P.DeliverSm(), 0.0)


def test_deliver_sm_response_is_an_event_and_timeout_is_reported() -> None:
    """Our deliver_sm: its resp comes back as an event; a missing one as ResponseTimeout."""
    esme = Esme(SessionConfig(response_timeout=5.0, enquire_link_interval=0,
                              inactivity_timeout=0))
    esme.bind(P.BindReceiver)
    seq = esme.session.send(P.DeliverSm(esm_class=4, short_message=b"id:1"), 0.0)
    seq2 = esme.session.send(P.DeliverSm(esm_class=4, short_message=b"id:2"), 0.0)
    assert [p.sequence_number for p in esme.received()] == [seq, seq2]
    esme.send(P.DeliverSmResp(sequence_number=seq))
    (event,) = esme.events()
    assert event == P.DeliverSmResp(sequence_number=seq)
    assert esme.session.get_timer() == 5.0
    esme.session.handle_timer(5.0)
    (timeout,) = esme.events()
    assert isinstance(timeout, ResponseTimeout)
    assert timeout.request.sequence_number == seq2


def test_session_init_timer_closes_an_unbound_connection() -> None:
    """No bind within session_init_timeout → the session closes."""
    esme = Esme(SessionConfig(session_init_timeout=10.0))
    assert esme.session.get_timer() == 10.0
    esme.session.handle_timer(9.9)
    assert esme.session.state is State.OPEN
    esme.session.handle_timer(10.0)
    assert esme.session.state is State.CLOSED
    assert isinstance(esme.events()[-1], Closed)


def test_enquire_link_probe_and_missing_answer_closes() -> None:
    """A silent bound ESME is probed with enquire_link; no answer in time → closed."""
    cfg = SessionConfig(enquire_link_interval=30.0, response_timeout=5.0,
                        inactivity_timeout=0)
    esme = Esme(cfg)
    esme.bind(P.BindTransceiver)
    assert esme.session.get_timer() == 30.0
    esme.session.handle_timer(30.0)
    (probe,) = esme.received()
    assert probe.command_id == P.EnquireLink.command_id
    assert esme.session.get_timer() == 35.0
    esme.session.handle_timer(35.0)
    assert esme.session.state is State.CLOSED


def test_answered_probe_keeps_the_session() -> None:
    """An answered enquire_link keeps the session and re-arms the probe."""
    cfg = SessionConfig(enquire_link_interval=30.0, response_timeout=5.0,
                        inactivity_timeout=0)
    esme = Esme(cfg)
    esme.bind(P.BindTransceiver)
    esme.session.handle_timer(30.0)
    (probe,) = esme.received()
    esme.send(P.EnquireLinkResp(sequence_number=probe.sequence_number), now=31.0)
    assert esme.events() == []
    assert esme.session.get_timer() == 61.0
    esme.session.handle_timer(40.0)
    assert esme.session.state is State.BOUND_TRX


def test_inactivity_timer_unbinds() -> None:
    """No PDU (other than probe answers) for inactivity_timeout → we send unbind."""
    cfg = SessionConfig(enquire_link_interval=0, inactivity_timeout=60.0,
                        response_timeout=5.0)
    esme = Esme(cfg)
    esme.bind(P.BindTransmitter)
    esme.send(P.EnquireLink(), now=50.0)
    esme.received()
    esme.session.handle_timer(60.0)
    assert esme.received() == []
    esme.session.handle_timer(110.0)
    (unbind,) = esme.received()
    assert unbind.command_id == P.Unbind.command_id
    assert esme.session.state is State.UNBOUND
    esme.send(P.UnbindResp(sequence_number=unbind.sequence_number), now=111.0)
    assert esme.session.state is State.CLOSED


def test_peer_unbind_is_answered_and_closes() -> None:
    """unbind from the ESME → unbind_resp, an Unbind event, then Closed."""
    esme = Esme()
    esme.bind(P.BindTransmitter)
    req = esme.send(P.Unbind())
    assert esme.received() == [P.UnbindResp(sequence_number=req.sequence_number)]
    events = esme.events()
    assert events[0] == req
    assert isinstance(events[1], Closed)


def test_start_unbind_for_shutdown() -> None:
    """Graceful shutdown sends unbind; the ESME's unbind_resp closes the session."""
    esme = Esme()
    esme.bind(P.BindTransceiver)
    esme.session.start_unbind(0.0)
    (unbind,) = esme.received()
    assert unbind.command_id == P.Unbind.command_id
    esme.send(P.UnbindResp(sequence_number=unbind.sequence_number))
    assert esme.session.closed


def test_requests_after_our_unbind_are_refused() -> None:
    """After we sent unbind, a submit_sm → ESME_RINVBNDSTS."""
    esme = Esme()
    esme.bind(P.BindTransmitter)
    esme.session.start_unbind(0.0)
    esme.received()
    esme.send(P.SubmitSm())
    (resp,) = esme.received()
    assert resp.command_status == S.ESME_RINVBNDSTS


def test_generic_nack_from_peer_resolves_our_request() -> None:
    """A generic_nack answering our deliver_sm is delivered as its response event."""
    esme = Esme()
    esme.bind(P.BindReceiver)
    seq = esme.session.send(P.DeliverSm(), 0.0)
    esme.send(P.GenericNack(sequence_number=seq, command_status=S.ESME_RINVCMDID))
    (event,) = esme.events()
    assert isinstance(event, P.GenericNack)


def test_sequence_numbers_wrap_within_range() -> None:
    """Our sequence numbers stay within 1..0x7FFFFFFF (§5.1.2.4)."""
    esme = Esme()
    esme.bind(P.BindReceiver)
    esme.session._next_seq = 0x7FFFFFFF
    assert esme.session.send(P.DeliverSm(), 0.0) == 0x7FFFFFFF
    assert esme.session.send(P.DeliverSm(), 0.0) == 1


def test_peer_unbind_waits_for_requests_in_flight() -> None:
    """An unbind arriving while a submit is being worked on: the submit_sm_resp goes out
    first, then unbind_resp, then the session closes (no accepted message's answer is
    lost to the unbind)."""
    esme = Esme()
    esme.bind(P.BindTransmitter)
    sub = esme.send(P.SubmitSm(short_message=b"x"))
    unbind = esme.send(P.Unbind())
    events = esme.events()
    assert events[0] == sub
    assert esme.received() == []
    assert not esme.session.closed
    esme.session.send(P.SubmitSmResp(sequence_number=sub.sequence_number, message_id="1"), 0.0)
    assert esme.received() == [P.SubmitSmResp(sequence_number=sub.sequence_number,
                                              message_id="1"),
                               P.UnbindResp(sequence_number=unbind.sequence_number)]
    assert esme.session.closed


def test_peer_unbind_is_answered_after_the_response_timer_anyway() -> None:
    """If a request is never answered, unbind_resp still goes out after response_timeout."""
    esme = Esme(SessionConfig(response_timeout=5.0, enquire_link_interval=0,
                              inactivity_timeout=0))
    esme.bind(P.BindTransmitter)
    esme.send(P.SubmitSm())
    unbind = esme.send(P.Unbind(), now=1.0)
    esme.events()
    assert esme.session.get_timer() == 6.0
    esme.session.handle_timer(6.0)
    assert esme.received() == [P.UnbindResp(sequence_number=unbind.sequence_number)]
    assert esme.session.closed
