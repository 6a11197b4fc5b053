"""ContentHandler: submit_sm parts → whole checked messages → sink (docs/content.md)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from smppbridge.core.accounts import Account, FloodRules
from smppbridge.core.message import Address, OutboundMessage
from smppbridge.core.ports import SubmitHandler
from smppbridge.core.records import FailureReason
from smppbridge.core.session import BindType, SessionContext, SubmitResult
from smppbridge.ingest.flood import MemoryFloodState
from smppbridge.ingest.submit import ContentHandler
from smppbridge.smpp.constants import CommandStatus, EsmClass, MessageState, Tag
from smppbridge.smpp.pdu import SubmitSm, Tlv
from smppbridge.testing import CounterIds, MemorySink
from smppbridge.text.concat import ReassemblyConfig, concat_udh, split_text
from smppbridge.text.content import Kind
from smppbridge.text.encoding import encode_text
from smppbridge.text.macros import ContentLimits

S = CommandStatus
ACCOUNT = Account(system_id="acct", password="pw")


def context(system_type: str = "", account: Account = ACCOUNT,
            interface_version: int = 0x34) -> SessionContext:
    return SessionContext(session_id=1, account=account, bind_type=BindType.TRANSMITTER,
                          system_type=system_type, interface_version=interface_version,
                          peer="127.0.0.1:5000")


def submit_sm(short_message: bytes = b"", *, data_coding: int = 0, esm_class: int = 0,
              tlvs: tuple[Tlv, ...] = (), source: str = "SENDER",
              destination: str = "380501234567", registered_delivery: int = 1) -> SubmitSm:
    return SubmitSm(service_type="", source_addr_ton=5, source_addr_npi=0, source_addr=source,
                    dest_addr_ton=1, dest_addr_npi=1, destination_addr=destination,
                    esm_class=esm_class, protocol_id=0, priority_flag=0,
                    schedule_delivery_time="", validity_period="",
                    registered_delivery=registered_delivery, replace_if_present_flag=0,
                    data_coding=data_coding, sm_default_msg_id=0, short_message=short_message,
                    sequence_number=1, command_status=0, tlvs=tlvs)


def long_parts(text: str, data_coding: int = 0, ref: int = 9, *,
               wide: bool = False) -> list[SubmitSm]:
    payloads = split_text(text, data_coding, wide=wide)
    total = len(payloads)
    return [submit_sm(concat_udh(ref, total, i + 1, wide=wide) + p, data_coding=data_coding,
                      esm_class=EsmClass.UDHI) for i, p in enumerate(payloads)]


@dataclass
class Clock:
    now: float = 1_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Harness:
    handler: ContentHandler
    sink: MemorySink
    clock: Clock
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


def make(*, reassembly: ReassemblyConfig | None = None,
         sink: MemorySink | None = None) -> Harness:
    sink = sink or MemorySink()
    clock = Clock()
    counter = itertools.count(1)
    handler = ContentHandler(sink, new_id=lambda ctx: f"id{next(counter)}",
                             reassembly=reassembly, clock=clock)
    return Harness(handler, sink, clock)


def only(sink: MemorySink) -> OutboundMessage:
    assert len(sink.messages) == 1
    return next(iter(sink.messages.values()))


# --- single messages ----------------------------------------------------------------------

def test_content_handler_is_a_submit_handler() -> None:
    """ContentHandler satisfies the server's SubmitHandler protocol (checked by mypy)."""
    handler: SubmitHandler = make().handler
    assert handler is not None


async def test_single_sms_is_accepted_with_its_id() -> None:
    """A GSM submit_sm is decoded and handed to the sink; the resp carries its id."""
    h = make()
    result = await h.handler.submit(context(), submit_sm(encode_text("Hi {there} €", 0)))
    assert result.status == S.ESME_ROK
    assert result.message_id == "id1"
    msg = only(h.sink)
    assert msg.message_id == "id1"
    assert msg.part_ids == ("id1",)
    assert msg.content.kind is Kind.SMS
    assert msg.content.text == "Hi {there} €"
    assert msg.account == "acct"
    assert msg.source == Address("SENDER", 5, 0)
    assert msg.destination == Address("380501234567", 1, 1)
    assert msg.registered_delivery == 1
    assert msg.submitted_at == 1_000.0


