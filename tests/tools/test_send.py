"""`smppbridge send`: text encoding and splitting; against a scripted SMSC (no network,
a fake clock, no real waiting): only this run's receipts count, it stays bound for them,
temporary submit answers are tried again with a bounded backoff, every status is named
from the project's one status table, query_sm and cancel_sm; the command line's output
and exit statuses."""

from __future__ import annotations

import functools
import json
import re
from collections import deque
from collections.abc import Callable
from pathlib import Path

import pytest

from smppbridge.cli import main
from smppbridge.smpp import pdu as P
from smppbridge.smpp.constants import STATUS_DESCRIPTIONS, CommandStatus, Tag, describe_status
from smppbridge.smpp.receipts import parse_receipt
from smppbridge.text.encoding import gsm_decode
from smppbridge.tools import send as S
from smppbridge.tools.send import (
    RETRY,
    RetryPolicy,
    SendError,
    SendResult,
    cancel,
    encode_parts,
    query,
    receipt_id,
    send,
)

DOCS_SMPP = Path(__file__).parent.parent.parent / "docs" / "smpp.md"


# --- encoding ----------------------------------------------------------------------------


def test_short_gsm_text_is_one_part() -> None:
    """Text in the GSM alphabet goes as data_coding 0 in one part without UDH."""
    coding, parts, udhi = encode_parts("hi €", ref=1)
    assert (coding, udhi) == (0, False)
    assert gsm_decode(parts[0]) == "hi €"


def test_non_gsm_text_is_ucs2() -> None:
    """Cyrillic goes as UCS2 (data_coding 8)."""
    coding, parts, _ = encode_parts("Привет", ref=1)
    assert coding == 8
    assert parts[0].decode("utf-16-be") == "Привет"


def test_long_ucs2_never_cuts_a_surrogate_pair() -> None:
    """A long emoji text is split with 8-bit UDH; no part ends inside a surrogate pair."""
    text = "я" + "😀" * 100
    coding, parts, udhi = encode_parts(text, ref=7)
    assert coding == 8
    assert udhi
    assert len(parts) > 1
    bodies = []
    for i, p in enumerate(parts):
        assert p[:6] == bytes([5, 0, 3, 7, len(parts), i + 1])
        assert len(p) <= 140
        bodies.append(p[6:])
        p[6:].decode("utf-16-be")  # each part decodes alone: nothing was cut
    assert b"".join(bodies).decode("utf-16-be") == text


def test_long_gsm_never_splits_an_escape() -> None:
    """A GSM text of euro signs is split so each 0x1B stays with its character."""
    coding, parts, _ = encode_parts("€" * 100, ref=1)
    assert coding == 0
    for p in parts:
        assert gsm_decode(p[6:]) == "€" * (len(p[6:]) // 2)


# --- a scripted SMSC ---------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def receipt(message_id: str, stat: str = "DELIVRD", *, tlv: bool = True,
            err: str = "000") -> P.DeliverSm:
    """A receipt deliver_sm as the node sends it (TLV receipted_message_id unless not)."""
    text = (f"id:{message_id} sub:001 dlvrd:001 submit date:2405011200 done date:2405011200 "
            f"stat:{stat} err:{err} text:hi")
    tlvs = (P.Tlv(Tag.RECEIPTED_MESSAGE_ID, message_id.encode() + b"\0"),) if tlv else ()
    return P.DeliverSm(esm_class=0x04, short_message=text.encode(), tlvs=tlvs)


Answer = Callable[[P.Pdu], list[P.Pdu]]


