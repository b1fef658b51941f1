"""Contender (b): the old system's write path re-created with asyncpg, as it ran before and in v2.9.

Per snapshot: one odds_snapshots row, then every market of it into market_odds (JSON outcomes), then
one upsert statement per market into a current table keyed with COALESCE(line, 0). One transaction
per 50-event batch, on one connection, as the old single process stored its scrape batches.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from bench.results import ContenderResult, CycleResult, Storage
from bench.workload import Workload
from oddstore.v1 import snapshot_pb2

logger = logging.getLogger(__name__)

EVENTS_PER_BATCH = 50  # the old system's storage batch

CREATE_CURRENT = (
    """
    CREATE TABLE old_market_odds_current (
        event_id          integer NOT NULL,
        bookmaker_slug    text NOT NULL,
        market_id         text NOT NULL,
        line              double precision,
        market_name       text NOT NULL,
        handicap_type     text,
        handicap_home     double precision,
        handicap_away     double precision,
        market_groups     jsonb,
        outcomes          jsonb NOT NULL,
        last_updated_at   timestamptz NOT NULL,
        last_confirmed_at timestamptz NOT NULL,
        unavailable_at    timestamptz
    )
    """,
    """
    CREATE UNIQUE INDEX old_market_odds_current_key
        ON old_market_odds_current (event_id, bookmaker_slug, market_id, COALESCE(line, 0))
    """,
)

INSERT_TOURNAMENTS = """
INSERT INTO tournaments (sport_id, name, country)
SELECT $1, name, country FROM unnest($2::text[], $3::text[]) AS v(name, country)
ON CONFLICT DO NOTHING
"""

INSERT_EVENTS = """
INSERT INTO events (id, sportradar_id, tournament_id, name, home_team, away_team, kickoff)
SELECT v.id, v.sportradar_id, t.id, v.name, v.home, v.away, v.kickoff
FROM unnest($1::int[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::timestamptz[]) AS v(id, sportradar_id, tournament, country, name, home, away, kickoff)
JOIN tournaments t ON t.name = v.tournament AND t.country IS NOT DISTINCT FROM v.country
"""

INSERT_SNAPSHOT = """
INSERT INTO odds_snapshots (event_id, bookmaker_id, captured_at) VALUES ($1, $2, $3) RETURNING id
"""

INSERT_MARKET = """
INSERT INTO market_odds (snapshot_id, betpawa_market_id, betpawa_market_name, line, handicap_type,
                         handicap_home, handicap_away, outcomes, market_groups)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
"""

UPSERT_CURRENT = """
INSERT INTO old_market_odds_current AS c (
    event_id, bookmaker_slug, market_id, line, market_name, handicap_type, handicap_home,
    handicap_away, market_groups, outcomes, last_updated_at, last_confirmed_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)
ON CONFLICT (event_id, bookmaker_slug, market_id, COALESCE(line, 0)) DO UPDATE SET
    market_name = EXCLUDED.market_name,
    handicap_type = EXCLUDED.handicap_type,
    handicap_home = EXCLUDED.handicap_home,
    handicap_away = EXCLUDED.handicap_away,
    market_groups = EXCLUDED.market_groups,
    outcomes = EXCLUDED.outcomes,
    last_updated_at = CASE WHEN c.outcomes = EXCLUDED.outcomes THEN c.last_updated_at
                           ELSE EXCLUDED.last_updated_at END,
    last_confirmed_at = EXCLUDED.last_confirmed_at,
    unavailable_at = NULL
"""

TABLE_STORAGE = """
SELECT pg_total_relation_size($1::regclass), pg_relation_size($1::regclass), pg_indexes_size($1::regclass)
"""

PARTITIONS_STORAGE = """
SELECT coalesce(sum(pg_total_relation_size(i.inhrelid)), 0),
       coalesce(sum(pg_relation_size(i.inhrelid)), 0),
       coalesce(sum(pg_indexes_size(i.inhrelid)), 0)
FROM pg_inherits i WHERE i.inhparent = $1::regclass
"""


@dataclass(slots=True)
class LegacyResult(ContenderResult):
    market_odds: Storage | None = None
    snapshots: Storage | None = None

    @property
    def per_market_row_all_in(self) -> float:
        """(market_odds + odds_snapshots, all-in) / market_odds rows."""
        if self.market_odds is None or self.snapshots is None or not self.market_odds.rows:
            return 0.0
        return (self.market_odds.total_bytes + self.snapshots.total_bytes) / self.market_odds.rows


def _at(timestamp: Any) -> datetime:
    moment: datetime = timestamp.ToDatetime(tzinfo=UTC)
    return moment


async def prepare(conn: asyncpg.Connection, workload: Workload) -> dict[str, int]:
    """Creates the v2.9 current table and the FK rows (tournaments, events); returns bookmaker ids by slug."""
    for statement in CREATE_CURRENT:
        await conn.execute(statement)
    sport_id = await conn.fetchval("SELECT id FROM sports WHERE name = 'Football'")
    events = list(workload.events.values())
    tournaments = sorted({(e.tournament, e.country) for e in events})
    await conn.execute(INSERT_TOURNAMENTS, sport_id, [t[0] for t in tournaments], [t[1] for t in tournaments])
    await conn.execute(
        INSERT_EVENTS,
        [e.id for e in events],
        [e.sportradar_id for e in events],
        [e.tournament for e in events],
        [e.country for e in events],
        [e.name for e in events],
        [e.home_team for e in events],
        [e.away_team for e in events],
        [_at(e.kickoff) for e in events],
    )
    return {slug: bookmaker_id for bookmaker_id, slug in await conn.fetch("SELECT id, slug FROM bookmakers")}


async def _store_snapshot(conn: asyncpg.Connection, s: snapshot_pb2.Snapshot, bookmaker_id: int) -> int:
    at = _at(s.captured_at)
    snapshot_id = await conn.fetchval(INSERT_SNAPSHOT, s.event.id, bookmaker_id, at)
    rows: list[tuple[Any, ...]] = []
    upserts: list[tuple[Any, ...]] = []
    for m in s.markets:
        line = m.line if m.HasField("line") else None
        handicap_type = m.handicap_type if m.HasField("handicap_type") else None
        handicap_home = m.handicap_home if m.HasField("handicap_home") else None
        handicap_away = m.handicap_away if m.HasField("handicap_away") else None
        outcomes = json.dumps([{"name": o.name, "odds": o.odds, "is_active": o.is_active} for o in m.outcomes])
        groups = json.dumps(list(m.market_groups))
        rows.append(
            (
                snapshot_id,
                m.market_id,
                m.market_name,
                line,
                handicap_type,
                handicap_home,
                handicap_away,
                outcomes,
                groups,
            )
        )
        upserts.append(
            (s.event.id, s.bookmaker, m.market_id, line, m.market_name, handicap_type, handicap_home,
             handicap_away, groups, outcomes, at)
        )  # fmt: skip
    await conn.executemany(INSERT_MARKET, rows)
    # One statement per market, each awaited before the next, as the old write handler did (a loop of
    # session.execute). executemany would pipeline them: a faster baseline than the old system ever
    # ran (28,581 obs/s here on 2026-11-26, against 73,429 for ours).
    for row in upserts:
        await conn.execute(UPSERT_CURRENT, *row)
    return len(rows)


async def run(dsn: str, workload: Workload, *, cycles: int) -> LegacyResult:
    chosen = workload.cycles[:cycles]
    result = LegacyResult("old", planned_cycles=len(chosen))
    conn = await asyncpg.connect(dsn)
    try:
        bookmakers = await prepare(conn, workload)
        batch = EVENTS_PER_BATCH * len(bookmakers)
        for cycle in chosen:
            # Decoding our wire format is not part of the old path: it had its scrape results in memory.
            snapshots = [s for b in cycle.snapshot_batches() for s in b]
            started = time.perf_counter()
            market_rows = 0
            for i in range(0, len(snapshots), batch):
                async with conn.transaction():
                    for s in snapshots[i : i + batch]:
                        market_rows += await _store_snapshot(conn, s, bookmakers[s.bookmaker])
            elapsed = time.perf_counter() - started
            cr = CycleResult(
                cycle.number,
                elapsed,
                cycle.observations,
                len(snapshots) + market_rows,
                f"{len(snapshots):,} snapshots + {market_rows:,} market_odds (+{market_rows:,} current upserts)",
            )
            result.cycles.append(cr)
            logger.info(
                "old: cycle %d/%d: %d observations in %.2fs = %.0f obs/s",
                cycle.number,
                len(chosen),
                cycle.observations,
                elapsed,
                cr.rate,
            )
        market_odds_rows = int(await conn.fetchval("SELECT count(*) FROM market_odds"))
        snapshot_rows = int(await conn.fetchval("SELECT count(*) FROM odds_snapshots"))
        mo = await conn.fetchrow(TABLE_STORAGE, "market_odds")
        sn = await conn.fetchrow(PARTITIONS_STORAGE, "odds_snapshots")
        assert mo is not None and sn is not None
        result.market_odds = Storage(market_odds_rows, int(mo[0]), int(mo[1]), int(mo[2]))
        result.snapshots = Storage(snapshot_rows, int(sn[0]), int(sn[1]), int(sn[2]))
    finally:
        await conn.close()
    return result