@pytest.mark.parametrize(
    ("data_coding", "text"),
    [(0x08, "Привет 😀"), (0x08, "مرحبا"), (0x03, "café"), (0x01, "ascii [x]"),
     (0x04, "octets ñ"), (0x18, "flash ж")],
)
async def test_every_text_coding_reaches_the_sink(data_coding: int, text: str) -> None:
    """Each accepted data_coding is decoded to the same text."""
    h = make()
    result = await h.handler.submit(context(), submit_sm(encode_text(text, data_coding),
                                                         data_coding=data_coding))
    assert result.ok
    assert only(h.sink).content.text == text
    assert only(h.sink).data_coding == data_coding


async def test_flash_class_zero() -> None:
    """data_coding 0x10 / 0xF0 (class 0) → Content.flash."""
    h = make()
    await h.handler.submit(context(), submit_sm(b"flash", data_coding=0xF0))
    assert only(h.sink).content.flash


async def test_iso_system_type_reads_latin1() -> None:
    """Bind system_type "ISO" (any case): data_coding 0 is ISO-8859-1."""
    h = make()
    result = await h.handler.submit(context("iso"), submit_sm("Grüße".encode("latin-1")))
    assert result.ok
    assert only(h.sink).content.text == "Grüße"


async def test_iso_default_account_option() -> None:
    """An account with iso_default reads data_coding 0 as Latin-1 on every bind."""
    h = make()
    iso = Account(system_id="acct", password="pw", iso_default=True)
    assert (await h.handler.submit(context(account=iso), submit_sm("é".encode("latin-1")))).ok
    assert only(h.sink).content.text == "é"


async def test_latin1_on_a_gsm_bind_is_refused() -> None:
    """Without ISO, octets > 0x7F in data_coding 0 → VENDOR_INVALID_DATA_CODING."""
    h = make()
    result = await h.handler.submit(context(), submit_sm("é".encode("latin-1")))
    assert result.status == S.VENDOR_INVALID_DATA_CODING
    assert result.message_id == ""
    assert h.sink.messages == {}


@pytest.mark.parametrize("data_coding", [0x05, 0x06, 0x09, 0x0F, 0x20, 0xC0, 0xE0])
async def test_unsupported_data_coding_is_refused(data_coding: int) -> None:
    """Unknown data_coding → VENDOR_INVALID_DATA_CODING, nothing stored."""
    h = make()
    result = await h.handler.submit(context(), submit_sm(b"x", data_coding=data_coding))
    assert result.status == S.VENDOR_INVALID_DATA_CODING


async def test_binary_port_message_is_refused() -> None:
    """8-bit + port addressing is binary: our providers carry text only."""
    h = make()
    pdu = submit_sm(bytes.fromhex("0605040B8423F0") + b"\x00\x01\xff", data_coding=0x04,
                    esm_class=EsmClass.UDHI)
    result = await h.handler.submit(context(), pdu)
    assert result.status == S.VENDOR_INVALID_DATA_CODING


async def test_message_payload() -> None:
    """Text in message_payload (sm_length 0) is accepted like short_message."""
    h = make()
    text = "long " * 100
    pdu = submit_sm(tlvs=(Tlv(Tag.MESSAGE_PAYLOAD, encode_text(text, 0)),))
    assert (await h.handler.submit(context(), pdu)).ok
    assert only(h.sink).content.text == text


async def test_both_payloads_refused() -> None:
    """short_message and message_payload together → ESME_RINVMSGLEN."""
    h = make()
    pdu = submit_sm(b"a", tlvs=(Tlv(Tag.MESSAGE_PAYLOAD, b"b"),))
    assert (await h.handler.submit(context(), pdu)).status == S.ESME_RINVMSGLEN


async def test_malformed_udh_refused() -> None:
    """UDHI with an overrunning UDH → ESME_RINVESMCLASS."""
    h = make()
    pdu = submit_sm(bytes.fromhex("0A0003"), esm_class=EsmClass.UDHI)
    assert (await h.handler.submit(context(), pdu)).status == S.ESME_RINVESMCLASS


