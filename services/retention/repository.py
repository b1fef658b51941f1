"""SQL of the retention service: partition DDL, batched deletes, run records, settings and storage statistics.

Legacy and cleanup tables keep naive UTC timestamps (the old schema); values cross this module as aware UTC
datetimes and are made naive only where such a column is compared or written.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import asyncpg

from oddstore.history_partitions import partition_name
from services.retention.cleanup import Counts, RunRecord
from services.retention.partitions import parse_name
from services.retention.storage import NewAlert, TableSize
from services.retention.stored_settings import SettingsUpdate, StoredSettings

logger = logging.getLogger(__name__)

# Session advisory lock held for the whole of a cleanup run: one run at a time across every process on this
# database. A session lock (not a transaction lock) because a run commits many transactions; it dies with the
# connection, so a crashed process never leaves it held.
CLEANUP_LOCK_KEY = 0x6F64_6473_7265_7401  # "oddsret" + 1


def naive(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


def aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# --- partitions ---------------------------------------------------------------------------------------------

LIST_PARTITIONS = """
SELECT c.relname, i.inhdetachpending, pg_total_relation_size(c.oid)
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'market_odds_history'::regclass
ORDER BY c.relname
"""


@dataclass(frozen=True, slots=True)
class AttachedPartition:
    name: str
    day: date | None  # None: not a name this service makes; never dropped
    size_bytes: int
    detach_pending: bool


async def list_partitions(conn: asyncpg.Connection) -> list[AttachedPartition]:
    rows = await conn.fetch(LIST_PARTITIONS)
    return [AttachedPartition(r[0], parse_name(r[0]), r[2], r[1]) for r in rows]


async def partition_contents(conn: asyncpg.Connection, day: date) -> tuple[int, datetime | None]:
    """Rows and oldest capture time of a day's partition (the name comes from a date, never from input)."""
    row = await conn.fetchrow(f"SELECT count(*), min(captured_at) FROM {partition_name(day)}")
    return int(row[0]), aware(row[1])


async def detach_and_drop(
    conn: asyncpg.Connection, day: date, pending: bool, lock_timeout: float, retries: int
) -> bool:
    """Detaches a day's partition without blocking writers, then drops it. Returns False when the locks stayed
    busy through every retry (the partition is left for the next run; a half-done detach is finished then).

    DETACH ... CONCURRENTLY takes only SHARE UPDATE EXCLUSIVE on the parent, which inserts do not conflict
    with, and must run outside a transaction block: `conn` is used in autocommit. An interrupted one leaves
    the partition "detach pending", which only DETACH ... FINALIZE completes. The lock timeout bounds how long
    the queued lock request can make other sessions wait behind it.
    """
    name = partition_name(day)
    await conn.execute(f"SET lock_timeout = '{int(lock_timeout * 1000)}ms'")
    try:
        for attempt in range(retries):
            try:
                if pending:
                    await conn.execute(f"ALTER TABLE market_odds_history DETACH PARTITION {name} FINALIZE")
                else:
                    await conn.execute(f"ALTER TABLE market_odds_history DETACH PARTITION {name} CONCURRENTLY")
                pending = False
                await conn.execute(f"DROP TABLE {name}")
                return True
            except (asyncpg.exceptions.LockNotAvailableError, asyncpg.exceptions.QueryCanceledError) as exc:
                # A timeout in the second phase of a concurrent detach leaves it pending.
                pending = pending or await _detach_pending(conn, name)
                logger.warning("partition %s: lock busy (%s), retry %d of %d", name, exc, attempt + 1, retries)
                await asyncio.sleep(min(0.1 * 2**attempt, 2.0))
            except asyncpg.exceptions.UndefinedTableError:
                return True  # dropped by another process between listing and dropping
        return False
    finally:
        await conn.execute("RESET lock_timeout")


async def _detach_pending(conn: asyncpg.Connection, name: str) -> bool:
    value = await conn.fetchval(
        "SELECT i.inhdetachpending FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE c.relname = $1",
        name,
    )
    return bool(value)