class Smsc:
    """A :class:`~smppbridge.tools.send.Link` double. Each request is answered by
    ``answer`` (default: binds OK, submits get ids 13, 14 ..., unbind OK); ``after_bind``
    PDUs arrive at once after the bind response, ``later`` ones at their time on the
    fake clock. ``receive`` with nothing due lets the clock run its whole timeout."""

    def __init__(self, clock: FakeClock, *, answer: Answer | None = None,
                 after_bind: tuple[P.Pdu, ...] = (),
                 later: tuple[tuple[float, P.Pdu], ...] = ()) -> None:
        self.clock = clock
        self.answer = answer or (lambda pdu: [])
        self.after_bind = after_bind
        self.later = sorted(later, key=lambda t: t[0])
        self.inbox: deque[P.Pdu] = deque()
        self.sent: list[tuple[float, P.Pdu]] = []
        self.closed = False
        self.receipt_ids: dict[int, str | None] = {}
        self._ids = iter(range(13, 1000))
        self._seq = iter(range(1000, 2000))

    def kinds(self, cls: type[P.Pdu]) -> list[tuple[float, P.Pdu]]:
        return [(t, p) for t, p in self.sent if isinstance(p, cls)]

    def send(self, pdu: P.Pdu) -> None:
        self.sent.append((self.clock.now, pdu))
        scripted = self.answer(pdu)
        if scripted:
            self.inbox.extend(p.with_(sequence_number=pdu.sequence_number)
                              if p.is_response else p for p in scripted)
        elif isinstance(pdu, P.BindTransceiver | P.BindTransmitter):
            resp_cls = (P.BindTransceiverResp if isinstance(pdu, P.BindTransceiver)
                        else P.BindTransmitterResp)
            self.inbox.append(resp_cls(sequence_number=pdu.sequence_number, system_id="node"))
            self.inbox.extend(self._unasked(p) for p in self.after_bind)
        elif isinstance(pdu, P.SubmitSm):
            self.inbox.append(P.SubmitSmResp(sequence_number=pdu.sequence_number,
                                             message_id=str(next(self._ids))))
        elif isinstance(pdu, P.Unbind):
            self.inbox.append(P.UnbindResp(sequence_number=pdu.sequence_number))

    def _unasked(self, pdu: P.Pdu) -> P.Pdu:
        out = pdu.with_(sequence_number=next(self._seq))
        if isinstance(out, P.DeliverSm):
            self.receipt_ids[out.sequence_number] = receipt_id(out)
        return out

    def receive(self, timeout: float) -> P.Pdu | None:
        if self.inbox:
            return self.inbox.popleft()
        if self.later and self.later[0][0] <= self.clock.now + timeout:
            at, pdu = self.later.pop(0)
            self.clock.now = max(self.clock.now, at)
            return self._unasked(pdu)
        self.clock.now += timeout
        return None

    def close(self) -> None:
        self.closed = True

    def answers(self) -> list[tuple[str | None, int]]:
        """(receipt id, status the ESME answered its deliver_sm with), in order: a
        deliver_sm and its answer share a sequence_number."""
        return [(self.receipt_ids.get(p.sequence_number), p.command_status)
                for _, p in self.kinds(P.DeliverSmResp)]


class Notices:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.receipts: list[str] = []

    def submitting(self, parts: int, receipts: bool) -> None:
        pass

    def message_id(self, message_id: str) -> None:
        pass

    def receipt(self, text: str) -> None:
        self.receipts.append(text)

    def notice(self, text: str) -> None:
        self.lines.append(text)


def run_send(smsc: Smsc, clock: FakeClock, *, text: str = "smoke two", wait: float = 10.0,
             retry: RetryPolicy = RETRY, observer: Notices | None = None,
             receipt_wanted: bool = True) -> SendResult:
    return send(host="node", port=2775, system_id="demo", password="demo", source="smppbridge",
                destination="79000000001", text=text, wait=wait, receipt=receipt_wanted,
                observer=observer, retry=retry, connect=lambda h, p, t: smsc, clock=clock)


# --- receipts: only this run's ----------------------------------------------------------


