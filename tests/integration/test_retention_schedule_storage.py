"""The retention tick on a real PostgreSQL, driven by an injected clock: the anchored schedule, settings,
storage samples and alerts."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from services.retention.config import RetentionSettings
from services.retention.retention import AlertNotFound, Retention
from services.retention.stored_settings import InvalidSetting, SettingsUpdate
from tests.integration.test_retention_lifecycle import FakeClock
from tests.polling import eventually


@pytest.fixture
def dsn(make_migrated_database: Callable[[], str]) -> str:
    return make_migrated_database()


@pytest.fixture
async def pool(dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    yield pool
    await pool.close()


async def scheduled_starts(pool: asyncpg.Pool) -> list[datetime]:
    rows = await pool.fetch("SELECT started_at FROM cleanup_runs WHERE trigger = 'scheduled' ORDER BY id")
    return [r[0].replace(tzinfo=UTC) for r in rows]


async def test_the_schedule_fires_at_anchored_utc_times_and_follows_a_changed_frequency(pool: asyncpg.Pool) -> None:
    clock = FakeClock(datetime(2031, 5, 10, 5, 59, tzinfo=UTC))
    retention = Retention(pool, RetentionSettings(), clock)
    await retention.update_settings(SettingsUpdate(cleanup_frequency_hours=6))

    async def tick_at(hour: int, minute: int, day: int = 10) -> None:
        clock.now = datetime(2031, 5, day, hour, minute, tzinfo=UTC)
        await retention.tick()

    await tick_at(5, 59)  # no run yet: the 00:00 slot is owed and caught up once
    await tick_at(6, 0)  # the 06:00 slot
    await tick_at(6, 1)
    await tick_at(11, 59)
    await tick_at(
        12,
        0,
    )  # the 12:00 slot
    await tick_at(12, 30)
    assert await scheduled_starts(pool) == [
        datetime(2031, 5, 10, 5, 59, tzinfo=UTC),
        datetime(2031, 5, 10, 6, 0, tzinfo=UTC),
        datetime(2031, 5, 10, 12, 0, tzinfo=UTC),
    ]
    # A new frequency applies at the next tick, without a restart: 24 h → only at midnight.
    await retention.update_settings(SettingsUpdate(cleanup_frequency_hours=24))
    await tick_at(18, 0)
    await tick_at(23, 59)
    await tick_at(0, 0, day=11)
    await tick_at(6, 0, day=11)
    starts = await scheduled_starts(pool)
    assert starts[3:] == [datetime(2031, 5, 11, 0, 0, tzinfo=UTC)]
    statuses = {r[0] for r in await pool.fetch("SELECT status FROM cleanup_runs")}
    assert statuses == {"completed"}


async def test_a_changed_retention_applies_to_the_next_scheduled_run(pool: asyncpg.Pool) -> None:
    clock = FakeClock(datetime(2031, 6, 1, 0, 5, tzinfo=UTC))
    retention = Retention(pool, RetentionSettings(), clock)
    await retention.update_settings(SettingsUpdate(odds_retention_days=3, match_retention_days=9))
    await retention.tick()
    row = await pool.fetchrow("SELECT odds_retention_days, match_retention_days, trigger FROM cleanup_runs")
    assert tuple(row) == (3, 9, "scheduled")


async def test_settings_are_created_with_defaults_validated_and_updated(pool: asyncpg.Pool) -> None:
    await pool.execute("DELETE FROM settings")
    clock = FakeClock(datetime(2031, 2, 3, 4, 5, 6, tzinfo=UTC))
    retention = Retention(pool, RetentionSettings(), clock)

    fresh = await retention.get_settings()
    assert (fresh.odds_retention_days, fresh.match_retention_days, fresh.cleanup_frequency_hours) == (14, 14, 24)
    assert fresh.enabled_platforms == ("sportybet", "betpawa", "bet9ja") and fresh.updated_at is None

    for name, bad in (
        ("odds_retention_days", 0),
        ("match_retention_days", 366),
        ("cleanup_frequency_hours", 169),
        ("scrape_interval_minutes", 61),
        ("batch_size", 9),
        ("bet9ja_delay_ms", -1),
    ):
        with pytest.raises(InvalidSetting) as info:
            await retention.update_settings(SettingsUpdate(**{name: bad}))  # type: ignore[arg-type]
        assert info.value.field_name == name and name in str(info.value)
    assert await retention.get_settings() == fresh  # nothing applied

    updated = await retention.update_settings(
        SettingsUpdate(odds_retention_days=30, enabled_platforms=("bet9ja", "unknownbet", "betpawa"))
    )
    assert updated.odds_retention_days == 30 and updated.match_retention_days == 14
    assert updated.enabled_platforms == ("bet9ja", "betpawa")
    assert updated.updated_at == clock.now
    assert json.loads(await pool.fetchval("SELECT enabled_platforms::text FROM settings")) == ["bet9ja", "betpawa"]
    emptied = await retention.update_settings(SettingsUpdate(enabled_platforms=()))
    assert emptied.enabled_platforms == () and emptied.odds_retention_days == 30


async def test_storage_sizes_roll_partitions_up_under_their_parent(pool: asyncpg.Pool) -> None:
    clock = FakeClock(datetime.now(UTC))
    retention = Retention(pool, RetentionSettings(horizon_days=2), clock)
    await retention.ensure_partitions()
    await pool.execute("ANALYZE")
    report = await retention.storage_sizes()
    by_name = {t.table_name: t for t in report.tables}
    history = by_name["market_odds_history"]
    assert len(history.partitions) == 3
    assert history.size_bytes == sum(p.size_bytes for p in history.partitions) > 0
    assert "market_odds_history_p" not in " ".join(by_name)  # partitions only appear under their parent
    assert [p.table_name for p in by_name["odds_snapshots"].partitions] == ["odds_snapshots_default"]
    assert [t.size_bytes for t in report.tables] == sorted((t.size_bytes for t in report.tables), reverse=True)
    assert report.total_bytes >= sum(t.size_bytes for t in report.tables)
    assert report.total_human.endswith(("kB", "MB", "GB"))
    assert by_name["bookmakers"].row_count == 3  # the live count, analysed or not


async def test_row_counts_are_live_figures_on_tables_never_analysed_summed_over_partitions(pool: asyncpg.Pool) -> None:
    clock = FakeClock(datetime(2031, 8, 1, 12, tzinfo=UTC))
    retention = Retention(pool, RetentionSettings(horizon_days=2), clock)
    await retention.ensure_partitions()
    today, tomorrow = "market_odds_history_p20310801", "market_odds_history_p20310802"
    history = (
        "INSERT INTO market_odds_history (event_id, captured_at, available, bookmaker_slug, market_id, outcomes)"
        " SELECT i, $1, true, 'betpawa', 'm', '\\x00'::bytea FROM generate_series(1, $2) i"
    )
    async with pool.acquire() as conn:
        # One transaction that ends by asking for its statistics to be flushed at commit: PostgreSQL otherwise
        # holds a session's counters back for up to a second, and the figures read below would depend on timing.
        async with conn.transaction():
            await conn.execute(history, clock.now, 5)
            await conn.execute(history, clock.now + timedelta(days=1), 3)
            await conn.execute(f"DELETE FROM {today} WHERE event_id = 1")  # live rows, not rows ever inserted
            await conn.execute(
                "INSERT INTO latest_snapshots (event_id, bookmaker_slug, captured_at)"
                " SELECT i, 'betpawa', $1 FROM generate_series(1, 4) i",
                clock.now,
            )
            await conn.execute("SELECT pg_stat_force_next_flush()")
    # Never analysed (fewer rows than autovacuum's analyse threshold of 50, were it on): no planner estimate.
    never_analysed = await pool.fetchval(
        "SELECT bool_and(reltuples < 0) FROM pg_class WHERE relname = ANY($1::text[])",
        [today, tomorrow, "latest_snapshots"],
    )
    assert never_analysed

    expected = ({today: 4, tomorrow: 3, "market_odds_history_p20310803": 0}, 7, 4)

    async def counts() -> tuple[dict[str, int], int, int]:
        by_name = {t.table_name: t for t in (await retention.storage_sizes()).tables}
        partitions = {p.table_name: p.row_count for p in by_name["market_odds_history"].partitions}
        return partitions, by_name["market_odds_history"].row_count, by_name["latest_snapshots"].row_count

    # On Citus the rows were written by the coordinator's connections to the workers, whose statistics are
    # flushed when those sessions next go idle: waited for, where one server has them at once.
    await eventually(lambda: _equals(counts(), expected), "live row counts of every shard")
    assert await counts() == expected


async def _equals(value: Awaitable[object], expected: object) -> bool:
    return await value == expected


async def test_one_sample_per_utc_day_growth_and_size_alerts_and_resolve(pool: asyncpg.Pool) -> None:
    clock = FakeClock(datetime(2031, 7, 1, 0, 10, tzinfo=UTC))
    retention = Retention(pool, RetentionSettings(growth_warning_percent=20, size_critical_bytes=1), clock)
    await retention.tick()
    clock.advance(timedelta(hours=5))
    await retention.tick()  # same UTC day: no second sample
    samples, total = await retention.list_samples(30)
    assert total == 1 and samples[0].sampled_at == datetime(2031, 7, 1, 0, 10, tzinfo=UTC)
    assert samples[0].table_sizes["market_odds_history"] > 0

    # The next day the database is 50 % bigger than the last sample said.
    await pool.execute("UPDATE storage_samples SET total_bytes = total_bytes * 2 / 3")
    clock.advance(timedelta(days=1))
    await retention.tick()
    samples, total = await retention.list_samples(30)
    assert total == 2 and samples[0].sampled_at > samples[1].sampled_at
    alerts = await retention.open_alerts()
    kinds = sorted(a.alert_type for a in alerts)
    assert kinds == ["growth_warning", "size_critical"]  # the critical one only once over three ticks
    growth = next(a for a in alerts if a.alert_type == "growth_warning")
    assert 45 < growth.growth_percent < 55 and growth.message.startswith("Database grew ")
    critical = next(a for a in alerts if a.alert_type == "size_critical")
    assert critical.growth_percent == 0

    resolved = await retention.resolve_alert(critical.id)
    assert resolved.resolved_at == clock.now
    assert [a.id for a in await retention.open_alerts()] == [growth.id]
    clock.advance(timedelta(minutes=1))
    assert (await retention.resolve_alert(critical.id)).resolved_at == clock.now  # resolving again re-stamps
    await retention.tick()  # still over the threshold, none open: a new critical alert
    assert sorted(a.alert_type for a in await retention.open_alerts()) == ["growth_warning", "size_critical"]
    with pytest.raises(AlertNotFound):
        await retention.resolve_alert(999_999)


async def test_only_the_newest_90_samples_are_kept(pool: asyncpg.Pool) -> None:
    await pool.execute(
        "INSERT INTO storage_samples (sampled_at, total_bytes, table_sizes)"
        " SELECT timestamp '2031-01-01' + i * interval '1 day', 1000, '{}' FROM generate_series(1, 95) i"
    )
    clock = FakeClock(datetime(2031, 9, 1, tzinfo=UTC))
    assert await Retention(pool, RetentionSettings(), clock).sample_storage_if_due() is not None
    samples, total = await Retention(pool, RetentionSettings(), clock).list_samples(100)
    assert total == 90 and samples[0].sampled_at == clock.now
    assert samples[-1].sampled_at == datetime(2031, 1, 1, tzinfo=UTC) + timedelta(days=95 - 88)
