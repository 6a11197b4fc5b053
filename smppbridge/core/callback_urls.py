"""Which URLs a callback may go to: the rules shared by the HTTP doors (checked when a
message names its ``callback_url``) and the callback dispatcher (checked again on every
attempt, on the addresses the name resolves to, so DNS cannot point it inward later).

Only ``http`` and ``https``; no credentials in the URL; an address in a loopback,
private, link-local, shared (CGNAT), multicast, reserved or unspecified range is refused
unless one of ``[http] callback_allow_networks`` holds it (docs/http.md, *Status
callbacks → What a callback may reach*).
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from collections.abc import Sequence

from smppbridge.core.net import IpNetwork, ip_in_networks

__all__ = ["MAX_URL", "address_refused", "url_problem"]

#: the longest callback URL taken (characters)
MAX_URL = 2048


def address_refused(ip: str, allow: Sequence[IpNetwork]) -> str | None:
    """Why a callback may not go to ``ip`` (a reason naming its range), or None."""
    if ip_in_networks(ip, allow):
        return None
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return f"{ip!r} is not an IP address"
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    for test, name in ((addr.is_loopback, "loopback"), (addr.is_link_local, "link-local"),
                       (addr.is_multicast, "multicast"), (addr.is_unspecified, "unspecified"),
                       (addr in _SHARED, "shared (CGNAT)"), (addr.is_private, "private"),
                       (addr.is_reserved, "reserved")):
        if test:
            return (f"{addr} is a {name} address (list its network in "
                    "[http] callback_allow_networks to allow it)")
    return None


_SHARED = ipaddress.ip_network("100.64.0.0/10")


def url_problem(url: str, allow: Sequence[IpNetwork]) -> str | None:
    """What is wrong with ``url`` as a callback URL, or None. A host given as an IP
    address is checked here; a name is checked by the dispatcher on what it resolves
    to, at each attempt."""
    if len(url) > MAX_URL:
        return f"longer than {MAX_URL} characters"
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"not a URL: {exc}"
    if parts.scheme not in ("http", "https"):
        return "only http:// and https:// URLs are taken"
    host = parts.hostname
    if not host:
        return "the URL has no host"
    if parts.username is not None or parts.password is not None:
        return "credentials in the URL are not taken (sign with callback_secret instead)"
    if port == 0:
        return "port 0 is not a port"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host.rstrip(".").lower() == "localhost" or host.lower().endswith(".localhost"):
            return address_refused("127.0.0.1", allow)
        return None
    return address_refused(host, allow)