async def drop_detached_leftover(conn: asyncpg.Connection, day: date) -> bool:
    """A partition a crashed run detached but did not drop: a plain table of that name, attached nowhere."""
    exists = await conn.fetchval(
        """
        SELECT 1 FROM pg_class c
        WHERE c.relname = $1 AND c.relkind = 'r' AND NOT c.relispartition
        """,
        partition_name(day),
    )
    if exists:
        await conn.execute(f"DROP TABLE {partition_name(day)}")
    return bool(exists)


async def detached_leftovers(conn: asyncpg.Connection) -> list[date]:
    rows = await conn.fetch(
        r"""
        SELECT relname FROM pg_class
        WHERE relname ~ '^market_odds_history_p[0-9]{8}$' AND relkind = 'r' AND NOT relispartition
        """
    )
    return [d for d in (parse_name(r[0]) for r in rows) if d is not None]


# --- cleanup: batched deletes, each batch its own transaction ------------------------------------------------

# The snapshots' market rows go first, a batch at a time (market_odds has no foreign key; for the competitor
# tables the ON DELETE CASCADE would otherwise delete an unbounded number of rows in one statement).
DELETE_MARKET_ODDS = """
DELETE FROM market_odds WHERE id = ANY(ARRAY(
    SELECT id FROM market_odds WHERE snapshot_id = ANY($1::bigint[]) LIMIT $2))
"""
DELETE_COMPETITOR_MARKET_ODDS = """
DELETE FROM competitor_market_odds WHERE id = ANY(ARRAY(
    SELECT id FROM competitor_market_odds WHERE snapshot_id = ANY($1::bigint[]) LIMIT $2))
"""
DELETE_ODDS_SNAPSHOTS = "DELETE FROM odds_snapshots WHERE id = ANY($1::bigint[]) RETURNING captured_at"
DELETE_COMPETITOR_SNAPSHOTS = "DELETE FROM competitor_odds_snapshots WHERE id = ANY($1::bigint[]) RETURNING captured_at"

OLD_ODDS_SNAPSHOTS = "SELECT id FROM odds_snapshots WHERE captured_at < $1 LIMIT $2"
OLD_COMPETITOR_SNAPSHOTS = "SELECT id FROM competitor_odds_snapshots WHERE captured_at < $1::timestamp LIMIT $2"
EVENT_ODDS_SNAPSHOTS = "SELECT id FROM odds_snapshots WHERE event_id = ANY($1::int[]) LIMIT $2"
EVENT_COMPETITOR_SNAPSHOTS = (
    "SELECT id FROM competitor_odds_snapshots WHERE competitor_event_id = ANY($1::int[]) LIMIT $2"
)

EXPIRED_EVENTS = "SELECT id FROM events WHERE kickoff < $1 ORDER BY id LIMIT $2"
EXPIRED_COMPETITOR_EVENTS = "SELECT id FROM competitor_events WHERE kickoff < $1::timestamp ORDER BY id LIMIT $2"

# ctid batches: market_odds_current has no single-column key, and a row a writer moved meanwhile is simply
# found again by the next batch.
DELETE_CURRENT = """
DELETE FROM market_odds_current WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM market_odds_current WHERE event_id = ANY($1::bigint[]) LIMIT $2))
"""
DELETE_LATEST = "DELETE FROM latest_snapshots WHERE event_id = ANY($1::bigint[])"
DELETE_EVENT_BOOKMAKERS = "DELETE FROM event_bookmakers WHERE event_id = ANY($1::int[])"
DELETE_EVENTS = "DELETE FROM events WHERE id = ANY($1::int[]) RETURNING kickoff"
DELETE_COMPETITOR_EVENTS = "DELETE FROM competitor_events WHERE id = ANY($1::int[]) RETURNING kickoff"

# A tournament created after the match cutoff is spared even without events: the writer creates a tournament
# just before its first event, and deleting it in between would lose that event.
DELETE_EMPTY_TOURNAMENTS = """
DELETE FROM tournaments WHERE id = ANY(ARRAY(
    SELECT t.id FROM tournaments t
    WHERE t.created_at < $1::timestamp AND NOT EXISTS (SELECT 1 FROM events e WHERE e.tournament_id = t.id)
    LIMIT $2))
"""
DELETE_EMPTY_COMPETITOR_TOURNAMENTS = """
DELETE FROM competitor_tournaments WHERE id = ANY(ARRAY(
    SELECT t.id FROM competitor_tournaments t
    WHERE t.created_at < $1::timestamp
      AND NOT EXISTS (SELECT 1 FROM competitor_events e WHERE e.tournament_id = t.id)
    LIMIT $2))
"""