async def test_macro_and_comment_reach_the_sink() -> None:
    """Macros and comments are parsed from the whole text."""
    h = make()
    text = "__VIBER__: Sale\nbutton:Go|https://ex.com\n~~~\ncampaign 1"
    assert (await h.handler.submit(context(), submit_sm(encode_text(text, 8),
                                                        data_coding=8))).ok
    content = only(h.sink).content
    assert content.kind is Kind.VIBER
    assert (content.text, content.button_url, content.comment) == (
        "Sale", "https://ex.com", "campaign 1")


async def test_invalid_macro_refused() -> None:
    """A bad macro → VENDOR_INVALID_MACRO."""
    h = make()
    pdu = submit_sm(encode_text("__CALL__: hi\nvoice:robot", 0))
    result = await h.handler.submit(context(), pdu)
    assert result.status == S.VENDOR_INVALID_MACRO


async def test_too_long_refused() -> None:
    """Text over the account's limit → VENDOR_MESSAGE_TOO_LONG."""
    h = make()
    short = Account(system_id="acct", password="pw", limits=ContentLimits(sms=5))
    assert (await h.handler.submit(context(account=short), submit_sm(b"123456"))).status == \
        S.VENDOR_MESSAGE_TOO_LONG


async def test_ascii_under_gsm_is_read_as_gsm() -> None:
    """GSM 03.38 is not ASCII: 0x5F is '§' and 0x40 is '¡' — ESMEs that write ASCII for
    data_coding 0 must bind with system_type ISO (then '_' and '@' survive)."""
    h = make()
    await h.handler.submit(context(), submit_sm(b"a_b@c", source="S1"))
    await h.handler.submit(context("ISO"), submit_sm(b"a_b@c", source="S2"))
    texts = [m.content.text for m in h.sink.messages.values()]
    assert texts == ["a§b¡c", "a_b@c"]


async def test_raw_smpp_times_are_kept_in_extra() -> None:
    """schedule_delivery_time / validity_period travel raw until parsed downstream."""
    h = make()
    pdu = submit_sm(b"x").with_(validity_period="000001000000000R")
    await h.handler.submit(context(), pdu)
    assert only(h.sink).extra["validity_period"] == "000001000000000R"


# --- long messages ------------------------------------------------------------------------

async def test_long_message_parts_get_ids_and_the_last_carries_the_verdict() -> None:
    """Each part is acked with its own id; the sink gets one message with all part ids."""
    h = make()
    text = "€" * 100 + " end"
    parts = long_parts(text)
    assert len(parts) == 2
    first = await h.handler.submit(context(), parts[0])
    assert first.ok
    assert first.message_id == "id1"
    assert h.sink.messages == {}
    second = await h.handler.submit(context(), parts[1])
    assert second.ok
    assert second.message_id == "id2"
    msg = only(h.sink)
    assert msg.content.text == text
    assert msg.part_ids == ("id1", "id2")
    assert msg.message_id == "id2"


async def test_long_ucs2_out_of_order_with_split_surrogate() -> None:
    """UCS2 parts cut inside a surrogate pair, arriving out of order, decode whole."""
    h = make()
    octets = encode_text("ab" + "😀" * 40, 8)
    cut = 134 - 2  # split inside an emoji: 2 octets of "ab", then 4-octet pairs
    chunks = [octets[:cut + 2], octets[cut + 2:]]
    assert len(chunks[0]) % 4 != 0
    pdus = [submit_sm(concat_udh(3, 2, i + 1, wide=True) + c, data_coding=8,
                      esm_class=EsmClass.UDHI) for i, c in enumerate(chunks)]
    assert (await h.handler.submit(context(), pdus[1])).ok
    assert (await h.handler.submit(context(), pdus[0])).ok
    msg = only(h.sink)
    assert msg.content.text == "ab" + "😀" * 40
    assert msg.part_ids == ("id2", "id1")  # part order, not arrival order


