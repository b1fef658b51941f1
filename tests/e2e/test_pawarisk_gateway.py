"""The pawaRisk fixture taken over with the one upgrade command, then read through the gateway over the real query
and retention services: every screen of the old UI answers with the old data. Expected values are read from the
fixture's raw tables with plain SQL (tests/pawarisk.py), before the upgrade where the upgrade moves them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from oddstore import codec, migrate
from services.writer import bootstrap as writer_bootstrap
from services.writer.config import WriterSettings
from services.writer.plan import Status
from services.writer.writer import Writer
from tests import pawarisk
from tests.factories import market, snapshot, write
from tests.gateway_stack import gateway_over_services
from tests.pawarisk import MarketKey, State, changes, legacy_observations, shown_before_upgrade
from tests.polling import eventually

pytestmark = pawarisk.REQUIRED

Observations = dict[MarketKey, list[tuple[datetime, int, State]]]
Shown = dict[tuple[int, str], dict[tuple[str, float | None], State]]


@dataclass(slots=True)
class Taken:
    api: httpx.AsyncClient
    dsn: str
    now: datetime
    observed: Observations  # every legacy market row, read before the upgrade
    shown: Shown  # what the old system showed per (event, bookmaker), read before the upgrade
    v29_history: list[asyncpg.Record]
    kickoffs: dict[int, datetime]
    writer: Writer  # the served writer the query service follows: what it writes is announced


def z(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"


def margin(outcomes: tuple[tuple[str, float, bool], ...]) -> float | None:
    """The contract's formula, over every outcome with odds above 0."""
    total = sum(1 / odds for _, odds, _ in outcomes if odds > 0)
    return round((total - 1) * 100, 2) if total else None


def wire(outcomes: list[dict[str, Any]]) -> tuple[tuple[str, float, bool], ...]:
    return tuple(sorted((o["name"], o["odds"], o.get("is_active", True)) for o in outcomes))


def names_and_odds(state: State) -> list[tuple[str, float]]:
    return sorted((name, odds) for name, odds, _ in state[0])


@pytest.fixture
async def taken(old_database: str) -> AsyncIterator[Taken]:
    conn = await pawarisk.connect(old_database)
    try:
        # The latest BetPawa snapshot of an upcoming event lacks one of its markets (withdrawn in the last scrape,
        # not yet marked by the old system): it must show as unavailable, and its event as an alert.
        await conn.execute(
            "DELETE FROM market_odds WHERE id = (SELECT m.id FROM market_odds m"
            " JOIN odds_snapshots s ON s.id = m.snapshot_id JOIN events e ON e.id = s.event_id"
            " WHERE e.kickoff > (SELECT max(captured_at) FROM odds_snapshots)"
            " ORDER BY s.captured_at DESC, s.id DESC, m.id LIMIT 1)"
        )
    finally:
        await conn.close()
    observed = await legacy_observations(old_database)
    shown = await shown_before_upgrade(old_database)
    conn = await pawarisk.connect(old_database)
    try:
        v29_history = await conn.fetch(
            "SELECT event_id, bookmaker_slug, betpawa_market_id, line, captured_at, outcomes::text"
            " FROM market_odds_history"
        )
        kickoffs = {r[0]: r[1] for r in await conn.fetch("SELECT id, kickoff FROM events")}
    finally:
        await conn.close()
    # An hour after the old system's last scrape: its upcoming events are still upcoming.
    now = max(at for rows in observed.values() for at, _, _ in rows) + timedelta(hours=1)

    migrate.upgrade(old_database)

    writer = await writer_bootstrap.start(WriterSettings(database_url=old_database, listen="127.0.0.1:0"))
    try:
        async with gateway_over_services(
            old_database, clock=lambda: now, writers=f"127.0.0.1:{writer.server.port}"
        ) as api:
            yield Taken(api, old_database, now, observed, shown, v29_history, kickoffs, writer.writer)
    finally:
        await writer.stop(1)