def _deleted(status: str) -> int:
    """Row count of a DELETE command tag ("DELETE 42")."""
    return int(status.rsplit(" ", 1)[-1])


async def delete_in_batches(conn: asyncpg.Connection, sql: str, args: Sequence[Any], batch: int) -> int:
    """Repeats a DELETE of at most `batch` rows until nothing is left; each statement commits on its own."""
    total = 0
    while True:
        n = _deleted(await conn.execute(sql, *args, batch))
        total += n
        if n == 0:
            return total


async def delete_snapshots(
    conn: asyncpg.Connection, select_sql: str, select_arg: Any, batch: int, *, competitor: bool
) -> tuple[int, datetime | None]:
    """Deletes snapshots chosen by `select_sql` (and their markets first), one batch per transaction.
    Returns how many snapshots went and the oldest capture time among them."""
    children = DELETE_COMPETITOR_MARKET_ODDS if competitor else DELETE_MARKET_ODDS
    parents = DELETE_COMPETITOR_SNAPSHOTS if competitor else DELETE_ODDS_SNAPSHOTS
    total, oldest = 0, None
    while True:
        ids = [r[0] for r in await conn.fetch(select_sql, select_arg, batch)]
        if not ids:
            return total, oldest
        await delete_in_batches(conn, children, (ids,), batch)
        times = [aware(r[0]) for r in await conn.fetch(parents, ids)]
        total += len(times)
        for t in times:
            if t is not None and (oldest is None or t < oldest):
                oldest = t


async def delete_expired_events(conn: asyncpg.Connection, match_cutoff: datetime, batch: int, counts: Counts) -> None:
    """Events with a kickoff before the cutoff, with everything hanging off them: current state (never pruned
    by the old system), latest snapshot times, legacy snapshots (odds_snapshots references events without a
    cascade), bookmaker links."""
    while True:
        ids = [r[0] for r in await conn.fetch(EXPIRED_EVENTS, match_cutoff, batch)]
        if not ids:
            return
        counts.market_odds_current += await delete_in_batches(conn, DELETE_CURRENT, (ids,), batch)
        n, oldest = await delete_snapshots(conn, EVENT_ODDS_SNAPSHOTS, ids, batch, competitor=False)
        counts.odds_snapshots += n
        counts.saw_odds(oldest)
        async with conn.transaction():
            await conn.execute(DELETE_LATEST, ids)
            await conn.execute(DELETE_EVENT_BOOKMAKERS, ids)
            kickoffs = [aware(r[0]) for r in await conn.fetch(DELETE_EVENTS, ids)]
        counts.events += len(kickoffs)
        for k in kickoffs:
            counts.saw_match(k)


async def delete_expired_competitor_events(
    conn: asyncpg.Connection, match_cutoff: datetime, batch: int, counts: Counts
) -> None:
    while True:
        ids = [r[0] for r in await conn.fetch(EXPIRED_COMPETITOR_EVENTS, naive(match_cutoff), batch)]
        if not ids:
            return
        n, oldest = await delete_snapshots(conn, EVENT_COMPETITOR_SNAPSHOTS, ids, batch, competitor=True)
        counts.competitor_odds_snapshots += n
        counts.saw_odds(oldest)
        kickoffs = [aware(r[0]) for r in await conn.fetch(DELETE_COMPETITOR_EVENTS, ids)]
        counts.competitor_events += len(kickoffs)
        for k in kickoffs:
            counts.saw_match(k)


async def delete_empty_tournaments(
    conn: asyncpg.Connection, match_cutoff: datetime, batch: int, counts: Counts
) -> None:
    cutoff = naive(match_cutoff)
    try:
        counts.tournaments += await delete_in_batches(conn, DELETE_EMPTY_TOURNAMENTS, (cutoff,), batch)
        counts.competitor_tournaments += await delete_in_batches(
            conn, DELETE_EMPTY_COMPETITOR_TOURNAMENTS, (cutoff,), batch
        )
    except asyncpg.exceptions.ForeignKeyViolationError as exc:
        # An event arrived for the tournament while it was being deleted: it is not empty any more.
        logger.info("tournament cleanup stopped early, a tournament got a new event: %s", exc)


