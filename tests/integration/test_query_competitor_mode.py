"""ListEvents in competitor mode against real PostgreSQL: inline odds of competitor-only events from
each record's latest legacy snapshot (competitor tables, naive UTC timestamps, inserted as plain SQL)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import asyncpg
import grpc
import pytest

from oddstore.convert import from_timestamp
from oddstore.v1 import query_pb2 as pb
from services.query import repository as repo
from services.query.cache import OddsCache
from services.query.grpc_api import QueryServicer
from services.query.history_repository import HistoryReader
from services.query.odds import Odds

ONE_X_TWO: tuple[Odds, ...] = (("1", 2.1, True), ("X", 3.4, True), ("2", 3.5, True))
OLD_ONE_X_TWO: tuple[Odds, ...] = (("1", 9.0, True), ("X", 9.0, True), ("2", 9.0, True))
OVER_UNDER: tuple[Odds, ...] = (("Over", 1.9, True), ("Under", 1.95, False))
OTHER_LINE: tuple[Odds, ...] = (("Over", 1.2, True), ("Under", 4.0, True))
BTTS: tuple[Odds, ...] = (("Yes", 1.8, True), ("No", 1.9, True))
DOUBLE_CHANCE: tuple[Odds, ...] = (("1X", 1.3, True), ("X2", 1.7, True), ("12", 1.25, True))

# (market_id, line, outcomes, unavailable_at as stored: timestamptz)
LegacyMarket = tuple[str, float | None, tuple[Odds, ...], datetime | None]


@pytest.fixture
async def pool(migrated_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(migrated_dsn, min_size=1, max_size=4)
    yield p
    await p.close()


class CountingPool:
    """The pool, recording every fetch so a test can count the queries a call makes."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.fetches: list[tuple[str, tuple[Any, ...]]] = []

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        self.fetches.append((sql, args))
        rows: list[asyncpg.Record] = await self._pool.fetch(sql, *args)
        return rows

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


def naive_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def aware(naive: datetime) -> datetime:
    return naive.replace(tzinfo=UTC)


class Legacy:
    """Competitor rows of one test, under one tournament and a team name no other test uses."""

    def __init__(self, pool: asyncpg.Pool, token: str, tournament_id: int) -> None:
        self.pool, self.token, self.tournament_id = pool, token, tournament_id

    @classmethod
    async def create(cls, pool: asyncpg.Pool) -> Legacy:
        token = f"cmp{uuid.uuid4().hex[:10]}"
        sport_id = await pool.fetchval("SELECT id FROM sports WHERE name = 'Football'")
        tournament_id = await pool.fetchval(
            "INSERT INTO competitor_tournaments (source, external_id, name, country_raw, sport_id)"
            " VALUES ('sportybet', $1, 'Premier League', 'England', $2) RETURNING id",
            token,
            sport_id,
        )
        return cls(pool, token, tournament_id)

    async def event(self, source: str, sportradar_id: str, kickoff: datetime, home: str = "Home") -> int:
        event_id: int = await self.pool.fetchval(
            "INSERT INTO competitor_events (source, tournament_id, external_id, sportradar_id, name, home_team,"
            " away_team, kickoff) VALUES ($1, $2, $3, $4, $5, $6, 'Away', $7) RETURNING id",
            source,
            self.tournament_id,
            f"{self.token}-{uuid.uuid4().hex[:8]}",
            f"sr:match:{self.token}:{sportradar_id}",
            f"{home} {self.token} - Away",
            f"{home} {self.token}",
            kickoff,
        )
        return event_id

    async def snapshot(self, competitor_event_id: int, captured_at: datetime, markets: list[LegacyMarket]) -> int:
        snapshot_id: int = await self.pool.fetchval(
            "INSERT INTO competitor_odds_snapshots (competitor_event_id, captured_at) VALUES ($1, $2) RETURNING id",
            competitor_event_id,
            captured_at,
        )
        for market_id, line, outcomes, unavailable_at in markets:
            await self.pool.execute(
                "INSERT INTO competitor_market_odds (snapshot_id, betpawa_market_id, betpawa_market_name, line,"
                " outcomes, market_groups, unavailable_at) VALUES ($1, $2, $3, $4, $5::json, '[\"popular\"]', $6)",
                snapshot_id,
                market_id,
                f"Market {market_id}",
                line,
                json.dumps([{"name": n, "odds": o, "is_active": a} for n, o, a in outcomes]),
                unavailable_at,
            )
        return snapshot_id


def servicer(pool: asyncpg.Pool | CountingPool) -> QueryServicer:
    # ListEvents in competitor mode reads neither the cache nor history.
    now = datetime.now(UTC)
    real = pool._pool if isinstance(pool, CountingPool) else pool
    return QueryServicer(OddsCache(), cast(asyncpg.Pool, pool), HistoryReader(real), lambda: now - timedelta(hours=2))


async def list_competitor(pool: asyncpg.Pool | CountingPool, token: str, **fields: Any) -> pb.ListEventsResponse:
    request = pb.ListEventsRequest(availability=pb.AVAILABILITY_COMPETITOR, search=token, **fields)
    # The servicer uses its context only to abort, which these reads do not.
    return await servicer(pool).ListEvents(request, cast(grpc.aio.ServicerContext, None))


def outcomes(m: pb.InlineMarket) -> tuple[Odds, ...]:
    return tuple((o.name, o.odds, o.is_active) for o in m.outcomes)


def ts(message: Any, field: str) -> datetime | None:
    return from_timestamp(getattr(message, field)) if message.HasField(field) else None


