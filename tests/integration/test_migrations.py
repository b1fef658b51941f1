"""The migrations build the legacy schema plus the v2.9 changes, and undo them completely."""

from __future__ import annotations

import asyncpg

from oddstore import migrate

LEGACY_TABLES = {
    "bookmakers",
    "sports",
    "tournaments",
    "events",
    "event_bookmakers",
    "odds_snapshots",
    "odds_snapshots_default",
    "market_odds",
    "competitor_tournaments",
    "competitor_events",
    "competitor_odds_snapshots",
    "competitor_market_odds",
    "settings",
    "cleanup_runs",
    "storage_samples",
    "storage_alerts",
}


async def public_tables(dsn: str) -> set[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')"
        )
    finally:
        await conn.close()
    return {row["relname"] for row in rows}


async def test_upgrade_to_head_creates_the_legacy_tables_with_seeds_and_14_day_retention(
    fresh_database: str,
) -> None:
    migrate.upgrade(fresh_database)

    assert LEGACY_TABLES | {"alembic_version"} <= await public_tables(fresh_database)
    conn = await asyncpg.connect(fresh_database)
    try:
        settings = await conn.fetch("SELECT odds_retention_days, match_retention_days FROM settings")
        defaults = await conn.fetch(
            "SELECT column_name, column_default FROM information_schema.columns"
            " WHERE table_name = 'settings' AND column_name LIKE '%retention_days'"
        )
        slugs = await conn.fetchval("SELECT array_agg(slug ORDER BY slug) FROM bookmakers")
        sports = await conn.fetchval("SELECT array_agg(slug) FROM sports")
        partitions = await conn.fetchval(
            "SELECT array_agg(inhrelid::regclass::text) FROM pg_inherits WHERE inhparent = 'odds_snapshots'::regclass"
        )
    finally:
        await conn.close()
    assert [tuple(row) for row in settings] == [(14, 14)]
    assert {row["column_default"] for row in defaults} == {"14"}
    assert slugs == ["bet9ja", "betpawa", "sportybet"]
    assert sports == ["football"]
    assert partitions == ["odds_snapshots_default"]


async def test_legacy_timestamps_keep_the_old_systems_naive_and_aware_types(fresh_database: str) -> None:
    migrate.upgrade(fresh_database, "0001")

    conn = await asyncpg.connect(fresh_database)
    try:
        rows = await conn.fetch(
            "SELECT table_name, data_type FROM information_schema.columns"
            " WHERE column_name IN ('kickoff', 'captured_at') AND table_schema = 'public'"
        )
        retention = await conn.fetchrow("SELECT odds_retention_days, match_retention_days FROM settings")
    finally:
        await conn.close()
    types = {row["table_name"]: row["data_type"] for row in rows}
    assert types["events"] == "timestamp without time zone"
    assert types["competitor_events"] == "timestamp without time zone"
    assert types["competitor_odds_snapshots"] == "timestamp without time zone"
    assert types["odds_snapshots"] == "timestamp with time zone"
    assert tuple(retention) == (30, 30)


async def test_downgrade_to_base_leaves_only_alembic_version_and_upgrading_again_works(
    fresh_database: str,
) -> None:
    migrate.upgrade(fresh_database)

    migrate.downgrade(fresh_database)
    assert await public_tables(fresh_database) == {"alembic_version"}

    migrate.upgrade(fresh_database)
    assert LEGACY_TABLES <= await public_tables(fresh_database)


async def test_downgrading_one_step_from_head_restores_30_day_retention(fresh_database: str) -> None:
    migrate.upgrade(fresh_database)

    migrate.downgrade(fresh_database, "0002")

    conn = await asyncpg.connect(fresh_database)
    try:
        retention = await conn.fetchrow("SELECT odds_retention_days, match_retention_days FROM settings")
    finally:
        await conn.close()
    assert tuple(retention) == (30, 30)


async def test_upgrade_takes_a_url_with_connection_parameters_as_the_services_pools_do(fresh_database: str) -> None:
    # The compose stack's DATABASE_URL carries sslmode and sslrootcert: the migrations must read such a URL as
    # asyncpg does, not hand its query to asyncpg.connect as keyword arguments (a TypeError before).
    separator = "&" if "?" in fresh_database else "?"
    migrate.upgrade(f"{fresh_database}{separator}sslmode=disable&application_name=oddstore-migrate")

    assert LEGACY_TABLES | {"alembic_version"} <= await public_tables(fresh_database)
