"""core.callbacks: which events a callback asks for, the three request shapes, the
signature as docs/http.md tells a receiver to check it, and the retry schedule."""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.parse

import pytest

from smppbridge.core.callbacks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    CallbackEvent,
    EventKind,
    MessageFacts,
    build_request,
    callback_body,
    events_wanted,
    hlr_dict,
    json_status,
    new_event,
    parse_retry_after,
    retry_delay,
)
from smppbridge.core.outcomes import HlrResult

NOW = 1_796_000_000.0  # 2026-11-30T...


def _event(kind: EventKind = EventKind.FINAL, stat: str = "DELIVRD", err: int = 0,
           url: str = "https://cb.example/hook", hlr: str = "") -> CallbackEvent:
    return new_event(kind, message_id="42", account="acme", url=url, stat=stat, err=err,
                     at=NOW, since=NOW, ttl=60.0, hlr_fields=hlr)


FACTS = MessageFacts(source="Shop", destination="0079001234567", client_ref="order-7",
                     parts=2, provider="mysmpp", provider_id="P-9", submitted_at=NOW - 30,
                     text="Your code is 1234 thanks", data_coding=0)


def _verify(secret: str, timestamp: str, signed: bytes, signature: str) -> bool:
    """The receiver's check, as docs/http.md shows it."""
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + signed,
                        hashlib.sha256).hexdigest()
    return hmac.compare_digest("v1=" + expected, signature)


def test_json_callback_has_exactly_the_documented_fields_and_a_valid_signature() -> None:
    ev = _event()
    req = build_request(ev, FACTS, attempt=3, secret="s3cret", now=NOW + 5)
    body = json.loads(req.body)
    assert set(body) == {"event_id", "attempt", "message_id", "client_ref", "account",
                         "from", "to", "status", "stat", "err", "parts", "provider",
                         "provider_message_id", "submitted_at", "done_at"}
    assert body["event_id"] == ev.event_id
    assert len(ev.event_id) == 32
    assert body["attempt"] == 3
    assert body["status"] == "delivered"
    assert body["stat"] == "DELIVRD"
    assert body["err"] == "000"
    assert body["from"] == "Shop"
    assert body["to"] == "0079001234567"
    assert body["client_ref"] == "order-7"
    assert body["parts"] == 2
    assert body["provider_message_id"] == "P-9"
    assert body["done_at"].endswith("Z")
    assert body["done_at"].startswith("2026-")
    assert req.method == "POST"
    assert req.headers["Content-Type"] == "application/json"
    assert req.headers[TIMESTAMP_HEADER] == str(int(NOW + 5))
    assert _verify("s3cret", req.headers[TIMESTAMP_HEADER], req.body,
                   req.headers[SIGNATURE_HEADER])
    assert not _verify("other", req.headers[TIMESTAMP_HEADER], req.body,
                       req.headers[SIGNATURE_HEADER])


def test_unsigned_without_a_secret() -> None:
    req = build_request(_event(), FACTS, attempt=1, secret="", now=NOW)
    assert SIGNATURE_HEADER not in req.headers
    assert TIMESTAMP_HEADER not in req.headers


def test_json_carries_hlr_fields_of_an_hlr_message() -> None:
    hlr = HlrResult(imsi="250991234567890", msc="79010000001", mcc="250", mnc="99",
                    cn="RU", net="Beeline Moscow", rcn="", rnet="").receipt_fields()
    body = json.loads(build_request(_event(hlr=hlr), FACTS, attempt=1, secret="",
                                    now=NOW).body)
    assert body["imsi"] == "250991234567890"
    assert body["net"] == "Beeline Moscow"
    assert {"imsi", "msc", "mcc", "mnc", "cn", "net", "rcn", "rnet"} <= set(body)
    assert hlr_dict(hlr)["mcc"] == "250"


@pytest.mark.parametrize(("kind", "stat", "status"), [
    (EventKind.SENT, "ENROUTE", "sent"), (EventKind.FINAL, "DELIVRD", "delivered"),
    (EventKind.FINAL, "UNDELIV", "undelivered"), (EventKind.FINAL, "EXPIRED", "expired"),
    (EventKind.NACK, "REJECTD", "rejected"), (EventKind.FINAL, "UNKNOWN", "failed"),
    (EventKind.NACK, "DELETED", "failed")])
def test_json_status_words(kind: EventKind, stat: str, status: str) -> None:
    assert json_status(kind, stat) == status