def test_a_stale_receipt_is_not_taken_for_this_runs_own() -> None:
    """The issue's case: a REJECTD receipt for id 11, kept while the account was unbound,
    arrives right after the bind; this run's message is 13. Only id 13's receipt is this
    run's; the stale one is counted as another receipt and answered ESME_RX_T_APPN (the
    node keeps it for the account's receivers), this run's ESME_ROK; and the session
    stayed bound past the stale receipt until its own came (t=2)."""
    clock = FakeClock()
    smsc = Smsc(clock, after_bind=(receipt("11", "REJECTD"),),
                    later=((2.0, receipt("13")),))
    result = run_send(smsc, clock)
    assert result.message_ids == ["13"]
    assert [parse_receipt(r)["id"] for r in result.receipts] == ["13"]
    assert result.other_receipts == 1
    assert result.missing() == []
    assert result.undelivered() == []
    assert smsc.answers() == [("11", CommandStatus.ESME_RX_T_APPN),
                              ("13", CommandStatus.ESME_ROK)]
    [(unbound_at, _)] = smsc.kinds(P.Unbind)
    assert unbound_at == 2.0
    assert smsc.closed


def test_it_stays_bound_until_wait_ends_when_its_receipt_does_not_come() -> None:
    """Other receipts (even many, and the same one again) do not end the wait: with no
    receipt for its own id it unbinds only when --wait ends, counting the other
    receipts once each, and reports its id as missing."""
    clock = FakeClock()
    stale = receipt("11", "REJECTD")
    smsc = Smsc(clock, after_bind=(stale, receipt("12", "UNDELIV")),
                    later=((1.0, stale), (3.0, stale)))
    result = run_send(smsc, clock, wait=5.0)
    assert result.receipts == []
    assert result.other_receipts == 2
    assert result.missing() == ["13"]
    [(unbound_at, _)] = smsc.kinds(P.Unbind)
    assert unbound_at == pytest.approx(5.0)
    assert {status for _, status in smsc.answers()} == {CommandStatus.ESME_RX_T_APPN}


def test_each_part_waits_for_its_own_receipt() -> None:
    """A three-part text gets ids 13-15; the run ends when all three have a receipt,
    whatever order they come in, and a receipt seen twice counts once."""
    clock = FakeClock()
    smsc = Smsc(clock, later=((1.0, receipt("15")), (1.5, receipt("13")),
                                  (1.6, receipt("13")), (4.0, receipt("14"))))
    result = run_send(smsc, clock, text="x" * 400)
    assert result.message_ids == ["13", "14", "15"]
    assert [parse_receipt(r)["id"] for r in result.receipts] == ["15", "13", "14"]
    assert result.other_receipts == 0
    [(unbound_at, _)] = smsc.kinds(P.Unbind)
    assert unbound_at == 4.0


def test_a_receipt_ahead_of_its_submit_response_is_still_this_runs() -> None:
    """A receipt read while its submit_sm_resp is still on the way is answered only once
    the response (and so the id) is in: it counts as this run's, answered ESME_ROK."""
    clock = FakeClock()

    def answer(pdu: P.Pdu) -> list[P.Pdu]:
        if isinstance(pdu, P.SubmitSm):
            return [receipt("13").with_(sequence_number=7),
                    P.SubmitSmResp(message_id="13")]
        return []

    smsc = Smsc(clock, answer=answer)
    result = run_send(smsc, clock)
    assert [parse_receipt(r)["id"] for r in result.receipts] == ["13"]
    statuses = [p.command_status for _, p in smsc.kinds(P.DeliverSmResp)]
    assert statuses == [CommandStatus.ESME_ROK]


def test_the_receipt_id_comes_from_the_tlv_else_from_the_text() -> None:
    """receipted_message_id (0x001E) names the message; without it, the text's id:."""
    assert receipt_id(receipt("42")) == "42"
    assert receipt_id(receipt("42", tlv=False)) == "42"
    assert receipt_id(P.DeliverSm(short_message=b"hello")) is None


def test_an_undelivered_receipt_of_its_own_is_reported() -> None:
    """This run's receipt with stat UNDELIV is kept as this run's and listed as not
    delivered (the command line exits 4 on it)."""
    clock = FakeClock()
    smsc = Smsc(clock, later=((0.5, receipt("13", "UNDELIV", err="001")),))
    result = run_send(smsc, clock)
    assert result.undelivered() == result.receipts
    assert len(result.receipts) == 1


