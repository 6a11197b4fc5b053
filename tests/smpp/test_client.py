"""The sans-IO ESME session (smppbridge/smpp/client.py), driven with an injected clock:
bind, window, answers, timeouts, probes, the SMSC's requests, garbage, closing with
submits unanswered."""

from __future__ import annotations

import struct

import pytest

from smppbridge.smpp import client as CL
from smppbridge.smpp import pdu as P
from smppbridge.smpp.codec import FrameReader, decode, encode
from smppbridge.smpp.constants import CommandStatus
from smppbridge.smpp.errors import LocalProtocolError

S = CommandStatus


def written(session: CL.EsmeSession) -> list[P.Pdu]:
    reader = FrameReader()
    reader.feed(session.data_to_send())
    out = []
    while (frame := reader.next_frame()) is not None:
        out.append(decode(frame))
    return out


def events(session: CL.EsmeSession) -> list[object]:
    out = []
    while (e := session.next_event()) is not None:
        out.append(e)
    return out


def bound(window: int = 2, **kw: float) -> CL.EsmeSession:
    s = CL.EsmeSession(CL.ClientConfig(window=window, **kw), now=0.0)
    s.bind(CL.BindKind.TRANSCEIVER, system_id="me", password="pw", now=0.0)
    (bind,) = written(s)
    assert isinstance(bind, P.BindTransceiver)
    assert bind.system_id == "me"
    s.receive_data(encode(P.BindTransceiverResp(sequence_number=bind.sequence_number,
                                                system_id="smsc")), 0.0)
    assert events(s) == [CL.Bound("smsc")]
    return s


def submit(text: bytes = b"hi") -> P.SubmitSm:
    return P.SubmitSm(source_addr="a", destination_addr="b", short_message=text)


def test_a_refused_bind_is_reported_and_closes_the_session() -> None:
    s = CL.EsmeSession(CL.ClientConfig(), now=0.0)
    s.bind(CL.BindKind.TRANSMITTER, system_id="me", password="bad", now=0.0)
    (bind,) = written(s)
    s.receive_data(encode(P.BindTransmitterResp(sequence_number=bind.sequence_number,
                                                command_status=S.ESME_RINVPASWD)), 0.0)
    got = events(s)
    assert got[0] == CL.BindRefused(S.ESME_RINVPASWD)
    assert isinstance(got[1], CL.Closed)
    assert s.closed


def test_the_window_bounds_outstanding_submits_and_answers_free_it() -> None:
    s = bound(window=2)
    first, second = submit(b"1"), submit(b"2")
    s.submit(first, 1.0)
    s.submit(second, 1.0)
    assert not s.can_submit
    with pytest.raises(LocalProtocolError):
        s.submit(submit(), 1.0)
    s.receive_data(encode(P.SubmitSmResp(sequence_number=first.sequence_number,
                                         message_id="ab12")), 1.1)
    assert events(s) == [CL.SubmitAnswered(first, 0, "ab12")]
    assert s.can_submit
    assert s.window_in_use == 1


def test_a_generic_nack_naming_a_submit_answers_it_with_its_status() -> None:
    s = bound()
    sm = submit()
    s.submit(sm, 1.0)
    s.receive_data(encode(P.GenericNack(sequence_number=sm.sequence_number,
                                        command_status=S.ESME_RTHROTTLED)), 1.0)
    assert events(s) == [CL.SubmitAnswered(sm, S.ESME_RTHROTTLED, "")]


def test_an_unanswered_submit_times_out_on_the_injected_clock() -> None:
    s = bound(response_timeout=5.0, enquire_link_interval=0)
    sm = submit()
    s.submit(sm, 10.0)
    assert s.get_timer() == 15.0
    s.handle_timer(14.9)
    assert events(s) == []
    s.handle_timer(15.0)
    assert events(s) == [CL.SubmitTimedOut(sm)]
    assert s.window_in_use == 0
    assert s.bound