@pytest.mark.parametrize(("fmt", "level", "kind", "stat", "wanted"), [
    ("json", "", EventKind.FINAL, "DELIVRD", True),
    ("json", "", EventKind.SENT, "ENROUTE", False),
    ("json", "3", EventKind.SENT, "ENROUTE", True),
    ("json", "1", EventKind.FINAL, "DELIVRD", True),
    ("jasmin", "1", EventKind.SENT, "ENROUTE", True),
    ("jasmin", "1", EventKind.FINAL, "DELIVRD", False),
    ("jasmin", "1", EventKind.NACK, "REJECTD", True),
    ("jasmin", "2", EventKind.SENT, "ENROUTE", False),
    ("jasmin", "2", EventKind.FINAL, "UNDELIV", True),
    ("jasmin", "3", EventKind.SENT, "ENROUTE", True),
    ("kannel", "1", EventKind.FINAL, "DELIVRD", True),
    ("kannel", "1", EventKind.FINAL, "UNDELIV", False),
    ("kannel", "2", EventKind.FINAL, "UNDELIV", True),
    ("kannel", "8", EventKind.SENT, "ENROUTE", True),
    ("kannel", "19", EventKind.SENT, "ENROUTE", False),
    ("kannel", "16", EventKind.NACK, "REJECTD", True),
    ("kannel", "3", EventKind.NACK, "REJECTD", False),
    ("kannel", "", EventKind.FINAL, "DELIVRD", False),
])
def test_events_each_format_and_level_asks_for(fmt: str, level: str, kind: EventKind,
                                               stat: str, wanted: bool) -> None:
    assert events_wanted(fmt, level, kind, stat) is wanted


def test_jasmin_level2_get_carries_jasmins_dlr_parameters_and_signs_the_query() -> None:
    facts = MessageFacts(**{**_facts_dict(), "fmt": "jasmin", "method": "GET", "level": "3"})
    ev = _event(stat="UNDELIV", err=5, url="http://cb.example/dlr?k=1")
    req = build_request(ev, facts, attempt=1, secret="k", now=NOW)
    parts = urllib.parse.urlsplit(req.url)
    q = dict(urllib.parse.parse_qsl(parts.query))
    assert req.method == "GET"
    assert req.body == b""
    assert q["k"] == "1"
    assert q["id"] == "42"
    assert q["level"] == "2"
    assert q["message_status"] == "UNDELIV"
    assert q["connector"] == "mysmpp"
    assert q["id_smsc"] == "P-9"
    assert q["sub"] == "001"
    assert q["dlvrd"] == "000"
    assert q["err"] == "005"
    assert len(q["subdate"]) == 10
    assert len(q["donedate"]) == 10
    assert q["text"] == "Your code is 1234 th"
    assert _verify("k", req.headers[TIMESTAMP_HEADER], parts.query.encode(),
                   req.headers[SIGNATURE_HEADER])


def test_jasmin_level1_post_form_is_the_submits_answer() -> None:
    facts = MessageFacts(**{**_facts_dict(), "fmt": "jasmin", "method": "POST"})
    req = build_request(_event(EventKind.SENT, "ENROUTE"), facts, attempt=1, secret="",
                        now=NOW)
    form = dict(urllib.parse.parse_qsl(req.body.decode()))
    assert req.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert form == {"id": "42", "level": "1", "connector": "mysmpp",
                    "message_status": "ESME_ROK"}


def test_kannel_escapes_are_replaced_url_encoded() -> None:
    facts = MessageFacts(**{**_facts_dict(), "fmt": "kannel", "level": "31"})
    url = ("http://k.example/dlr?s=%d&a=%A&p=%p&P=%P&q=%q&Q=%Q&i=%i&I=%I&F=%F&T=%T"
           "&t=%t&n=%n&o=%o&c=%c&b=%b&k=%k&pct=%%&x=%z")
    req = build_request(_event(url=url), facts, attempt=1, secret="", now=NOW)
    assert req.method == "GET"
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(req.url).query))
    assert q["s"] == "1"
    assert q["a"].startswith("id:42 sub:001 dlvrd:001 submit date:")
    assert "stat:DELIVRD err:000" in q["a"]
    assert q["p"] == "0079001234567"
    assert q["P"] == "Shop"
    assert q["q"] == "+79001234567"
    assert q["Q"] == "Shop"
    assert q["i"] == "mysmpp"
    assert q["I"] == "42"
    assert q["F"] == "P-9"
    assert q["T"] == str(int(NOW))
    assert len(q["t"]) == 16
    assert q["n"] == "acme"
    assert q["o"] == "acme"
    assert q["c"] == "0"
    assert q["b"] == "Your code is 1234 thanks"
    assert q["k"] == "Your"
    assert q["pct"] == "%"
    assert q["x"] == "%z"
    nack = build_request(_event(EventKind.NACK, "REJECTD", 88, url="http://k/?s=%d&a=%A"),
                         facts, attempt=1, secret="", now=NOW)
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(nack.url).query))
    assert q == {"s": "16", "a": "NACK/088/REJECTD"}


def _facts_dict() -> dict[str, object]:
    return {name: getattr(FACTS, name) for name in MessageFacts.__dataclass_fields__}


def test_event_round_trips_through_its_stored_body() -> None:
    ev = _event(hlr="imsi:1 msc:2")
    assert CallbackEvent(**callback_body(ev)) == ev


def test_retry_schedule_doubles_from_5s_to_15min_then_stays() -> None:
    assert [retry_delay(n) for n in range(1, 11)] == [5, 10, 20, 40, 80, 160, 320, 640,
                                                      900, 900]
    assert retry_delay(500) == 900


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    assert parse_retry_after("120", NOW) == 120
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412480.0 - 30) == 30
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412480.0 + 30) == 0
    assert parse_retry_after("999999", NOW) == 3600
    assert parse_retry_after("soon", NOW) is None
    assert parse_retry_after(None, NOW) is None
