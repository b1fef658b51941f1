"""SQL of cleanup runs: the lock that allows one run at a time, and the run records."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from services.retention.cleanup import Counts, RunRecord
from services.retention.naive_utc import aware, naive

# Session advisory lock held for the whole of a cleanup run: one run at a time across every process on this
# database. A session lock (not a transaction lock) because a run commits many transactions; it dies with the
# connection, so a crashed process never leaves it held.
CLEANUP_LOCK_KEY = 0x6F64_6473_7265_7401  # "oddsret" + 1


async def try_cleanup_lock(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", CLEANUP_LOCK_KEY))


async def release_cleanup_lock(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1)", CLEANUP_LOCK_KEY)


INSERT_RUN = """
INSERT INTO cleanup_runs (started_at, trigger, odds_retention_days, match_retention_days, status)
VALUES ($1, $2, $3, $4, 'running') RETURNING id
"""

FINISH_RUN = """
UPDATE cleanup_runs SET
    completed_at = $2, status = $3, error_message = $4, duration_seconds = $5,
    odds_deleted = $6, competitor_odds_deleted = $7, events_deleted = $8, competitor_events_deleted = $9,
    tournaments_deleted = $10, competitor_tournaments_deleted = $11, market_odds_history_deleted = $12,
    history_partitions_dropped = $13, market_odds_current_deleted = $14,
    oldest_odds_date = $15, oldest_match_date = $16, scrape_runs_deleted = $17, scrape_batches_deleted = $18
WHERE id = $1
"""

# Only called by a process that holds the cleanup lock: no run can be in progress anywhere then.
MARK_INTERRUPTED = """
UPDATE cleanup_runs SET status = 'failed', error_message = $1, completed_at = $2,
    duration_seconds = EXTRACT(EPOCH FROM ($2 - started_at))
WHERE status = 'running'
RETURNING id
"""

RUNNING_RUN = "SELECT id, started_at FROM cleanup_runs WHERE status = 'running' ORDER BY id DESC LIMIT 1"
LAST_SCHEDULED_START = "SELECT max(started_at) FROM cleanup_runs WHERE trigger = 'scheduled'"
LIST_RUNS = "SELECT * FROM cleanup_runs ORDER BY started_at DESC, id DESC LIMIT $1"
COUNT_RUNS = "SELECT count(*) FROM cleanup_runs"


async def insert_run(
    conn: asyncpg.Connection, started_at: datetime, trigger: str, odds_days: int, match_days: int
) -> int:
    return int(await conn.fetchval(INSERT_RUN, naive(started_at), trigger, odds_days, match_days))


async def finish_run(
    conn: asyncpg.Connection | asyncpg.Pool,
    run_id: int,
    completed_at: datetime,
    status: str,
    error: str | None,
    duration: float,
    c: Counts,
) -> None:
    await conn.execute(
        FINISH_RUN,
        run_id,
        naive(completed_at),
        status,
        error,
        duration,
        c.odds_snapshots,
        c.competitor_odds_snapshots,
        c.events,
        c.competitor_events,
        c.tournaments,
        c.competitor_tournaments,
        c.market_odds_history,
        c.history_partitions,
        c.market_odds_current,
        naive(c.oldest_odds_date) if c.oldest_odds_date else None,
        naive(c.oldest_match_date) if c.oldest_match_date else None,
        c.scrape_runs,
        c.scrape_batches,
    )


async def mark_interrupted(conn: asyncpg.Connection, now: datetime, message: str) -> list[int]:
    return [r[0] for r in await conn.fetch(MARK_INTERRUPTED, message, naive(now))]


async def running_run(conn: asyncpg.Connection | asyncpg.Pool) -> tuple[int, datetime] | None:
    row = await conn.fetchrow(RUNNING_RUN)
    if row is None:
        return None
    started = aware(row[1])
    assert started is not None
    return int(row[0]), started


async def last_scheduled_start(conn: asyncpg.Connection | asyncpg.Pool) -> datetime | None:
    return aware(await conn.fetchval(LAST_SCHEDULED_START))


def run_from_row(r: asyncpg.Record) -> RunRecord:
    counts = Counts(
        odds_snapshots=r["odds_deleted"],
        competitor_odds_snapshots=r["competitor_odds_deleted"],
        market_odds_history=r["market_odds_history_deleted"],
        history_partitions=r["history_partitions_dropped"],
        market_odds_current=r["market_odds_current_deleted"],
        scrape_runs=r["scrape_runs_deleted"],
        scrape_batches=r["scrape_batches_deleted"],
        events=r["events_deleted"],
        competitor_events=r["competitor_events_deleted"],
        tournaments=r["tournaments_deleted"],
        competitor_tournaments=r["competitor_tournaments_deleted"],
        oldest_odds_date=aware(r["oldest_odds_date"]),
        oldest_match_date=aware(r["oldest_match_date"]),
    )
    started = aware(r["started_at"])
    assert started is not None
    return RunRecord(
        id=r["id"],
        started_at=started,
        completed_at=aware(r["completed_at"]),
        trigger=r["trigger"],
        odds_retention_days=r["odds_retention_days"],
        match_retention_days=r["match_retention_days"],
        counts=counts,
        status=r["status"],
        error_message=r["error_message"],
        duration_seconds=r["duration_seconds"],
    )


async def list_runs(pool: asyncpg.Pool, limit: int) -> tuple[list[RunRecord], int]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(LIST_RUNS, limit)
        total = await conn.fetchval(COUNT_RUNS)
    return [run_from_row(r) for r in rows], int(total)