# --- preview: the same selections, counted --------------------------------------------------------------------

PREVIEW_ODDS_SNAPSHOTS = """
SELECT count(*), min(captured_at) FROM odds_snapshots
WHERE captured_at < $1 OR event_id IN (SELECT id FROM events WHERE kickoff < $2)
"""
PREVIEW_COMPETITOR_SNAPSHOTS = """
SELECT count(*), min(captured_at) FROM competitor_odds_snapshots
WHERE captured_at < $1::timestamp
   OR competitor_event_id IN (SELECT id FROM competitor_events WHERE kickoff < $2::timestamp)
"""
PREVIEW_CURRENT = """
SELECT count(*) FROM market_odds_current c WHERE c.event_id IN (SELECT id FROM events WHERE kickoff < $1)
"""
PREVIEW_EVENTS = "SELECT count(*), min(kickoff) FROM events WHERE kickoff < $1"
PREVIEW_COMPETITOR_EVENTS = "SELECT count(*), min(kickoff) FROM competitor_events WHERE kickoff < $1::timestamp"
PREVIEW_TOURNAMENTS = """
SELECT count(*) FROM tournaments t
WHERE t.created_at < $1::timestamp
  AND NOT EXISTS (SELECT 1 FROM events e WHERE e.tournament_id = t.id AND e.kickoff >= $2)
"""
PREVIEW_COMPETITOR_TOURNAMENTS = """
SELECT count(*) FROM competitor_tournaments t
WHERE t.created_at < $1::timestamp
  AND NOT EXISTS (SELECT 1 FROM competitor_events e WHERE e.tournament_id = t.id AND e.kickoff >= $1::timestamp)
"""


async def preview_rows(conn: asyncpg.Connection, odds_cutoff: datetime, match_cutoff: datetime, counts: Counts) -> None:
    """Fills the counts of everything but history partitions, in one snapshot so the numbers agree."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        row = await conn.fetchrow(PREVIEW_ODDS_SNAPSHOTS, odds_cutoff, match_cutoff)
        counts.odds_snapshots, oldest = int(row[0]), aware(row[1])
        counts.saw_odds(oldest)
        row = await conn.fetchrow(PREVIEW_COMPETITOR_SNAPSHOTS, naive(odds_cutoff), naive(match_cutoff))
        counts.competitor_odds_snapshots = int(row[0])
        counts.saw_odds(aware(row[1]))
        counts.market_odds_current = int(await conn.fetchval(PREVIEW_CURRENT, match_cutoff))
        row = await conn.fetchrow(PREVIEW_EVENTS, match_cutoff)
        counts.events = int(row[0])
        counts.saw_match(aware(row[1]))
        row = await conn.fetchrow(PREVIEW_COMPETITOR_EVENTS, naive(match_cutoff))
        counts.competitor_events = int(row[0])
        counts.saw_match(aware(row[1]))
        counts.tournaments = int(await conn.fetchval(PREVIEW_TOURNAMENTS, naive(match_cutoff), match_cutoff))
        counts.competitor_tournaments = int(await conn.fetchval(PREVIEW_COMPETITOR_TOURNAMENTS, naive(match_cutoff)))


# --- cleanup runs ---------------------------------------------------------------------------------------------


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
    oldest_odds_date = $15, oldest_match_date = $16
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


# --- settings -------------------------------------------------------------------------------------------------

ENSURE_SETTINGS = "INSERT INTO settings (id) VALUES (1) ON CONFLICT (id) DO NOTHING"
GET_SETTINGS = "SELECT * FROM settings WHERE id = 1"

# A fixed statement: each field keeps its value when its parameter is NULL, so no SQL is built from input.
UPDATE_SETTINGS = """
UPDATE settings SET
    scrape_interval_minutes = COALESCE($1, scrape_interval_minutes),
    enabled_platforms = COALESCE($2::json, enabled_platforms),
    odds_retention_days = COALESCE($3, odds_retention_days),
    match_retention_days = COALESCE($4, match_retention_days),
    cleanup_frequency_hours = COALESCE($5, cleanup_frequency_hours),
    betpawa_concurrency = COALESCE($6, betpawa_concurrency),
    sportybet_concurrency = COALESCE($7, sportybet_concurrency),
    bet9ja_concurrency = COALESCE($8, bet9ja_concurrency),
    bet9ja_delay_ms = COALESCE($9, bet9ja_delay_ms),
    batch_size = COALESCE($10, batch_size),
    max_concurrent_events = COALESCE($11, max_concurrent_events),
    updated_at = $12
