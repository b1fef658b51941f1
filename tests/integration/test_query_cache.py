"""The query cache against real PostgreSQL: warm-up, ordering of applied changes, the sweep (the change
feed itself, over real writer servers, is in tests/e2e/test_change_feed.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest

from services.query.cache import CurrentMarket, OddsCache
from services.query.feed import Feed
from services.query.writer_feed import Changes
from services.writer.writer import Writer
from tests.factories import market, new_event_id, now, snapshot, write


@pytest.fixture
async def pool(migrated_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(migrated_dsn, min_size=1, max_size=4)
    yield p
    await p.close()


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
    await Feed(pool, cache, timedelta(hours=2), []).warm_up()

    assert old not in cache.events  # kicked off more than two hours ago
    e = cache.events[upcoming]
    assert (e.tournament_name, e.tournament_country, e.sport_name) == ("Premier League", "Spain", "Football")
    assert [link.slug for link in e.links] == ["betpawa", "sportybet"]
    assert [link.name for link in e.links] == ["BetPawa", "SportyBet"]
    books = cache.books_of(upcoming)
    assert set(books["betpawa"].markets) == {("3743", None), ("5000", 2.5)}
    assert books["betpawa"].snapshot_time == t
    assert books["sportybet"].snapshot_time == t + timedelta(minutes=5)  # confirmed, unchanged since t


async def test_the_feed_never_applies_an_older_state_over_a_newer_one(pool: asyncpg.Pool) -> None:
    e, t = new_event_id(), now() - timedelta(minutes=10)
    await write(Writer(pool), [snapshot(e, t, [market()])])
    cache = OddsCache()
    feed = Feed(pool, cache, timedelta(hours=2), [])
    await feed.warm_up()
    assert odds_of(cache, e, "betpawa", ("3743", None)) is not None
    # The cache already holds a state newer than anything in the database (as if a later change
    # had been applied before an earlier notification's reload came back).
    newer = CurrentMarket("newer", None, b"", t + timedelta(hours=1), t + timedelta(hours=1), None)
    assert cache.put_market(e, "betpawa", ("3743", None), newer)

    await feed.apply([Changes(now(), [(e, "betpawa", ("3743", None))], [(e, "betpawa", t)])])
    assert cache.books_of(e)["betpawa"].markets[("3743", None)] is newer


async def test_the_sweep_drops_events_two_hours_after_kickoff(pool: asyncpg.Pool, migrated_dsn: str) -> None:
    e = new_event_id()
    await write(Writer(pool), [snapshot(e, now() - timedelta(minutes=5), [market()], kickoff=now())])
    cache = OddsCache()
    feed = Feed(pool, cache, timedelta(hours=2), [])
    await feed.warm_up()
    assert e in cache.events
    markets = cache.market_count
    feed._clock = lambda: now() + timedelta(hours=2, seconds=1)
    assert feed.sweep() >= 1
    assert e not in cache.events and cache.market_count < markets
    # Announced to client streams, which drop its states too.
    assert e in feed.updates.after(0)[-1].removed
