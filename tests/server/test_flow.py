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