async def test_sar_long_message() -> None:
    """SAR TLVs reassemble like a UDH."""
    h = make()

    def sar(seq: int, body: bytes) -> SubmitSm:
        return submit_sm(body, tlvs=(Tlv(Tag.SAR_MSG_REF_NUM, b"\x00\x07"),
                                     Tlv(Tag.SAR_TOTAL_SEGMENTS, b"\x02"),
                                     Tlv(Tag.SAR_SEGMENT_SEQNUM, bytes([seq]))))

    assert (await h.handler.submit(context(), sar(1, b"Hello, "))).ok
    assert (await h.handler.submit(context(), sar(2, b"world"))).ok
    assert only(h.sink).content.text == "Hello, world"


async def test_query_of_a_waiting_part_is_enroute() -> None:
    """query_sm for a part still waiting for the rest → ENROUTE; then the sink answers."""
    h = make()
    parts = long_parts("x" * 200)
    r1 = await h.handler.submit(context(), parts[0])
    q = await h.handler.query(context(), r1.message_id, "SENDER")
    assert (q.status, q.message_state) == (S.ESME_ROK, MessageState.ENROUTE)
    await h.handler.submit(context(), parts[1])
    q = await h.handler.query(context(), r1.message_id, "SENDER")
    assert q.message_state == MessageState.ACCEPTED
    assert (await h.handler.query(context(), "nope", "SENDER")).status == S.ESME_RQUERYFAIL


async def test_incomplete_message_expires_with_rejectd_parts() -> None:
    """Parts missing after the window: expire() reports the acked parts as failed."""
    h = make(reassembly=ReassemblyConfig(window=60.0))
    parts = long_parts("y" * 400, ref=4)
    assert len(parts) == 3
    await h.handler.submit(context(), parts[0])
    h.clock.now += 10
    await h.handler.submit(context(), parts[2])
    assert h.handler.next_deadline() == 1_060.0
    assert await h.handler.expire(1_059.0) == 0
    h.clock.now = 1_060.0
    assert await h.handler.expire() == 1
    assert h.sink.messages == {}
    (failure,) = h.sink.failures
    assert failure.part_ids == ("id1", "id2")
    assert [p.seq for p in failure.parts] == [1, 3]
    assert failure.reason is FailureReason.INCOMPLETE
    assert failure.status == S.ESME_RSUBMITFAIL
    assert failure.account == "acct"
    assert failure.destination.addr == "380501234567"
    assert failure.parts[0].registered_delivery == 1
    assert failure.text.startswith("y")


async def test_long_message_refused_at_last_part_fails_the_earlier_parts() -> None:
    """A duplicate long message: the final part gets the error, earlier parts are failed."""
    h = make()
    text = "z" * 200
    for pdu in long_parts(text, ref=1):
        assert (await h.handler.submit(context(), pdu)).ok
    p1, p2 = long_parts(text, ref=2)
    assert (await h.handler.submit(context(), p1)).ok  # id3
    final = await h.handler.submit(context(), p2)  # id4
    assert final.status == S.VENDOR_DUPLICATE
    assert final.message_id == ""
    (failure,) = h.sink.failures
    assert failure.part_ids == ("id3",)
    assert failure.reason is FailureReason.REFUSED
    assert failure.status == S.VENDOR_DUPLICATE
    assert failure.text == text


async def test_long_message_with_mixed_codings_is_refused() -> None:
    """Parts of one message with different data_coding → VENDOR_INVALID_DATA_CODING."""
    h = make()
    p1 = submit_sm(concat_udh(5, 2, 1) + b"abc", esm_class=EsmClass.UDHI)
    p2 = submit_sm(concat_udh(5, 2, 2) + b"def", esm_class=EsmClass.UDHI, data_coding=3)
    assert (await h.handler.submit(context(), p1)).ok
    assert (await h.handler.submit(context(), p2)).status == S.VENDOR_INVALID_DATA_CODING
    assert h.sink.failures[0].part_ids == ("id1",)


async def test_too_many_parts_is_refused_on_the_part() -> None:
    """total above max_parts → VENDOR_MESSAGE_TOO_LONG on the first part already."""
    h = make(reassembly=ReassemblyConfig(max_parts=4))
    pdu = submit_sm(concat_udh(5, 5, 1) + b"abc", esm_class=EsmClass.UDHI)
    assert (await h.handler.submit(context(), pdu)).status == S.VENDOR_MESSAGE_TOO_LONG


