"""Token bucket and connection limiter, with an injected clock."""

from __future__ import annotations

from smppbridge.server.flow import ConnectionLimiter, TokenBucket


def test_bucket_allows_burst_then_rate() -> None:
    """A bucket of rate 10/s and burst 5 lets 5 through at once, then 1 per 0.1 s."""
    bucket = TokenBucket(10.0, 5, now=0.0)
    assert [bucket.take(0.0) for _ in range(6)] == [True] * 5 + [False]
    assert not bucket.take(0.05)
    assert bucket.take(0.1)
    assert not bucket.take(0.1)


def test_bucket_never_saves_more_than_burst() -> None:
    """An idle hour does not bank more than the burst."""
    bucket = TokenBucket(10.0, 5, now=0.0)
    assert sum(bucket.take(3600.0) for _ in range(10)) == 5


def test_zero_rate_is_unlimited() -> None:
    """throughput 0 means no limit."""
    bucket = TokenBucket(0.0, 0, now=0.0)
    assert all(bucket.take(0.0) for _ in range(10_000))


def test_limiter_total_and_per_ip() -> None:
    """Connections are refused over the total or per-IP cap and admitted after release."""
    lim = ConnectionLimiter(max_total=3, max_per_ip=2)
    assert lim.admit("a")
    assert lim.admit("a")
    assert not lim.admit("a")
    assert lim.admit("b")
    assert not lim.admit("c")
    lim.release("a")
    assert lim.admit("c")
    assert lim.total == 3


def test_bind_guard_locks_after_failures_and_unlocks_later() -> None:
    """5 failures within the window lock the key for the lockout; then it is free."""
    from smppbridge.server.flow import BindGuard

    guard = BindGuard(max_failures=5, window=60.0, lockout=30.0)
    keys = ("ip:1.2.3.4", "id:acme")
    assert [guard.failed(keys, float(t)) for t in range(5)] == [False] * 4 + [True]
    assert guard.locked(keys, 10.0)
    assert guard.locked(("ip:9.9.9.9", "id:acme"), 10.0)  # the system_id is locked too
    assert not guard.locked(("ip:9.9.9.9", "id:other"), 10.0)
    assert not guard.locked(keys, 34.0)


def test_bind_guard_forgets_old_failures_and_successes() -> None:
    """Failures older than the window do not count; a success clears the count."""
    from smppbridge.server.flow import BindGuard

    guard = BindGuard(max_failures=3, window=10.0, lockout=30.0)
    keys = ("ip:a",)
    guard.failed(keys, 0.0)
    guard.failed(keys, 1.0)
    assert not guard.failed(keys, 20.0)  # the first two are out of the window
    guard.succeeded(keys)
    assert not guard.failed(keys, 21.0)
    assert not guard.failed(keys, 22.0)
    assert guard.failed(keys, 23.0)
    assert not BindGuard(0, 10.0, 10.0).failed(keys, 0.0)  # 0 disables
