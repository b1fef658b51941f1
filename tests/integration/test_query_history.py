"""History reads against real PostgreSQL: legacy tables (naive timestamps) and the new tables together."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from oddstore.model import Market, Snapshot
from services.query.history import BookmakerMarkets, MarketState, OffsetMargin, Point
from services.query.history_repository import HistoryReader, UnknownBookmaker
from services.query.odds import Odds, margin
from services.writer.plan import Status
from services.writer.writer import Writer
from tests.factories import market, new_event_id, now, snapshot, write

A: tuple[Odds, ...] = (("1", 2.1, True), ("X", 3.4, True), ("2", 3.5, True))
B: tuple[Odds, ...] = (("1", 2.2, True), ("X", 3.3, True), ("2", 3.4, True))
C: tuple[Odds, ...] = (("1", 2.0, True), ("X", 3.5, True), ("2", 3.6, False))
D: tuple[Odds, ...] = (("1", 2.05, True), ("X", 3.45, True), ("2", 3.55, True))
O1: tuple[Odds, ...] = (("Over", 1.8, True), ("Under", 2.0, True))
O1B: tuple[Odds, ...] = (("Over", 1.85, True), ("Under", 1.95, True))
O2: tuple[Odds, ...] = (("Over", 2.4, True), ("Under", 1.55, True))


@pytest.fixture
async def pool(migrated_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(migrated_dsn, min_size=1, max_size=4)
    yield pool
    await pool.close()


def naive(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(tzinfo=None)


def new_market(market_id: str, outcomes: tuple[Odds, ...], line: float | None = None) -> Market:
    return market(
        market_id,
        line,
        tuple(o for _, o, _ in outcomes),
        tuple(n for n, _, _ in outcomes),
    )


def legacy_json(outcomes: tuple[Odds, ...]) -> str:
    return json.dumps([{"name": n, "odds": o, "is_active": a} for n, o, a in outcomes])


# (market_id, line, outcomes, unavailable_at as stored: timestamptz)
LegacyMarket = tuple[str, float | None, tuple[Odds, ...], datetime | None]


async def legacy_betpawa_table(
    pool: asyncpg.Pool, event_id: int, slug: str, captured_at: datetime, markets: list[LegacyMarket]
) -> None:
    """One snapshot in odds_snapshots ⨝ market_odds (captured_at and unavailable_at are timestamptz there)."""
    bookmaker_id = await pool.fetchval("SELECT id FROM bookmakers WHERE slug = $1", slug)
    snapshot_id = await pool.fetchval(
        "INSERT INTO odds_snapshots (event_id, bookmaker_id, captured_at) VALUES ($1, $2, $3) RETURNING id",
        event_id,
        bookmaker_id,
        captured_at,
    )
    for market_id, line, outcomes, unavailable_at in markets:
        await pool.execute(
            "INSERT INTO market_odds (snapshot_id, betpawa_market_id, betpawa_market_name, line, outcomes,"
            " market_groups, unavailable_at) VALUES ($1, $2, $3, $4, $5::json, '[\"legacy\"]', $6)",
            snapshot_id,
            market_id,
            f"Legacy {market_id}",
            line,
            legacy_json(outcomes),
            unavailable_at,
        )


async def competitor_event(pool: asyncpg.Pool, event_id: int, source: str) -> int:
    sport_id = await pool.fetchval("SELECT id FROM sports WHERE name = 'Football'")
    tournament_id = await pool.fetchval(
        "INSERT INTO competitor_tournaments (source, external_id, name, sport_id) VALUES ($1, $2, 'PL', $3)"
        " RETURNING id",
        source,
        f"t{event_id}",
        sport_id,
    )
    return int(
        await pool.fetchval(
            "INSERT INTO competitor_events (source, tournament_id, betpawa_event_id, external_id, sportradar_id,"
            " name, home_team, away_team, kickoff) VALUES ($1, $2, $3, $4, $5, 'H - A', 'H', 'A', $6) RETURNING id",
            source,
            tournament_id,
            event_id,
            f"c{event_id}",
            f"sr:match:{event_id}",
            naive(now()),
        )
    )


async def legacy_competitor(
    pool: asyncpg.Pool, competitor_event_id: int, captured_at: datetime, markets: list[LegacyMarket]
) -> None:
    """One snapshot in competitor_odds_snapshots ⨝ competitor_market_odds: every timestamp naive."""
    snapshot_id = await pool.fetchval(
        "INSERT INTO competitor_odds_snapshots (competitor_event_id, captured_at) VALUES ($1, $2) RETURNING id",
        competitor_event_id,
        naive(captured_at),
    )
    for market_id, line, outcomes, unavailable_at in markets:
        await pool.execute(
            "INSERT INTO competitor_market_odds (snapshot_id, betpawa_market_id, betpawa_market_name, line,"
            " outcomes, unavailable_at) VALUES ($1, $2, $3, $4, $5::json, $6)",
            snapshot_id,
            market_id,
            f"Legacy {market_id}",
            line,
            legacy_json(outcomes),
            unavailable_at,
        )


@dataclass(frozen=True)
class World:
    event_id: int
    t0: datetime
    kickoff: datetime

    def at(self, minutes: float) -> datetime:
        return self.t0 + timedelta(minutes=minutes)


async def build_world(pool: asyncpg.Pool, event_id: int | None = None, tournament: str | None = None) -> World:
    """Legacy data in the first hour, then new data from the writer.

    betpawa 3743 (no line): legacy A at 0 and 5 (one change), B at 10, unavailable at 15, B again at 60 in both
    sources (the same point); new: B at 60, gone at 120, back with A at 180, unchanged at 240 (confirmation).
    betpawa 5000: line 2.5 legacy O1 at 0, new O1B at 60; line 3.5 new O2 at 60.
    sportybet 3743 via competitor_events: legacy C at 2 and 7 (naive), new D at 60.
    """
    e = event_id or new_event_id()
    t0 = (now() - timedelta(days=1)).replace(second=0)
    w = World(e, t0, t0 + timedelta(hours=5))
    name = tournament or f"Cup {e}"

    def snap(minutes: int, markets: list[Market], bookmaker: str = "betpawa") -> Snapshot:
        return snapshot(e, w.at(minutes), markets, bookmaker, kickoff=w.kickoff, tournament=name)

    lines = [new_market("5000", O1B, 2.5), new_market("5000", O2, 3.5)]
    writes = [
        snap(60, [new_market("3743", B), *lines]),
        snap(60, [new_market("3743", D)], bookmaker="sportybet"),
        snap(120, lines),
        snap(180, [new_market("3743", A), *lines]),
        snap(240, [new_market("3743", A), *lines]),
    ]
    writer = Writer(pool)
    for s in writes:  # one by one: the competitor snapshot must not come before the home one
        assert [r.status for r in await write(writer, [s])] == [Status.ACCEPTED]

    await legacy_betpawa_table(pool, e, "betpawa", w.at(0), [("3743", None, A, None), ("5000", 2.5, O1, None)])
    await legacy_betpawa_table(pool, e, "betpawa", w.at(5), [("3743", None, A, None), ("5000", 2.5, O1, None)])
    await legacy_betpawa_table(pool, e, "betpawa", w.at(10), [("3743", None, B, None)])
    await legacy_betpawa_table(pool, e, "betpawa", w.at(15), [("3743", None, B, w.at(15))])
    await legacy_betpawa_table(pool, e, "betpawa", w.at(60), [("3743", None, B, None)])
    ce = await competitor_event(pool, e, "sportybet")
    await legacy_competitor(pool, ce, w.at(2), [("3743", None, C, None)])
    await legacy_competitor(pool, ce, w.at(7), [("3743", None, C, None)])
    return w


def rows(points: tuple[Point, ...]) -> list[tuple[datetime, tuple[Odds, ...], bool, datetime | None, bool]]:
    return [(p.captured_at, p.outcomes, p.available, p.unavailable_at, p.confirmed) for p in points]


async def test_betpawa_history_merges_legacy_and_new_points_in_time_order(pool: asyncpg.Pool) -> None:
    w = await build_world(pool)
    h = await HistoryReader(pool).market_history(w.event_id, "3743", "betpawa", None, None, None)
    assert (h.bookmaker_name, h.market_id, h.line) == ("BetPawa", "3743", None)
    assert rows(h.points) == [
        (w.at(0), A, True, None, False),
        (w.at(10), B, True, None, False),
        (w.at(15), B, False, w.at(15), False),
        (w.at(60), B, True, None, False),
        (w.at(120), B, False, w.at(120), False),
        (w.at(180), A, True, None, False),
        (w.at(240), A, True, None, True),
    ]
    assert all(p.captured_at.tzinfo is not None for p in h.points)


async def test_competitor_history_comes_through_competitor_events(pool: asyncpg.Pool) -> None:
    w = await build_world(pool)
    h = await HistoryReader(pool).market_history(w.event_id, "3743", "sportybet", None, None, None)
    assert h.bookmaker_name == "SportyBet"
    # Confirmed at 60 by the only sportybet snapshot, which is not later than its last change: no confirmation.
    assert rows(h.points) == [(w.at(2), C, True, None, False), (w.at(60), D, True, None, False)]


async def test_a_line_selects_only_that_line_and_no_line_only_the_line_less_market(pool: asyncpg.Pool) -> None:
    w = await build_world(pool)
    reader = HistoryReader(pool)
    h25 = await reader.market_history(w.event_id, "5000", "betpawa", 2.5, None, None)
    assert rows(h25.points) == [
        (w.at(0), O1, True, None, False),
        (w.at(60), O1B, True, None, False),
        (w.at(240), O1B, True, None, True),
    ]
    h35 = await reader.market_history(w.event_id, "5000", "betpawa", 3.5, None, None)
    assert rows(h35.points) == [(w.at(60), O2, True, None, False), (w.at(240), O2, True, None, True)]
    assert (await reader.market_history(w.event_id, "5000", "betpawa", None, None, None)).points == ()
    assert (await reader.market_history(w.event_id, "5000", "betpawa", 4.5, None, None)).points == ()


async def test_time_bounds_are_inclusive(pool: asyncpg.Pool) -> None:
    w = await build_world(pool)
    h = await HistoryReader(pool).market_history(w.event_id, "3743", "betpawa", None, w.at(15), w.at(120))
    assert [p.captured_at for p in h.points] == [w.at(15), w.at(60), w.at(120)]


async def test_an_unknown_bookmaker_is_an_error_and_an_unknown_event_has_no_points(pool: asyncpg.Pool) -> None:
    reader = HistoryReader(pool)
    with pytest.raises(UnknownBookmaker) as error:
        await reader.market_history(new_event_id(), "3743", "nobody", None, None, None)
    assert error.value.slug == "nobody"
    h = await reader.market_history(new_event_id(), "3743", "bet9ja", None, None, None)
    assert (h.bookmaker_name, h.points) == ("Bet9ja", ())
    assert (await reader.market_history(-new_event_id(), "3743", "betpawa", None, None, None)).points == ()


async def test_an_unavailable_market_gets_no_confirmation_after_its_disappearance(pool: asyncpg.Pool) -> None:
    e, t = new_event_id(), now() - timedelta(hours=2)
    writer = Writer(pool)
    steps: list[tuple[int, list[Market]]] = [
        (0, [new_market("3743", A), new_market("1", B)]),
        (5, [new_market("1", B)]),
        (9, []),
    ]
    for minutes, markets in steps:
        await write(writer, [snapshot(e, t + timedelta(minutes=minutes), markets)])
    h = await HistoryReader(pool).market_history(e, "3743", "betpawa", None, None, None)
    assert rows(h.points) == [
        (t, A, True, None, False),
        (t + timedelta(minutes=5), A, False, t + timedelta(minutes=5), False),
    ]


def by_slug(markets: list[BookmakerMarkets]) -> dict[str, BookmakerMarkets]:
    return {b.bookmaker_slug: b for b in markets}


async def test_point_in_time_during_legacy_data(pool: asyncpg.Pool) -> None:
    w = await build_world(pool)
    reader = HistoryReader(pool)
    assert await reader.event_at(w.event_id, w.at(-1)) == []
    state = by_slug(await reader.event_at(w.event_id, w.at(12)))
    assert set(state) == {"betpawa", "sportybet"}
    betpawa = state["betpawa"]
    assert (betpawa.bookmaker_name, betpawa.snapshot_time) == ("BetPawa", w.at(10))
    # Before any new-table point, names and groups are the legacy snapshot's (competitors stored no groups).
    assert betpawa.markets == (
        MarketState("3743", "Legacy 3743", None, B, True, None, ("legacy",)),
        MarketState("5000", "Legacy 5000", 2.5, O1, True, None, ("legacy",)),
    )
    assert state["sportybet"].markets == (MarketState("3743", "Legacy 3743", None, C, True, None, None),)
    assert state["sportybet"].snapshot_time == w.at(7)


async def test_point_in_time_after_a_disappearance_and_a_return(pool: asyncpg.Pool) -> None:
    w = await build_world(pool)
    reader = HistoryReader(pool)
    gone = by_slug(await reader.event_at(w.event_id, w.at(150)))["betpawa"]
    assert gone.markets == (
        MarketState("3743", "Market 3743", None, B, False, w.at(120), ("popular",)),
        MarketState("5000", "Market 5000", 2.5, O1B, True, None, ("popular",)),
        MarketState("5000", "Market 5000", 3.5, O2, True, None, ("popular",)),
    )
    assert gone.snapshot_time == w.at(120)
    legacy_gone = by_slug(await reader.event_at(w.event_id, w.at(30)))["betpawa"]
    assert legacy_gone.markets[0] == MarketState("3743", "Legacy 3743", None, B, False, w.at(15), ("legacy",))
    back = by_slug(await reader.event_at(w.event_id, w.at(300)))
    assert back["betpawa"].markets[0] == MarketState("3743", "Market 3743", None, A, True, None, ("popular",))
    assert back["sportybet"].markets == (MarketState("3743", "Market 3743", None, D, True, None, ("popular",)),)


async def test_point_in_time_of_a_legacy_only_market_uses_legacy_names(pool: asyncpg.Pool) -> None:
    w = await build_world(pool)
    await legacy_betpawa_table(pool, w.event_id, "betpawa", w.at(20), [("1", None, O2, None)])
    betpawa = by_slug(await HistoryReader(pool).event_at(w.event_id, w.at(25)))["betpawa"]
    assert betpawa.markets[0] == MarketState("1", "Legacy 1", None, O2, True, None, ("legacy",))


async def test_time_to_kickoff_gives_the_state_at_each_offset_per_bookmaker(pool: asyncpg.Pool) -> None:
    w = await build_world(pool)
    reader = HistoryReader(pool)
    offsets = [timedelta(days=7), timedelta(hours=5), timedelta(minutes=270), timedelta(hours=4),
               timedelta(minutes=150), timedelta(0)]  # fmt: skip
    kickoff, bookmakers = await reader.time_to_kickoff(w.event_id, "3743", None, offsets)
    assert kickoff == w.kickoff
    assert [b.bookmaker_slug for b in bookmakers] == ["betpawa", "sportybet"]
    betpawa, sportybet = bookmakers
    assert betpawa.bookmaker_name == "BetPawa"
    assert [(p.offset, p.at) for p in betpawa.points] == [(o, w.kickoff - o) for o in offsets]
    assert [(p.has_data, p.outcomes, p.available) for p in betpawa.points] == [
        (False, (), False),
        (True, A, True),  # legacy, at t0
        (True, B, False),  # legacy unavailable at t0 + 15 min
        (True, B, True),
        (True, B, False),  # gone at t0 + 120 min
        (True, A, True),
    ]
    assert [(p.has_data, p.outcomes) for p in sportybet.points] == [
        (False, ()),
        (False, ()),
        (True, C),
        (True, D),
        (True, D),
        (True, D),
    ]
    assert betpawa.points[1].margin == margin(A)


async def test_time_to_kickoff_of_an_unknown_event_has_no_kickoff(pool: asyncpg.Pool) -> None:
    assert await HistoryReader(pool).time_to_kickoff(new_event_id(), "3743", None, [timedelta(0)]) == (None, [])


async def test_tournament_margins_are_averaged_over_events_priced_at_each_offset(pool: asyncpg.Pool) -> None:
    tournament = f"Cup {new_event_id()}"
    w = await build_world(pool, tournament=tournament)
    other = new_event_id()
    writes = [snapshot(other, w.at(60), [new_market("3743", B)], kickoff=w.kickoff, tournament=tournament)]
    assert [r.status for r in await write(Writer(pool), writes)] == [Status.ACCEPTED]
    tournament_id = await pool.fetchval("SELECT tournament_id FROM events WHERE id = $1", w.event_id)
    assert tournament_id == await pool.fetchval("SELECT tournament_id FROM events WHERE id = $1", other)
    offsets = [timedelta(days=7), timedelta(hours=5), timedelta(minutes=270), timedelta(hours=4),
               timedelta(minutes=150)]  # fmt: skip
    result = await HistoryReader(pool).tournament_margin_to_kickoff(tournament_id, "3743", None, offsets)
    assert [(b.bookmaker_slug, b.bookmaker_name) for b in result] == [
        ("betpawa", "BetPawa"),
        ("sportybet", "SportyBet"),
    ]
    betpawa, sportybet = result
    assert betpawa.points == (
        OffsetMargin(offsets[0], None, 0),
        OffsetMargin(offsets[1], margin(A), 1),
        OffsetMargin(offsets[2], None, 0),  # unavailable is not a price; the other event not known yet
        OffsetMargin(offsets[3], margin(B), 2),
        OffsetMargin(offsets[4], margin(B), 1),  # only the other event: the first one is unavailable
    )
    assert sportybet.points == (
        OffsetMargin(offsets[0], None, 0),
        OffsetMargin(offsets[1], None, 0),
        OffsetMargin(offsets[2], margin(C), 1),
        OffsetMargin(offsets[3], margin(D), 1),
        OffsetMargin(offsets[4], margin(D), 1),
    )
