"""Converting a taken-over pawaRisk database's data into this project's tables: committed batches, resumable.

Revision 0005 makes the schema changes (atomic, as every revision) and, on a taken-over database, creates the
progress marker `pawarisk_conversion`. `python -m oddstore.migrate upgrade` then runs `convert`: the old v2.9
history in id batches, each committed together with the marker's advance, so an interrupted conversion resumes
at the first batch not committed and converts nothing twice; then the current state seeded in one transaction.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import asyncpg

from oddstore import citus
from oddstore.history_partitions import partition_ddl, partition_name

logger = logging.getLogger(__name__)

MARKER = "pawarisk_conversion"
V29_HISTORY = "pawarisk_market_odds_history"
V29_CURRENT = "pawarisk_market_odds_current"
STEP_HISTORY = "v29_history"
STEP_CURRENT = "current_state"
BATCH_IDS = 200_000  # v2.9 history ids per committed batch: ~3 s each at the measured rate (BENCHMARKS.md)

# The dry run's estimate, from bench/takeover.py at 10 M legacy rows on 2 cores (BENCHMARKS.md, "Taking over a
# pawaRisk database"): 63,000 v2.9 rows/s and 290,000 legacy rows/s measured, rounded down.
V29_ROWS_PER_SECOND = 60_000.0
LEGACY_ROWS_PER_SECOND = 250_000.0

CREATE_MARKER = f"""
CREATE TABLE {MARKER} (
    step text PRIMARY KEY,
    next_id bigint NOT NULL DEFAULT 0,     -- v2.9 history: every id below it is converted
    rows_done bigint NOT NULL DEFAULT 0,
    finished_at timestamptz
)
"""
INIT_MARKER = f"INSERT INTO {MARKER} (step) VALUES ('{STEP_HISTORY}'), ('{STEP_CURRENT}')"
MARKER_EXISTS = f"SELECT to_regclass('{MARKER}') IS NOT NULL"
MARKER_ROW = f"SELECT next_id, rows_done, finished_at FROM {MARKER} WHERE step = $1"
ADVANCE = f"UPDATE {MARKER} SET next_id = $2, rows_done = rows_done + $3 WHERE step = $1"
FINISH = f"UPDATE {MARKER} SET finished_at = now() WHERE step = $1"

# oddstore/codec.py in SQL, so conversions stay set-based: per outcome one byte of name length, the UTF-8 name,
# then big-endian uint32 milli_odds << 1 | is_active. round(float8) rounds half to even on the same binary
# double as Python's round(float(odds) * 1000), so both encode every price alike; missing odds are 0 and a
# missing is_active is active, as services/query/odds.legacy_outcomes reads them. Session-local (pg_temp): the
# conversion's connection creates them and they go with it.
FUNCTIONS = (
    r"""
    CREATE FUNCTION pg_temp.oddstore_outcomes(o jsonb) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(string_agg(
               set_byte('\x00'::bytea, 0, octet_length(convert_to(x ->> 'name', 'UTF8')))
               || convert_to(x ->> 'name', 'UTF8')
               || substring(int8send((round(coalesce((x ->> 'odds')::float8, 0) * 1000)::bigint << 1)
                                     | coalesce((x ->> 'is_active')::boolean, true)::int) FROM 5 FOR 4),
               ''::bytea ORDER BY i), ''::bytea)
    FROM jsonb_array_elements(CASE WHEN jsonb_typeof(o) = 'array' THEN o ELSE '[]' END) WITH ORDINALITY AS e(x, i)
    $$
    """,
    # The writer stores no groups as NULL, never as an empty array.
    """
    CREATE FUNCTION pg_temp.oddstore_groups(g jsonb) RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_typeof(g) = 'array'
                THEN nullif(ARRAY(SELECT jsonb_array_elements_text(g)), '{}') END
    $$
    """,
)

V29_RANGE = f"SELECT min(id), max(id) FROM {V29_HISTORY}"
V29_COUNT = f"SELECT count(*) FROM {V29_HISTORY} WHERE id >= $1"
V29_DAYS = f"SELECT DISTINCT (captured_at AT TIME ZONE 'UTC')::date FROM {V29_HISTORY} WHERE id >= $1"
PARTITION_EXISTS = "SELECT to_regclass($1) IS NOT NULL"
# Every row an available state. The NOT EXISTS keeps a batch harmless even where the marker cannot help: a
# database downgraded to 0004 and upgraded again (the marker went with 0005, the converted rows stayed).
V29_BATCH = f"""
INSERT INTO market_odds_history (event_id, captured_at, line, available, bookmaker_slug, market_id, outcomes)
SELECT h.event_id, h.captured_at, h.line, true, h.bookmaker_slug, h.betpawa_market_id,
       pg_temp.oddstore_outcomes(h.outcomes)
