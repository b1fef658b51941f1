"""SQL of cleanup: batched deletes of expired rows, their preview and the data statistics of the cleanup page."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from oddstore import citus
from services.retention.cleanup import Counts, DataStats, TableStat
from services.retention.naive_utc import aware, naive

logger = logging.getLogger(__name__)

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
# On Citus a ctid is only unique within one shard: the batch is chosen by the table's key instead.
DELETE_CURRENT_CITUS = """
DELETE FROM market_odds_current c USING (
    SELECT event_id, bookmaker_slug, market_id, line FROM market_odds_current
    WHERE event_id = ANY($1::bigint[]) LIMIT $2) v
WHERE c.event_id = v.event_id AND c.bookmaker_slug = v.bookmaker_slug AND c.market_id = v.market_id
  AND c.line IS NOT DISTINCT FROM v.line
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


async def delete_in_batches(
    conn: asyncpg.Connection, sql: str, args: Sequence[Any], batch: int, *, metadata: bool = False
) -> int:
    """Repeats a DELETE of at most `batch` rows until nothing is left; each statement commits on its own. With
    `metadata` (a delete from the shared event tables), on Citus each takes its turn with the writers first."""
    turn = metadata and await citus.installed(conn)
    total = 0
    while True:
        async with conn.transaction():
            if turn:
                await conn.execute(citus.METADATA_TURN)
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
        delete_current = DELETE_CURRENT_CITUS if await citus.installed(conn) else DELETE_CURRENT
        counts.market_odds_current += await delete_in_batches(conn, delete_current, (ids,), batch)
        n, oldest = await delete_snapshots(conn, EVENT_ODDS_SNAPSHOTS, ids, batch, competitor=False)
        counts.odds_snapshots += n
        counts.saw_odds(oldest)
        async with conn.transaction():
            if await citus.installed(conn):
                # event_bookmakers and events are reference tables with foreign keys: Citus refuses to modify them
                # after a parallel multi-shard statement (the DELETE from latest_snapshots) in one transaction.
                await conn.execute("SET LOCAL citus.multi_shard_modify_mode TO 'sequential'")
                await conn.execute(citus.METADATA_TURN)
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
        counts.tournaments += await delete_in_batches(conn, DELETE_EMPTY_TOURNAMENTS, (cutoff,), batch, metadata=True)
        counts.competitor_tournaments += await delete_in_batches(
            conn, DELETE_EMPTY_COMPETITOR_TOURNAMENTS, (cutoff,), batch
        )
    except asyncpg.exceptions.ForeignKeyViolationError as exc:
        # An event arrived for the tournament while it was being deleted: it is not empty any more.
        logger.info("tournament cleanup stopped early, a tournament got a new event: %s", exc)


# The old system's scrape runs and batches: only in a database taken over from it (oddstore/takeover.py verified
# them). Its cleanup deleted them with the odds retention, by started_at; so do we. A run still referred to by a
# snapshot that stays (one that straddled the cutoff) stays with it, and is deleted by a later run.
SCRAPE_TABLES = "SELECT to_regclass('scrape_runs') IS NOT NULL"
# Rows that refer to scrape_runs without a cascade; each is deleted before its run.
SCRAPE_RUN_CHILDREN = ("scrape_errors", "scrape_phase_logs", "event_scrape_status")
OLD_SCRAPE_RUNS = """
SELECT r.id FROM scrape_runs r
WHERE r.started_at < $1
  AND NOT EXISTS (SELECT 1 FROM odds_snapshots s WHERE s.scrape_run_id = r.id)
  AND NOT EXISTS (SELECT 1 FROM competitor_odds_snapshots s WHERE s.scrape_run_id = r.id)
ORDER BY r.id LIMIT $2
"""
DELETE_SCRAPE_RUN_CHILDREN = {
    table: f"DELETE FROM {table} WHERE id = ANY(ARRAY("
    f"SELECT id FROM {table} WHERE scrape_run_id = ANY($1::int[]) LIMIT $2))"
    for table in SCRAPE_RUN_CHILDREN
}
DELETE_SCRAPE_RUNS = "DELETE FROM scrape_runs WHERE id = ANY($1::int[])"
DELETE_OLD_SCRAPE_BATCHES = """
DELETE FROM scrape_batches WHERE id = ANY(ARRAY(
    SELECT b.id FROM scrape_batches b
    WHERE b.started_at < $1::timestamp AND NOT EXISTS (SELECT 1 FROM scrape_runs r WHERE r.batch_id = b.id)
    LIMIT $2))
"""


async def has_scrape_tables(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval(SCRAPE_TABLES))


