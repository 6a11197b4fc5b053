"""What the console's pages show (smppbridge/node/console/views.py and its templates):
times in the configured zone with their offset, search times read in that zone, and
texts rendered as text by the autoescaping templates."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from smppbridge.node.console.routes import Console, Frame
from smppbridge.node.console.views import (
    MessageRow,
    MessageView,
    api_time,
    form_time,
    local_time,
    query_string,
)
from smppbridge.node.models import MessageDetail, MessageItem, Receipt, TimelineItem

KYIV = ZoneInfo("Europe/Kyiv")
#: 2026-12-03 13:04:05 UTC
T = datetime(2026, 12, 3, 13, 4, 5, tzinfo=UTC).timestamp()
EVIL = "<script>alert(1)</script><img src=x onerror=alert(2)>"


def test_times_are_shown_in_the_zone_with_the_offset() -> None:
    """2026-12-03 13:04:05 UTC is 15:04:05 +02:00 in Kyiv in winter, +03:00 in
    summer; in UTC the offset is +00:00; a zone west of Greenwich has a minus."""
    assert local_time(T, KYIV) == "2026-12-03 15:04:05 +02:00"
    summer = datetime(2026, 7, 1, 12, 0, tzinfo=UTC).timestamp()
    assert local_time(summer, KYIV) == "2026-07-01 15:00:00 +03:00"
    assert local_time(T, UTC) == "2026-12-03 13:04:05 +00:00"
    assert local_time(T, ZoneInfo("America/St_Johns")) == "2026-12-03 09:34:05 -03:30"
    assert local_time(None, KYIV) == ""


def test_search_times_are_read_in_the_consoles_zone() -> None:
    """A time without an offset (what datetime-local sends) is in the console's zone;
    UNIX seconds and times with an offset pass as they are, and so does garbage (the
    API's parser names the field); the form shows an API time back in the zone."""
    assert api_time("2026-12-03T15:04:05", KYIV) == "2026-12-03T15:04:05+02:00"
    assert api_time("2026-12-03T15:04", KYIV) == "2026-12-03T15:04:00+02:00"
    assert api_time("2026-12-03T13:04:05Z", KYIV) == "2026-12-03T13:04:05+00:00"
    assert api_time(" 1796303045 ", KYIV) == "1796303045"
    assert api_time("yesterday", KYIV) == "yesterday"
    assert api_time("", KYIV) is None
    assert form_time("2026-12-03T15:04:05+02:00", KYIV) == "2026-12-03T15:04:05"
    assert form_time(str(T), KYIV) == "2026-12-03T15:04:05"
    assert form_time("yesterday", KYIV) == ""


def test_query_strings_leave_out_empty_fields() -> None:
    """Links carry the fields given, url-encoded, and nothing for empty ones."""
    assert query_string({"to": "7900", "from": "", "stat": None}) == "?to=7900"
    assert query_string({"to": "a b&c"}) == "?to=a+b%26c"
    assert query_string({}) == ""


def _item(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": "100", "account": "acme", "from": "Shop", "to": "79001112233", "kind": "sms",
        "encoding": "gsm7", "text": EVIL, "comment": EVIL, "parts": 1, "state": "final",
        "stat": "DELIVRD", "err": 0, "provider": "sim", "provider_id": "p1",
        "submitted_at": "2026-12-03T13:04:05.000Z", "done_at": "2026-12-03T13:04:07.000Z"}
    base.update(fields)
    return base


def test_a_list_row_is_cut_and_zoned() -> None:
    """A long text is cut in the list (the whole of it in the title); times are in
    the zone."""
    row = MessageRow.of(MessageItem.model_validate(_item(text="x" * 200)), KYIV)
    assert len(row.text) == 80
    assert row.text_title == "x" * 200
    assert row.submitted == "2026-12-03 15:04:05 +02:00"
    assert row.href == "/messages/100"
    assert row.stat_class == "ok"


def _frame() -> Frame:
    return Frame(title="t", nav=[], who="operator", logged_in=True, login_href="/login",
                 csrf="tok", node="n", version="0", zone="Europe/Kyiv (UTC+02:00)")


def test_markup_in_texts_is_escaped_on_every_page() -> None:
    """A text, comment, timeline detail or receipt account that is markup renders as
    escaped text on the detail page and in the list: autoescaping is on."""
    console = Console(None, None)  # type: ignore[arg-type]  # rendering needs neither
    detail = MessageDetail.model_validate(dict(
        _item(), part_ids=["100"],
        timeline=[TimelineItem(at="2026-12-03T13:04:05.000Z", state="final",
                               stat="DELIVRD", err=0, detail=EVIL)],
        receipts=[Receipt(part_id="100", system_id=EVIL, stat="DELIVRD", err=0,
                          state="delivered", attempts=1, at="2026-12-03T13:04:07.000Z")]))
    page = console.env.get_template("message.html").render(
        frame=_frame(), m=MessageView.of(detail, KYIV, operator=True),
        json_href="/api/v1/messages/100", href="/messages/100")
    row = MessageRow.of(MessageItem.model_validate(_item()), KYIV)
    table = console.env.get_template("_results.html").render(r={
        "rows": [row], "next_href": "", "error": EVIL, "first_href": "",
        "csv_href": "/api/v1/messages.csv", "show_account": True, "filtered": True})
    for html in (page, table):
        assert "<script>alert" not in html
        assert "<img src=x" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;" in html
    assert page.count("&lt;script&gt;") == 4  # text, comment, timeline, receipt