FROM {V29_HISTORY} h
WHERE h.id >= $1 AND h.id < $2
  AND NOT EXISTS (SELECT 1 FROM market_odds_history n
                  WHERE n.event_id = h.event_id AND n.bookmaker_slug = h.bookmaker_slug
                    AND n.market_id = h.betpawa_market_id AND n.line IS NOT DISTINCT FROM h.line
                    AND n.captured_at = h.captured_at)
"""

# Every legacy snapshot of every (event, bookmaker) with the time of the pair's next one: BetPawa's table, and the
# competitors' through their link to a BetPawa event (captured_at naive UTC there).
SNAPSHOTS = """
CREATE TEMP TABLE takeover_snapshots ON COMMIT DROP AS
SELECT x.*, lead(captured_at) OVER (PARTITION BY event_id, bookmaker_slug ORDER BY captured_at, snapshot_id) AS next_at
FROM (
    SELECT s.event_id::bigint AS event_id, b.slug::text AS bookmaker_slug, s.id AS snapshot_id,
           false AS competitor, s.captured_at
    FROM odds_snapshots s JOIN bookmakers b ON b.id = s.bookmaker_id
    UNION ALL
    SELECT ce.betpawa_event_id, ce.source, cs.id, true, cs.captured_at AT TIME ZONE 'UTC'
    FROM competitor_odds_snapshots cs JOIN competitor_events ce ON ce.id = cs.competitor_event_id
    WHERE ce.betpawa_event_id IS NOT NULL AND ce.deleted_at IS NULL
) x
"""
# The latest of them per pair.
PAIRS = """
CREATE TEMP TABLE takeover_pairs ON COMMIT DROP AS
SELECT * FROM takeover_snapshots WHERE next_at IS NULL
"""

_INSERT_CURRENT = """
INSERT INTO market_odds_current (
    event_id, bookmaker_slug, market_id, line, market_name, handicap_type, handicap_home, handicap_away,
    market_groups, outcomes, last_updated_at, last_confirmed_at, unavailable_at)
"""
# Pairs this project has already written (latest_snapshots) are newer than anything old and left alone.
_UNWRITTEN = """
NOT EXISTS (SELECT 1 FROM latest_snapshots l WHERE l.event_id = {e} AND l.bookmaker_slug = {b})
AND NOT EXISTS (SELECT 1 FROM market_odds_current n WHERE n.event_id = {e} AND n.bookmaker_slug = {b})
"""

SEED_FROM_V29 = (
    _INSERT_CURRENT
    + f"""
SELECT c.event_id, c.bookmaker_slug, c.betpawa_market_id, c.line, c.betpawa_market_name, c.handicap_type,
       c.handicap_home, c.handicap_away, pg_temp.oddstore_groups(c.market_groups),
       pg_temp.oddstore_outcomes(c.outcomes),
       c.last_updated_at, c.last_confirmed_at, c.unavailable_at
FROM {V29_CURRENT} c
JOIN (SELECT event_id, bookmaker_slug, max(last_confirmed_at) AS confirmed
      FROM {V29_CURRENT} GROUP BY 1, 2) v USING (event_id, bookmaker_slug)
LEFT JOIN takeover_pairs p ON p.event_id = c.event_id AND p.bookmaker_slug = c.bookmaker_slug
WHERE EXISTS (SELECT 1 FROM events e WHERE e.id = c.event_id)
  AND (p.captured_at IS NULL OR v.confirmed >= p.captured_at)
  AND """
    + _UNWRITTEN.format(e="c.event_id", b="c.bookmaker_slug")
    + "ON CONFLICT ON CONSTRAINT market_odds_current_key DO NOTHING"
)

# Every market a pair's snapshots ever listed, as its latest snapshot shows it or, when that snapshot lacks it, as
# the UI shows such a market (ui-contract §1.3): unavailable with its last odds kept, since the old system's mark
# or else the pair's first snapshot without it. A market repeated within one snapshot (the old schema allows it)
# keeps one of its rows. The last appearances are found over narrow rows (keys and the market row's id) and only
# those rows are read whole and encoded: sorting and encoding every legacy row took 6x as long (4.8 s against
# 0.7 s for 200,000 rows, bench/takeover.py).
_LAST_APPEARANCE = """
SELECT DISTINCT ON (event_id, bookmaker_slug, market_id, line) *
FROM (
    SELECT s.event_id, s.bookmaker_slug, m.betpawa_market_id AS market_id, m.line, s.captured_at, s.snapshot_id,
           s.next_at, s.competitor, m.id
    FROM takeover_snapshots s JOIN market_odds m USING (snapshot_id) WHERE NOT s.competitor
    UNION ALL
    SELECT s.event_id, s.bookmaker_slug, m.betpawa_market_id, m.line, s.captured_at, s.snapshot_id,
           s.next_at, s.competitor, m.id
    FROM takeover_snapshots s JOIN competitor_market_odds m USING (snapshot_id) WHERE s.competitor
) x
WHERE {unwritten}
ORDER BY event_id, bookmaker_slug, market_id, line, captured_at DESC, snapshot_id DESC
"""
SEED_FROM_SNAPSHOTS = (
    _INSERT_CURRENT
    + """