def test_no_receipt_binds_as_a_transmitter_and_unbinds_at_once() -> None:
    """With no receipt asked for, it binds as a transmitter (no receipt can come to it)
    and unbinds right after the submit."""
    clock = FakeClock()
    smsc = Smsc(clock)
    result = run_send(smsc, clock, receipt_wanted=False)
    assert result.message_ids == ["13"]
    assert smsc.kinds(P.BindTransmitter)
    assert not smsc.kinds(P.BindTransceiver)
    [(_, submit)] = smsc.kinds(P.SubmitSm)
    assert isinstance(submit, P.SubmitSm)
    assert submit.registered_delivery == 0
    [(unbound_at, _)] = smsc.kinds(P.Unbind)
    assert unbound_at == 0.0


# --- temporary answers: tried again -----------------------------------------------------


def _refusing(statuses: list[int]) -> Answer:
    """Answer submits with ``statuses`` in turn, then accept with id 13."""
    queue = deque(statuses)

    def answer(pdu: P.Pdu) -> list[P.Pdu]:
        if isinstance(pdu, P.SubmitSm):
            if queue:
                return [P.SubmitSmResp(command_status=queue.popleft())]
            return [P.SubmitSmResp(message_id="13")]
        return []

    return answer


def test_the_retry_policy_is_bounded_backoff() -> None:
    """The default policy: 6 tries, waits of 0.5, 1, 2, 4, 4 s between them, then none;
    --help prints it."""
    assert [RETRY.delay(n) for n in range(1, 8)] == [0.5, 1, 2, 4, 4, None, None]
    assert RETRY.describe() == "up to 6 tries, waiting 0.5 s, 1 s, 2 s, 4 s, 4 s"


def test_a_throttled_submit_is_tried_again_after_the_backoff() -> None:
    """ESME_RTHROTTLED twice, then accepted: three submits, at t=0, 0.5 and 1.5 on the
    fake clock; each retry is announced with the status named; a receipt that comes
    during a backoff wait is answered there and then."""
    clock = FakeClock()
    notices = Notices()
    smsc = Smsc(clock, answer=_refusing([CommandStatus.ESME_RTHROTTLED] * 2),
                    later=((0.2, receipt("11", "REJECTD")), (2.0, receipt("13"))))
    result = run_send(smsc, clock, observer=notices)
    assert [t for t, _ in smsc.kinds(P.SubmitSm)] == [0.0, 0.5, 1.5]
    assert result.message_ids == ["13"]
    assert result.retries == 2
    assert notices.lines == [
        "submit_sm: 0x00000058 ESME_RTHROTTLED (throttled); try 2 of 6 in 0.5 s",
        "submit_sm: 0x00000058 ESME_RTHROTTLED (throttled); try 3 of 6 in 1 s",
    ]
    [(answered_at, _), _] = smsc.kinds(P.DeliverSmResp)
    assert answered_at == pytest.approx(0.2)


def test_message_queue_full_is_temporary_too() -> None:
    """ESME_RMSGQFUL (0x14) is tried again like ESME_RTHROTTLED."""
    clock = FakeClock()
    smsc = Smsc(clock, answer=_refusing([CommandStatus.ESME_RMSGQFUL]))
    result = run_send(smsc, clock, receipt_wanted=False)
    assert result.message_ids == ["13"]
    assert result.retries == 1


def test_throttling_that_lasts_ends_after_the_last_try() -> None:
    """A submit throttled on every try fails after exactly ``tries`` submits (waits of
    0.5 + 1 + 2 + 4 + 4 = 11.5 s), the error naming the status and the tries."""
    clock = FakeClock()
    smsc = Smsc(clock, answer=_refusing([CommandStatus.ESME_RTHROTTLED] * 99))
    with pytest.raises(SendError) as exc:
        run_send(smsc, clock)
    assert len(smsc.kinds(P.SubmitSm)) == RETRY.tries
    assert clock.now == pytest.approx(11.5)
    assert str(exc.value) == ("submit_sm refused: 0x00000058 ESME_RTHROTTLED (throttled) "
                              "(try 6 of 6)")
    assert smsc.kinds(P.Unbind)


