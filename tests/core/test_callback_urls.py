"""The callback URL rules (core/callback_urls.py)."""

from __future__ import annotations

import ipaddress

import pytest

from smppbridge.core.callback_urls import MAX_URL, address_refused, url_problem


@pytest.mark.parametrize(("url", "problem"), [
    ("ftp://example.com/x", "only http:// and https://"),
    ("javascript:alert(1)", "only http:// and https://"),
    ("http:///path", "no host"),
    ("http://user:pw@example.com/", "credentials in the URL"),
    ("http://example.com:99999/", "not a URL"),
    ("http://127.0.0.1:8000/dlr", "loopback"),
    ("http://localhost/dlr", "loopback"),
    ("http://[::1]/dlr", "loopback"),
    ("http://10.1.2.3/dlr", "private"),
    ("http://192.168.0.1/dlr", "private"),
    ("http://169.254.169.254/latest/meta-data", "link-local"),
    ("http://100.64.0.1/", "shared (CGNAT)"),
    ("http://[::ffff:10.0.0.1]/", "private"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://224.0.0.1/", "multicast"),
    ("https://example.com/" + "x" * MAX_URL, "longer than"),
])
def test_refused_urls_say_why(url: str, problem: str) -> None:
    """Each refused URL names its problem (the API answers it in the error)."""
    found = url_problem(url, ())
    assert found is not None
    assert problem in found


@pytest.mark.parametrize("url", [
    "https://hooks.example.com/dlr?x=1", "http://93.184.216.34:8080/dlr",
    "http://[2606:2800:220:1::1]/dlr"])
def test_public_urls_are_taken(url: str) -> None:
    """Public addresses and names pass (a name is checked again once resolved)."""
    assert url_problem(url, ()) is None


def test_allow_networks_open_a_private_range() -> None:
    """[http] callback_allow_networks lets the listed ranges through, and only them."""
    allow = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("10.5.0.0/16"))
    assert url_problem("http://127.0.0.1:9/dlr", allow) is None
    assert url_problem("http://localhost:9/dlr", allow) is None
    assert address_refused("10.5.1.1", allow) is None
    assert address_refused("10.6.1.1", allow) is not None