async def test_reused_reference_fails_the_old_message() -> None:
    """A new message reusing the reference with another total evicts the old parts."""
    h = make()
    await h.handler.submit(context(), submit_sm(concat_udh(5, 3, 1) + b"old",
                                                esm_class=EsmClass.UDHI))
    await h.handler.submit(context(), submit_sm(concat_udh(5, 2, 1) + b"new",
                                                esm_class=EsmClass.UDHI))
    (failure,) = h.sink.failures
    assert failure.reason is FailureReason.REPLACED
    assert failure.part_ids == ("id1",)


async def test_repeated_part_id_gets_into_the_message() -> None:
    """A retransmitted part keeps the text single, and its id is listed for a receipt."""
    h = make()
    p1, p2 = long_parts("r" * 200, ref=6)
    await h.handler.submit(context(), p1)
    await h.handler.submit(context(), p1)
    await h.handler.submit(context(), p2)
    msg = only(h.sink)
    assert msg.content.text == "r" * 200
    assert msg.part_ids == ("id1", "id2", "id3")
    assert msg.extra["part_registered_delivery"] == "1,1,1"


# --- flood and sink -----------------------------------------------------------------------

async def test_duplicate_single_message_refused() -> None:
    """The same text again within 60 s → VENDOR_DUPLICATE; after 60 s accepted."""
    h = make()
    assert (await h.handler.submit(context(), submit_sm(b"same"))).ok
    h.clock.now += 59
    assert (await h.handler.submit(context(), submit_sm(b"same"))).status == S.VENDOR_DUPLICATE
    h.clock.now += 1
    assert (await h.handler.submit(context(), submit_sm(b"same"))).ok


async def test_subscriber_flood_refused() -> None:
    """The 51st message to one destination without a 30 s pause → VENDOR_SUBSCRIBER_FLOOD."""
    h = make()
    for i in range(50):
        h.clock.now += 1
        assert (await h.handler.submit(context(), submit_sm(f"m{i}".encode()))).ok
    h.clock.now += 1
    assert (await h.handler.submit(context(), submit_sm(b"m50"))).status == \
        S.VENDOR_SUBSCRIBER_FLOOD


async def test_flood_statuses_are_configurable_per_account() -> None:
    """FloodRules statuses reach the submit_sm_resp."""
    h = make()
    own = context(account=Account(system_id="acct", password="pw",
                                  flood=FloodRules(duplicate_status=0x4F0)))
    await h.handler.submit(own, submit_sm(b"same"))
    assert (await h.handler.submit(own, submit_sm(b"same"))).status == 0x4F0


async def test_duplicate_digest_includes_the_comment() -> None:
    """Same SMS text with another comment is another request, not a duplicate."""
    h = make()
    for order in ("order 1", "order 2"):
        pdu = submit_sm(encode_text(f"code\n~~~\n{order}", 0))
        assert (await h.handler.submit(context(), pdu)).ok
    assert [m.content.comment for m in h.sink.messages.values()] == ["order 1", "order 2"]
    assert {m.content.text for m in h.sink.messages.values()} == {"code"}


async def test_sink_refusal_answers_and_releases_the_duplicate_record() -> None:
    """The sink's status answers the submit; a retry is not refused as a duplicate."""
    sink = MemorySink(accept_status=S.VENDOR_NO_ROUTE)
    h = make(sink=sink)
    assert (await h.handler.submit(context(), submit_sm(b"once"))).status == S.VENDOR_NO_ROUTE
    sink.accept_status = S.ESME_ROK
    assert (await h.handler.submit(context(), submit_sm(b"once"))).ok


async def test_sink_exception_fails_earlier_parts_and_propagates() -> None:
    """A sink crash propagates (the server answers RSYSERR); earlier parts are failed."""

    class Broken(MemorySink):
        async def accept(self, message: OutboundMessage) -> int:
            raise RuntimeError("store down")

    sink = Broken()
    h = make(sink=sink)
    p1, p2 = long_parts("q" * 200)
    await h.handler.submit(context(), p1)
    with pytest.raises(RuntimeError):
        await h.handler.submit(context(), p2)
    assert sink.failures[0].part_ids == ("id1",)
    assert sink.failures[0].status == S.ESME_RSYSERR


