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


class BindGuard:
    """Brute-force protection: after ``max_failures`` failed binds within ``window``
    seconds from one IP address, or for one system_id, further binds from that IP / for
    that system_id are refused for ``lockout`` seconds without checking the password.

    ``max_failures = 0`` disables it. Time is passed in.
    """

    def __init__(self, max_failures: int, window: float, lockout: float) -> None:
        self.max_failures = max_failures
        self.window = window
        self.lockout = lockout
        self._failures: dict[str, list[float]] = {}
        self._locked_until: dict[str, float] = {}

    def locked(self, keys: tuple[str, ...], now: float) -> bool:
        if not self.max_failures:
            return False
        locked = False
        for key in keys:
            until = self._locked_until.get(key)
            if until is None:
                continue
            if now < until:
                locked = True
            else:
                del self._locked_until[key]
        return locked

    def failed(self, keys: tuple[str, ...], now: float) -> bool:
        """Record a failure; True when it locked one of the keys."""
        if not self.max_failures:
            return False
        newly = False
        for key in keys:
            recent = [t for t in self._failures.get(key, ()) if now - t < self.window]
            recent.append(now)
            if len(recent) >= self.max_failures:
                self._locked_until[key] = now + self.lockout
                self._failures.pop(key, None)
                newly = True
            else:
                self._failures[key] = recent
        if len(self._failures) > 100_000:
            self._failures.clear()
        return newly

    def succeeded(self, keys: tuple[str, ...]) -> None:
        for key in keys:
            self._failures.pop(key, None)
