"""The retention service layer on a real PostgreSQL with the real migrations and an injected clock:
partition upkeep, cleanup runs, preview, one run at a time, concurrent writers, crash recovery."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest

from oddstore.history_partitions import ensure_partition, partition_name
from services.retention.cleanup import INTERRUPTED, CleanupInProgress
from services.retention.config import RetentionSettings
from services.retention.retention import Retention
from services.writer.plan import Status
from services.writer.writer import Writer
from tests.conftest import REPO_ROOT
from tests.factories import market, new_event_id, snapshot, write
from tests.polling import TIMEOUT_SECONDS, eventually


@dataclass
class FakeClock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture
def dsn(make_migrated_database: Callable[[], str]) -> str:
    """A database of its own per test: these tests drop partitions and delete rows of every table."""
    return make_migrated_database()


@pytest.fixture
async def pool(dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=6)
    yield pool
    await pool.close()


def settings(**overrides: object) -> RetentionSettings:
    values: dict[str, object] = {"lock_timeout": 0.5, "delete_batch": 7}
    values.update(overrides)
    return RetentionSettings(**values)  # type: ignore[arg-type]


async def partition_days(pool: asyncpg.Pool) -> list[date]:
    rows = await pool.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'market_odds_history'::regclass ORDER BY 1"
    )
    return [datetime.strptime(r[0].removeprefix("market_odds_history_p"), "%Y%m%d").date() for r in rows]


async def test_partitions_are_created_ahead_across_a_year_boundary_with_utc_midnight_bounds(pool: asyncpg.Pool) -> None:
    clock = FakeClock(datetime(2030, 12, 28, 23, 30, tzinfo=UTC))
    retention = Retention(pool, settings(horizon_days=7), clock)

    assert await retention.ensure_partitions() == 7

    days = await partition_days(pool)
    assert days == [date(2030, 12, 28) + timedelta(days=i) for i in range(8)]
    assert days[-1] == date(2031, 1, 4)
    bound = await pool.fetchval(
        "SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = $1", partition_name(date(2030, 12, 31))
    )
    assert bound == "FOR VALUES FROM ('2030-12-31 00:00:00+00') TO ('2031-01-01 00:00:00+00')"
    # Nothing to do the second time.
    assert await retention.ensure_partitions() == 7
    assert len(await partition_days(pool)) == 8


async def test_the_horizon_moves_with_the_clock_across_a_month_boundary(pool: asyncpg.Pool) -> None:
    clock = FakeClock(datetime(2031, 1, 30, 1, 0, tzinfo=UTC))
    retention = Retention(pool, settings(horizon_days=3), clock)
    await retention.ensure_partitions()
    clock.advance(timedelta(days=2))
    assert await retention.ensure_partitions() == 3
    days = await partition_days(pool)
    assert days == [date(2031, 1, 30), date(2031, 1, 31), *(date(2031, 2, d) for d in range(1, 5))]
    _, ahead = await retention.partitions()
    assert ahead == 3


async def test_the_horizon_is_reported_even_when_creating_a_partition_fails(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock(datetime(2031, 5, 10, 12, tzinfo=UTC))
    reported: list[int] = []

    async def report(days_ahead: int) -> None:
        reported.append(days_ahead)

    retention = Retention(pool, settings(horizon_days=7), clock, report)
    assert await retention.ensure_partitions() == 7
    clock.advance(timedelta(days=6))  # one day ahead is left; creating the next ones fails

    async def refuse(pool: asyncpg.Pool, day: date) -> None:
        raise asyncpg.exceptions.InsufficientPrivilegeError(f"no partition for {day}")

    monkeypatch.setattr("services.retention.retention.ensure_partition", refuse)
    with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
        await retention.ensure_partitions()
    assert reported == [7, 1]


async def test_a_gap_in_the_partitions_shortens_the_reported_horizon(
    pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(datetime(2031, 3, 10, 12, tzinfo=UTC))
    retention = Retention(pool, settings(horizon_days=7), clock)
    await ensure_partition(pool, date(2031, 3, 10))
    await ensure_partition(pool, date(2031, 3, 11))
    await ensure_partition(pool, date(2031, 3, 13))
    _, ahead = await retention.partitions()
    assert ahead == 1
    # With a horizon of 1 configured, the warning threshold of 2 days is crossed and logged.
    short = Retention(pool, settings(horizon_days=1), clock)
    with caplog.at_level("WARNING"):
        assert await short.ensure_partitions() == 1
    assert "only 1 day(s) ahead" in caplog.text


async def write_history(pool: asyncpg.Pool, days: list[datetime], kickoff: datetime) -> dict[date, int]:
    """One event per day with two markets, written through the writer (which creates the partitions)."""
    writer = Writer(pool)
    rows: dict[date, int] = {}
    for t in days:
        e = new_event_id()
        results = await write(
            writer, [snapshot(e, t, [market(), market("5000", 2.5, (1.9, 1.95), ("Over", "Under"))], kickoff=kickoff)]
        )
        assert [r.status for r in results] == [Status.ACCEPTED]
        rows[t.date()] = rows.get(t.date(), 0) + 2
    return rows


async def test_expired_partitions_are_dropped_whole_and_nothing_newer(pool: asyncpg.Pool) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    today = now.date()
    noon = datetime.combine(today, datetime.min.time(), UTC) + timedelta(hours=12)
    written = await write_history(
        pool, [noon - timedelta(days=d) for d in (20, 16, 15, 14, 13, 1)], kickoff=now + timedelta(days=3)
    )
    clock = FakeClock(noon)
    retention = Retention(pool, settings(), clock)

    result = await retention.run_cleanup("manual", 14, 14)

    # Cutoff is noon 14 days ago: the partitions of days 20, 16 and 15 end before it; day 14 holds it.
    gone = [today - timedelta(days=d) for d in (20, 16, 15)]
    assert result.counts.history_partitions == 3
    assert result.counts.market_odds_history == sum(written[d] for d in gone)
    left = await partition_days(pool)
    assert not set(gone) & set(left)
    assert {today - timedelta(days=d) for d in (14, 13, 1)} <= set(left)
    assert await pool.fetchval("SELECT count(*) FROM market_odds_history") == 6
    assert result.counts.oldest_odds_date == noon - timedelta(days=20)
    run = await pool.fetchrow("SELECT * FROM cleanup_runs WHERE id = $1", result.run_id)
    assert run["status"] == "completed" and run["trigger"] == "manual"
    assert run["market_odds_history_deleted"] == 6 and run["history_partitions_dropped"] == 3
    # No detached or orphan tables are left behind.
    assert not await pool.fetchval(
        "SELECT count(*) FROM pg_class"
        " WHERE relname LIKE 'market_odds_history_p%' AND relkind = 'r' AND NOT relispartition"
    )


async def test_an_interrupted_concurrent_detach_is_finalized_and_dropped(
    pool: asyncpg.Pool, dsn: str, on_citus: bool
) -> None:
    if on_citus:
        pytest.skip("NOT RUN ON CITUS: Citus has no DETACH PARTITION CONCURRENTLY; retention drops partitions there")
    noon = datetime.combine(datetime.now(UTC).date(), datetime.min.time(), UTC) + timedelta(hours=12)
    old = (noon - timedelta(days=30)).date()
    await write_history(pool, [noon - timedelta(days=30)], kickoff=noon + timedelta(days=2))
    # A reader holding a snapshot makes DETACH CONCURRENTLY wait in its second phase; cancelling it then
    # leaves the partition "detach pending", as a crash would.
    reader, detacher = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    try:
        tx = reader.transaction(isolation="repeatable_read")
        await tx.start()
        await reader.fetchval("SELECT count(*) FROM market_odds_history")
        pid = detacher.get_server_pid()
        task = asyncio.create_task(
            detacher.execute(f"ALTER TABLE market_odds_history DETACH PARTITION {partition_name(old)} CONCURRENTLY")
        )

        async def detach_waits() -> bool:
            return await pool.fetchval("SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1", pid) == "Lock"

        await eventually(detach_waits, "DETACH CONCURRENTLY waiting for the reader's snapshot")
        await pool.execute("SELECT pg_cancel_backend($1)", pid)
        with pytest.raises(asyncpg.exceptions.QueryCanceledError):
            await task
        await tx.rollback()
    finally:
        await reader.close()
        await detacher.close()
    assert await pool.fetchval(
        "SELECT inhdetachpending FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE c.relname = $1",
        partition_name(old),
    )

    result = await Retention(pool, settings(), FakeClock(noon)).run_cleanup("manual", 14, 14)

    assert result.counts.history_partitions == 1 and result.counts.market_odds_history == 2
    assert not await pool.fetchval("SELECT 1 FROM pg_class WHERE relname = $1", partition_name(old))


async def seed_everything(pool: asyncpg.Pool, now: datetime) -> dict[str, int]:
    """Data of every kind, some older than the 14-day retentions and some newer. Returns the expected counts."""
    ago = lambda days: now - timedelta(days=days)  # noqa: E731
    writer = Writer(pool)
    old_event, new_event = new_event_id(), new_event_id()
    # An event played 30 days ago (history 31 days old) and an upcoming one with old and fresh history.
    await write(
        writer,
        [
            snapshot(
                old_event,
                ago(31),
                [market(), market("3795", None, (1.8, 2.0), ("Yes", "No"))],
                kickoff=ago(30),
                tournament="Old Cup",
            )
        ],
    )
    await write(
        writer, [snapshot(old_event, ago(31), [market()], bookmaker="sportybet", kickoff=ago(30), tournament="Old Cup")]
    )
    await write(writer, [snapshot(new_event, ago(20), [market()], kickoff=ago(-2))])
    await write(writer, [snapshot(new_event, ago(1), [market(odds=(2.2, 3.3, 3.3))], kickoff=ago(-2))])
    async with pool.acquire() as conn:
        # The tournament of the old event predates the cutoff, as it would in production.
        await conn.execute(
            "UPDATE tournaments SET created_at = $1 WHERE name = 'Old Cup'", ago(60).replace(tzinfo=None)
        )
        bookmaker = await conn.fetchval("SELECT id FROM bookmakers WHERE slug = 'betpawa'")
        sport = await conn.fetchval("SELECT id FROM sports LIMIT 1")
        # Legacy snapshots: 3 of the old event (all go with it), 4 of the new event older than 14 days, 2 newer.
        for event, days, n in ((old_event, 31, 3), (new_event, 16, 4), (new_event, 2, 2)):
            for i in range(n):
                sid = await conn.fetchval(
                    "INSERT INTO odds_snapshots (event_id, bookmaker_id, captured_at) VALUES ($1, $2, $3) RETURNING id",
                    event,
                    bookmaker,
                    ago(days) + timedelta(minutes=i),
                )
                await conn.executemany(
                    "INSERT INTO market_odds (snapshot_id, betpawa_market_id, betpawa_market_name, outcomes)"
                    " VALUES ($1, $2, 'm', '[]')",
                    [(sid, str(m)) for m in range(3)],
                )
        ct_old = await conn.fetchval(
            "INSERT INTO competitor_tournaments (source, external_id, name, sport_id, created_at)"
            " VALUES ('sportybet', $1, 'Old', $2, $3) RETURNING id",
            f"t{old_event}",
            sport,
            ago(60).replace(tzinfo=None),
        )
        ct_new = await conn.fetchval(
            "INSERT INTO competitor_tournaments (source, external_id, name, sport_id, created_at)"
            " VALUES ('bet9ja', $1, 'New', $2, $3) RETURNING id",
            f"t{new_event}",
            sport,
            ago(60).replace(tzinfo=None),
        )
        for tournament, kickoff_days, snaps in ((ct_old, 25, (26, 26)), (ct_new, -1, (18, 3, 1))):
            ce = await conn.fetchval(
                "INSERT INTO competitor_events (source, tournament_id, external_id, sportradar_id, name, home_team,"
                " away_team, kickoff) VALUES ('sportybet', $1, $2, $2, 'a - b', 'a', 'b', $3) RETURNING id",
                tournament,
                f"ce{tournament}",
                ago(kickoff_days).replace(tzinfo=None),
            )
            for d in snaps:
                sid = await conn.fetchval(
                    "INSERT INTO competitor_odds_snapshots (competitor_event_id, captured_at)"
                    " VALUES ($1, $2) RETURNING id",
                    ce,
                    ago(d).replace(tzinfo=None),
                )
                await conn.execute(
                    "INSERT INTO competitor_market_odds (snapshot_id, betpawa_market_id, betpawa_market_name, outcomes)"
                    " VALUES ($1, '3743', 'm', '[]')",
                    sid,
                )
    return {"old_event": old_event, "new_event": new_event}


COUNT_FIELDS = (
    "odds_snapshots",
    "competitor_odds_snapshots",
    "market_odds_history",
    "history_partitions",
    "market_odds_current",
    "events",
    "competitor_events",
    "tournaments",
    "competitor_tournaments",
    "oldest_odds_date",
    "oldest_match_date",
)


async def test_preview_equals_the_following_run_and_a_second_preview_finds_nothing(pool: asyncpg.Pool) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    ids = await seed_everything(pool, now)
    retention = Retention(pool, settings(), FakeClock(now))

    cutoffs, preview = await retention.preview(14, 14)
    result = await retention.run_cleanup("manual", 14, 14)

    assert result.cutoffs == cutoffs
    assert {f: getattr(preview, f) for f in COUNT_FIELDS} == {f: getattr(result.counts, f) for f in COUNT_FIELDS}
    c = result.counts
    assert (c.odds_snapshots, c.competitor_odds_snapshots) == (3 + 4, 2 + 1)
    assert (c.events, c.competitor_events, c.tournaments, c.competitor_tournaments) == (1, 1, 1, 1)
    assert c.market_odds_current == 3  # two betpawa markets and one sportybet market of the old event
    assert c.history_partitions == 2 and c.market_odds_history == 3 + 1  # days 31 and 20
    assert c.oldest_odds_date == now - timedelta(days=31)
    assert c.oldest_match_date == now - timedelta(days=30)
    # What is left: the new event and its fresh data, nothing of the old one anywhere.
    assert await pool.fetchval("SELECT count(*) FROM odds_snapshots") == 2
    assert await pool.fetchval("SELECT count(*) FROM market_odds") == 6
    assert await pool.fetchval("SELECT count(*) FROM competitor_odds_snapshots") == 2
    assert await pool.fetchval("SELECT count(*) FROM competitor_market_odds") == 2
    old = ids["old_event"]
    for table in ("market_odds_current", "latest_snapshots", "event_bookmakers", "market_odds_history"):
        assert await pool.fetchval(f"SELECT count(*) FROM {table} WHERE event_id = $1", old) == 0, table
    assert await pool.fetchval("SELECT count(*) FROM market_odds_current WHERE event_id = $1", ids["new_event"]) == 1
    assert await pool.fetchval("SELECT count(*) FROM events") == 1

    _, again = await retention.preview(14, 14)
    assert all(getattr(again, f) in (0, None) for f in COUNT_FIELDS)
    run = await pool.fetchrow("SELECT * FROM cleanup_runs WHERE id = $1", result.run_id)
    assert (run["odds_deleted"], run["market_odds_current_deleted"], run["events_deleted"]) == (7, 3, 1)
    assert run["oldest_odds_date"] == (now - timedelta(days=31)).replace(tzinfo=None)


async def test_stored_retention_is_used_when_the_request_leaves_it_out(pool: asyncpg.Pool) -> None:
    now = datetime.now(UTC)
    await pool.execute("UPDATE settings SET odds_retention_days = 3, match_retention_days = 5")
    cutoffs, _ = await Retention(pool, settings(), FakeClock(now)).preview(None, None)
    assert (cutoffs.odds, cutoffs.match) == (now - timedelta(days=3), now - timedelta(days=5))


async def test_a_second_concurrent_run_is_refused_while_the_first_completes(pool: asyncpg.Pool) -> None:
    now = datetime.now(UTC)
    await seed_everything(pool, now)
    # Many small batches make the first run last long enough for the second to meet it.
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO odds_snapshots (event_id, bookmaker_id, captured_at)"
            " SELECT (SELECT min(id) FROM events), (SELECT min(id) FROM bookmakers), $1 FROM generate_series(1, 3000)",
            now - timedelta(days=40),
        )
    retention = Retention(pool, settings(delete_batch=1), FakeClock(now))
    first = asyncio.create_task(retention.run_cleanup("manual", 14, 14))

    async def first_is_running() -> bool:
        return bool(await pool.fetchval("SELECT count(*) FROM cleanup_runs WHERE status = 'running'"))

    await eventually(first_is_running, "the first run recorded as running")
    other_process = Retention(pool, settings(), FakeClock(now))
    with pytest.raises(CleanupInProgress, match=r"a cleanup run is already in progress \(run \d+ started at "):
        await other_process.run_cleanup("manual", 14, 14)
    # A scheduled tick meanwhile postpones instead of failing.
    assert await other_process.run_if_due() is None
    result = await first
    assert result.counts.odds_snapshots == 3000 + 7
    assert await pool.fetchval("SELECT count(*) FROM cleanup_runs") == 1


async def test_writers_never_fail_while_partitions_are_created_and_dropped(pool: asyncpg.Pool) -> None:
    real_now = datetime.now(UTC).replace(microsecond=0)
    midnight = datetime.combine(real_now.date(), datetime.min.time(), UTC)
    # Ten days of expired history to drop, one partition per cleanup run below.
    await write_history(
        pool, [midnight - timedelta(days=30 - d, hours=-6) for d in range(10)], real_now + timedelta(days=2)
    )
    clock = FakeClock(midnight - timedelta(days=30 - 14) + timedelta(hours=12))
    retention = Retention(pool, settings(horizon_days=3), clock)
    stop = asyncio.Event()
    failures: list[str] = []
    written = 0

    async def write_continuously() -> None:
        nonlocal written
        writer, e, i = Writer(pool), new_event_id(), 0
        while not stop.is_set():
            i += 1
            try:
                t = datetime.now(UTC)
                results = await write(
                    writer,
                    [
                        snapshot(
                            e, t, [market(odds=(2.0 + i % 50 / 100, 3.4, 3.5))], kickoff=real_now + timedelta(days=2)
                        )
                    ],
                )
                failures.extend(r.reason for r in results if r.status is Status.REJECTED)
                written += 1
            except Exception as exc:
                failures.append(repr(exc))

    task = asyncio.create_task(write_continuously())
    dropped = 0
    try:
        # Ten days forward, one expired partition dropped each day, then more runs until the writer has made
        # 50 more attempts (counted, not timed: a busy machine only makes this take longer); the clock never
        # reaches the days the writer writes to.
        for _ in range(10):
            clock.advance(timedelta(days=1))
            await retention.ensure_partitions()
            dropped += (await retention.run_cleanup("manual", 14, 14)).counts.history_partitions
        target = written + len(failures) + 50
        async with asyncio.timeout(TIMEOUT_SECONDS):
            while written + len(failures) < target:
                await retention.ensure_partitions()
                await retention.run_cleanup("manual", 14, 14)
    finally:
        stop.set()
        await task
    assert failures == []
    assert dropped == 10


SPAWN_RUN = """
import asyncio, sys
from datetime import UTC, datetime
import asyncpg
from services.retention.config import RetentionSettings
from services.retention.retention import Retention