async def delete_old_scrape_runs(conn: asyncpg.Connection, odds_cutoff: datetime, batch: int, counts: Counts) -> None:
    """After the snapshots: runs started before the cutoff that no snapshot refers to any more, their rows first,
    then batches left without runs."""
    if not await has_scrape_tables(conn):
        return
    while True:
        ids = [r[0] for r in await conn.fetch(OLD_SCRAPE_RUNS, odds_cutoff, batch)]
        if not ids:
            break
        for sql in DELETE_SCRAPE_RUN_CHILDREN.values():
            await delete_in_batches(conn, sql, (ids,), batch)
        counts.scrape_runs += _deleted(await conn.execute(DELETE_SCRAPE_RUNS, ids))
    counts.scrape_batches += await delete_in_batches(conn, DELETE_OLD_SCRAPE_BATCHES, (naive(odds_cutoff),), batch)


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

# The runs a cleanup would delete: the snapshots that stay are those outside the two selections above.
PREVIEW_SCRAPE_RUNS = """
WITH kept AS (
    SELECT scrape_run_id FROM odds_snapshots
    WHERE captured_at >= $1 AND event_id NOT IN (SELECT id FROM events WHERE kickoff < $3)
    UNION
    SELECT scrape_run_id FROM competitor_odds_snapshots
    WHERE captured_at >= $2
      AND competitor_event_id NOT IN (SELECT id FROM competitor_events WHERE kickoff < $4)
), runs AS (
    SELECT r.id FROM scrape_runs r
    WHERE r.started_at < $1 AND NOT EXISTS (SELECT 1 FROM kept k WHERE k.scrape_run_id = r.id)
)
SELECT (SELECT count(*) FROM runs),
       (SELECT count(*) FROM scrape_batches b
        WHERE b.started_at < $2
          AND NOT EXISTS (SELECT 1 FROM scrape_runs r
                          WHERE r.batch_id = b.id AND NOT EXISTS (SELECT 1 FROM runs d WHERE d.id = r.id)))
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
        if await has_scrape_tables(conn):
            row = await conn.fetchrow(
                PREVIEW_SCRAPE_RUNS, odds_cutoff, naive(odds_cutoff), match_cutoff, naive(match_cutoff)
            )
            counts.scrape_runs, counts.scrape_batches = int(row[0]), int(row[1])


# --- data statistics ------------------------------------------------------------------------------------------

# Flat columns from one row of aggregates per table, not row(...) values: Citus cannot pass an anonymous record
# between nodes ("input of anonymous composite types is not implemented"). Three columns per TableStat.
DATA_STATS = """
SELECT * FROM
    (SELECT count(*), min(captured_at), max(captured_at) FROM odds_snapshots) os,
    (SELECT count(*), min(captured_at), max(captured_at) FROM competitor_odds_snapshots) cos,
    (SELECT count(*), min(kickoff), max(kickoff) FROM events) e,
    (SELECT count(*), min(kickoff), max(kickoff) FROM competitor_events) ce,
    (SELECT count(*) FROM tournaments) t,
    (SELECT count(*) FROM competitor_tournaments) ct,
    (SELECT count(*), min(captured_at), max(captured_at) FROM market_odds_history) h
"""
EVENTS_BY_PLATFORM = """
SELECT 'bookmaker_' || bookmaker_id, count(DISTINCT event_id) FROM event_bookmakers
GROUP BY bookmaker_id ORDER BY bookmaker_id
"""
COMPETITOR_EVENTS_BY_SOURCE = "SELECT source, count(*) FROM competitor_events GROUP BY source ORDER BY source"
SCRAPE_STATS = """
SELECT * FROM (SELECT count(*), min(started_at), max(started_at) FROM scrape_runs) r,
              (SELECT count(*), min(started_at), max(started_at) FROM scrape_batches) b
"""
NO_ROWS: TableStat = (0, None, None)


def _stat(row: asyncpg.Record, first: int) -> TableStat:
    """The (count, oldest, newest) starting at column `first`."""
    count, oldest, newest = row[first], row[first + 1], row[first + 2]
    return int(count), aware(oldest), aware(newest)


async def data_stats(pool: asyncpg.Pool) -> DataStats:
    # One snapshot: the figures describe the same moment. Counting history scans it: acceptable for a
    # dialog opened by hand (about a second per ten million rows).
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        r = await conn.fetchrow(DATA_STATS)
        by_platform = [(x[0], int(x[1])) for x in await conn.fetch(EVENTS_BY_PLATFORM)]
        by_source = [(x[0], int(x[1])) for x in await conn.fetch(COMPETITOR_EVENTS_BY_SOURCE)]
        scrape = await conn.fetchrow(SCRAPE_STATS) if await has_scrape_tables(conn) else None
    return DataStats(
        odds_snapshots=_stat(r, 0),
        competitor_odds_snapshots=_stat(r, 3),
        events=_stat(r, 6),
        competitor_events=_stat(r, 9),
        tournaments=(int(r[12]), None, None),
        competitor_tournaments=(int(r[13]), None, None),
        market_odds_history=_stat(r, 14),
        scrape_runs=_stat(scrape, 0) if scrape else NO_ROWS,
        scrape_batches=_stat(scrape, 3) if scrape else NO_ROWS,
        events_by_platform=by_platform,
        competitor_events_by_source=by_source,
    )