def test_a_permanent_refusal_is_not_tried_again() -> None:
    """A vendor status (no route) fails at once, named from the status table."""
    clock = FakeClock()
    smsc = Smsc(clock, answer=_refusing([CommandStatus.VENDOR_NO_ROUTE]))
    with pytest.raises(SendError, match=re.escape(
            "submit_sm refused: 0x00000404 no route for this message kind")):
        run_send(smsc, clock)
    assert len(smsc.kinds(P.SubmitSm)) == 1


def test_a_refused_bind_names_its_status() -> None:
    """A bind answered ESME_RINVPASWD fails with the status named; nothing is submitted."""
    clock = FakeClock()

    def answer(pdu: P.Pdu) -> list[P.Pdu]:
        if isinstance(pdu, P.BindTransceiver):
            return [P.BindTransceiverResp(command_status=CommandStatus.ESME_RINVPASWD)]
        return []

    smsc = Smsc(clock, answer=answer)
    with pytest.raises(SendError, match=re.escape(
            "bind refused: 0x0000000E ESME_RINVPASWD (invalid password)")):
        run_send(smsc, clock)
    assert not smsc.kinds(P.SubmitSm)


# --- status names ------------------------------------------------------------------------


def test_statuses_are_named_from_the_status_table() -> None:
    """Standard statuses print as hex, name and meaning; smppbridge's vendor codes by
    their meaning; an unknown one says so (never "vendor-specific status")."""
    assert describe_status(0x58) == "0x00000058 ESME_RTHROTTLED (throttled)"
    assert describe_status(0x400) == "0x00000400 duplicate message (flood rule)"
    assert describe_status(0x404) == "0x00000404 no route for this message kind"
    assert describe_status(0x4FF) == "0x000004FF (unknown vendor status)"
    assert describe_status(0x123) == "0x00000123 (unknown status)"


def test_every_status_has_a_description() -> None:
    """Each CommandStatus, and each status docs/smpp.md says the node returns, has its
    entry in STATUS_DESCRIPTIONS."""
    assert set(STATUS_DESCRIPTIONS) == set(CommandStatus)
    documented = re.findall(r"^\| `?(ESME_\w+|0x4\w\w)`? \|", DOCS_SMPP.read_text(), re.M)
    assert len(documented) > 30
    for entry in documented:
        status = int(entry, 16) if entry.startswith("0x") else CommandStatus[entry]
        assert "unknown" not in describe_status(status), entry


# --- query_sm and cancel_sm ---------------------------------------------------------------


def test_query_prints_the_state_as_smpp_names_it() -> None:
    """--query binds as a transmitter, sends one query_sm for the id and unbinds; the
    answer's message_state is named as SMPP 3.4 §5.2.28 names it."""
    clock = FakeClock()

    def answer(pdu: P.Pdu) -> list[P.Pdu]:
        if isinstance(pdu, P.QuerySm):
            return [P.QuerySmResp(message_id=pdu.message_id, message_state=2,
                                  final_date="240501120005000+", error_code=0)]
        return []

    smsc = Smsc(clock, answer=answer)
    got = query(host="node", port=1, system_id="demo", password="demo", message_id="13",
                source="smppbridge", connect=lambda h, p, t: smsc, clock=clock)
    assert (got.ok, got.state_name, got.final_date, got.error_code) == (
        True, "DELIVERED", "240501120005000+", 0)
    assert [type(p) for _, p in smsc.sent] == [P.BindTransmitter, P.QuerySm, P.Unbind]


def test_cancel_reports_the_answers_status() -> None:
    """--cancel sends one cancel_sm; a refusal comes back named."""
    clock = FakeClock()

    def answer(pdu: P.Pdu) -> list[P.Pdu]:
        if isinstance(pdu, P.CancelSm):
            return [P.CancelSmResp(command_status=CommandStatus.ESME_RCANCELFAIL)]
        return []

    smsc = Smsc(clock, answer=answer)
    got = cancel(host="node", port=1, system_id="demo", password="demo", message_id="13",
                 source="smppbridge", connect=lambda h, p, t: smsc, clock=clock)
    assert not got.ok
    assert got.status_text == "0x00000011 ESME_RCANCELFAIL (cancel_sm failed)"
    [(_, sent)] = smsc.kinds(P.CancelSm)
    assert isinstance(sent, P.CancelSm)
    assert sent.message_id == "13"


