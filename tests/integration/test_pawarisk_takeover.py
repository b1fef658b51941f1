"""Taking over a real old-system database: the pawaRisk fixture restored, the one upgrade command, every legacy
read right, and the way back. Expected values are computed here from the fixture's raw tables, not by our code."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import asyncpg
import grpc
import pytest

from oddstore import codec, migrate
from oddstore.takeover import OLD_HEAD, OLD_HEAD_COLUMNS, TakeoverRefused
from oddstore.v1 import query_pb2 as pb
from services.query import repository as query_repo
from services.query.cache import OddsCache
from services.query.grpc_api import QueryServicer
from services.query.history_repository import HistoryReader
from services.retention.config import RetentionSettings
from services.retention.retention import Retention
from services.writer.plan import Status
from services.writer.writer import Writer
from tests import pawarisk
from tests.factories import market, snapshot, write
from tests.pawarisk import changes, legacy_observations, shown_before_upgrade, table_fingerprints

pytestmark = pawarisk.REQUIRED

NO_CONTEXT = cast(grpc.aio.ServicerContext, None)  # a servicer uses its context only to abort


@pytest.mark.parametrize("zone", ["UTC", "Africa/Lagos"])
async def test_the_fixture_upgrades_with_one_command_and_every_legacy_point_reads_as_stored(
    old_database: str, zone: str
) -> None:
    observed = await legacy_observations(old_database)
    assert observed, "the fixture has legacy snapshots"
    conn = await pawarisk.connect(old_database)
    try:
        # Every session of the upgrade and of the reads runs in this zone.
        await conn.execute(f"ALTER DATABASE \"{pawarisk.dbname(old_database)}\" SET timezone TO '{zone}'")
        kickoffs_before = {r[0]: r[1] for r in await conn.fetch("SELECT id, kickoff FROM events")}
    finally:
        await conn.close()

    migrate.upgrade(old_database)

    pool = await asyncpg.create_pool(old_database, min_size=1, max_size=2)
    try:
        assert await pool.fetchval("SHOW timezone") == zone
        assert {r[0]: r[1] for r in await pool.fetch("SELECT id, kickoff FROM events")} == kickoffs_before
        reader = HistoryReader(pool)
        for (event_id, slug, market_id, line), rows in observed.items():
            got = await reader.market_changes(event_id, market_id, slug, line)
            expected = changes(rows)
            assert [(p.captured_at, tuple(sorted(p.outcomes)), p.available, p.unavailable_at) for p in got.points] == [
                (at, *state) for at, state in expected
            ], (event_id, slug, market_id, line)
    finally:
        await pool.close()


async def test_the_odds_shown_before_the_upgrade_are_the_current_odds_after_it_and_v29_history_is_carried_over(
    old_database: str,
) -> None:
    shown = await shown_before_upgrade(old_database)
    conn = await pawarisk.connect(old_database)
    try:
        v29_history = await conn.fetch(
            "SELECT event_id, bookmaker_slug, betpawa_market_id, line, captured_at, outcomes::text"
            " FROM market_odds_history"
        )
    finally:
        await conn.close()
    assert v29_history, "the fixture has v2.9 history rows"

    migrate.upgrade(old_database)

    pool = await asyncpg.create_pool(old_database, min_size=1, max_size=2)
    try:
        reader = HistoryReader(pool)
        for (event_id, slug), markets in shown.items():
            for (market_id, line), (outcomes, available, unavailable_at) in markets.items():
                state = (await reader.market_current(event_id, market_id, slug, line)).state
                assert state is not None, (event_id, slug, market_id, line)
                assert (tuple(sorted(state.outcomes)), state.unavailable_at is None, state.unavailable_at) == (
                    outcomes,
                    available,
                    unavailable_at,
                ), (event_id, slug, market_id, line)
        rows = {
            (r[0], r[1]): r[2]
            for r in await pool.fetch(
                "SELECT event_id, bookmaker_slug, count(*) FROM market_odds_current GROUP BY 1, 2"
            )
        }
        assert rows == {pair: len(markets) for pair, markets in shown.items()}
        for event_id, slug, market_id, line, captured_at, outcomes in v29_history:
            points = (await reader.market_changes(event_id, market_id, slug, line)).points
            assert (captured_at, pawarisk.outcomes_of(outcomes), True) in [
                (p.captured_at, tuple(sorted(p.outcomes)), p.available) for p in points
            ]
        assert await pool.fetchval("SELECT count(*) FROM pawarisk_market_odds_history") == len(v29_history)
    finally:
        await pool.close()


async def test_new_snapshots_merge_after_the_legacy_points_and_the_last_legacy_state_is_no_change(
    old_database: str,
) -> None:
    migrate.upgrade(old_database)
    pool = await asyncpg.create_pool(old_database, min_size=1, max_size=4)
    try:
        pair = await pool.fetchrow(
            "SELECT l.event_id, l.captured_at, e.sportradar_id, e.name, e.home_team, e.away_team, e.kickoff,"
            " t.name AS tournament, t.country, s.name AS sport"
            " FROM latest_snapshots l JOIN events e ON e.id = l.event_id JOIN tournaments t ON t.id = e.tournament_id"
            " JOIN sports s ON s.id = t.sport_id WHERE l.bookmaker_slug = 'betpawa' ORDER BY l.event_id LIMIT 1"
        )
        current = await pool.fetch(
            "SELECT market_id, line, outcomes FROM market_odds_current"
            " WHERE event_id = $1 AND bookmaker_slug = 'betpawa' AND unavailable_at IS NULL ORDER BY market_id, line",
            pair["event_id"],
        )
        reader = HistoryReader(pool)

        def markets(bump: str | None) -> list[Any]:
            out = []
            for r in current:
                decoded = codec.decode(r["outcomes"])
                odds = tuple(codec.from_milli(m) + (0.5 if r["market_id"] == bump else 0) for _, m, _ in decoded)
                out.append(market(r["market_id"], r["line"], odds, tuple(n for n, _, _ in decoded)))
            return out

        event = {
            k: pair[k]
            for k in ("sportradar_id", "name", "home_team", "away_team", "kickoff", "tournament", "country", "sport")
        }
        before = {
            (r["market_id"], r["line"]): (
                await reader.market_changes(pair["event_id"], r["market_id"], "betpawa", r["line"])
            ).points
            for r in current
        }
        history_rows = await pool.fetchval("SELECT count(*) FROM market_odds_history")
        same = snapshot(pair["event_id"], pair["captured_at"] + timedelta(minutes=5), markets(None), **event)
        assert [r.status for r in await write(Writer(pool), [same])] == [Status.ACCEPTED]
        assert await pool.fetchval("SELECT count(*) FROM market_odds_history") == history_rows

        bumped = current[0]["market_id"]
        later = pair["captured_at"] + timedelta(minutes=10)
        changed = snapshot(pair["event_id"], later, markets(bumped), **event)
        assert [r.status for r in await write(Writer(pool), [changed])] == [Status.ACCEPTED]
        after = (await reader.market_changes(pair["event_id"], bumped, "betpawa", current[0]["line"])).points
        assert after[:-1] == before[(bumped, current[0]["line"])]
        assert after[-1].captured_at == later and after[-1].captured_at > after[-2].captured_at
    finally:
        await pool.close()


async def test_competitor_mode_lists_the_old_competitor_only_events_with_their_countries(old_database: str) -> None:
    conn = await pawarisk.connect(old_database)
    try:
        rows = await conn.fetch(
            "SELECT ce.id, ce.sportradar_id, ce.kickoff, ct.country_raw FROM competitor_events ce"
            " JOIN competitor_tournaments ct ON ct.id = ce.tournament_id"
            " WHERE ce.betpawa_event_id IS NULL AND ce.deleted_at IS NULL"
        )
    finally:
        await conn.close()
    assert rows, "the fixture has competitor-only events"
    clock_now = min(r["kickoff"] for r in rows).replace(tzinfo=UTC) - timedelta(days=1)

    migrate.upgrade(old_database)

    pool = await asyncpg.create_pool(old_database, min_size=1, max_size=2)
    try:
        servicer = QueryServicer(OddsCache(), pool, HistoryReader(pool), lambda: clock_now)
        listed = await servicer.ListEvents(pb.ListEventsRequest(availability=pb.AVAILABILITY_COMPETITOR), NO_CONTEXT)
        # One entry per match: the records of every platform that carries it are listed together.
        listed_ids = [-e.id for e in listed.events]
        assert len(listed_ids) == len({r["sportradar_id"] for r in rows})
        assert set(listed_ids) <= {r["id"] for r in rows}
        countries = await query_repo.competitor_countries(pool, clock_now)
        assert countries == sorted({r["country_raw"] for r in rows if r["country_raw"] is not None})
    finally:
        await pool.close()


async def test_a_cleanup_run_completes_over_the_taken_over_database(old_database: str) -> None:
    migrate.upgrade(old_database)
    pool = await asyncpg.create_pool(old_database, min_size=1, max_size=4)
    try:
        newest = await pool.fetchval("SELECT max(kickoff) FROM events")
        # Far enough ahead that every event and snapshot of the fixture has expired.
        clock_now = newest + timedelta(days=400)
        retention = Retention(pool, RetentionSettings(lock_timeout=5.0, delete_batch=7), lambda: clock_now)
        result = await retention.run_cleanup()
        assert await pool.fetchval("SELECT status FROM cleanup_runs ORDER BY id DESC LIMIT 1") == "completed"
        assert await pool.fetchval("SELECT count(*) FROM events") == 0
        assert await pool.fetchval("SELECT count(*) FROM competitor_events") == 0
        assert await pool.fetchval("SELECT count(*) FROM market_odds_current") == 0
        assert result is not None
    finally:
        await pool.close()


async def test_upgrade_then_downgrade_to_the_old_head_gives_the_old_tables_back_as_they_were(old_database: str) -> None:
    tables = sorted(set(OLD_HEAD_COLUMNS) | {"alembic_version"})
    before = await table_fingerprints(old_database, tables)

    migrate.upgrade(old_database)
    migrate.downgrade(old_database, OLD_HEAD)

    assert await table_fingerprints(old_database, tables) == before
    conn = await pawarisk.connect(old_database)
    try:
        leftovers = await conn.fetch(
            "SELECT relname FROM pg_class WHERE relname LIKE 'pawarisk%' OR relname IN ('latest_snapshots')"
        )
    finally:
        await conn.close()
    assert leftovers == []


async def test_a_schema_that_differs_from_the_claimed_old_head_is_refused_and_left_unchanged(
    old_database: str,
) -> None:
    conn = await pawarisk.connect(old_database)
    try:
        await conn.execute("ALTER TABLE tournaments DROP COLUMN sportradar_id")
        await conn.execute("ALTER TABLE market_odds ALTER COLUMN line TYPE numeric")
    finally:
        await conn.close()

    with pytest.raises(TakeoverRefused) as refused:
        migrate.upgrade(old_database)

    assert "tournaments.sportradar_id" in str(refused.value)
    assert "market_odds.line is numeric" in str(refused.value)
    conn = await pawarisk.connect(old_database)
    try:
        assert await conn.fetchval("SELECT version_num FROM alembic_version") == OLD_HEAD
        assert await conn.fetchval("SELECT to_regclass('pawarisk_market_odds_current')") is None
    finally:
        await conn.close()


async def test_an_earlier_old_revision_is_refused_naming_the_head_to_reach_first(old_database: str) -> None:
    conn = await pawarisk.connect(old_database)
    try:
        await conn.execute("UPDATE alembic_version SET version_num = 'n8o7p0q1r2s3'")
    finally:
        await conn.close()

    with pytest.raises(TakeoverRefused, match=OLD_HEAD):
        migrate.upgrade(old_database)


async def test_the_old_scrape_runs_are_counted_previewed_and_cleaned_with_the_odds_retention(old_database: str) -> None:
    conn = await pawarisk.connect(old_database)
    try:
        # One run that started before the cutoff chosen below while its snapshots came after it, and batches:
        # one old with a run that goes, one old with that straddling run, one young.
        straddler, its_time = await conn.fetchrow(
            "SELECT scrape_run_id, min(captured_at) FROM odds_snapshots WHERE scrape_run_id IS NOT NULL"
            " GROUP BY 1 ORDER BY 2 OFFSET 2 LIMIT 1"
        )
        await conn.execute(
            "UPDATE scrape_runs SET started_at = started_at - interval '1 minute' WHERE id = $1", straddler
        )
        cutoff = its_time - timedelta(seconds=30)
        oldest_run = await conn.fetchval("SELECT min(id) FROM scrape_runs")
        batches = [
            await conn.fetchval("INSERT INTO scrape_batches (started_at) VALUES ($1) RETURNING id", started)
            for started in (datetime(2026, 1, 1), datetime(2026, 1, 2), cutoff.replace(tzinfo=None))
        ]
        await conn.execute("UPDATE scrape_runs SET batch_id = $1 WHERE id = $2", batches[0], oldest_run)
        await conn.execute("UPDATE scrape_runs SET batch_id = $1 WHERE id = $2", batches[1], straddler)
        runs = {r[0]: r[1] for r in await conn.fetch("SELECT id, started_at FROM scrape_runs")}
        snapshot_times: dict[int, list[datetime]] = defaultdict(list)
        for run_id, captured in await conn.fetch(
            "SELECT scrape_run_id, captured_at FROM odds_snapshots UNION ALL"
            " SELECT scrape_run_id, captured_at AT TIME ZONE 'UTC' FROM competitor_odds_snapshots"
        ):
            snapshot_times[run_id].append(captured)
        statuses = {r[0]: r[1] for r in await conn.fetch("SELECT id, scrape_run_id FROM event_scrape_status")}
    finally:
        await conn.close()
    # Events are kept (a year of match retention), so a run goes when it started before the cutoff and every
    # snapshot that refers to it is older than the cutoff.
    gone = {r for r, started in runs.items() if started < cutoff and all(t < cutoff for t in snapshot_times[r])}
    assert straddler not in gone and oldest_run in gone and set(runs) - gone, "the case is not trivial"

    migrate.upgrade(old_database)

    pool = await asyncpg.create_pool(old_database, min_size=1, max_size=4)
    try:
        retention = Retention(
            pool, RetentionSettings(lock_timeout=5.0, delete_batch=2), lambda: cutoff + timedelta(days=14)
        )
        stats = await retention.data_stats()
        assert stats.scrape_runs == (len(runs), min(runs.values()), max(runs.values()))
        assert stats.scrape_batches == (3, datetime(2026, 1, 1, tzinfo=UTC), cutoff)
        _, preview = await retention.preview(14, 365)
        assert (preview.scrape_runs, preview.scrape_batches) == (len(gone), 1)

        result = await retention.run_cleanup(odds_days=14, match_days=365)

        assert (result.counts.scrape_runs, result.counts.scrape_batches) == (len(gone), 1)
        assert {r[0] for r in await pool.fetch("SELECT id FROM scrape_runs")} == set(runs) - gone
        assert {r[0] for r in await pool.fetch("SELECT id FROM scrape_batches")} == set(batches[1:])
        assert {r[0] for r in await pool.fetch("SELECT id FROM event_scrape_status")} == {
            s for s, run_id in statuses.items() if run_id not in gone
        }
        assert tuple(
            await pool.fetchrow("SELECT scrape_runs_deleted, scrape_batches_deleted FROM cleanup_runs WHERE id = $1",
                                result.run_id)
        ) == (len(gone), 1)  # fmt: skip
    finally:
        await pool.close()


class Interrupted(Exception):
    pass


async def test_an_interrupted_conversion_resumes_where_it_stopped_and_converts_nothing_twice(
    old_database: str,
) -> None:
    conn = await pawarisk.connect(old_database)
    try:
        v29 = {
            (r[0], r[1], r[2], r[3], r[4])
            for r in await conn.fetch(
                "SELECT event_id, bookmaker_slug, betpawa_market_id, line, captured_at FROM market_odds_history"
            )
        }
        lo, hi = await conn.fetchrow("SELECT min(id), max(id) FROM market_odds_history")
    finally:
        await conn.close()
    batch = 2  # ids per batch: the fixture's few rows make several batches
    assert hi - lo + 1 > 3 * batch, "several batches before and after the interruption"
    first_run: list[int] = []

    def fail_after_three(first_id: int) -> None:
        first_run.append(first_id)
        if len(first_run) == 3:
            raise Interrupted

    with pytest.raises(Interrupted):
        migrate.upgrade(old_database, batch_ids=batch, after_batch=fail_after_three)

    plan = "\n".join(migrate.plan(old_database))
    converted_before = await _converted(old_database)
    assert 0 < len(converted_before) < len(v29)
    assert f"v2.9 history to convert: {len(v29) - len(converted_before)} of {len(v29)} rows" in plan

    second_run: list[int] = []
    migrate.upgrade(old_database, batch_ids=batch, after_batch=second_run.append)

    # The second run starts at the first batch the first did not commit, and covers the rest once.
    assert second_run[0] == first_run[-1] + batch
    assert sorted(first_run + second_run) == list(range(lo, hi + 1, batch))
    converted = await _converted(old_database)
    assert sorted(converted) == sorted(v29)  # every row, each once
    assert "nothing to convert" in "\n".join(migrate.plan(old_database))
    migrate.upgrade(old_database)  # a third run has nothing left to do
    assert sorted(await _converted(old_database)) == sorted(v29)


async def _converted(dsn: str) -> list[tuple[Any, ...]]:
    """The history rows the conversion wrote: only converted v2.9 rows are in market_odds_history here."""
    conn = await pawarisk.connect(dsn)
    try:
        return [
            tuple(r)
            for r in await conn.fetch(
                "SELECT event_id, bookmaker_slug, market_id, line, captured_at FROM market_odds_history"
            )
        ]
    finally:
        await conn.close()


async def test_the_dry_run_counts_the_work_and_changes_nothing(old_database: str) -> None:
    conn = await pawarisk.connect(old_database)
    try:
        v29 = await conn.fetchval("SELECT count(*) FROM market_odds_history")
        legacy = await conn.fetchval(
            "SELECT (SELECT count(*) FROM market_odds) + (SELECT count(*) FROM competitor_market_odds)"
        )
    finally:
        await conn.close()
    before = await table_fingerprints(old_database, sorted(set(OLD_HEAD_COLUMNS) | {"alembic_version"}))

    lines = migrate.plan(old_database)

    text = "\n".join(lines)
    assert f"pawaRisk head {OLD_HEAD}, schema verified" in text
    assert "revisions to apply: 0002 0003 0004 0005" in text
    assert f"v2.9 history to convert: {v29} of {v29} rows" in text
    assert f"current state seeded from {legacy} legacy market rows" in text
    assert "estimate: ~" in text
    assert await table_fingerprints(old_database, sorted(set(OLD_HEAD_COLUMNS) | {"alembic_version"})) == before
