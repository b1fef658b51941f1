"""The gateway's per-client rate limit (services/gateway/limits.py): a token bucket over an injected clock."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.gateway import limits
from services.gateway.limits import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_is_allowed_then_refused_with_the_wait_until_the_next_request() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("a") == 0.5
    clock.now = 0.5
    assert limiter.acquire("a") == 0.0


def test_each_client_has_its_own_bucket() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, clock=Clock())
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") > 0
    assert limiter.acquire("b") == 0.0


@given(
    rate=st.floats(0.5, 100),
    burst=st.integers(1, 50),
    steps=st.lists(st.floats(0, 2), min_size=1, max_size=200),
)
def test_never_more_than_the_burst_plus_the_rate_over_the_time_elapsed(
    rate: float, burst: int, steps: list[float]
) -> None:
    clock = Clock()
    limiter = RateLimiter(rate, burst, clock)
    allowed = 0
    for step in steps:
        clock.now += step
        allowed += limiter.acquire("a") == 0.0
    assert allowed <= burst + rate * clock.now + 1e-9


def test_memory_stays_bounded_when_many_clients_come_and_go(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(limits, "MAX_CLIENTS", 10)
    clock = Clock()
    limiter = RateLimiter(rate=1.0, burst=1, clock=clock)
    for n in range(100):
        clock.now += 0.1
        limiter.acquire(f"client-{n}")
        assert len(limiter._buckets) <= 10
