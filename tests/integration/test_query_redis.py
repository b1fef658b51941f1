"""Merged history shared through Redis: hits equal the database's answer, a changed market is never served from
a stale entry, and a Redis outage (a private redis-server stopped and started mid-test) costs no read."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime, timedelta

import asyncpg
import grpc
import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from oddstore.v1 import query_pb2 as pb
from oddstore.v1 import query_pb2_grpc
from services.query import bootstrap
from services.query.config import QuerySettings
from services.query.grpc_api import point_to_pb
from services.query.history_cache import history_key
from services.query.history_repository import HistoryReader
from services.retention.config import RetentionSettings
from services.retention.retention import Retention
from tests.factories import market, new_event_id, now, snapshot, write
from tests.feeds import ServedWriter
from tests.polling import TIMEOUT_SECONDS, eventually
from tests.redis_server import RedisServer

BACKOFF = 1.0
# Far above the production default (0.1 s), so that a loaded machine never turns a slow answer into a Redis error;
# the hang test below waits on it and needs only that it is finite.
REDIS_TIMEOUT = 1.0


class SteppedClock:
    """The Redis back-off's clock: it moves only when a test steps it, so "within the back-off" cannot depend on
    how fast the machine is."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Service:
    def __init__(self, app: bootstrap.QueryApp, clock: SteppedClock, served: ServedWriter) -> None:
        self.app = app
        self.clock = clock
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{app.server.port}")
        self.stub = query_pb2_grpc.QueryServiceStub(self.channel)
        self.served = served  # the writer whose change feed the service follows
        self.writer = served.writer

    async def close(self) -> None:
        await self.channel.close()
        await self.app.stop(1)
        await self.served.stop()
        await self.served.pool.close()

    async def history(self, event_id: int) -> list[pb.HistoryPoint]:
        reply = await self.stub.GetMarketHistory(
            pb.GetMarketHistoryRequest(event_id=event_id, market_id="3743", bookmaker_slug="betpawa")
        )
        return list(reply.points)

    async def from_database(self, event_id: int) -> list[pb.HistoryPoint]:
        """The answer PostgreSQL gives, without Redis."""
        h = await HistoryReader(self.app.pool).market_history(event_id, "3743", "betpawa", None, None, None)
        return [point_to_pb(p) for p in h.points]

    async def write(
        self, event_id: int, at: datetime, odds: tuple[float, ...], kickoff: datetime | None = None
    ) -> None:
        kickoff = kickoff or now() + timedelta(days=2)
        await write(self.writer, [snapshot(event_id, at, [market(odds=odds)], kickoff=kickoff)])

    async def cached(self, event_id: int) -> None:
        await eventually(lambda: event_id in self.app.cache.events, f"event {event_id} in the in-memory cache")


async def _start(migrated_dsn: str, redis_url: str | None) -> Service:
    served = await ServedWriter.start(await asyncpg.create_pool(migrated_dsn, min_size=1, max_size=2))
    settings = QuerySettings(
        writers=served.address,
        database_url=migrated_dsn,
        listen="127.0.0.1:0",
        database_wait_seconds=5,
        redis_url=redis_url,
        redis_backoff_seconds=BACKOFF,
        redis_connect_timeout_seconds=REDIS_TIMEOUT,
        redis_timeout_seconds=REDIS_TIMEOUT,
    )
    clock = SteppedClock()
    return Service(await bootstrap.start(settings, history_clock=clock), clock, served)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.close()


@pytest.fixture
async def service(migrated_dsn: str, redis_server: RedisServer) -> AsyncIterator[Service]:
    s = await _start(migrated_dsn, redis_server.url)
    yield s
    await s.close()


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


