"""SQL of history partition upkeep: listing, counting, detaching and dropping market_odds_history partitions."""

from __future__ import annotations

import asyncio
import logging
from datetime import date, datetime

import asyncpg

from oddstore import citus
from oddstore.history_partitions import INDEX_COLUMNS, index_name, partition_name
from services.retention.naive_utc import aware
from services.retention.partitions import AttachedPartition, parse_name

logger = logging.getLogger(__name__)

_LIST_PARTITIONS = """
SELECT c.relname, i.inhdetachpending, {size}(c.oid), a.amname = 'columnar'
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_am a ON a.oid = c.relam
WHERE i.inhparent = 'market_odds_history'::regclass
ORDER BY c.relname
"""
LIST_PARTITIONS = _LIST_PARTITIONS.format(size="pg_total_relation_size")
# On Citus a partition's rows are in its shards on the workers; the coordinator's table is an empty shell.
LIST_PARTITIONS_CITUS = _LIST_PARTITIONS.format(size="citus_total_relation_size")


async def list_partitions(conn: asyncpg.Connection) -> list[AttachedPartition]:
    rows = await conn.fetch(LIST_PARTITIONS_CITUS if await citus.installed(conn) else LIST_PARTITIONS)
    return [AttachedPartition(r[0], parse_name(r[0]), r[2], r[1], r[3]) for r in rows]


COLUMNAR_AVAILABLE = "SELECT EXISTS (SELECT 1 FROM pg_am WHERE amname = 'columnar')"
ACCESS_METHOD = "SELECT a.amname FROM pg_class c JOIN pg_am a ON a.oid = c.relam WHERE c.oid = to_regclass($1)"


async def columnar_available(conn: asyncpg.Connection) -> bool:
    """Whether the columnar access method is installed (the citus_columnar extension, revision 0008)."""
    return bool(await conn.fetchval(COLUMNAR_AVAILABLE))


# A closed day's columnar layout (BENCHMARKS.md, "A closed day keeps its index"): a history read of one market
# fetches its rows by the index; each fetch into another chunk group decompresses that group's every column, each
# into another stripe loads the stripe's chunk metadata, so both are columnar's least, 1,000 rows. Per read of one
# production-shaped day of 6.2 M changes: 0.53 ms (2,000-row groups and stripes 0.6-0.75, 1,000-row groups in
# 10,000-row stripes 0.9-1.0; without the index 6.0; heap 0.25), for 17.3 B per change in the day's relations and
# ~1 B more of columnar's catalog rows (7.7 without the index, 146 heap). zstd level 9: 13.7 B against 16.4 at
# level 3 on an earlier, sparser day (BENCHMARKS.md, "read by a B-tree").
CHUNK_GROUP_ROWS = STRIPE_ROWS = 1_000  # columnar's least
COMPRESSION_LEVEL = 9


async def convert_to_columnar(conn: asyncpg.Connection, day: date, lock_timeout: float) -> bool:
    """Rewrites a closed day's partition as columnar, sorted by market and with its index rebuilt, in one
    transaction: interrupted anywhere, the day is still the heap partition it was, and a run again starts over.
    Returns False when there is nothing to do (already columnar, or dropped meanwhile); raises LockNotAvailableError
    when the partition stayed busy for `lock_timeout`.

    ACCESS EXCLUSIVE on the day's partition only (not the parent): writes of other days go on; a late write for this
    day and reads of it wait for the commit (the bench measures how long: bench.columnar), then the write goes into
    the columnar table, which takes inserts. CLUSTER sorts the day by its index, (event_id, bookmaker_slug,
    market_id), and the columnar rewrite keeps that order, so a market's rows of the day are adjacent: its history
    read decompresses one chunk group. The index is dropped before the rewrite, which would rebuild it as it is,
    and built again after it, packed full. Reads must not take columnar's custom scan, which the planner prefers
    and which loads the chunk metadata of the whole day (the query service's history reads turn it off:
    services/query/history_repository.POOL_SETTINGS). Citus's alter_old_partitions_set_access_method() would copy
    in arrival order; on Citus, CLUSTER, DROP/CREATE INDEX and SET ACCESS METHOD on a partition all propagate to its
    shards, so the same statements serve both (PostgreSQL 15 has ALTER TABLE ... SET ACCESS METHOD)."""
    name, index = partition_name(day), index_name(day)
    async with conn.transaction():
        await conn.execute(f"SET LOCAL lock_timeout = '{int(lock_timeout * 1000)}ms'")
        if await conn.fetchval(ACCESS_METHOD, name) is None:
            return False
        await conn.execute(f"LOCK TABLE {name} IN ACCESS EXCLUSIVE MODE")
        # Read again under the lock: another process may have converted it while this one waited.
        if await conn.fetchval(ACCESS_METHOD, name) != "heap":
            return False
        if await conn.fetchval("SELECT to_regclass($1)", index) is not None:
            await conn.execute(f"CLUSTER {name} USING {index}")
            await conn.execute(f"DROP INDEX {index}")
        else:
            logger.warning("partition %s had no index %s: converted unsorted", name, index)
        if await citus.installed(conn):
            await conn.execute("SET LOCAL citus.propagate_set_commands = 'local'")  # the next SETs to the shards too
        await conn.execute(
            f"SET LOCAL columnar.chunk_group_row_limit = {CHUNK_GROUP_ROWS}; "
            f"SET LOCAL columnar.stripe_row_limit = {STRIPE_ROWS}; "
            f"SET LOCAL columnar.compression_level = {COMPRESSION_LEVEL}"
        )
        await conn.execute(f"ALTER TABLE {name} SET ACCESS METHOD columnar")
        # fillfactor 100: nothing is inserted in the middle of a closed day's index.
        await conn.execute(f"CREATE INDEX {index} ON {name} {INDEX_COLUMNS} WITH (fillfactor = 100)")
        await conn.execute(f"ANALYZE {name}")
    return True


async def partition_size(conn: asyncpg.Connection, day: date) -> int:
    size = "citus_total_relation_size" if await citus.installed(conn) else "pg_total_relation_size"
    return int(await conn.fetchval(f"SELECT {size}($1::regclass)", partition_name(day)))


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

    Citus does not support DETACH ... CONCURRENTLY on a distributed table: there the partition is dropped
    directly (as Citus's drop_old_time_partitions() does), which drops its shards on every worker; its ACCESS
    EXCLUSIVE lock on the parent is bounded by the same lock timeout and retries.
    """
    name = partition_name(day)
    if await citus.installed(conn):
        return await _drop_on_citus(conn, name, lock_timeout, retries)
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


async def _drop_on_citus(conn: asyncpg.Connection, name: str, lock_timeout: float, retries: int) -> bool:
    await conn.execute(f"SET lock_timeout = '{int(lock_timeout * 1000)}ms'")
    try:
        for attempt in range(retries):
            try:
                await conn.execute(f"DROP TABLE IF EXISTS {name}")
                return True
            except (asyncpg.exceptions.LockNotAvailableError, asyncpg.exceptions.QueryCanceledError) as exc:
                logger.warning("partition %s: lock busy (%s), retry %d of %d", name, exc, attempt + 1, retries)
                await asyncio.sleep(min(0.1 * 2**attempt, 2.0))
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