async def test_each_platform_shows_the_inline_odds_of_its_latest_snapshot(pool: asyncpg.Pool) -> None:
    legacy = await Legacy.create(pool)
    t = naive_now()
    # Both platforms list the first event: SportyBet is primary, Bet9ja's entry comes second.
    sporty = await legacy.event("sportybet", "1", t + timedelta(days=1))
    bet9ja = await legacy.event("bet9ja", "1", t + timedelta(days=1))
    no_snapshot = await legacy.event("bet9ja", "2", t + timedelta(days=2))
    only_other = await legacy.event("bet9ja", "3", t + timedelta(days=3))

    await legacy.snapshot(sporty, t - timedelta(minutes=30), [("3743", None, OLD_ONE_X_TWO, None)])
    gone = t - timedelta(minutes=20)
    await legacy.snapshot(
        sporty,
        t - timedelta(minutes=5),
        [
            ("3743", None, ONE_X_TWO, None),
            ("5000", 1.5, OTHER_LINE, None),
            ("5000", 2.5, OVER_UNDER, None),
            ("3795", None, BTTS, aware(gone)),
            ("4693", None, DOUBLE_CHANCE, None),
            ("1234", None, ONE_X_TWO, None),
        ],
    )
    # Bet9ja's latest scrape found no market at all: no odds, but the time of that scrape.
    await legacy.snapshot(bet9ja, t - timedelta(minutes=40), [("3743", None, ONE_X_TWO, None)])
    await legacy.snapshot(bet9ja, t - timedelta(minutes=2), [])
    # Only markets that are not shown inline: has odds, no inline odds.
    await legacy.snapshot(only_other, t - timedelta(minutes=7), [("1234", None, ONE_X_TWO, None)])

    response = await list_competitor(pool, legacy.token)
    assert response.total == 3
    assert [e.id for e in response.events] == [-sporty, -no_snapshot, -only_other]

    first = response.events[0]
    assert [(b.bookmaker_slug, b.bookmaker_name) for b in first.bookmakers] == [
        ("sportybet", "SportyBet"),
        ("bet9ja", "Bet9ja"),
    ]
    sportybet_odds, bet9ja_odds = first.bookmakers
    assert sportybet_odds.has_odds
    assert ts(sportybet_odds, "snapshot_time") == aware(t - timedelta(minutes=5))
    by_key = {(m.market_id, m.line if m.HasField("line") else None): m for m in sportybet_odds.inline_odds}
    assert set(by_key) == {("3743", None), ("5000", 2.5), ("3795", None), ("4693", None)}

    one_x_two = by_key[("3743", None)]
    assert (one_x_two.market_name, outcomes(one_x_two), one_x_two.margin) == ("Market 3743", ONE_X_TWO, 5.6)
    assert one_x_two.available and not one_x_two.HasField("unavailable_since")
    over_under = by_key[("5000", 2.5)]
    assert (outcomes(over_under), over_under.margin) == (OVER_UNDER, 3.91)
    btts = by_key[("3795", None)]
    assert not btts.available
    assert ts(btts, "unavailable_since") == aware(gone)
    assert outcomes(btts) == BTTS  # last known odds are kept
    assert by_key[("4693", None)].margin == 115.75

    assert (bet9ja_odds.has_odds, list(bet9ja_odds.inline_odds)) == (False, [])
    assert ts(bet9ja_odds, "snapshot_time") == aware(t - timedelta(minutes=2))

    (never,) = response.events[1].bookmakers
    assert (never.has_odds, list(never.inline_odds), ts(never, "snapshot_time")) == (False, [], None)
    (other,) = response.events[2].bookmakers
    assert (other.has_odds, list(other.inline_odds)) == (True, [])
    assert ts(other, "snapshot_time") == aware(t - timedelta(minutes=7))


async def test_odds_are_read_in_one_query_and_only_for_the_page(pool: asyncpg.Pool) -> None:
    legacy = await Legacy.create(pool)
    t = naive_now()
    ids = []
    for i in range(3):
        record = await legacy.event("sportybet", str(i), t + timedelta(days=i + 1))
        ids.append(record)
        await legacy.snapshot(record, t - timedelta(minutes=1), [("3743", None, ONE_X_TWO, None)])
    duplicate = await legacy.event("bet9ja", "1", t + timedelta(days=2))
    await legacy.snapshot(duplicate, t - timedelta(minutes=1), [("3743", None, ONE_X_TWO, None)])

    counting = CountingPool(pool)
    response = await list_competitor(counting, legacy.token, page=2, page_size=1)
    assert response.total == 3
    assert [e.id for e in response.events] == [-ids[1]]
    assert [b.has_odds for b in response.events[0].bookmakers] == [True, True]
    odds_queries = [args for sql, args in counting.fetches if sql == repo.COMPETITOR_LATEST_ODDS]
    assert len(odds_queries) == 1
    assert sorted(odds_queries[0][0]) == sorted([ids[1], duplicate])


async def test_the_latest_snapshot_wins_even_when_older_ones_were_inserted_later(pool: asyncpg.Pool) -> None:
    legacy = await Legacy.create(pool)
    t = naive_now()
    record = await legacy.event("sportybet", "1", t + timedelta(days=1))
    await legacy.snapshot(record, t - timedelta(minutes=1), [("3743", None, ONE_X_TWO, None)])
    await legacy.snapshot(record, t - timedelta(minutes=9), [("3743", None, OLD_ONE_X_TWO, None)])  # a late backfill

    books = await repo.competitor_latest_odds(pool, [record, record + 10_000_000])
    assert set(books) == {record}  # an id without snapshots is simply absent
    book = books[record]
    assert (book.snapshot_time, book.has_odds) == (aware(t - timedelta(minutes=1)), True)
    assert book.markets[("3743", None)].outcomes == list(ONE_X_TWO)
    assert await repo.competitor_latest_odds(pool, []) == {}