async def main():
    pool = await asyncpg.create_pool(sys.argv[1], min_size=1, max_size=3)
    await Retention(pool, RetentionSettings(delete_batch=1)).run_cleanup("scheduled", 14, 14)

asyncio.run(main())
"""


async def test_a_run_killed_mid_way_is_marked_failed_at_the_next_start_and_the_lock_is_free(
    pool: asyncpg.Pool, dsn: str
) -> None:
    async with pool.acquire() as conn:
        await conn.execute("INSERT INTO tournaments (sport_id, name) SELECT id, 'K' FROM sports LIMIT 1")
        event = await conn.fetchval(
            "INSERT INTO events (sportradar_id, tournament_id, name, home_team, away_team, kickoff)"
            " SELECT 'sr:k', (SELECT id FROM tournaments LIMIT 1), 'a - b', 'a', 'b', now() + interval '1 day'"
            " RETURNING id"
        )
        await conn.execute(
            "INSERT INTO odds_snapshots (event_id, bookmaker_id, captured_at)"
            " SELECT $1, (SELECT min(id) FROM bookmakers), now() - interval '40 days' FROM generate_series(1, 100000)",
            event,
        )
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", SPAWN_RUN, dsn, cwd=REPO_ROOT)
    try:

        async def run_under_way() -> bool:
            running = await pool.fetchval("SELECT count(*) FROM cleanup_runs WHERE status = 'running'")
            return bool(running) and await pool.fetchval("SELECT count(*) FROM odds_snapshots") < 100000

        await eventually(run_under_way, "the spawned run deleting")
        process.send_signal(signal.SIGKILL)  # no chance to record anything
        await asyncio.wait_for(process.wait(), 10)
    finally:
        if process.returncode is None:
            process.kill()
    assert await pool.fetchval("SELECT status FROM cleanup_runs") == "running"
    # The server notices the dead session (and frees its advisory lock) when the socket closes.

    async def lock_freed() -> bool:
        return not await pool.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")

    await eventually(lock_freed, "the killed run's advisory lock freed")

    now = datetime.now(UTC)
    retention = Retention(pool, settings(), FakeClock(now))
    assert len(await retention.recover_interrupted()) == 1
    run = await pool.fetchrow("SELECT * FROM cleanup_runs")
    assert run["status"] == "failed" and run["error_message"] == INTERRUPTED
    assert run["completed_at"] is not None and run["duration_seconds"] is not None
    # The lock died with the process: the next run goes ahead and finishes the job.
    result = await retention.run_cleanup("manual", 14, 14)
    assert await pool.fetchval("SELECT count(*) FROM odds_snapshots") == 0
    assert result.counts.odds_snapshots > 0


async def test_a_running_run_of_a_live_process_is_not_marked_failed(pool: asyncpg.Pool) -> None:
    now = datetime.now(UTC)
    await pool.execute(
        "INSERT INTO cleanup_runs (started_at, trigger, odds_retention_days, match_retention_days)"
        " VALUES ($1, 'manual', 14, 14)",
        now.replace(tzinfo=None),
    )
    async with pool.acquire() as holder:
        await holder.execute("SELECT pg_advisory_lock(x'6f646473726574' :: bigint * 256 + 1)")
        assert await Retention(pool, settings(), FakeClock(now)).recover_interrupted() == []
        await holder.execute("SELECT pg_advisory_unlock_all()")
    assert await pool.fetchval("SELECT status FROM cleanup_runs") == "running"