WHERE id = 1
RETURNING *
"""


def settings_from_row(r: asyncpg.Record) -> StoredSettings:
    platforms = r["enabled_platforms"]
    if isinstance(platforms, str):
        platforms = json.loads(platforms)
    return StoredSettings(
        scrape_interval_minutes=r["scrape_interval_minutes"],
        enabled_platforms=tuple(str(p) for p in platforms),
        odds_retention_days=r["odds_retention_days"],
        match_retention_days=r["match_retention_days"],
        cleanup_frequency_hours=r["cleanup_frequency_hours"],
        betpawa_concurrency=r["betpawa_concurrency"],
        sportybet_concurrency=r["sportybet_concurrency"],
        bet9ja_concurrency=r["bet9ja_concurrency"],
        bet9ja_delay_ms=r["bet9ja_delay_ms"],
        batch_size=r["batch_size"],
        max_concurrent_events=r["max_concurrent_events"],
        updated_at=aware(r["updated_at"]),
    )


async def get_settings(conn: asyncpg.Connection | asyncpg.Pool) -> StoredSettings:
    row = await conn.fetchrow(GET_SETTINGS)
    if row is None:
        # The row is created with the column defaults (14-day retention since revision 0003).
        await conn.execute(ENSURE_SETTINGS)
        row = await conn.fetchrow(GET_SETTINGS)
    return settings_from_row(row)


async def update_settings(pool: asyncpg.Pool, u: SettingsUpdate, now: datetime) -> StoredSettings:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(ENSURE_SETTINGS)
        row = await conn.fetchrow(
            UPDATE_SETTINGS,
            u.scrape_interval_minutes,
            None if u.enabled_platforms is None else json.dumps(list(u.enabled_platforms)),
            u.odds_retention_days,
            u.match_retention_days,
            u.cleanup_frequency_hours,
            u.betpawa_concurrency,
            u.sportybet_concurrency,
            u.bet9ja_concurrency,
            u.bet9ja_delay_ms,
            u.batch_size,
            u.max_concurrent_events,
            naive(now),
        )
    return settings_from_row(row)


# --- data statistics ------------------------------------------------------------------------------------------

DATA_STATS = """
SELECT
    (SELECT row(count(*), min(captured_at), max(captured_at)) FROM odds_snapshots),
    (SELECT row(count(*), min(captured_at), max(captured_at)) FROM competitor_odds_snapshots),
    (SELECT row(count(*), min(kickoff), max(kickoff)) FROM events),
    (SELECT row(count(*), min(kickoff), max(kickoff)) FROM competitor_events),
    (SELECT count(*) FROM tournaments),
    (SELECT count(*) FROM competitor_tournaments),
    (SELECT row(count(*), min(captured_at), max(captured_at)) FROM market_odds_history)