async def get(api: httpx.AsyncClient, path: str, **params: Any) -> Any:
    response = await api.get(path, params={k: v for k, v in params.items() if v is not None})
    assert response.status_code == 200, (path, params, response.text)
    return response.json()


async def history(api: httpx.AsyncClient, key: MarketKey) -> list[dict[str, Any]]:
    event_id, slug, market_id, line = key
    body = await get(api, f"/api/events/{event_id}/markets/{market_id}/history", bookmaker_slug=slug, line=line)
    return list(body["history"])


def upcoming(t: Taken) -> list[int]:
    """The events with legacy odds that are still to kick off, in kickoff order."""
    return sorted({key[0] for key in t.observed if t.kickoffs[key[0]] > t.now}, key=lambda e: (t.kickoffs[e], e))


async def test_every_legacy_history_point_of_every_legacy_market_reads_as_stored(taken: Taken) -> None:
    for key, rows in taken.observed.items():
        points = await history(taken.api, key)
        expected = changes(rows)
        recorded = [p for p in points if not p["confirmed"]]
        assert [p for p in points if p["confirmed"]] == [p for p in points[len(recorded) :]], key  # trailing only
        assert [
            (p["captured_at"], sorted((o["name"], o["odds"]) for o in p["outcomes"]), p["margin"], p["available"],
             p["unavailable_at"])
            for p in recorded
        ] == [
            (z(at), names_and_odds(state), margin(state[0]), state[1], z(state[2]))
            for at, state in expected
        ], key  # fmt: skip
        margins = await get(
            taken.api,
            f"/api/events/{key[0]}/markets/{key[2]}/margin-history",
            bookmaker_slug=key[1],
            line=key[3],
        )
        assert [(p["captured_at"], p["margin"]) for p in margins["history"] if not p["confirmed"]] == [
            (z(at), margin(state[0])) for at, state in expected
        ], key


async def test_the_carried_over_v29_history_reads_through_the_gateway(taken: Taken) -> None:
    assert taken.v29_history, "the fixture has v2.9 history rows"
    for event_id, slug, market_id, line, captured_at, raw in taken.v29_history:
        points = await history(taken.api, (event_id, slug, market_id, line))
        state = pawarisk.outcomes_of(raw)
        assert (z(captured_at), sorted((n, o) for n, o, _ in state)) in [
            (p["captured_at"], sorted((o["name"], o["odds"]) for o in p["outcomes"])) for p in points
        ], (event_id, slug, market_id, line)


