"""SQL of storage monitoring: table and database sizes, daily samples and alerts."""

from __future__ import annotations

import json
from datetime import datetime

import asyncpg

from oddstore import citus
from services.retention.naive_utc import aware, naive
from services.retention.storage import Alert, NewAlert, Sample, TableSize

# Every table of the schema with its total size (heap, indexes, TOAST). A partition is listed under its
# parent, whose figures are the sum of its partitions (a partitioned table has no storage of its own).
# Rows are the live-tuple counter of the statistics system (pg_stat_user_tables.n_live_tup, as the old system
# showed): kept up to date by every committed insert and delete, whereas the planner's reltuples stays -1 until
# a table is analysed, which with autovacuum off is never. Exact counts would scan the history partitions.
_TABLE_SIZES = """
WITH rels AS (
    SELECT c.relname, c.relkind, {size} AS size, {live} AS live, p.relname AS parent
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace{join}
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
TABLE_SIZES = _TABLE_SIZES.format(size="pg_total_relation_size(c.oid)", live="pg_stat_get_live_tuples(c.oid)", join="")
# On Citus the coordinator holds empty shells of the distributed and reference tables: their size is the sum over
# their shards on every node (citus_total_relation_size), their rows the statistics of each shard where it lives.
TABLE_SIZES_CITUS = _TABLE_SIZES.format(
    size="CASE WHEN d.logicalrelid IS NULL THEN pg_total_relation_size(c.oid)"
    " ELSE citus_total_relation_size(c.oid) END",
    live="CASE WHEN d.logicalrelid IS NULL OR c.relkind = 'p' THEN pg_stat_get_live_tuples(c.oid)"
    " ELSE (SELECT coalesce(sum(result::bigint), 0) FROM run_command_on_shards("
    "c.oid, $$SELECT pg_stat_get_live_tuples('%s'::regclass)$$)) END",
    join="\n    LEFT JOIN pg_dist_partition d ON d.logicalrelid = c.oid",
)
DATABASE_SIZE = "SELECT pg_database_size(current_database()), pg_size_pretty(pg_database_size(current_database()))"
# Every node's copy of the database: the coordinator's and each worker's (shards and reference replicas).
DATABASE_SIZE_CITUS = """
SELECT s, pg_size_pretty(s) FROM (
    SELECT sum(result::bigint)::bigint AS s
    FROM run_command_on_all_nodes('SELECT pg_database_size(current_database())')
) t
"""


async def table_sizes(conn: asyncpg.Connection | asyncpg.Pool) -> list[TableSize]:
    """Top-level tables, largest first, each with its partitions (largest first)."""
    rows = await conn.fetch(TABLE_SIZES_CITUS if await citus.installed(conn) else TABLE_SIZES)
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
    row = await conn.fetchrow(DATABASE_SIZE_CITUS if await citus.installed(conn) else DATABASE_SIZE)
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
