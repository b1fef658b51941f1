"""SQL of the writer: set-based statements over unnest() arrays and COPY, never one per market."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from services.writer.plan import CurrentRow, EventRow, MetadataPlan, Pair, Plan, UnavailableRow

logger = logging.getLogger(__name__)

# Locks the latest_snapshots row of every pair of the batch, creating missing ones with a NULL
# time, and returns the committed time of each. The no-op update is what takes the row lock and
# lets RETURNING see rows that already existed. Callers pass pairs sorted so that concurrent
# writers lock in the same order.
CLAIM_PAIRS = """
INSERT INTO latest_snapshots AS s (event_id, bookmaker_slug)
SELECT * FROM unnest($1::bigint[], $2::text[])
ON CONFLICT (event_id, bookmaker_slug) DO UPDATE SET captured_at = s.captured_at
RETURNING event_id, bookmaker_slug, captured_at
"""

ADVANCE_PAIRS = """
UPDATE latest_snapshots AS s SET captured_at = v.captured_at
FROM unnest($1::bigint[], $2::text[], $3::timestamptz[]) AS v(event_id, bookmaker_slug, captured_at)
WHERE s.event_id = v.event_id AND s.bookmaker_slug = v.bookmaker_slug
"""

# Citus only: one connection per worker for the whole transaction. The metadata tables are reference tables
# with foreign keys between them, and Citus refuses to modify those after a parallel multi-shard statement in
# the same transaction; the odds statements before them (claiming pairs, upserts, COPY) are multi-shard.
SEQUENTIAL_SHARDS = "SET LOCAL citus.multi_shard_modify_mode TO 'sequential'"

LOAD_PAIRS = """
SELECT c.event_id, c.bookmaker_slug, c.market_id, c.line, c.outcomes, c.unavailable_at IS NULL
FROM market_odds_current c
JOIN unnest($1::bigint[], $2::text[]) AS p(event_id, bookmaker_slug)
  ON c.event_id = p.event_id AND c.bookmaker_slug = p.bookmaker_slug
"""

WARM_PAIRS = """
SELECT event_id, bookmaker_slug, captured_at FROM latest_snapshots
WHERE captured_at >= $1
"""

WARM_MARKETS = """
SELECT c.event_id, c.bookmaker_slug, c.market_id, c.line, c.outcomes, c.unavailable_at IS NULL
FROM market_odds_current c
JOIN latest_snapshots s USING (event_id, bookmaker_slug)
WHERE s.captured_at >= $1
"""

# Present markets (new, changed, returned). The WHERE keeps the database the judge even if a caller
# got the order wrong: a row is never replaced by an older version.
UPSERT_CURRENT = """
INSERT INTO market_odds_current AS c (
    event_id, bookmaker_slug, market_id, line, market_name, handicap_type, handicap_home,
    handicap_away, market_groups, outcomes, last_updated_at, last_confirmed_at, unavailable_at)
SELECT v.event_id, v.bookmaker_slug, v.market_id, v.line, v.market_name, v.handicap_type,
       v.handicap_home, v.handicap_away,
       -- text[][] cannot be unnested row by row, so each row's groups travel joined by U+001F.
       CASE WHEN v.market_groups = '' THEN NULL ELSE string_to_array(v.market_groups, chr(31)) END,
       v.outcomes, v.captured_at, v.captured_at, NULL
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::float8[], $5::text[], $6::text[], $7::float8[],
            $8::float8[], $9::text[], $10::bytea[], $11::timestamptz[])
     AS v(event_id, bookmaker_slug, market_id, line, market_name, handicap_type, handicap_home,
          handicap_away, market_groups, outcomes, captured_at)
ON CONFLICT ON CONSTRAINT market_odds_current_key DO UPDATE SET
    market_name = EXCLUDED.market_name,
    handicap_type = EXCLUDED.handicap_type,
    handicap_home = EXCLUDED.handicap_home,
    handicap_away = EXCLUDED.handicap_away,
    market_groups = EXCLUDED.market_groups,
    outcomes = EXCLUDED.outcomes,
    last_updated_at = EXCLUDED.last_updated_at,
    last_confirmed_at = EXCLUDED.last_confirmed_at,
    unavailable_at = NULL
WHERE c.last_updated_at <= EXCLUDED.last_updated_at
"""

# Markets missing from their snapshot: keep the last odds, record since when they are missing and
# when they were last seen.
MARK_UNAVAILABLE = """
UPDATE market_odds_current AS c
SET unavailable_at = v.captured_at, last_updated_at = v.captured_at, last_confirmed_at = v.last_seen
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::float8[], $5::timestamptz[], $6::timestamptz[])
     AS v(event_id, bookmaker_slug, market_id, line, captured_at, last_seen)
WHERE c.event_id = v.event_id AND c.bookmaker_slug = v.bookmaker_slug AND c.market_id = v.market_id
  AND c.line IS NOT DISTINCT FROM v.line AND c.last_updated_at <= v.captured_at
