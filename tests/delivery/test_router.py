"""Routing by account, prefix and kind, and failover along the route, driven by the
simulator's fault switches over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from smppbridge.config import parse_route
from smppbridge.core.errors import NoRoute
from smppbridge.core.outcomes import Err, SendResult
from smppbridge.core.routes import Route
from smppbridge.delivery.router import Router
from smppbridge.delivery.runner import ProviderRunner
from smppbridge.providers import build_provider
from smppbridge.providers.simulator.settings import Rule, SimConfig
from smppbridge.simulator.app import Simulator
from smppbridge.smpp.constants import CommandStatus
from smppbridge.smpp.receipts import Stat
from smppbridge.text.content import Kind
from tests.providers.helpers import FakeClock, RecordingSleep, message, settings


def _router(routes: list[Route], account_providers: dict[str, list[str]]) -> Router:
    runners = {}
    for name, ptype in (("xml", "mysmpp-xml"), ("fly", "smsfly"), ("hj", "http-json"),
                        ("sim", "simulator")):
        s = settings(ptype, "http://127.0.0.1:9", name=name)
        runners[name] = ProviderRunner(build_provider(s), s)
    return Router(runners, routes, account_providers)


async def test_account_default_route_and_kind_filter() -> None:
    """Without a matching route the account's providers are the route; providers that
    cannot carry the kind are dropped."""
    r = _router([], {"acc": ["fly", "xml", "hj"]})
    try:
        assert r.resolve("acc", "79030000000", Kind.SMS) == ("fly", "xml")
        assert r.resolve("acc", "79030000000", Kind.PING) == ("xml",)
        assert r.resolve("acc", "79030000000", Kind.MAIL) == ("hj",)
    finally:
        await r.aclose()


async def test_routes_match_account_prefix_and_kind_in_order() -> None:
    """The first route matching account, destination prefix and kind wins."""
    routes = [
        Route(("fly",), prefixes=("380",)),
        Route(("hj",), kinds=frozenset({Kind.HLR})),
        Route(("sim",), accounts=frozenset({"vip"})),
    ]
    r = _router(routes, {"acc": ["xml"], "vip": ["xml"]})
    try:
        assert r.resolve("acc", "+380501234567", Kind.SMS) == ("fly",)
        assert r.resolve("acc", "79030000000", Kind.HLR) == ("hj",)
        assert r.resolve("vip", "79030000000", Kind.SMS) == ("sim",)
        assert r.resolve("acc", "79030000000", Kind.SMS) == ("xml",)
    finally:
        await r.aclose()


async def test_no_provider_for_the_kind_is_no_route() -> None:
    """A kind no provider of the route carries raises NoRoute with VENDOR_NO_ROUTE."""
    r = _router([Route(("fly",), prefixes=("380",))], {"acc": ["xml", "hj"]})
    try:
        with pytest.raises(NoRoute) as info:
            r.resolve("acc", "380501234567", Kind.PING)
        assert info.value.status is CommandStatus.VENDOR_NO_ROUTE
        with pytest.raises(NoRoute):
            r.resolve("nobody", "79030000000", Kind.SMS)
        out = await r.send(message(account="nobody"))
        assert (out.result, out.err) == (SendResult.REJECTED, Err.KIND_UNSUPPORTED)
    finally:
        await r.aclose()


def test_parse_route_validates_keys() -> None:
    """[[routes]] tables: strings or lists; unknown providers, kinds and keys are errors."""
    route = parse_route({"account": "a", "prefix": ["+380", "7"], "kind": ["sms", "viber"],
                         "providers": ["x", "y"]}, 0, ["x", "y"])
    assert route == Route(("x", "y"), frozenset({"a"}), ("380", "7"),
                          frozenset({Kind.SMS, Kind.VIBER}))
    with pytest.raises(ValueError,
                       match=r"^routes\[1\]\.providers: unknown provider 'z' \(known: x\)$"):
        parse_route({"providers": ["z"]}, 1, ["x"])
    with pytest.raises(ValueError, match=r"^routes\[0\]\.kind: unknown kind"):
        parse_route({"providers": ["x"], "kind": "fax"}, 0, ["x"])
    with pytest.raises(ValueError, match=r"^routes\[0\]\.providers: required$"):
        parse_route({}, 0, ["x"])
    with pytest.raises(ValueError, match=r"^routes\[0\]\.weight: unknown key$"):
        parse_route({"providers": ["x"], "weight": 1}, 0, ["x"])


@pytest.fixture
async def two_simulators() -> AsyncIterator[tuple[Simulator, str, Simulator, str]]:
    a, b = Simulator(clock=FakeClock()), Simulator(clock=FakeClock())
    ha, pa = await a.start(webhook_interval=None)
    hb, pb = await b.start(webhook_interval=None)
    try:
        yield a, f"http://{ha}:{pa}", b, f"http://{hb}:{pb}"
    finally:
        await a.aclose()
        await b.aclose()


def _failover_router(url_a: str, url_b: str, clock: FakeClock) -> Router:
    runners = {}
    for name, url in (("a", url_a), ("b", url_b)):
        s = settings("mysmpp-xml", url, name=name, batch_size=1, retries=1,
                     breaker_threshold=2, breaker_reset=60)
        runners[name] = ProviderRunner(build_provider(s), s, clock=clock,
                                       sleep=RecordingSleep())
    return Router(runners, [], {"acc": ["a", "b"]})


async def test_failover_to_the_next_provider_when_one_is_down(
        two_simulators: tuple[Simulator, str, Simulator, str]) -> None:
    """A provider that drops connections is retried, then the next provider takes the
    message; once its breaker is open it is skipped without a request."""
    a, url_a, b, url_b = two_simulators
    clock = FakeClock()
    r = _failover_router(url_a, url_b, clock)
    try:
        a.engine.control({"down_for": 3600})
        out = await r.send(message("1"))
        assert (out.result, out.provider) == (SendResult.ACCEPTED, "b")
        assert a.engine.counters["dropped"] == 2  # first try + one retry
        out2 = await r.send(message("2"))
        assert out2.provider == "b"
        assert a.engine.counters["requests"] == 2  # breaker open: a was skipped
        assert b.engine.counters["accepted"] == 2
    finally:
        await r.aclose()


async def test_rejection_does_not_fail_over(
        two_simulators: tuple[Simulator, str, Simulator, str]) -> None:
    """A per-message refusal (stop list) is final: REJECTD err 101 from the first provider."""
    a, url_a, b, url_b = two_simulators
    a.engine.control({"rules": [{"pattern": "*", "outcome": "stop_list"}]})
    r = _failover_router(url_a, url_b, FakeClock())
    try:
        out = await r.send(message())
    finally:
        await r.aclose()
    assert (out.result, out.stat, out.err, out.provider) == (
        SendResult.REJECTED, Stat.REJECTD, Err.STOP_LIST, "a")
    assert b.engine.counters["requests"] == 0


async def test_all_providers_failing_is_undeliv_301(
        two_simulators: tuple[Simulator, str, Simulator, str]) -> None:
    """When every provider of the route fails, the outcome is FAILED, UNDELIV err 301."""
    a, url_a, b, url_b = two_simulators
    a.engine.control({"fail_next": 10})
    b.engine.control({"fail_next": 10})
    r = _failover_router(url_a, url_b, FakeClock())
    try:
        out = await r.send(message())
    finally:
        await r.aclose()
    assert (out.result, out.stat, out.err, out.provider) == (
        SendResult.FAILED, Stat.UNDELIV, Err.UNAVAILABLE, "b")


async def test_viber_routes_past_providers_without_viber() -> None:
    """A Viber message skips a provider that carries only mail and goes to the simulator."""
    s_hj = settings("http-json", "http://127.0.0.1:9", name="hj")
    s_sim = settings("simulator", name="sim", simulator={
        "rules": [{"pattern": "7*", "outcome": "delivered"}]})
    r = Router({"hj": ProviderRunner(build_provider(s_hj), s_hj),
                "sim": ProviderRunner(build_provider(s_sim), s_sim)},
               [Route(("hj", "sim"), kinds=frozenset({Kind.VIBER}))], {})
    try:
        out = await r.send(message(kind=Kind.VIBER, fallback_text="sms"))
    finally:
        await r.aclose()
    assert (out.result, out.provider) == (SendResult.ACCEPTED, "sim")


def test_simulator_rule_type_is_exported() -> None:
    """Rule.make validates outcomes (used by route tests above through SimConfig)."""
    with pytest.raises(ValueError, match="unknown outcome"):
        Rule.make("*", "lost")
    assert SimConfig(rules=(Rule.make("7*", "expired"),)).outcome_for("7903") == "expired"