async def test_cancel_and_ready_delegate_to_the_sink() -> None:
    """cancel_sm and readiness are the sink's business."""
    h = make()
    assert await h.handler.cancel(context(), "id1", "SENDER") == S.ESME_RCANCELFAIL
    assert await h.handler.ready()


def test_counter_ids_are_short_for_v33_binds() -> None:
    """SMPP 3.4 §3.4: at most 8 octets of message id for a v3.3 ESME."""
    ids = CounterIds()
    assert len(ids(context(interface_version=0x33))) == 8
    a, b = ids(context()), ids(context())
    assert a != b
    assert a.isdigit()


async def test_flood_record_forgotten_after_a_store_outage() -> None:
    """The store fails after the flood rules recorded the message, and the flood state is
    down too: the record is forgotten before the next check, so the ESME's retry of the
    never-stored message is not refused as a duplicate."""
    from smppbridge.core.errors import StoreUnavailable
    from smppbridge.ingest.flood import MemoryFloodState
    from smppbridge.ingest.submit import ContentHandler
    from smppbridge.testing import MemorySink

    class FlakyFlood(MemoryFloodState):
        down = False

        async def release(self, **kw: object) -> None:  # type: ignore[override]
            if self.down:
                raise StoreUnavailable("flood state down")
            await super().release(**kw)  # type: ignore[arg-type]

    class FlakySink(MemorySink):
        down = False

        async def accept(self, message):  # type: ignore[no-untyped-def]
            if self.down:
                raise StoreUnavailable("store down")
            return await super().accept(message)

    flood, sink = FlakyFlood(), FlakySink()
    handler = ContentHandler(sink, new_id=CounterIds(), flood=flood, clock=lambda: 1000.0)
    ctx = context()
    pdu = SubmitSm(source_addr="s", destination_addr="79001", short_message=b"hello")
    flood.down = sink.down = True
    with pytest.raises(StoreUnavailable):
        await handler.submit(ctx, pdu)
    flood.down = sink.down = False
    result = await handler.submit(ctx, pdu)
    assert result.status == CommandStatus.ESME_ROK


# --- batches (submit_many) ----------------------------------------------------------------

class CountingSink(MemorySink):
    """MemorySink that counts accept_many calls (the batch path's one store operation)."""

    batches = 0

    async def accept_many(self, messages: Sequence[OutboundMessage]) -> list[int]:
        self.batches += 1
        return await super().accept_many(messages)


class RoundTripFlood:
    """A flood state that is not ``immediate`` (like the shared Redis one), backed by
    memory."""

    immediate = False

    def __init__(self) -> None:
        self.inner = MemoryFloodState()
        self.checks = 0

    async def check_and_record(self, **kw: Any) -> int:
        self.checks += 1
        return await self.inner.check_and_record(**kw)

    async def release(self, **kw: Any) -> None:
        await self.inner.release(**kw)


def mixed_batch() -> list[SubmitSm]:
    """One read's worth of submit_sm: good, refused at once, refused as a whole, a
    duplicate inside the batch, and the two parts of a long message."""
    p1, p2 = long_parts("long " * 40, ref=7)
    return [
        submit_sm(b"first"),
        submit_sm(b"x", data_coding=0x05),  # unsupported data_coding
        submit_sm(b"later").with_(schedule_delivery_time="bogus"),
        submit_sm(b"twice"),
        p1,
        submit_sm(b"twice"),  # duplicate of the fourth
        submit_sm("é".encode("latin-1")),  # not GSM 03.38 text
        p2,
        submit_sm(b"last", registered_delivery=0),
    ]


MIXED_STATUSES = [S.ESME_ROK, S.VENDOR_INVALID_DATA_CODING, S.ESME_RINVSCHED, S.ESME_ROK,
                  S.ESME_ROK, S.VENDOR_DUPLICATE, S.VENDOR_INVALID_DATA_CODING, S.ESME_ROK,
                  S.ESME_ROK]


def verdicts(results: Sequence[SubmitResult | Exception]) -> list[tuple[int, bool]]:
    """(status, has a message id) of each result; every entry must be a SubmitResult."""
    out = []
    for r in results:
        assert isinstance(r, SubmitResult), r
        out.append((r.status, bool(r.message_id)))
    return out