"""

HISTORY_COLUMNS = (
    "event_id",
    "captured_at",
    "line",
    "available",
    "bookmaker_slug",
    "market_id",
    "outcomes",
)

# Event metadata. Sports and tournaments are found or created; events are upserted by id, with
# metadata from the home bookmaker winning over competitors' (which only create missing events).
ENSURE_BOOKMAKERS = """
INSERT INTO bookmakers (name, slug) SELECT s, s FROM unnest($1::text[]) AS s
ON CONFLICT (slug) DO NOTHING
"""

ENSURE_SPORTS = """
INSERT INTO sports (name, slug) SELECT s, lower(s) FROM unnest($1::text[]) AS s
ON CONFLICT (name) DO NOTHING
"""

ENSURE_TOURNAMENTS = """
INSERT INTO tournaments (sport_id, name, country, created_at)
SELECT sp.id, v.name, v.country, now()
FROM unnest($1::text[], $2::text[], $3::text[]) AS v(sport, name, country)
JOIN sports sp ON sp.name = v.sport
ON CONFLICT (sport_id, name, country) DO NOTHING
"""

FIND_SPORTRADAR_OWNERS = """
SELECT id, sportradar_id FROM events WHERE sportradar_id = ANY($1::text[])
"""

_EVENT_ROWS = """
INSERT INTO events AS e (id, sportradar_id, tournament_id, name, home_team, away_team, kickoff,
                         created_at, updated_at)
SELECT v.id, v.sportradar_id, t.id, v.name, v.home_team, v.away_team, v.kickoff, now(), now()
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::text[], $9::timestamptz[])
     AS v(id, sportradar_id, sport, tournament, country, name, home_team, away_team, kickoff)
JOIN sports sp ON sp.name = v.sport
JOIN tournaments t ON t.sport_id = sp.id AND t.name = v.tournament AND t.country = v.country
"""

# From the home bookmaker: its metadata is authoritative.
UPSERT_EVENTS = (
    _EVENT_ROWS
    + """
ON CONFLICT (id) DO UPDATE SET
    sportradar_id = EXCLUDED.sportradar_id,
    tournament_id = EXCLUDED.tournament_id,
    name = EXCLUDED.name,
    home_team = EXCLUDED.home_team,
    away_team = EXCLUDED.away_team,
    kickoff = EXCLUDED.kickoff,
    -- EXCLUDED's now(), the same transaction time: Citus refuses non-immutable functions in DO UPDATE SET.
    updated_at = EXCLUDED.updated_at
WHERE (e.sportradar_id, e.tournament_id, e.name, e.home_team, e.away_team, e.kickoff)
      IS DISTINCT FROM (EXCLUDED.sportradar_id, EXCLUDED.tournament_id, EXCLUDED.name,
                        EXCLUDED.home_team, EXCLUDED.away_team, EXCLUDED.kickoff)
"""
)

# From competitors: they only create an event the home bookmaker has not described yet.
INSERT_EVENTS = _EVENT_ROWS + "ON CONFLICT (id) DO NOTHING\n"

UPSERT_EVENT_BOOKMAKERS = """
INSERT INTO event_bookmakers AS eb (event_id, bookmaker_id, external_event_id, created_at)
SELECT v.event_id, b.id, v.external_event_id, now()
FROM unnest($1::bigint[], $2::text[], $3::text[]) AS v(event_id, slug, external_event_id)
JOIN bookmakers b ON b.slug = v.slug
ON CONFLICT (event_id, bookmaker_id) DO UPDATE SET external_event_id = EXCLUDED.external_event_id
WHERE eb.external_event_id IS DISTINCT FROM EXCLUDED.external_event_id
"""


async def claim_pairs(conn: asyncpg.Connection, pairs: Sequence[Pair]) -> dict[Pair, datetime | None]:
    rows = await conn.fetch(CLAIM_PAIRS, [p[0] for p in pairs], [p[1] for p in pairs])
    return {(r[0], r[1]): r[2] for r in rows}


async def load_pairs(conn: asyncpg.Connection, pairs: Sequence[Pair]) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(LOAD_PAIRS, [p[0] for p in pairs], [p[1] for p in pairs])
    return rows


async def write_rows(conn: asyncpg.Connection, p: Plan) -> None:
    """The odds of a planned batch: current state, history, then each pair's new snapshot time."""
    if p.current:
        await conn.execute(UPSERT_CURRENT, *columns(list(p.current.values()), len(CurrentRow._fields)))
    if p.unavailable:
        await conn.execute(MARK_UNAVAILABLE, *columns(list(p.unavailable.values()), len(UnavailableRow._fields)))
    if p.history:
        await conn.copy_records_to_table("market_odds_history", records=p.history, columns=HISTORY_COLUMNS)
    if p.advanced:
        await conn.execute(
            ADVANCE_PAIRS, [k[0] for k in p.advanced], [k[1] for k in p.advanced], list(p.advanced.values())
        )


async def write_metadata(conn: asyncpg.Connection, m: MetadataPlan) -> None:
    """Sports, tournaments, events and event_bookmakers of a planned batch."""
    rows = [*m.home.values(), *m.created.values()]
    if rows:
        await conn.execute(ENSURE_SPORTS, sorted({r.sport for r in rows}))
        tournaments = sorted({(r.sport, r.tournament, r.country) for r in rows})
        await conn.execute(ENSURE_TOURNAMENTS, *columns(tournaments, 3))
        width = len(EventRow._fields)
        if m.home:
            await conn.execute(UPSERT_EVENTS, *columns(list(m.home.values()), width))
        if m.created:
            await conn.execute(INSERT_EVENTS, *columns(list(m.created.values()), width))
    if m.links:
        await conn.execute(ENSURE_BOOKMAKERS, sorted({p[1] for p in m.links}))
        await conn.execute(
            UPSERT_EVENT_BOOKMAKERS, [p[0] for p in m.links], [p[1] for p in m.links], list(m.links.values())
        )


def columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Row tuples to per-column lists, the shape unnest() takes (one parameter per column, so no
    parameter-count limit however many rows)."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(col) for col in zip(*rows, strict=True)]
