"""Taking over a database of the old system (pawaRisk) at its Alembic head: verify its schema, adopt it into our
revision chain (and give it back on a downgrade).

The old head is not in our chain: revision 0001 was written from the old ORM models, and the real head differs
from it (measured on a restored database, see OLD_HEAD_COLUMNS). Adoption is one transaction that makes the old
head what revisions 0002-0004 expect, keeps the old v2.9 tables under new names, records the takeover in
`pawarisk_takeover` and stamps 0001; revision 0005 then converts the old data. `unadopt` is its exact reverse,
run after a downgrade to 0001.
"""

from __future__ import annotations

from collections.abc import Callable

import asyncpg

OLD_HEAD = "o9p8q1r2s3t4"
TAKEOVER_TABLE = "pawarisk_takeover"
# The old v2.9 tables are kept under these names (not dropped) so that a downgrade can give them back.
RENAMED = (
    ("market_odds_current", "pawarisk_market_odds_current"),
    ("market_odds_history", "pawarisk_market_odds_history"),
)
RENAMED_PREFIX = "pawarisk_"


class TakeoverRefused(RuntimeError):
    """The database cannot be taken over as it is; the message says why and what to do."""


# Foreign keys to events that the old head declared without an ON DELETE action: retention deletes expired
# events, which these would block. (name, table, definition as adopted, definition as the old head had it)
EVENT_FOREIGN_KEYS: tuple[tuple[str, str, str, str], ...] = (
    (
        "fk_competitor_events_betpawa_event_id_events",
        "competitor_events",
        "FOREIGN KEY (betpawa_event_id) REFERENCES events (id) ON DELETE SET NULL",
        "FOREIGN KEY (betpawa_event_id) REFERENCES events (id)",
    ),
    (
        "fk_scrape_errors_event_id_events",
        "scrape_errors",
        "FOREIGN KEY (event_id) REFERENCES events (id) ON DELETE SET NULL",
        "FOREIGN KEY (event_id) REFERENCES events (id)",
    ),
)

# One statement per execute keeps each one's error readable.
ADOPT: tuple[str, ...] = (
    # Revision 0002 converts naive columns to timestamptz; this one is created aware, so nothing shifts.
    "ALTER TABLE events ADD COLUMN updated_at timestamptz DEFAULT now()",
    # The writer stamps tournaments and retention spares young ones. Existing rows get the takeover time
    # (UTC, whatever the session's time zone): an empty old tournament is deleted one retention period later.
    "ALTER TABLE tournaments ADD COLUMN created_at timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')",
    *(f"ALTER TABLE {table} DROP CONSTRAINT {name}" for name, table, _, _ in EVENT_FOREIGN_KEYS),
    *(f"ALTER TABLE {table} ADD CONSTRAINT {name} {adopted}" for name, table, adopted, _ in EVENT_FOREIGN_KEYS),
    *(f"ALTER TABLE {old} RENAME TO {new}" for old, new in RENAMED),
    f"CREATE TABLE {TAKEOVER_TABLE} (old_revision text NOT NULL, adopted_at timestamptz NOT NULL DEFAULT now())",
    f"INSERT INTO {TAKEOVER_TABLE} (old_revision) VALUES ('{OLD_HEAD}')",
    "UPDATE alembic_version SET version_num = '0001'",
)