async def test_the_events_list_in_all_three_modes_and_the_detail_show_the_old_odds(taken: Taken) -> None:
    events = upcoming(taken)
    assert events, "the fixture has upcoming events"
    listed = await get(taken.api, "/api/events", page_size=100)
    assert [e["id"] for e in listed["events"]] == sorted(events, key=lambda e: (taken.kickoffs[e], e))
    assert listed["total"] == len(events)
    for entry in listed["events"]:
        by_slug = {b["bookmaker_slug"]: b for b in entry["bookmakers"]}
        for event_id, slug in taken.shown:
            if event_id == entry["id"]:
                latest = max(at for (e, s, _, _), rows in taken.observed.items() if (e, s) == (event_id, slug)
                             for at, _, _ in rows)  # fmt: skip
                assert by_slug[slug]["has_odds"] and by_slug[slug]["snapshot_time"] == z(latest), (event_id, slug)
        detail = await get(taken.api, f"/api/events/{entry['id']}")
        got = {
            (b["bookmaker_slug"], m["betpawa_market_id"], m["line"]): (
                sorted((o["name"], o["odds"], o["is_active"]) for o in m["outcomes"]), m["available"],
                m["unavailable_since"],
            )
            for b in detail["markets_by_bookmaker"] for m in b["markets"]
        }  # fmt: skip
        expected = {
            (slug, market_id, line): (sorted(state[0]), state[1], z(state[2]))
            for (event_id, slug), markets in taken.shown.items() if event_id == entry["id"]
            for (market_id, line), state in markets.items()
        }  # fmt: skip
        assert got == expected, entry["id"]

    alerting = sorted(
        {e for (e, _), markets in taken.shown.items() if e in events and any(not s[1] for s in markets.values())},
        key=lambda e: (taken.kickoffs[e], e),
    )
    assert alerting, "a market is unavailable in the latest odds"
    alerts = await get(taken.api, "/api/events", availability="alerts", page_size=100)
    assert [e["id"] for e in alerts["events"]] == alerting
    assert (await get(taken.api, "/api/events/alerts/count"))["count"] == len(alerting)

    conn = await pawarisk.connect(taken.dsn)
    try:
        only = await conn.fetch(
            "SELECT ce.id, ce.sportradar_id, ce.source, ct.country_raw FROM competitor_events ce"
            " JOIN competitor_tournaments ct ON ct.id = ce.tournament_id"
            " WHERE ce.betpawa_event_id IS NULL AND ce.deleted_at IS NULL AND ce.kickoff > $1",
            taken.now.replace(tzinfo=None),
        )
        tournaments = await conn.fetch(
            "SELECT DISTINCT t.id, t.name, t.country FROM tournaments t JOIN events e ON e.tournament_id = t.id"
            " WHERE e.kickoff > $1",
            taken.now,
        )
    finally:
        await conn.close()
    assert only, "the fixture has competitor-only events"
    competitor = await get(taken.api, "/api/events", availability="competitor", page_size=100)
    # One entry per match, the SportyBet record first when both carry it.
    primary = {}
    for r in sorted(only, key=lambda r: (r["source"] != "sportybet", r["id"])):
        primary.setdefault(r["sportradar_id"], r)
    assert sorted(e["id"] for e in competitor["events"]) == sorted(-r["id"] for r in primary.values())
    assert competitor["total"] == len(primary)

    assert sorted((t["id"], t["name"], t["country"]) for t in await get(taken.api, "/api/events/tournaments")) == (
        sorted(tuple(r) for r in tournaments)
    )
    assert await get(taken.api, "/api/events/countries") == sorted({r["country"] for r in tournaments})
    assert await get(taken.api, "/api/events/countries", availability="competitor") == sorted(
        {r["country_raw"] for r in only if r["country_raw"] is not None}
    )


def state_at(rows: list[tuple[datetime, int, State]], at: datetime) -> State | None:
    before = [(t, state) for t, state in changes(rows) if t <= at]
    return before[-1][1] if before else None


