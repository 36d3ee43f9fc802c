"""Rate limits: a token bucket per connection, login attempts per address."""

from __future__ import annotations

from tessera.portal.ratelimit import AttemptCounter, TokenBucket


def test_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=10, burst=5)
    assert all(bucket.allow(0.0) for _ in range(5))
    assert not bucket.allow(0.0)
    assert bucket.allow(0.1)  # one token back after 1/10 s
    assert not bucket.allow(0.1)
    assert sum(bucket.allow(10.0) for _ in range(10)) == 5  # never more than the burst


def test_attempts_per_key_in_a_window() -> None:
    counter = AttemptCounter(limit=3, window=60)
    assert all(counter.allow("1.2.3.4", t) for t in (0, 1, 2))
    assert not counter.allow("1.2.3.4", 3)
    assert counter.allow("5.6.7.8", 3)  # another address is not affected
    assert counter.allow("1.2.3.4", 61)  # the first attempt left the window