def test_a_silent_smsc_is_probed_and_a_dead_one_closed() -> None:
    s = bound(enquire_link_interval=30.0, response_timeout=5.0)
    written(s)
    assert s.get_timer() == 30.0
    s.handle_timer(30.0)
    (probe,) = written(s)
    assert isinstance(probe, P.EnquireLink)
    s.handle_timer(35.0)
    (closed,) = events(s)
    assert isinstance(closed, CL.Closed)
    assert "enquire_link" in closed.reason


def test_the_smscs_enquire_link_and_unbind_are_answered() -> None:
    s = bound()
    written(s)
    s.receive_data(encode(P.EnquireLink(sequence_number=77)), 1.0)
    (resp,) = written(s)
    assert isinstance(resp, P.EnquireLinkResp)
    assert resp.sequence_number == 77
    sm = submit()
    s.submit(sm, 1.0)
    written(s)
    s.receive_data(encode(P.Unbind(sequence_number=78)), 2.0)
    (resp,) = written(s)
    assert isinstance(resp, P.UnbindResp)
    (closed,) = events(s)
    assert closed == CL.Closed("unbound by the SMSC", (sm,))


def test_deliver_sm_is_handed_over_and_answered_once() -> None:
    s = bound()
    written(s)
    s.receive_data(encode(P.DeliverSm(sequence_number=5, esm_class=4,
                                      short_message=b"id:1 stat:DELIVRD")), 1.0)
    (deliver,) = events(s)
    assert isinstance(deliver, P.DeliverSm)
    s.answer_deliver(deliver, S.ESME_RX_T_APPN)
    (resp,) = written(s)
    assert isinstance(resp, P.DeliverSmResp)
    assert resp.command_status == S.ESME_RX_T_APPN
    with pytest.raises(LocalProtocolError):
        s.answer_deliver(deliver)


def test_an_impossible_command_length_closes_with_the_window_unanswered() -> None:
    s = bound()
    sm = submit()
    s.submit(sm, 1.0)
    written(s)
    s.receive_data(struct.pack(">IIII", 7, 0x80000004, 0, 1), 1.0)
    (closed,) = events(s)
    assert isinstance(closed, CL.Closed)
    assert "command_length" in closed.reason
    assert closed.unanswered == (sm,)
    assert s.undecodable == 1


def test_a_garbled_submit_sm_resp_reports_its_submit_unreadable() -> None:
    s = bound()
    sm = submit()
    s.submit(sm, 1.0)
    # message_id without its terminating NUL: the body cannot be read
    s.receive_data(struct.pack(">IIII", 18, 0x80000004, 0, sm.sequence_number) + b"ab", 1.0)
    (answer,) = events(s)
    assert isinstance(answer, CL.SubmitUnreadable)
    assert answer.request is sm
    assert s.window_in_use == 0
    assert s.bound


def test_a_response_to_nothing_we_sent_is_counted_and_dropped() -> None:
    s = bound()
    s.receive_data(encode(P.SubmitSmResp(sequence_number=999, message_id="x")), 1.0)
    assert events(s) == []
    assert s.stray_responses == 1


def test_an_unknown_request_from_the_smsc_gets_generic_nack() -> None:
    s = bound()
    written(s)
    s.receive_data(struct.pack(">IIII", 16, 0x00000077, 0, 9), 1.0)
    (nack,) = written(s)
    assert isinstance(nack, P.GenericNack)
    assert nack.command_status == S.ESME_RINVCMDID


def test_our_unbind_closes_on_its_answer() -> None:
    s = bound()
    written(s)
    s.unbind(1.0)
    (unbind,) = written(s)
    assert isinstance(unbind, P.Unbind)
    s.receive_data(encode(P.UnbindResp(sequence_number=unbind.sequence_number)), 1.0)
    assert events(s) == [CL.Closed("unbind completed")]
