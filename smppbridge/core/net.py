"""Network values every layer reads: a listen address, and networks of allowed peers."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["HostPort", "IpNetwork", "ip_in_networks"]

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class HostPort:
    """A listen address (``[smpp] listen``, ``[http] listen`` ...)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def ip_in_networks(ip: str, networks: Sequence[IpNetwork]) -> bool:
    """Is ``ip`` in one of ``networks``? An IPv4-mapped IPv6 address counts as its IPv4
    address; a string that is no address is in none."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr in net for net in networks)
