"""MO routing (core.mo) and its config (``[[mo_routes]]``, account ``mo``/``mo_url``),
with no network."""

from __future__ import annotations

import pytest

from smppbridge.config import ConfigError, parse_config
from smppbridge.core.mo import MoRoute, mo_channels, route_mo

ROUTES = (
    MoRoute("quiz", prefixes=("1234",), keywords=frozenset({"QUIZ", "Q"})),
    MoRoute("shop", to=frozenset({"1234", "5555"})),
    MoRoute("rest", prefixes=("12",)),
)


@pytest.mark.parametrize(("to", "text", "account"), [
    ("1234", "quiz 1 2 3", "quiz"),          # keyword, any case
    ("12345", "Q answer", "quiz"),           # prefix + another keyword
    ("1234", "quizzes", "shop"),             # a first word, not a prefix of one
    ("+1234", "hello", "shop"),              # exact to, leading + ignored
    ("1299", "hello", "rest"),               # the next route's prefix
    ("5555", "", "shop"),                    # an empty text matches a route with no keyword
    ("9999", "quiz", None),                  # no route: unroutable
    ("12345", "", "rest"),                   # keyword route needs a first word
])
def test_first_matching_route_in_file_order_wins(to: str, text: str,
                                                 account: str | None) -> None:
    assert route_mo(ROUTES, to, text) == account


def test_a_route_with_neither_to_nor_prefix_matches_every_number() -> None:
    assert route_mo([MoRoute("all", keywords=frozenset({"STOP"}))], "777", "stop now") == "all"
    assert route_mo([MoRoute("all")], "777", "anything") == "all"


def test_mo_channels_follow_mo_and_mo_url() -> None:
    assert mo_channels("smpp", "") == (True, False)
    assert mo_channels("http", "https://x") == (False, True)
    assert mo_channels("both", "https://x") == (True, True)


BASE = '[[accounts]]\nsystem_id = "shop"\npassword = "pw"\n'


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse_config(text, env={})
    return list(exc.value.problems)


def test_mo_routes_parse_in_file_order() -> None:
    cfg = parse_config(BASE + '[[mo_routes]]\nprefix = ["+12", "34"]\nkeyword = "quiz"\n'
                       'account = "shop"\n[[mo_routes]]\nto = "5555"\naccount = "shop"\n',
                       env={})
    assert cfg.mo_routes == (MoRoute("shop", prefixes=("12", "34"),
                                     keywords=frozenset({"QUIZ"})),
                             MoRoute("shop", to=frozenset({"5555"})))
    assert cfg.accounts[0].mo == "smpp"


def test_mo_route_problems_are_named_by_place_with_did_you_mean() -> None:
    problems = _problems(BASE + '[[mo_routes]]\nto = "1"\naccount = "shop"\n'
                         '[[mo_routes]]\nprefx = "1"\naccount = "shp"\nkeyword = "two words"\n'
                         '[[mo_routes]]\nto = "1"\nprefix = "2"\n')
    assert problems == [
        "mo_routes[1].prefx: unknown key (did you mean prefix?)",
        "mo_routes[1].account: unknown account 'shp' (did you mean shop?)",
        "mo_routes[1].keyword: 'TWO WORDS' is not one word",
        "mo_routes[2].account: required (the system_id the MO goes to)",
        "mo_routes[2].prefix: give to (exact numbers) or prefix, not both",
    ]


def test_account_mo_keys_are_checked() -> None:
    assert _problems(BASE + 'mo = "http"\n') == [
        "accounts[shop].mo_url: required with mo = 'http' (where mobile-originated "
        "messages are POSTed)"]
    assert _problems(BASE + 'mo = "fax"\n') == [
        "accounts[shop].mo: must be one of smpp, http, both, got 'fax'"]
    assert _problems(BASE + 'mo_url = "ftp://x"\n') == [
        "accounts[shop].mo_url: must be an http:// or https:// URL with a host, got 'ftp://x'"]
    cfg = parse_config(BASE + 'mo_url = "https://crm.example/mo"\n', env={})
    assert cfg.accounts[0].mo == "http"  # the default once mo_url is set


def test_account_mo_parts_is_join_or_parts() -> None:
    assert parse_config(BASE, env={}).accounts[0].mo_parts == "join"
    assert parse_config(BASE + 'mo_parts = "parts"\n', env={}).accounts[0].mo_parts == "parts"
    assert _problems(BASE + 'mo_parts = "split"\n') == [
        "accounts[shop].mo_parts: must be one of join, parts, got 'split'"]
