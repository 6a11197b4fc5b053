"""Flow control that needs a clock but no I/O: the per-account token bucket and the
per-IP connection counter."""

from __future__ import annotations

from collections import Counter

__all__ = ["ConnectionLimiter", "TokenBucket"]


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; ``now`` is passed in.

    Shared by every bind of an account, so the account's throughput holds however
    many binds it opens. A rate of 0 means unlimited.
    """

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst) if burst > 0 else max(rate, 1.0)
        self._tokens = self.burst
        self._last = now

    def take(self, now: float, n: float = 1.0) -> bool:
        """Spend ``n`` tokens if available; False means throttle."""
        if self.rate <= 0:
            return True
        elapsed = now - self._last
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
            self._last = now
        if self._tokens >= n:
            self._tokens -= n
            return True
        return False


class ConnectionLimiter:
    """Counts open connections, in total and per peer IP (0 = unlimited)."""

    def __init__(self, max_total: int, max_per_ip: int) -> None:
        self.max_total = max_total
        self.max_per_ip = max_per_ip
        self.total = 0
        self._per_ip: Counter[str] = Counter()

    def admit(self, ip: str) -> bool:
        if self.max_total and self.total >= self.max_total:
            return False
        if self.max_per_ip and self._per_ip[ip] >= self.max_per_ip:
            return False
        self.total += 1
        self._per_ip[ip] += 1
        return True

    def release(self, ip: str) -> None:
        self.total -= 1
        self._per_ip[ip] -= 1
        if self._per_ip[ip] <= 0:
            del self._per_ip[ip]
