"""ContentHandler.submit_texts: messages given as text (the HTTP doors) take the steps of
a whole submit_sm — parts and their ids, encoding, macros, limits, flood rules, one
accept_many — with an injected clock."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from smppbridge.core.accounts import Account, FloodRules
from smppbridge.core.message import Address
from smppbridge.core.session import BindType, SessionContext
from smppbridge.ingest.submit import ContentHandler
from smppbridge.ingest.texts import TextMessage, count_parts, data_coding_of
from smppbridge.smpp.constants import CommandStatus
from smppbridge.testing import MemorySink
from smppbridge.text.concat import ReassemblyConfig
from smppbridge.text.macros import ContentLimits

_S = CommandStatus
ACCOUNT = Account("acme", "pw")


@dataclass
class Steady:
    now: float = 5_000.0

    def __call__(self) -> float:
        return self.now


def _ctx(account: Account = ACCOUNT) -> SessionContext:
    return SessionContext(0, account, BindType.TRANSMITTER, "", 0x34, "http:127.0.0.1")


def _handler(sink: MemorySink | None = None, *, max_parts: int = 32
             ) -> tuple[ContentHandler, MemorySink, Steady]:
    sink = sink or MemorySink()
    wall = Steady(1_000_000.0)
    counter = itertools.count(1)
    handler = ContentHandler(sink, new_id=lambda ctx: f"id{next(counter)}",
                             reassembly=ReassemblyConfig(max_parts=max_parts), clock=wall,
                             timer=lambda: 5_000.0)
    return handler, sink, wall


def _text(text: str, to: str = "380501234567", **kwargs: object) -> TextMessage:
    return TextMessage(Address("Shop", 5, 0), Address(to, 1, 1), text, **kwargs)  # type: ignore[arg-type]


async def test_a_short_text_is_one_part_named_by_its_id() -> None:
    """One SMS: one id, the message named by it, GSM 03.38, the extras kept."""
    handler, sink, wall = _handler()
    (result,) = await handler.submit_texts(_ctx(), [_text("hello", extra={"origin": "http"})])
    assert (result.status, result.message_id, result.parts) == (_S.ESME_ROK, "id1", 1)
    message = sink.messages["id1"]
    assert (message.part_ids, message.data_coding, message.extra["origin"]) == (
        ("id1",), 0, "http")
    assert message.submitted_at == wall.now


async def test_a_long_text_has_an_id_per_part_and_is_named_by_the_last() -> None:
    """161 GSM characters are 2 parts (153 + 8) as an ESME would cut them; 71 UCS2
    characters 2 parts (67 + 4); the receipts' per-part registered_delivery is kept."""
    handler, sink, _ = _handler()
    gsm, ucs2 = await handler.submit_texts(_ctx(), [
        _text("a" * 161, registered_delivery=1), _text("ж" * 71, to="380501234568")])
    assert (gsm.parts, gsm.message_id) == (2, "id2")
    assert sink.messages["id2"].part_ids == ("id1", "id2")
    assert sink.messages["id2"].extra["part_registered_delivery"] == "1,1"
    assert (ucs2.parts, sink.messages[ucs2.message_id].data_coding) == (2, 8)


def test_encoding_and_flash_choose_the_data_coding() -> None:
    """No encoding: GSM when it fits, else UCS2; flash: the class-0 forms (0x10,
    0x18); Latin-1 keeps 3."""
    assert data_coding_of(_text("abc")) == 0
    assert data_coding_of(_text("abc", flash=True)) == 0x10
    assert data_coding_of(_text("ж", flash=True)) == 0x18
    assert data_coding_of(_text("é", encoding="latin1", flash=True)) == 3
    assert data_coding_of(_text("abc", encoding="ucs2")) == 8
    assert count_parts(_text("é" * 140, encoding="latin1"), 3, 32) == 1


async def test_refusals_name_their_field() -> None:
    """An encoding that cannot hold the text names encoding; over the part limit or the
    account's length limit names text; a bad macro its status."""
    handler, sink, _ = _handler(max_parts=2)
    results = await handler.submit_texts(_ctx(Account("acme", "pw", limits=ContentLimits(
        sms=400))), [_text("ж", encoding="gsm7"), _text("a" * 400), _text("b" * 401),
                     _text("__CALL__")])
    assert [(r.status, r.field) for r in results] == [
        (_S.VENDOR_INVALID_DATA_CODING, "encoding"), (_S.VENDOR_MESSAGE_TOO_LONG, "text"),
        (_S.VENDOR_MESSAGE_TOO_LONG, "text"), (_S.VENDOR_INVALID_MACRO, "text")]
    assert "3 parts, at most 2" in results[1].reason
    assert not sink.messages


async def test_a_duplicate_in_one_batch_is_refused_by_the_flood_rule() -> None:
    """Two equal messages in one batch: the second is the duplicate (naming to); a
    third to another number passes."""
    handler, sink, _ = _handler()
    results = await handler.submit_texts(_ctx(), [
        _text("same"), _text("same"), _text("same", to="380501234569")])
    assert [r.status for r in results] == [_S.ESME_ROK, _S.VENDOR_DUPLICATE, _S.ESME_ROK]
    assert results[1].field == "to"
    assert len(sink.messages) == 2


async def test_a_message_the_sink_refuses_is_not_a_duplicate_of_its_retry() -> None:
    """The sink refuses (store full): the flood record is released, so the retry of
    the same message is accepted."""
    sink = MemorySink(accept_status=_S.ESME_RMSGQFUL)
    handler, _, _ = _handler(sink)
    (refused,) = await handler.submit_texts(_ctx(), [_text("retry me")])
    assert refused.status == _S.ESME_RMSGQFUL
    sink.accept_status = _S.ESME_ROK
    (accepted,) = await handler.submit_texts(_ctx(), [_text("retry me")])
    assert accepted.ok


async def test_no_route_names_to_and_the_kind() -> None:
    """A sink answering VENDOR_NO_ROUTE: the refusal names to and the kind."""
    handler, _, _ = _handler(MemorySink(accept_status=_S.VENDOR_NO_ROUTE))
    (result,) = await handler.submit_texts(_ctx(), [_text("__HLR__")])
    assert (result.status, result.field) == (_S.VENDOR_NO_ROUTE, "to")
    assert "hlr" in result.reason


async def test_schedule_and_validity_are_on_steady_time() -> None:
    """schedule_at (a wall date) and validity (seconds) become steady times from the
    handler's clocks: wall 1,000,000 is steady 5,000."""
    handler, sink, _ = _handler()
    (result,) = await handler.submit_texts(_ctx(), [
        _text("later", schedule_at=1_000_600.0, validity=3600.0)])
    message = sink.messages[result.message_id]
    assert (message.schedule_at, message.expire_at) == (5_600.0, 8_600.0)


async def test_flood_rules_of_the_account_apply() -> None:
    """An account with the duplicate rule off takes the same message twice."""
    handler, sink, _ = _handler()
    account = Account("acme", "pw", flood=FloodRules(duplicate_window=0))
    results = await handler.submit_texts(_ctx(account), [_text("x"), _text("x")])
    assert all(r.ok for r in results)
    assert len(sink.messages) == 2