def counted(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Counts:
    """The Redis metrics since this object was made."""

    def __init__(self) -> None:
        self._start = self._now()

    @staticmethod
    def _now() -> dict[str, float]:
        return {
            "hits": counted("oddstore_query_redis_hits_total"),
            "absent": counted("oddstore_query_redis_misses_total", reason="absent"),
            "stale": counted("oddstore_query_redis_misses_total", reason="stale"),
            "errors": counted("oddstore_query_redis_errors_total", operation="get")
            + counted("oddstore_query_redis_errors_total", operation="set"),
        }

    def delta(self) -> dict[str, float]:
        return {k: v - self._start[k] for k, v in self._now().items()}


def times(points: list[pb.HistoryPoint]) -> list[tuple[datetime, bool]]:
    return [(p.captured_at.ToDatetime(), p.confirmed) for p in points]


def naive(at: datetime) -> datetime:
    return at.replace(tzinfo=None)


async def test_a_second_read_is_served_from_redis_and_equals_the_database_answer(
    service: Service, redis: Redis
) -> None:
    e, t = new_event_id(), now() - timedelta(minutes=30)
    await service.write(e, t, (2.1, 3.4, 3.5))
    await service.write(e, t + timedelta(minutes=1), (2.2, 3.4, 3.4))
    await service.write(e, t + timedelta(minutes=2), (2.2, 3.4, 3.4))  # unchanged: confirms only
    await service.cached(e)

    counts = Counts()
    first = await service.history(e)
    assert counts.delta() == {"hits": 0, "absent": 1, "stale": 0, "errors": 0}
    assert await redis.ttl(history_key(e, "betpawa", "3743", None)) > 3000
    second = await service.history(e)
    assert counts.delta() == {"hits": 1, "absent": 1, "stale": 0, "errors": 0}

    assert second == first == await service.from_database(e)
    assert times(second) == [
        (naive(t), False),
        (naive(t + timedelta(minutes=1)), False),
        (naive(t + timedelta(minutes=2)), True),
    ]


async def test_a_hit_carries_the_confirmation_the_database_has_now_not_the_one_cached(service: Service) -> None:
    # latest_snapshots advances on every scrape without a notification; the entry does not hold it.
    e, t = new_event_id(), now() - timedelta(minutes=30)
    await service.write(e, t, (2.1, 3.4, 3.5))
    await service.cached(e)
    await service.history(e)
    await service.write(e, t + timedelta(minutes=5), (2.1, 3.4, 3.5))  # unchanged

    counts = Counts()
    points = await service.history(e)
    assert counts.delta()["hits"] == 1
    assert times(points) == [(naive(t), False), (naive(t + timedelta(minutes=5)), True)]
    assert points == await service.from_database(e)


async def test_after_a_change_the_stale_entry_is_not_served_and_the_answer_has_the_new_point(
    service: Service, redis: Redis
) -> None:
    e, t = new_event_id(), now() - timedelta(minutes=30)
    await service.write(e, t, (2.1, 3.4, 3.5))
    await service.cached(e)
    await service.history(e)
    assert len(await service.history(e)) == 1  # now served from Redis
    key = history_key(e, "betpawa", "3743", None)
    stale_entry = await redis.get(key)

    changed_at = t + timedelta(minutes=3)
    await service.write(e, changed_at, (1.9, 3.6, 3.9))
    # Read at once, before the change feed has necessarily reached this replica: the stamp is checked
    # against the database, so the answer cannot depend on the feed.
    counts = Counts()
    points = await service.history(e)
    assert counts.delta() == {"hits": 0, "absent": 0, "stale": 1, "errors": 0}
    assert times(points) == [(naive(t), False), (naive(changed_at), False)]
    assert [o.odds for o in points[-1].outcomes] == [1.9, 3.6, 3.9]
    assert points == await service.from_database(e)
    assert await redis.get(key) != stale_entry  # replaced at the new version

    def fed() -> bool:
        book = service.app.cache.books_of(e).get("betpawa")
        return book is not None and book.last_change == changed_at

    await eventually(fed, "the change reaching the in-memory cache through the feed")
    assert await service.history(e) == points
    assert counts.delta()["hits"] == 1


async def test_a_cleanup_run_makes_entries_stale_so_history_it_deleted_is_not_served(
    make_migrated_database: Callable[[], str], redis_server: RedisServer
) -> None:
    # A database of its own: the cleanup run drops partitions and rows of every test's events.
    dsn = make_migrated_database()
    s = await _start(dsn, redis_server.url)
    try:
        e, old, recent = new_event_id(), now() - timedelta(days=16), now() - timedelta(minutes=30)
        await s.write(e, old, (2.1, 3.4, 3.5))  # older than the 14 days of odds retention
        await s.write(e, recent, (2.2, 3.4, 3.4))
        await s.cached(e)
        first = await s.history(e)
        assert times(first) == [(naive(old), False), (naive(recent), False)]
        counts = Counts()
        assert await s.history(e) == first
        assert counts.delta()["hits"] == 1

        # Retention drops the old day without touching the market's last_updated_at.
        run = await Retention(s.app.pool, RetentionSettings(database_url=dsn)).run_cleanup()
        assert run.counts.history_partitions >= 1 and run.counts.market_odds_history == 1

        counts = Counts()
        points = await s.history(e)
        assert counts.delta() == {"hits": 0, "absent": 0, "stale": 1, "errors": 0}
        assert times(points) == [(naive(recent), False)]
        assert points == await s.from_database(e)
        assert await s.history(e) == points  # the refilled entry is served again
        assert counts.delta()["hits"] == 1

        # While a run is in progress it may delete rows at any moment: Redis entries are neither served nor filled.
        await s.app.pool.execute(
            "INSERT INTO cleanup_runs (started_at, trigger, odds_retention_days, match_retention_days)"
            " VALUES (now(), 'manual', 14, 14)"
        )
        async with Redis.from_url(redis_server.url) as redis:
            entry = await redis.get(history_key(e, "betpawa", "3743", None))
            cleaning, counts = counted("oddstore_query_redis_misses_total", reason="cleaning"), Counts()
            assert await s.history(e) == points == await s.from_database(e)
            assert counts.delta() == {"hits": 0, "absent": 0, "stale": 0, "errors": 0}  # the entry is not served
            assert counted("oddstore_query_redis_misses_total", reason="cleaning") == cleaning + 1
            assert await redis.get(history_key(e, "betpawa", "3743", None)) == entry  # nor replaced
    finally:
        await s.close()


async def test_reads_stay_correct_through_a_redis_outage_and_use_redis_again_when_it_returns(
    service: Service, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="services.query.history_cache")
    e, t = new_event_id(), now() - timedelta(minutes=30)
    await service.write(e, t, (2.1, 3.4, 3.5))
    await service.cached(e)
    await service.history(e)
    before = await service.history(e)
    assert Counts._now()["hits"] >= 1

    redis_server.stop()
    counts = Counts()
    assert await service.history(e) == before
    assert counts.delta()["errors"] == 1
    service.clock.advance(BACKOFF * 0.9)
    assert await service.history(e) == before  # within the back-off: Redis is not tried
    assert counts.delta()["errors"] == 1

    changed_at = t + timedelta(minutes=4)
    await service.write(e, changed_at, (1.8, 3.7, 4.2))
    service.clock.advance(BACKOFF * 0.2)
    during = await service.history(e)  # past the back-off: tried again, still down
    assert counts.delta()["errors"] == 2
    assert times(during) == [(naive(t), False), (naive(changed_at), False)]
    assert during == await service.from_database(e)
    outage_warnings = [r for r in caplog.records if "Redis unavailable" in r.getMessage()]
    assert len(outage_warnings) == 1  # once per outage, not once per error

    redis_server.start()  # same port, empty
    service.clock.advance(BACKOFF * 1.5)  # past the back-off
    counts = Counts()
    assert await service.history(e) == during
    assert await service.history(e) == during
    assert counts.delta() == {"hits": 1, "absent": 1, "stale": 0, "errors": 0}
    assert any("Redis available again" in r.getMessage() for r in caplog.records)


async def test_a_redis_that_hangs_costs_a_read_its_socket_timeout_and_the_read_is_answered(
    service: Service, redis_server: RedisServer
) -> None:
    e, t = new_event_id(), now() - timedelta(minutes=30)
    await service.write(e, t, (2.1, 3.4, 3.5))
    await service.cached(e)
    expected = await service.history(e)

    redis_server.pause()
    try:
        counts = Counts()
        # Without the socket timeout this read would wait for Redis for ever; how long it takes is not measured
        # (a loaded machine would make any tight limit flaky), only that it ends, answered by PostgreSQL.
        assert await asyncio.wait_for(service.history(e), TIMEOUT_SECONDS) == expected
        assert counts.delta()["errors"] == 1
    finally:
        redis_server.resume()
    service.clock.advance(BACKOFF * 1.5)  # past the back-off
    counts = Counts()
    assert await service.history(e) == expected
    assert counts.delta()["errors"] == 0


async def test_events_outside_the_horizon_are_read_from_postgresql_only(service: Service, redis: Redis) -> None:
    e, t = new_event_id(), now() - timedelta(hours=5)
    await service.write(e, t, (2.1, 3.4, 3.5), kickoff=now() - timedelta(hours=3))
    counts = Counts()
    points = await service.history(e)
    assert points == await service.from_database(e)
    assert len(points) == 1
    assert counts.delta() == {"hits": 0, "absent": 0, "stale": 0, "errors": 0}
    assert await redis.exists(history_key(e, "betpawa", "3743", None)) == 0


async def test_an_unreadable_entry_is_replaced_and_the_read_answered_from_postgresql(
    service: Service, redis: Redis
) -> None:
    e, t = new_event_id(), now() - timedelta(minutes=30)
    await service.write(e, t, (2.1, 3.4, 3.5))
    await service.cached(e)
    key = history_key(e, "betpawa", "3743", None)
    await redis.set(key, b"not json")
    points = await service.history(e)
    assert points == await service.from_database(e)
    assert await redis.get(key) != b"not json"
    counts = Counts()
    assert await service.history(e) == points
    assert counts.delta()["hits"] == 1


async def test_without_redis_url_history_is_read_from_postgresql_and_redis_is_never_called(
    migrated_dsn: str,
) -> None:
    s = await _start(migrated_dsn, None)
    try:
        assert not s.app.history.enabled
        e, t = new_event_id(), now() - timedelta(minutes=30)
        await s.write(e, t, (2.1, 3.4, 3.5))
        await s.write(e, t + timedelta(minutes=1), (2.0, 3.5, 3.6))
        await s.cached(e)
        counts = Counts()
        first = await s.history(e)
        assert await s.history(e) == first == await s.from_database(e)
        assert len(first) == 2
        assert counts.delta() == {"hits": 0, "absent": 0, "stale": 0, "errors": 0}
    finally:
        await s.close()