# --- the command line ----------------------------------------------------------------------


def _cli(monkeypatch: pytest.MonkeyPatch, smsc: Smsc, *args: str) -> int:
    """``smppbridge send ARGS`` with its session on ``smsc`` and its fake clock."""
    for name in ("send", "query", "cancel"):
        monkeypatch.setattr(S, name, functools.partial(
            getattr(S, name), connect=lambda host, port, timeout: smsc, clock=smsc.clock))
    return main(["send", *args])


def test_cli_prints_only_its_own_receipt_and_counts_the_others(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Plain output: the id and this run's receipt on stdout, the other receipts counted
    on stderr, exit 0."""
    clock = FakeClock()
    smsc = Smsc(clock, after_bind=(receipt("11", "REJECTD"), receipt("12")),
                    later=((1.0, receipt("13")),))
    code = _cli(monkeypatch, smsc, "--to", "79000000001", "--text", "smoke two")
    out, err = capsys.readouterr()
    assert code == 0, err
    own = receipt("13").short_message.decode()
    assert out.splitlines() == ["message_id: 13", f"receipt: {own}"]
    assert "other receipts: 2 (not for this run's messages" in err


@pytest.mark.parametrize(("later", "code", "words"), [
    ((), 3, "no receipt within 2s for 1 of 1 parts: 13"),
    (((1.0, receipt("13", "UNDELIV", err="001")),), 4,
     "not delivered: id:13 stat:UNDELIV err:001"),
])
def test_cli_exit_status_follows_its_own_receipts(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        later: tuple[tuple[float, P.Pdu], ...], code: int, words: str) -> None:
    """Exit 3 when this run's receipt did not come within --wait (another's did), 4 when
    it came and is not DELIVRD; --json carries the same status and the other count."""
    clock = FakeClock()
    smsc = Smsc(clock, after_bind=(receipt("11"),), later=later)
    assert _cli(monkeypatch, smsc, "--to", "1", "--text", "t", "--wait", "2") == code
    assert words in capsys.readouterr().err
    clock = FakeClock()
    smsc = Smsc(clock, after_bind=(receipt("11"),), later=later)
    assert _cli(monkeypatch, smsc, "--to", "1", "--text", "t", "--wait", "2", "--json") == code
    report = json.loads(capsys.readouterr().out)
    assert (report["exit_status"], report["other_receipts"]) == (code, 1)
    assert words in report["error"]


def test_cli_query_and_cancel(monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    """--query prints message_state, final_date and error_code; a refused --cancel
    prints its status on stderr and exits 1; --text does not go with either (exit 2)."""
    clock = FakeClock()

    def answer(pdu: P.Pdu) -> list[P.Pdu]:
        if isinstance(pdu, P.QuerySm):
            return [P.QuerySmResp(message_id="13", message_state=5,
                                  final_date="240501120005000+", error_code=1)]
        if isinstance(pdu, P.CancelSm):
            return [P.CancelSmResp(command_status=CommandStatus.ESME_RCANCELFAIL)]
        return []

    assert _cli(monkeypatch, Smsc(clock, answer=answer), "--query", "13") == 0
    assert capsys.readouterr().out.splitlines() == [
        "message_id: 13", "message_state: UNDELIVERABLE (5)",
        "final_date: 240501120005000+ (2024-05-01 12:00:05 UTC)", "error_code: 1"]
    assert _cli(monkeypatch, Smsc(clock, answer=answer), "--cancel", "13") == 1
    assert ("cancel_sm refused: 0x00000011 ESME_RCANCELFAIL (cancel_sm failed)"
            in capsys.readouterr().err)
    assert _cli(monkeypatch, Smsc(clock), "--query", "13", "--text", "x") == 2