SELECT a.event_id, a.bookmaker_slug, a.market_id, a.line, m.betpawa_market_name, m.handicap_type,
       m.handicap_home, m.handicap_away, pg_temp.oddstore_groups(m.market_groups::jsonb),
       pg_temp.oddstore_outcomes(m.outcomes::jsonb),
       CASE WHEN a.next_at IS NULL THEN a.captured_at ELSE coalesce(m.unavailable_at, a.next_at) END,
       a.captured_at,
       CASE WHEN a.next_at IS NULL THEN m.unavailable_at ELSE coalesce(m.unavailable_at, a.next_at) END
FROM ("""
    + _LAST_APPEARANCE.format(unwritten=_UNWRITTEN.format(e="x.event_id", b="x.bookmaker_slug"))
    + """) a
JOIN LATERAL (
    SELECT betpawa_market_name, handicap_type, handicap_home, handicap_away, market_groups, outcomes, unavailable_at
    FROM market_odds WHERE NOT a.competitor AND id = a.id
    UNION ALL
    SELECT betpawa_market_name, handicap_type, handicap_home, handicap_away, market_groups, outcomes, unavailable_at
    FROM competitor_market_odds WHERE a.competitor AND id = a.id
) m ON true
ON CONFLICT ON CONSTRAINT market_odds_current_key DO NOTHING"""
)

SEED_LATEST = f"""
INSERT INTO latest_snapshots (event_id, bookmaker_slug, captured_at)
SELECT event_id, bookmaker_slug, max(captured_at)
FROM (
    SELECT event_id, bookmaker_slug, captured_at FROM takeover_pairs
    UNION ALL
    SELECT event_id, bookmaker_slug, last_confirmed_at FROM {V29_CURRENT}
) x
WHERE EXISTS (SELECT 1 FROM market_odds_current c WHERE c.event_id = x.event_id AND c.bookmaker_slug = x.bookmaker_slug)
GROUP BY event_id, bookmaker_slug
ON CONFLICT (event_id, bookmaker_slug) DO NOTHING
"""
LEGACY_MARKET_ROWS = "SELECT (SELECT count(*) FROM market_odds) + (SELECT count(*) FROM competitor_market_odds)"


def progress(done: int, total: int, done_here: int, elapsed: float) -> str:
    """One progress line: `done` of `total` rows, the rate of this run (`done_here` rows in `elapsed` s), ETA."""
    rate = done_here / elapsed if elapsed > 0 else 0.0
    eta = f"{(total - done) / rate:.0f} s" if rate > 0 else "unknown"
    percent = 100.0 * done / total if total else 100.0
    return f"{done} of {total} rows ({percent:.1f} %), {rate:.0f} rows/s, ETA {eta}"


@dataclass(frozen=True, slots=True)
class Work:
    """What a conversion still has to do."""

    v29_rows: int  # v2.9 history rows not converted yet
    v29_total: int
    legacy_rows: int  # legacy market rows the current-state seeding reads (0 once it is done)

    @property
    def estimate_seconds(self) -> float:
        return self.v29_rows / V29_ROWS_PER_SECOND + self.legacy_rows / LEGACY_ROWS_PER_SECOND


async def pending(conn: asyncpg.Connection, *, history: str = V29_HISTORY, adopted: bool = True) -> Work:
    """The work left, read from the marker. `adopted=False` counts a database still at the old head (its v2.9
    history under its old name, nothing converted yet)."""
    next_id, seed_done = 0, False
    if adopted:
        if not await conn.fetchval(MARKER_EXISTS):
            return Work(0, 0, 0)
        next_id = int((await conn.fetchrow(MARKER_ROW, STEP_HISTORY))[0])
        seed_done = (await conn.fetchrow(MARKER_ROW, STEP_CURRENT))[2] is not None
    exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", history)
    total = int(await conn.fetchval(f"SELECT count(*) FROM {history}")) if exists else 0
    left = int(await conn.fetchval(f"SELECT count(*) FROM {history} WHERE id >= $1", next_id)) if exists else 0
    legacy = 0 if seed_done else int(await conn.fetchval(LEGACY_MARKET_ROWS))
    return Work(left, total, legacy)


async def convert(
    conn: asyncpg.Connection,
    *,
    batch_ids: int = BATCH_IDS,
    after_batch: Callable[[int], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Runs what is left of the conversion; nothing on a database that was not taken over. `after_batch(first_id)`
    is called after each committed history batch (tests interrupt the conversion there)."""
    if not await conn.fetchval(MARKER_EXISTS):
        return
    for statement in FUNCTIONS:
        await conn.execute(statement)
    try:
        await _convert_history(conn, batch_ids, after_batch, clock)
        await _seed_current(conn, clock)
    finally:
        await conn.execute("DROP FUNCTION IF EXISTS pg_temp.oddstore_outcomes(jsonb)")
        await conn.execute("DROP FUNCTION IF EXISTS pg_temp.oddstore_groups(jsonb)")


