"""The old system's data in this project's tables, and its legacy tables in their real shape.

- Legacy columns as the old system's real head has them (0001 was written from its ORM models): a fresh
  database gets competitor_tournaments.country_raw/country_iso and timestamptz unavailable_at, so reads are the
  same SQL over both kinds of database. A taken-over database already has them and is not rewritten.
- The old v2.9 history (kept as pawarisk_market_odds_history by the takeover) is converted into
  market_odds_history: market ids, lines, JSONB outcomes to the codec, every row an available state.
- market_odds_current and latest_snapshots are seeded, per (event, bookmaker) this project has not written yet,
  from what the old system showed: its latest legacy snapshot, or its v2.9 current rows where those were
  confirmed at or after it. So the same odds show right after the upgrade, and a first new snapshot identical
  to them is no change.

Every insert skips what is already there, so running it again (after a downgrade to 0004) adds nothing twice.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import date

import sqlalchemy as sa
from alembic import op

from oddstore.history_partitions import partition_ddl, partition_name

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

logger = logging.getLogger(__name__)

V29_HISTORY = "pawarisk_market_odds_history"
V29_CURRENT = "pawarisk_market_odds_current"
BATCH_IDS = 200_000  # v2.9 history ids per statement, progress reported after each

# oddstore/codec.py in SQL, so conversions stay set-based: per outcome one byte of name length, the UTF-8 name,
# then big-endian uint32 milli_odds << 1 | is_active. round(float8) rounds half to even on the same binary
# double as Python's round(float(odds) * 1000), so both encode every price alike; missing odds are 0 and a
# missing is_active is active, as services/query/odds.legacy_outcomes reads them.
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
    + """
SELECT c.event_id, c.bookmaker_slug, c.betpawa_market_id, c.line, c.betpawa_market_name, c.handicap_type,
       c.handicap_home, c.handicap_away, pg_temp.oddstore_groups(c.market_groups),
       pg_temp.oddstore_outcomes(c.outcomes),
       c.last_updated_at, c.last_confirmed_at, c.unavailable_at
FROM pawarisk_market_odds_current c
JOIN (SELECT event_id, bookmaker_slug, max(last_confirmed_at) AS confirmed
      FROM pawarisk_market_odds_current GROUP BY 1, 2) v USING (event_id, bookmaker_slug)
LEFT JOIN takeover_pairs p ON p.event_id = c.event_id AND p.bookmaker_slug = c.bookmaker_slug
WHERE EXISTS (SELECT 1 FROM events e WHERE e.id = c.event_id)
  AND (p.captured_at IS NULL OR v.confirmed >= p.captured_at)
  AND """
    + _UNWRITTEN.format(e="c.event_id", b="c.bookmaker_slug")
    + "ON CONFLICT ON CONSTRAINT market_odds_current_key DO NOTHING"
)

_LEGACY_MARKET = (
    "snapshot_id, betpawa_market_id, line, betpawa_market_name, handicap_type, handicap_home, handicap_away,"
    " market_groups, outcomes, unavailable_at"
)
# Every market a pair's snapshots ever listed, as its latest snapshot shows it or, when that snapshot lacks it, as
# the UI shows such a market (ui-contract §1.3): unavailable with its last odds kept, since the old system's mark
# or else the pair's first snapshot without it. A market repeated within one snapshot (the old schema allows it)
# keeps one of its rows.
SEED_FROM_SNAPSHOTS = (
    _INSERT_CURRENT
    + """
SELECT DISTINCT ON (m.event_id, m.bookmaker_slug, m.betpawa_market_id, m.line)
       m.event_id, m.bookmaker_slug, m.betpawa_market_id, m.line, m.betpawa_market_name, m.handicap_type,
       m.handicap_home, m.handicap_away, pg_temp.oddstore_groups(m.market_groups::jsonb),
       pg_temp.oddstore_outcomes(m.outcomes::jsonb),
       CASE WHEN m.next_at IS NULL THEN m.captured_at ELSE coalesce(m.unavailable_at, m.next_at) END,
       m.captured_at,
       CASE WHEN m.next_at IS NULL THEN m.unavailable_at ELSE coalesce(m.unavailable_at, m.next_at) END
FROM (
    SELECT s.event_id, s.bookmaker_slug, s.captured_at, s.snapshot_id, s.next_at, {columns}
    FROM takeover_snapshots s JOIN market_odds USING (snapshot_id) WHERE NOT s.competitor
    UNION ALL
    SELECT s.event_id, s.bookmaker_slug, s.captured_at, s.snapshot_id, s.next_at, {columns}
    FROM takeover_snapshots s JOIN competitor_market_odds USING (snapshot_id) WHERE s.competitor
) m
WHERE """
    + _UNWRITTEN.format(e="m.event_id", b="m.bookmaker_slug")
    + """ORDER BY m.event_id, m.bookmaker_slug, m.betpawa_market_id, m.line, m.captured_at DESC, m.snapshot_id DESC