# The reverse, on a database downgraded to 0001. Revision 0002's downgrade left events' times naive UTC: they
# go back to timestamptz as the old head had them, read as UTC whatever the session's time zone.
UNADOPT: tuple[str, ...] = (
    "ALTER TABLE events DROP COLUMN updated_at,"
    " ALTER COLUMN kickoff TYPE timestamptz USING kickoff AT TIME ZONE 'UTC',"
    " ALTER COLUMN created_at TYPE timestamptz USING created_at AT TIME ZONE 'UTC'",
    "ALTER TABLE tournaments DROP COLUMN created_at",
    # Revision 0003's downgrade set this project's old defaults; the old head's were 7 and 30.
    "ALTER TABLE settings ALTER COLUMN odds_retention_days SET DEFAULT 7,"
    " ALTER COLUMN match_retention_days SET DEFAULT 30",
    *(f"ALTER TABLE {table} DROP CONSTRAINT {name}" for name, table, _, _ in EVENT_FOREIGN_KEYS),
    *(f"ALTER TABLE {table} ADD CONSTRAINT {name} {old}" for name, table, _, old in EVENT_FOREIGN_KEYS),
    *(f"ALTER TABLE {new} RENAME TO {old}" for old, new in RENAMED),
    f"DROP TABLE {TAKEOVER_TABLE}",
    f"UPDATE alembic_version SET version_num = '{OLD_HEAD}'",
)

ACTUAL_COLUMNS = """
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relname = ANY($1::text[])
"""
FOREIGN_KEYS = "SELECT conname FROM pg_constraint WHERE contype = 'f' AND conname = ANY($1::text[])"
PARTITIONS = "SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = $1::regclass ORDER BY 1"
TAKEOVER_EXISTS = "SELECT to_regclass($1) IS NOT NULL"


def expected_columns() -> dict[str, dict[str, str]]:
    """table -> column -> 'type[ not null]', as the old head has them."""
    expected: dict[str, dict[str, str]] = {}
    for table, spec in OLD_HEAD_COLUMNS.items():
        columns = expected.setdefault(table, {})
        for item in spec.split(", "):
            name, kind = item.split(" ", 1)
            columns[name] = kind
    return expected


async def schema_differences(conn: asyncpg.Connection) -> list[str]:
    """What differs from the old head's schema, one line per item. Tables and columns the old head did not have
    are not reported: an operator's additions do not stop a takeover, and are kept as they are."""
    expected = expected_columns()
    actual: dict[str, dict[str, str]] = {}
    for table, column, kind in await conn.fetch(ACTUAL_COLUMNS, list(expected)):
        actual.setdefault(table, {})[column] = kind
    differences = []
    for table, columns in expected.items():
        if table not in actual:
            differences.append(f"table {table} is missing")
            continue
        for column, kind in columns.items():
            found = actual[table].get(column)
            if found is None:
                differences.append(f"column {table}.{column} ({kind}) is missing")
            elif found != kind:
                differences.append(f"column {table}.{column} is {found}, expected {kind}")
    names = [name for name, _, _, _ in EVENT_FOREIGN_KEYS]
    present = {r[0] for r in await conn.fetch(FOREIGN_KEYS, names)}
    differences += [f"foreign key {name} is missing" for name in names if name not in present]
    return differences


async def adopt(conn: asyncpg.Connection) -> None:
    """Verifies a database at the old head and adopts it at revision 0001, in one transaction: on any error
    nothing has changed. Raises TakeoverRefused when the schema is not the old head's."""
    differences = await schema_differences(conn)
    if differences:
        raise TakeoverRefused(
            f"the database claims the pawaRisk revision {OLD_HEAD} but its schema differs from that revision's:\n  "
            + "\n  ".join(differences)
            + "\nNothing was changed. Bring the schema back to the old system's head (or restore a backup), then retry."
        )
    async with conn.transaction():
        for statement in ADOPT:
            await conn.execute(statement)
        await _rename_partitions(conn, "pawarisk_market_odds_history", lambda name: RENAMED_PREFIX + name)


async def require_taken_over(conn: asyncpg.Connection) -> None:
    if not await conn.fetchval(TAKEOVER_EXISTS, TAKEOVER_TABLE):
        raise TakeoverRefused(
            f"this database was not taken over from pawaRisk {OLD_HEAD}; there is nothing to give back"
        )


async def unadopt(conn: asyncpg.Connection) -> None:
    """Gives a taken-over database downgraded to 0001 back to the old head, in one transaction."""
    await require_taken_over(conn)
    async with conn.transaction():
        await _rename_partitions(conn, "pawarisk_market_odds_history", lambda name: name.removeprefix(RENAMED_PREFIX))
        for statement in UNADOPT:
            await conn.execute(statement)


