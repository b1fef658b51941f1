"""On Citus (make test-citus): revision 0007 shards the odds tables by event and replicates the shared ones."""

from __future__ import annotations

import asyncpg
import pytest

ODDS_TABLES = {"latest_snapshots", "market_odds_current", "market_odds_history"}
REFERENCE_TABLES = {"bookmakers", "sports", "tournaments", "events", "event_bookmakers"}

# partmethod 'h' = hash-distributed, 'n' = no distribution column (reference or citus local table);
# repmodel 't' = replicated to every node (reference), 's' = one copy.
CITUS_TABLES = """
SELECT c.relname, p.partmethod::text, column_to_column_name(p.logicalrelid, p.partkey), p.colocationid,
       p.repmodel::text
FROM pg_dist_partition p JOIN pg_class c ON c.oid = p.logicalrelid
WHERE NOT c.relispartition
"""


async def test_on_citus_the_odds_tables_are_distributed_by_event_id_in_one_colocation_group(
    migrated_dsn: str, on_citus: bool
) -> None:
    if not on_citus:
        pytest.skip("Citus only: plain PostgreSQL has no distribution (make test-citus)")
    conn = await asyncpg.connect(migrated_dsn)
    try:
        rows = {r[0]: r for r in await conn.fetch(CITUS_TABLES)}
    finally:
        await conn.close()
    odds = [rows[t] for t in sorted(ODDS_TABLES)]
    assert [(r[1], r[2]) for r in odds] == [("h", "event_id")] * len(odds)
    assert len({r[3] for r in odds}) == 1
    assert {t for t, r in rows.items() if r[1] == "n" and r[4] == "t"} == REFERENCE_TABLES


async def test_the_migrated_schema_on_plain_postgresql_has_no_citus_objects(migrated_dsn: str, on_citus: bool) -> None:
    if on_citus:
        pytest.skip("plain PostgreSQL only")
    conn = await asyncpg.connect(migrated_dsn)
    try:
        assert await conn.fetchval("SELECT to_regclass('pg_dist_partition')") is None
    finally:
        await conn.close()