ON CONFLICT ON CONSTRAINT market_odds_current_key DO NOTHING"""
).replace("{columns}", _LEGACY_MARKET.replace("snapshot_id, ", ""))

SEED_LATEST = """
INSERT INTO latest_snapshots (event_id, bookmaker_slug, captured_at)
SELECT event_id, bookmaker_slug, max(captured_at)
FROM (
    SELECT event_id, bookmaker_slug, captured_at FROM takeover_pairs
    UNION ALL
    {v29}
) x
WHERE EXISTS (SELECT 1 FROM market_odds_current c WHERE c.event_id = x.event_id AND c.bookmaker_slug = x.bookmaker_slug)
GROUP BY event_id, bookmaker_slug
ON CONFLICT (event_id, bookmaker_slug) DO NOTHING
"""

V29_HISTORY_DAYS = f"SELECT DISTINCT (captured_at AT TIME ZONE 'UTC')::date FROM {V29_HISTORY}"
V29_HISTORY_BATCH = f"""
INSERT INTO market_odds_history (event_id, captured_at, line, available, bookmaker_slug, market_id, outcomes)
SELECT h.event_id, h.captured_at, h.line, true, h.bookmaker_slug, h.betpawa_market_id,
       pg_temp.oddstore_outcomes(h.outcomes)
FROM {V29_HISTORY} h
WHERE h.id >= :lo AND h.id < :hi
  AND NOT EXISTS (SELECT 1 FROM market_odds_history n
                  WHERE n.event_id = h.event_id AND n.bookmaker_slug = h.bookmaker_slug
                    AND n.market_id = h.betpawa_market_id AND n.line IS NOT DISTINCT FROM h.line
                    AND n.captured_at = h.captured_at)
"""


def _scalar(sql: str, **params: object) -> object:
    return op.get_bind().scalar(sa.text(sql), params)


def _exists(relation: str) -> bool:
    return bool(_scalar("SELECT to_regclass(:r) IS NOT NULL", r=relation))


def _column_type(table: str, column: str) -> object:
    return _scalar(
        "SELECT data_type FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = :t AND column_name = :c",
        t=table,
        c=column,
    )


def _legacy_shape_up() -> None:
    if _column_type("competitor_tournaments", "country") is not None:
        op.execute("ALTER TABLE competitor_tournaments RENAME COLUMN country TO country_raw")
        op.execute("ALTER TABLE competitor_tournaments ADD COLUMN country_iso varchar(3)")
    for table in ("market_odds", "competitor_market_odds"):
        if _column_type(table, "unavailable_at") == "timestamp without time zone":
            op.execute(
                f"ALTER TABLE {table} ALTER COLUMN unavailable_at TYPE timestamptz"
                " USING unavailable_at AT TIME ZONE 'UTC'"
            )


def _legacy_shape_down() -> None:
    """Only for a database that 0001 created: a taken-over one had this shape before it was ours."""
    if _exists("pawarisk_takeover"):
        return
    op.execute("ALTER TABLE competitor_tournaments DROP COLUMN country_iso")
    op.execute("ALTER TABLE competitor_tournaments RENAME COLUMN country_raw TO country")
    for table in ("market_odds", "competitor_market_odds"):
        op.execute(
            f"ALTER TABLE {table} ALTER COLUMN unavailable_at TYPE timestamp USING unavailable_at AT TIME ZONE 'UTC'"
        )


def _ensure_partitions(days: list[date]) -> None:
    for day in days:
        if not _exists(partition_name(day)):
            for statement in partition_ddl(day):
                op.execute(statement)


def _convert_v29_history() -> None:
    lo, hi = (int(v or 0) for v in op.get_bind().execute(sa.text(f"SELECT min(id), max(id) FROM {V29_HISTORY}")).one())
    total = int(_scalar(f"SELECT count(*) FROM {V29_HISTORY}") or 0)
    if total == 0:
        return
    _ensure_partitions(sorted(d for (d,) in op.get_bind().execute(sa.text(V29_HISTORY_DAYS))))
    started, done = time.monotonic(), 0
    for start in range(lo, hi + 1, BATCH_IDS):
        done += op.get_bind().execute(sa.text(V29_HISTORY_BATCH), {"lo": start, "hi": start + BATCH_IDS}).rowcount
        seen = min(hi, start + BATCH_IDS - 1) - lo + 1
        elapsed = max(time.monotonic() - started, 1e-6)
        rate = seen / elapsed
        logger.info(
            "v2.9 history: %d rows converted (ids %d of %d), %.0f rows/s, ETA %.0f s",
            done,
            seen,
            hi - lo + 1,
            rate,
            (hi - lo + 1 - seen) / rate,
        )


def upgrade() -> None:
    _legacy_shape_up()
    for statement in FUNCTIONS:
        op.execute(statement)
    if _exists(V29_HISTORY):
        _convert_v29_history()
    op.execute(SNAPSHOTS)
    op.execute(PAIRS)
    has_v29 = _exists(V29_CURRENT)
    if has_v29:
        op.execute(SEED_FROM_V29)
    op.execute(SEED_FROM_SNAPSHOTS)
    v29 = (
        f"SELECT event_id, bookmaker_slug, last_confirmed_at FROM {V29_CURRENT}"
        if has_v29
        else "SELECT NULL, NULL, NULL"
    )
    op.execute(SEED_LATEST.format(v29=v29))
    counts = op.get_bind().execute(
        sa.text("SELECT (SELECT count(*) FROM market_odds_current), (SELECT count(*) FROM latest_snapshots)")
    )
    logger.info("current state: %d market rows, %d (event, bookmaker) pairs", *counts.one())
    op.execute("DROP FUNCTION pg_temp.oddstore_outcomes(jsonb)")
    op.execute("DROP FUNCTION pg_temp.oddstore_groups(jsonb)")


def downgrade() -> None:
    # The converted and seeded rows stay: they are this project's rows now, and 0002's downgrade drops them.
    _legacy_shape_down()