"""
EVENTS_BY_PLATFORM = """
SELECT 'bookmaker_' || bookmaker_id, count(DISTINCT event_id) FROM event_bookmakers
GROUP BY bookmaker_id ORDER BY bookmaker_id
"""
COMPETITOR_EVENTS_BY_SOURCE = "SELECT source, count(*) FROM competitor_events GROUP BY source ORDER BY source"

TableStat = tuple[int, datetime | None, datetime | None]


@dataclass(frozen=True, slots=True)
class DataStats:
    odds_snapshots: TableStat
    competitor_odds_snapshots: TableStat
    events: TableStat
    competitor_events: TableStat
    tournaments: TableStat
    competitor_tournaments: TableStat
    market_odds_history: TableStat
    events_by_platform: list[tuple[str, int]]
    competitor_events_by_source: list[tuple[str, int]]


def _stat(value: Any) -> TableStat:
    count, oldest, newest = value
    return int(count), aware(oldest), aware(newest)


async def data_stats(pool: asyncpg.Pool) -> DataStats:
    # One snapshot: the figures describe the same moment. Counting history scans it: acceptable for a
    # dialog opened by hand (about a second per ten million rows).
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        r = await conn.fetchrow(DATA_STATS)
        by_platform = [(x[0], int(x[1])) for x in await conn.fetch(EVENTS_BY_PLATFORM)]
        by_source = [(x[0], int(x[1])) for x in await conn.fetch(COMPETITOR_EVENTS_BY_SOURCE)]
    return DataStats(
        odds_snapshots=_stat(r[0]),
        competitor_odds_snapshots=_stat(r[1]),
        events=_stat(r[2]),
        competitor_events=_stat(r[3]),
        tournaments=(int(r[4]), None, None),
        competitor_tournaments=(int(r[5]), None, None),
        market_odds_history=_stat(r[6]),
        events_by_platform=by_platform,
        competitor_events_by_source=by_source,
    )


# --- storage --------------------------------------------------------------------------------------------------

# Every table of the schema with its total size (heap, indexes, TOAST). A partition is listed under its
# parent, whose figures are the sum of its partitions (a partitioned table has no storage of its own).
# Rows are the live-tuple counter of the statistics system (pg_stat_user_tables.n_live_tup, as the old system
# showed): kept up to date by every committed insert and delete, whereas the planner's reltuples stays -1 until
# a table is analysed, which with autovacuum off is never. Exact counts would scan the history partitions.
TABLE_SIZES = """
WITH rels AS (
    SELECT c.relname, c.relkind, pg_total_relation_size(c.oid) AS size,
           pg_stat_get_live_tuples(c.oid) AS live, p.relname AS parent
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_inherits i ON i.inhrelid = c.oid
    LEFT JOIN pg_class p ON p.oid = i.inhparent
    WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
), tops AS (
    SELECT r.relname,
           (r.size + coalesce(sum(ch.size), 0))::bigint AS size,
           (CASE WHEN r.relkind = 'p' THEN coalesce(sum(ch.live), 0) ELSE r.live END)::bigint AS live
    FROM rels r LEFT JOIN rels ch ON ch.parent = r.relname
    WHERE r.parent IS NULL
    GROUP BY r.relname, r.relkind, r.size, r.live
)
SELECT relname, NULL::text AS parent, size, live, pg_size_pretty(size) FROM tops
UNION ALL
SELECT relname, parent, size, live, pg_size_pretty(size) FROM rels WHERE parent IS NOT NULL
"""
DATABASE_SIZE = "SELECT pg_database_size(current_database()), pg_size_pretty(pg_database_size(current_database()))"


async def table_sizes(conn: asyncpg.Connection | asyncpg.Pool) -> list[TableSize]:
    """Top-level tables, largest first, each with its partitions (largest first)."""
    rows = await conn.fetch(TABLE_SIZES)
    children: dict[str, list[TableSize]] = {}
    for r in rows:
        if r["parent"] is not None:
            children.setdefault(r["parent"], []).append(TableSize(r[0], int(r[2]), r[4], int(r[3])))
    tops = [
        TableSize(
            r[0],
            int(r[2]),
            r[4],
            int(r[3]),
            tuple(sorted(children.get(r[0], []), key=lambda t: (-t.size_bytes, t.table_name))),
        )
        for r in rows
        if r["parent"] is None
    ]
    return sorted(tops, key=lambda t: (-t.size_bytes, t.table_name))


async def database_size(conn: asyncpg.Connection | asyncpg.Pool) -> tuple[int, str]:
    row = await conn.fetchrow(DATABASE_SIZE)
    return int(row[0]), str(row[1])


LAST_SAMPLE = "SELECT id, sampled_at, total_bytes FROM storage_samples ORDER BY sampled_at DESC, id DESC LIMIT 1"
INSERT_SAMPLE = (
    "INSERT INTO storage_samples (sampled_at, total_bytes, table_sizes) VALUES ($1, $2, $3::json) RETURNING id"
)
PRUNE_SAMPLES = """
DELETE FROM storage_samples WHERE id NOT IN (
    SELECT id FROM storage_samples ORDER BY sampled_at DESC, id DESC LIMIT $1)
