"""The query cache against real PostgreSQL: warm-up, freshness through the change feed, ordering,
and resynchronisation after the feed connection is lost."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest
from prometheus_client import REGISTRY

from services.query.cache import CurrentMarket, OddsCache
from services.query.feed import Feed
from services.writer import repository as writer_repo
from services.writer.writer import Writer
from tests.factories import market, new_event_id, now, snapshot, write
from tests.polling import eventually


@pytest.fixture
async def pool(migrated_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(migrated_dsn, min_size=1, max_size=4)
    yield p
    await p.close()


@pytest.fixture
async def feed(pool: asyncpg.Pool, migrated_dsn: str) -> AsyncIterator[Feed]:
    f = Feed(pool, migrated_dsn, OddsCache(), timedelta(hours=2))
    await f.start()
    yield f
    await f.stop()


def cache_of(feed: Feed) -> OddsCache:
    return feed._cache


def odds_of(cache: OddsCache, event_id: int, slug: str, key: tuple[str, float | None]) -> bytes | None:
    m = cache.books_of(event_id).get(slug, None)
    found = m.markets.get(key) if m is not None else None
    return found.outcomes if found is not None else None


async def test_warm_up_loads_events_in_the_horizon_with_metadata_markets_and_snapshot_times(
    pool: asyncpg.Pool, migrated_dsn: str
) -> None:
    upcoming, old = new_event_id(), new_event_id()
    t = now() - timedelta(minutes=10)
    writer = Writer(pool)
    await write(writer, [
        snapshot(upcoming, t, [market(), market("5000", 2.5, (1.9, 1.95), ("Over", "Under"))], country="Spain"),
        snapshot(upcoming, t, [market()], bookmaker="sportybet"),
        snapshot(old, t, [market()], kickoff=now() - timedelta(hours=3)),
    ])  # fmt: skip
    await write(writer, [snapshot(upcoming, t + timedelta(minutes=5), [market()], bookmaker="sportybet")])

    cache = OddsCache()
    await Feed(pool, migrated_dsn, cache, timedelta(hours=2)).warm_up()

    assert old not in cache.events  # kicked off more than two hours ago
    e = cache.events[upcoming]
    assert (e.tournament_name, e.tournament_country, e.sport_name) == ("Premier League", "Spain", "Football")
    assert [link.slug for link in e.links] == ["betpawa", "sportybet"]
    assert [link.name for link in e.links] == ["BetPawa", "SportyBet"]
    books = cache.books_of(upcoming)
    assert set(books["betpawa"].markets) == {("3743", None), ("5000", 2.5)}
    assert books["betpawa"].snapshot_time == t
    assert books["sportybet"].snapshot_time == t + timedelta(minutes=5)  # confirmed, unchanged since t


# How fast the feed is belongs to the read benchmark (make bench-read, freshness), not to a test a busy machine fails.
async def test_a_write_reaches_the_cache_through_the_feed(pool: asyncpg.Pool, feed: Feed) -> None:
    e, t = new_event_id(), now() - timedelta(minutes=10)
    writer = Writer(pool)
    await write(writer, [snapshot(e, t, [market(odds=(2.0, 3.0, 4.0))])])
    cache = cache_of(feed)
    await eventually(lambda: odds_of(cache, e, "betpawa", ("3743", None)) is not None, "the new market cached")
    assert cache.events[e].home_team == f"Home {e}"  # a new event comes with its metadata
    first = odds_of(cache, e, "betpawa", ("3743", None))

    await write(writer, [snapshot(e, t + timedelta(minutes=1), [market(odds=(2.5, 3.0, 3.0))])])
    await eventually(lambda: odds_of(cache, e, "betpawa", ("3743", None)) != first, "the changed odds cached")

    # The market disappears: kept, flagged unavailable, and the event becomes an alert.
    await write(writer, [snapshot(e, t + timedelta(minutes=2), [market("3795", None, (1.8, 1.9), ("Yes", "No"))])])
    await eventually(lambda: cache.books_of(e)["betpawa"].unavailable == 1, "the market cached as unavailable")
    gone = cache.books_of(e)["betpawa"].markets[("3743", None)]
    assert gone.unavailable_at == t + timedelta(minutes=2)
    assert cache.books_of(e)["betpawa"].captured_at == t + timedelta(minutes=2)


async def test_the_feed_never_applies_an_older_state_over_a_newer_one(pool: asyncpg.Pool, feed: Feed) -> None:
    e, t = new_event_id(), now() - timedelta(minutes=10)
    writer = Writer(pool)
    await write(writer, [snapshot(e, t, [market()])])
    cache = cache_of(feed)
    await eventually(lambda: odds_of(cache, e, "betpawa", ("3743", None)) is not None, "the market cached")
    # The cache already holds a state newer than anything in the database (as if a later change
    # had been applied before an earlier notification's reload came back).
    newer = CurrentMarket("newer", None, b"", t + timedelta(hours=1), t + timedelta(hours=1), None)
    assert cache.put_market(e, "betpawa", ("3743", None), newer)

    await feed.apply([f'[[{e}, "betpawa", "3743", null, {int(t.timestamp() * 1000)}]]'])
    assert cache.books_of(e)["betpawa"].markets[("3743", None)] is newer


async def test_after_the_feed_connection_is_dropped_resync_picks_up_writes_made_meanwhile(
    pool: asyncpg.Pool, feed: Feed, migrated_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    e, late, marker, t = new_event_id(), new_event_id(), new_event_id(), now() - timedelta(minutes=10)
    writer = Writer(pool)
    await write(writer, [snapshot(e, t, [market(odds=(2.0, 3.0, 4.0))])])
    cache = cache_of(feed)
    await eventually(lambda: odds_of(cache, e, "betpawa", ("3743", None)) is not None, "the market cached")
    before = odds_of(cache, e, "betpawa", ("3743", None))

    # These writes commit but their notifications never reach the cache (the listener is gone):
    # a changed market, and a new event whose snapshot is older than ones already seen.
    monkeypatch.setattr(writer_repo, "NOTIFY", "SELECT $1::text, $2::text[]")
    await write(writer, [
        snapshot(e, t + timedelta(minutes=1), [market(odds=(1.5, 4.0, 6.0))]),
        snapshot(late, t - timedelta(hours=1), [market()], bookmaker="bet9ja"),
    ])  # fmt: skip
    # The feed is ordered: once a later, notified write is cached, anything those writes could have caused is too.
    monkeypatch.undo()
    await write(writer, [snapshot(marker, t, [market()])])
    await eventually(lambda: marker in cache.events, "the marker event cached")
    assert odds_of(cache, e, "betpawa", ("3743", None)) == before
    assert late not in cache.events

    resyncs = REGISTRY.get_sample_value("oddstore_query_resyncs_total") or 0
    pid = feed.listener_pid
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
    await eventually(lambda: odds_of(cache, e, "betpawa", ("3743", None)) != before, "the missed change resynced")
    await eventually(lambda: odds_of(cache, late, "bet9ja", ("3743", None)) is not None, "the missed event resynced")
    assert feed.listener_pid not in (None, pid)

    # And the new connection receives notifications again.
    await write(writer, [snapshot(e, t + timedelta(minutes=2), [market(odds=(1.7, 4.0, 5.0))])])
    await eventually(lambda: cache.books_of(e)["betpawa"].captured_at == t + timedelta(minutes=2), "a later change")
    # A second loss would have been queued before that notification, so it would have been counted by now.
    assert REGISTRY.get_sample_value("oddstore_query_resyncs_total") == resyncs + 1  # one loss, one resync


async def test_the_sweep_drops_events_two_hours_after_kickoff(pool: asyncpg.Pool, migrated_dsn: str) -> None:
    e = new_event_id()
    await write(Writer(pool), [snapshot(e, now() - timedelta(minutes=5), [market()], kickoff=now())])
    cache = OddsCache()
    feed = Feed(pool, migrated_dsn, cache, timedelta(hours=2))
    await feed.warm_up()
    assert e in cache.events
    markets = cache.market_count
    feed._clock = lambda: now() + timedelta(hours=2, seconds=1)
    assert feed.sweep() >= 1
    assert e not in cache.events and cache.market_count < markets


async def test_a_scrape_without_changes_moves_the_cached_snapshot_time(pool: asyncpg.Pool, feed: Feed) -> None:
    e, t = new_event_id(), now() - timedelta(minutes=10)
    writer = Writer(pool)
    await write(writer, [snapshot(e, t, [market()])])
    cache = cache_of(feed)
    await eventually(lambda: e in cache.events and "betpawa" in cache.books_of(e), "the event cached")
    await write(writer, [snapshot(e, t + timedelta(minutes=5), [market()])])  # unchanged odds
    await eventually(lambda: cache.books_of(e)["betpawa"].captured_at == t + timedelta(minutes=5), "the new time")
    assert cache.books_of(e)["betpawa"].captured_at == t + timedelta(minutes=5)