async def _rename_partitions(conn: asyncpg.Connection, parent: str, rename: Callable[[str], str]) -> None:
    # The old monthly partitions follow their parent, so that no table named market_odds_history_* is left
    # that is not a partition of ours.
    for (name,) in await conn.fetch(PARTITIONS, parent):
        await conn.execute(f'ALTER TABLE "{name}" RENAME TO "{rename(name)}"')


# Every column of the old head's tables, as pg_catalog formats them (generated from a database the old system's
# migrations created: ../shared/reference/pawarisk-head-schema.sql).
OLD_HEAD_COLUMNS: dict[str, str] = {
    "bookmakers": (
        "id integer not null, name character varying(100) not null, slug character varying(100) not null, "
        "is_active boolean not null, base_url character varying(500), logo_url character varying(500), "
        "created_at timestamp with time zone not null, updated_at timestamp with time zone not null"
    ),
    "cleanup_runs": (
        "id integer not null, started_at timestamp without time zone not null, "
        "completed_at timestamp without time zone, trigger character varying(20) not null, "
        "odds_retention_days integer not null, match_retention_days integer not null, "
        "odds_deleted integer not null, competitor_odds_deleted integer not null, "
        "scrape_runs_deleted integer not null, scrape_batches_deleted integer not null, "
        "events_deleted integer not null, competitor_events_deleted integer not null, "
        "tournaments_deleted integer not null, competitor_tournaments_deleted integer not null, "
        "oldest_odds_date timestamp without time zone, oldest_match_date timestamp without time zone, "
        "status character varying(20) not null, error_message text, duration_seconds double precision"
    ),
    "competitor_events": (
        "id integer not null, source character varying(20) not null, tournament_id integer not null, "
        "betpawa_event_id integer, name character varying(500) not null, "
        "home_team character varying(255) not null, away_team character varying(255) not null, "
        "kickoff timestamp without time zone not null, external_id character varying(100) not null, "
        "sportradar_id character varying(100) not null, created_at timestamp without time zone not null, "
        "updated_at timestamp without time zone not null, deleted_at timestamp without time zone"
    ),
    "competitor_market_odds": (
        "id bigint not null, snapshot_id bigint not null, betpawa_market_id character varying(50) not null, "
        "betpawa_market_name character varying(255) not null, line double precision, "
        "handicap_type character varying(50), handicap_home double precision, "
        "handicap_away double precision, outcomes json not null, market_groups json, "
        "unavailable_at timestamp with time zone"
    ),
    "competitor_odds_snapshots": (
        "id bigint not null, competitor_event_id integer not null, "
        "captured_at timestamp without time zone not null, scrape_run_id integer, "
        "last_confirmed_at timestamp without time zone"
    ),
    "competitor_tournaments": (
        "id integer not null, source character varying(20) not null, sport_id integer not null, "
        "name character varying(255) not null, country_raw character varying(100), "
        "country_iso character varying(3), external_id character varying(100) not null, "
        "sportradar_id character varying(100), created_at timestamp without time zone not null, "
        "deleted_at timestamp without time zone"
    ),
    "event_bookmakers": (
        "id integer not null, event_id integer not null, bookmaker_id integer not null, "
        "external_event_id character varying(100) not null, event_url character varying(1000), "
        "created_at timestamp with time zone not null"
    ),
    "event_scrape_status": (
        "id integer not null, scrape_run_id integer not null, sportradar_id character varying(50) not null, "
        "status character varying(20) not null, platforms_requested json not null, "
        "platforms_scraped json not null, platforms_failed json not null, timing_ms integer not null, "
        "error_details json, created_at timestamp without time zone not null"
    ),
    "events": (
        "id integer not null, tournament_id integer not null, name character varying(500) not null, "
        "home_team character varying(255) not null, away_team character varying(255) not null, "
        "kickoff timestamp with time zone not null, sportradar_id character varying(100) not null, "
        "created_at timestamp with time zone not null"
    ),
    "market_odds": (
        "id bigint not null, snapshot_id bigint not null, betpawa_market_id character varying(50) not null, "
        "betpawa_market_name character varying(255) not null, line double precision, "
        "handicap_type character varying(50), handicap_home double precision, "
        "handicap_away double precision, outcomes json not null, market_groups json, "
        "unavailable_at timestamp with time zone"
    ),
    "market_odds_current": (
        "id bigint not null, event_id integer not null, bookmaker_slug character varying(20) not null, "
        "betpawa_market_id character varying(50) not null, "
        "betpawa_market_name character varying(255) not null, line double precision, "
        "handicap_type character varying(50), handicap_home double precision, "
        "handicap_away double precision, outcomes jsonb not null, market_groups jsonb, "
        "unavailable_at timestamp with time zone, last_updated_at timestamp with time zone not null, "
        "last_confirmed_at timestamp with time zone not null"
    ),
    "market_odds_history": (
        "id bigint not null, event_id integer not null, bookmaker_slug character varying(20) not null, "
        "betpawa_market_id character varying(50) not null, line double precision, outcomes jsonb not null, "
        "captured_at timestamp with time zone not null"
    ),
    "odds_snapshots": (
        "id bigint not null, event_id integer not null, bookmaker_id integer not null, "
        "captured_at timestamp with time zone not null, scrape_run_id integer, "
        "last_confirmed_at timestamp without time zone"
    ),
    "scrape_batches": (
        "id integer not null, started_at timestamp without time zone not null, "
        "completed_at timestamp without time zone, status character varying(20) not null, "
        "trigger character varying(50), notes text"
    ),
    "scrape_errors": (
        "id integer not null, scrape_run_id integer not null, bookmaker_id integer, event_id integer, "
        "error_type character varying(50) not null, error_message text not null, "
        "occurred_at timestamp with time zone not null"
    ),
    "scrape_phase_logs": (
        "id integer not null, scrape_run_id integer not null, platform character varying(20), "
        "phase character varying(30) not null, started_at timestamp without time zone not null, "
        "ended_at timestamp without time zone, events_processed integer, message text, error_details json"
    ),
    "scrape_runs": (
        "id integer not null, status character varying(20) not null, "
        "started_at timestamp with time zone not null, completed_at timestamp with time zone, "
        "events_scraped integer not null, events_failed integer not null, trigger character varying(50), "
        "current_phase character varying(30), current_platform character varying(20), platform_status json, "
        "batch_id integer, platform_timings json"
    ),
    "settings": (
        "id integer not null, scrape_interval_minutes integer not null, enabled_platforms json not null, "
        "created_at timestamp without time zone not null, updated_at timestamp without time zone, "
        "odds_retention_days integer not null, match_retention_days integer not null, "
        "cleanup_frequency_hours integer not null, betpawa_concurrency integer not null, "
        "sportybet_concurrency integer not null, bet9ja_concurrency integer not null, "
        "bet9ja_delay_ms integer not null, batch_size integer not null, "
        "max_concurrent_events integer not null"
    ),
    "sports": "id integer not null, name character varying(100) not null, slug character varying(100) not null",
    "storage_alerts": (
        "id integer not null, created_at timestamp without time zone not null, "
        "alert_type character varying(50) not null, message character varying(500) not null, "
        "current_bytes bigint not null, previous_bytes bigint not null, "
        "growth_percent double precision not null, resolved_at timestamp without time zone"
    ),
    "storage_samples": (
        "id integer not null, sampled_at timestamp without time zone not null, total_bytes bigint not null, "
        "table_sizes json not null"
    ),
    "tournaments": (
        "id integer not null, sport_id integer not null, name character varying(255) not null, "
        "country character varying(100) not null, sportradar_id character varying(100)"
    ),
}