"""
LIST_SAMPLES = "SELECT * FROM storage_samples ORDER BY sampled_at DESC, id DESC LIMIT $1"
COUNT_SAMPLES = "SELECT count(*) FROM storage_samples"
OPEN_CRITICAL = "SELECT 1 FROM storage_alerts WHERE alert_type = 'size_critical' AND resolved_at IS NULL LIMIT 1"
INSERT_ALERT = """
INSERT INTO storage_alerts (created_at, alert_type, message, current_bytes, previous_bytes, growth_percent)
VALUES ($1, $2, $3, $4, $5, $6) RETURNING id
"""
OPEN_ALERTS = "SELECT * FROM storage_alerts WHERE resolved_at IS NULL ORDER BY created_at DESC, id DESC"
RESOLVE_ALERT = "UPDATE storage_alerts SET resolved_at = $2 WHERE id = $1 RETURNING *"


@dataclass(frozen=True, slots=True)
class Sample:
    id: int
    sampled_at: datetime
    total_bytes: int
    table_sizes: dict[str, int]


@dataclass(frozen=True, slots=True)
class Alert:
    id: int
    created_at: datetime
    alert_type: str
    message: str
    current_bytes: int
    previous_bytes: int
    growth_percent: float
    resolved_at: datetime | None


async def last_sample(conn: asyncpg.Connection | asyncpg.Pool) -> tuple[datetime, int] | None:
    row = await conn.fetchrow(LAST_SAMPLE)
    if row is None:
        return None
    sampled = aware(row[1])
    assert sampled is not None
    return sampled, int(row[2])


async def insert_sample(conn: asyncpg.Connection, now: datetime, total: int, sizes: dict[str, int], keep: int) -> int:
    async with conn.transaction():
        sample_id = int(await conn.fetchval(INSERT_SAMPLE, naive(now), total, json.dumps(sizes)))
        await conn.execute(PRUNE_SAMPLES, keep)
    return sample_id


def _sample(r: asyncpg.Record) -> Sample:
    sizes = r["table_sizes"]
    if isinstance(sizes, str):
        sizes = json.loads(sizes)
    sampled = aware(r["sampled_at"])
    assert sampled is not None
    return Sample(r["id"], sampled, int(r["total_bytes"]), {str(k): int(v) for k, v in sizes.items()})


async def list_samples(pool: asyncpg.Pool, limit: int) -> tuple[list[Sample], int]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(LIST_SAMPLES, limit)
        total = await conn.fetchval(COUNT_SAMPLES)
    return [_sample(r) for r in rows], int(total)


async def critical_open(conn: asyncpg.Connection | asyncpg.Pool) -> bool:
    return bool(await conn.fetchval(OPEN_CRITICAL))


async def insert_alert(conn: asyncpg.Connection | asyncpg.Pool, now: datetime, a: NewAlert) -> int:
    return int(
        await conn.fetchval(
            INSERT_ALERT, naive(now), a.alert_type, a.message, a.current_bytes, a.previous_bytes, a.growth_percent
        )
    )


def _alert(r: asyncpg.Record) -> Alert:
    created = aware(r["created_at"])
    assert created is not None
    return Alert(
        id=r["id"],
        created_at=created,
        alert_type=r["alert_type"],
        message=r["message"],
        current_bytes=int(r["current_bytes"]),
        previous_bytes=int(r["previous_bytes"] or 0),
        growth_percent=float(r["growth_percent"] or 0.0),
        resolved_at=aware(r["resolved_at"]),
    )


async def open_alerts(pool: asyncpg.Pool) -> list[Alert]:
    return [_alert(r) for r in await pool.fetch(OPEN_ALERTS)]


async def resolve_alert(pool: asyncpg.Pool, alert_id: int, now: datetime) -> Alert | None:
    row = await pool.fetchrow(RESOLVE_ALERT, alert_id, naive(now))
    return None if row is None else _alert(row)