async def _convert_history(
    conn: asyncpg.Connection, batch_ids: int, after_batch: Callable[[int], None] | None, clock: Callable[[], float]
) -> None:
    next_id, rows_done, finished = await conn.fetchrow(MARKER_ROW, STEP_HISTORY)
    if finished is not None:
        return
    lo, hi = await conn.fetchrow(V29_RANGE)
    if lo is None:
        await conn.execute(FINISH, STEP_HISTORY)
        return
    start = max(int(next_id), int(lo))
    left = int(await conn.fetchval(V29_COUNT, start))
    total = int(rows_done) + left
    if start > lo:
        logger.info("v2.9 history: resuming at id %d, %d of %d rows converted before", start, rows_done, total)
    for (day,) in await conn.fetch(V29_DAYS, start):
        await _ensure_partition(conn, day)
    done, done_here, started = int(rows_done), 0, clock()
    for first in range(start, int(hi) + 1, batch_ids):
        async with conn.transaction():
            n = int((await conn.execute(V29_BATCH, first, first + batch_ids)).rsplit(" ", 1)[-1])
            await conn.execute(ADVANCE, STEP_HISTORY, first + batch_ids, n)
        done, done_here = done + n, done_here + n
        logger.info("v2.9 history: %s", progress(done, total, done_here, clock() - started))
        if after_batch is not None:
            after_batch(first)
    await conn.execute(FINISH, STEP_HISTORY)


async def _ensure_partition(conn: asyncpg.Connection, day: date) -> None:
    # No writer runs during an upgrade: no lock timeout or retry as in oddstore/history_partitions.py.
    if not await conn.fetchval(PARTITION_EXISTS, partition_name(day)):
        async with conn.transaction():
            for statement in partition_ddl(day, citus=await citus.installed(conn)):
                await conn.execute(statement)


async def _seed_current(conn: asyncpg.Connection, clock: Callable[[], float]) -> None:
    """One transaction: a set-based pass over the legacy snapshots that either happens whole or not at all."""
    if (await conn.fetchrow(MARKER_ROW, STEP_CURRENT))[2] is not None:
        return
    started = clock()
    rows = int(await conn.fetchval(LEGACY_MARKET_ROWS))
    logger.info("current state: seeding from %d legacy market rows (~%.0f s)", rows, rows / LEGACY_ROWS_PER_SECOND)
    async with conn.transaction():
        await conn.execute(SNAPSHOTS)
        await conn.execute(PAIRS)
        await conn.execute(SEED_FROM_V29)
        await conn.execute(SEED_FROM_SNAPSHOTS)
        await conn.execute(SEED_LATEST)
        await conn.execute(FINISH, STEP_CURRENT)
    markets, pairs = await conn.fetchrow(
        "SELECT (SELECT count(*) FROM market_odds_current), (SELECT count(*) FROM latest_snapshots)"
    )
    logger.info(
        "current state: %d market rows, %d (event, bookmaker) pairs, %.1f s (%.0f legacy rows/s)",
        markets, pairs, clock() - started, rows / max(clock() - started, 1e-6),
    )  # fmt: skip