def ids_in(sink: MemorySink) -> set[str]:
    return {pid for m in sink.messages.values() for pid in m.part_ids}


async def one_by_one(pdus: Sequence[SubmitSm]) -> tuple[list[tuple[int, bool]], set[str]]:
    """Verdicts of submit() called in order on a fresh handler, and the texts stored."""
    h = make()
    results = [await h.handler.submit(context(), p) for p in pdus]
    return verdicts(results), {m.content.text for m in h.sink.messages.values()}


async def test_submit_many_answers_like_submit_one_by_one() -> None:
    """A mixed batch gets, entry by entry, the verdicts submit() gives one by one: the
    same statuses, a message id exactly where ESME_ROK; single-part messages share
    accept_many calls — the repeated text waits for the sink's answer to the first copy,
    so two calls — and every id handed out is stored."""
    expected, texts = await one_by_one(mixed_batch())
    assert [s for s, _ in expected] == MIXED_STATUSES
    sink = CountingSink()
    h = make(sink=sink)
    got = await h.handler.submit_many(context(), mixed_batch())
    assert verdicts(got) == expected
    assert sink.batches == 2
    assert {m.content.text for m in sink.messages.values()} == texts
    ok_ids = [r.message_id for r in got if isinstance(r, SubmitResult) and r.ok]
    assert len(set(ok_ids)) == len(ok_ids)
    assert set(ok_ids) == ids_in(sink)


async def test_submit_many_sink_crash_is_each_entry_and_releases_duplicates() -> None:
    """accept_many raising: each single-part entry it carried is that exception (refusals
    made before it keep their status), and their duplicate records are released, so
    the ESME's retry of the same texts is accepted."""

    class BrokenBatchSink(MemorySink):
        error: Exception | None = None

        async def accept_many(self, messages: Sequence[OutboundMessage]) -> list[int]:
            if self.error is not None:
                raise self.error
            return await super().accept_many(messages)

    sink = BrokenBatchSink()
    sink.error = RuntimeError("store down")
    h = make(sink=sink)
    pdus = [submit_sm(b"one"), submit_sm(b"x", data_coding=0x05), submit_sm(b"two")]
    got = await h.handler.submit_many(context(), pdus)
    assert got[0] is sink.error
    assert got[2] is sink.error
    assert verdicts(got[1:2]) == [(S.VENDOR_INVALID_DATA_CODING, False)]
    assert sink.messages == {}
    sink.error = None
    retry = await h.handler.submit_many(context(), [pdus[0], pdus[2]])
    assert verdicts(retry) == [(S.ESME_ROK, True)] * 2


async def test_submit_many_without_an_immediate_flood_state_goes_through_submit() -> None:
    """A flood state that may suspend (not ``immediate``): every entry goes through
    submit() (no accept_many), and the verdicts still match one by one."""
    expected, texts = await one_by_one(mixed_batch())
    sink, flood = CountingSink(), RoundTripFlood()
    ids = itertools.count(1)
    handler = ContentHandler(sink, new_id=lambda ctx: f"id{next(ids)}", flood=flood,
                             clock=Clock())
    got = await handler.submit_many(context(), mixed_batch())
    assert verdicts(got) == expected
    assert sink.batches == 0
    assert flood.checks > 0
    assert {m.content.text for m in sink.messages.values()} == texts


async def test_submit_many_sink_refusal_does_not_make_a_later_equal_text_a_duplicate(
) -> None:
    """The sink refuses (no route): two equal texts of one batch both get the sink's
    status, as one by one, not VENDOR_DUPLICATE for a message that was never stored."""
    pdus = [submit_sm(b"twice"), submit_sm(b"twice")]
    one = make(sink=MemorySink(accept_status=S.VENDOR_NO_ROUTE))
    expected = verdicts([await one.handler.submit(context(), p) for p in pdus])
    assert expected == [(S.VENDOR_NO_ROUTE, False)] * 2
    many = make(sink=MemorySink(accept_status=S.VENDOR_NO_ROUTE))
    assert verdicts(await many.handler.submit_many(context(), pdus)) == expected