async def test_point_in_time_and_time_to_kickoff_read_the_legacy_states(taken: Taken) -> None:
    for event_id in upcoming(taken):
        keys = [k for k in taken.observed if k[0] == event_id]
        times = sorted({at for k in keys for at, _, _ in taken.observed[k]})
        at = times[len(times) // 2] + timedelta(seconds=1)
        body = await get(taken.api, f"/api/events/{event_id}/at", at=z(at))
        got = {
            (b["bookmaker_slug"], m["betpawa_market_id"], m["line"]): (
                sorted((o["name"], o["odds"]) for o in m["outcomes"]), m["available"]
            )
            for b in body["markets_by_bookmaker"] for m in b["markets"]
        }  # fmt: skip
        expected = {}
        for key in keys:
            state = state_at(taken.observed[key], at)
            if state is not None:
                expected[(key[1], key[2], key[3])] = (names_and_odds(state), state[1])
        assert got == expected, (event_id, at)

        kickoff = taken.kickoffs[event_id]
        for market_id, line in sorted({(k[2], k[3]) for k in keys}, key=str):
            body = await get(taken.api, f"/api/events/{event_id}/markets/{market_id}/time-to-kickoff", line=line)
            assert body["kickoff"] == z(kickoff)
            for bookmaker in body["bookmakers"]:
                rows = taken.observed.get((event_id, bookmaker["bookmaker_slug"], market_id, line), [])
                for point in bookmaker["points"]:
                    state = state_at(rows, kickoff - timedelta(hours=point["offset_hours"]))
                    assert point["has_data"] == (state is not None), (event_id, market_id, line, point)
                    if state is not None:
                        assert (sorted((o["name"], o["odds"]) for o in point["outcomes"]), point["available"]) == (
                            names_and_odds(state),
                            state[1],
                        ), (event_id, market_id, line, point)


async def test_cleanup_stats_preview_and_storage_sizes_count_the_old_tables(taken: Taken) -> None:
    conn = await pawarisk.connect(taken.dsn)
    try:
        dated = {
            "oddsSnapshots": "SELECT count(*), min(captured_at), max(captured_at) FROM odds_snapshots",
            "competitorOddsSnapshots": "SELECT count(*), min(captured_at), max(captured_at)"
            " FROM competitor_odds_snapshots",
            "events": "SELECT count(*), min(kickoff), max(kickoff) FROM events",
            "competitorEvents": "SELECT count(*), min(kickoff), max(kickoff) FROM competitor_events",
            "scrapeRuns": "SELECT count(*), min(started_at), max(started_at) FROM scrape_runs",
            "scrapeBatches": "SELECT count(*), min(started_at), max(started_at) FROM scrape_batches",
        }
        expected_stats = {}
        for key, sql in dated.items():
            count, oldest, newest = await conn.fetchrow(sql)
            expected_stats[key] = {"count": count, "oldest": z(pawarisk.utc(oldest)), "newest": z(pawarisk.utc(newest))}
        for key, table in (("tournaments", "tournaments"), ("competitorTournaments", "competitor_tournaments")):
            expected_stats[key] = {"count": await conn.fetchval(f"SELECT count(*) FROM {table}"), "oldest": None,
                                   "newest": None}  # fmt: skip
        odds_cutoff = taken.now - timedelta(days=1)
        match_cutoff = taken.now - timedelta(days=30)
        snapshots = await conn.fetch(
            "SELECT s.captured_at, e.kickoff, s.scrape_run_id FROM odds_snapshots s JOIN events e ON e.id = s.event_id"
        )
        competitor_snapshots = await conn.fetch(
            "SELECT s.captured_at AT TIME ZONE 'UTC', e.kickoff AT TIME ZONE 'UTC', s.scrape_run_id"
            " FROM competitor_odds_snapshots s JOIN competitor_events e ON e.id = s.competitor_event_id"
        )
        runs = {r[0]: r[1] for r in await conn.fetch("SELECT id, started_at FROM scrape_runs")}
        events = [r[0] for r in await conn.fetch("SELECT kickoff FROM events")]
    finally:
        await conn.close()

    assert {k: v for k, v in (await get(taken.api, "/api/cleanup/stats")).items() if k in expected_stats} == (
        expected_stats
    )
    assert expected_stats["scrapeRuns"]["count"] > 0, "the fixture has the old scrape runs"

    def goes(captured: datetime, kickoff: datetime) -> bool:
        return captured < odds_cutoff or kickoff < match_cutoff

    kept_runs = {run for captured, kickoff, run in [*snapshots, *competitor_snapshots] if not goes(captured, kickoff)}
    preview = await get(taken.api, "/api/cleanup/preview", odds_days=1, match_days=30)
    assert {
        k: preview[k] for k in ("oddsSnapshotsCount", "competitorOddsSnapshotsCount", "eventsCount", "scrapeRunsCount")
    } == {
        "oddsSnapshotsCount": sum(goes(c, k) for c, k, _ in snapshots),
        "competitorOddsSnapshotsCount": sum(goes(c, k) for c, k, _ in competitor_snapshots),
        "eventsCount": sum(k < match_cutoff for k in events),
        "scrapeRunsCount": sum(started < odds_cutoff and run not in kept_runs for run, started in runs.items()),
    }
    assert preview["oddsSnapshotsCount"] and preview["scrapeRunsCount"], "the preview has something to count"

    sizes = await get(taken.api, "/api/storage/sizes")
    by_name = {t["tableName"]: t for t in sizes["tables"]}
    for table in ("odds_snapshots", "market_odds", "competitor_market_odds", "market_odds_current", "scrape_runs"):
        assert by_name[table]["sizeBytes"] > 0, table
    assert sizes["totalBytes"] >= sum(t["sizeBytes"] for t in sizes["tables"])


async def test_new_snapshots_merge_after_the_legacy_points_through_the_gateway(taken: Taken) -> None:
    event_id = upcoming(taken)[0]
    pool = await asyncpg.create_pool(taken.dsn, min_size=1, max_size=2)
    try:
        row = await pool.fetchrow(
            "SELECT l.captured_at, e.sportradar_id, e.name, e.home_team, e.away_team, e.kickoff,"
            " t.name AS tournament, t.country, s.name AS sport"
            " FROM latest_snapshots l JOIN events e ON e.id = l.event_id JOIN tournaments t ON t.id = e.tournament_id"
            " JOIN sports s ON s.id = t.sport_id WHERE l.event_id = $1 AND l.bookmaker_slug = 'betpawa'",
            event_id,
        )
        current = [
            (market_id, line, outcomes)
            for (market_id, line), outcomes in sorted(
                ((m, ln), state[0]) for (m, ln), state in taken.shown[(event_id, "betpawa")].items() if state[1]
            )
        ]
        event = {k: row[k] for k in ("sportradar_id", "name", "home_team", "away_team", "kickoff", "tournament",
                                      "country", "sport")}  # fmt: skip

        def markets(bump: str | None) -> list[Any]:
            return [
                market(m, ln, tuple(o + (0.5 if m == bump else 0) for _, o, _ in outs), tuple(n for n, _, _ in outs))
                for m, ln, outs in current
            ]

        bumped, line = current[0][0], current[0][1]
        key = (event_id, "betpawa", bumped, line)
        legacy = [p for p in await history(taken.api, key) if not p["confirmed"]]
        same_at, later = row["captured_at"] + timedelta(minutes=5), row["captured_at"] + timedelta(minutes=10)
        writer = taken.writer
        assert [r.status for r in await write(writer, [snapshot(event_id, same_at, markets(None), **event)])] == [
            Status.ACCEPTED
        ]
        # Identical to the last legacy state: no change point, only a later confirmation.
        assert [p for p in await history(taken.api, key) if not p["confirmed"]] == legacy

        assert [r.status for r in await write(writer, [snapshot(event_id, later, markets(bumped), **event)])] == [
            Status.ACCEPTED
        ]
        after = [p for p in await history(taken.api, key) if not p["confirmed"]]
        expected_odds = sorted((n, codec.from_milli(codec.to_milli(o + 0.5))) for n, o, _ in current[0][2])
        assert after[:-1] == legacy
        assert (after[-1]["captured_at"], sorted((o["name"], o["odds"]) for o in after[-1]["outcomes"])) == (
            z(later),
            expected_odds,
        )

        async def detail_shows_the_new_odds() -> bool:
            detail = await get(taken.api, f"/api/events/{event_id}")
            (book,) = [b for b in detail["markets_by_bookmaker"] if b["bookmaker_slug"] == "betpawa"]
            (shown,) = [m for m in book["markets"] if (m["betpawa_market_id"], m["line"]) == (bumped, line)]
            return sorted((o["name"], o["odds"]) for o in shown["outcomes"]) == expected_odds

        await eventually(detail_shows_the_new_odds, "the event detail shows the new snapshot's odds")
    finally:
        await pool.close()
