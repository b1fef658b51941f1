"""Daily partitions of market_odds_history: names and bounds from dates only, created without
blocking writers. Shared by the writer (on demand) and retention (ahead of time)."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time, timedelta

import asyncpg

from oddstore import citus

logger = logging.getLogger(__name__)

INDEX_COLUMNS = "(event_id, bookmaker_slug, market_id)"
PARTITION_EXISTS = """
SELECT 1 FROM pg_class WHERE relname = $1 AND relkind = 'r'
"""


def partition_name(day: date) -> str:
    """The name of a day's history partition; built only from a date, never from input text."""
    return f"market_odds_history_p{day:%Y%m%d}"


def index_name(day: date) -> str:
    """A day's own lookup index: per partition (revision 0008), so a columnar day can be without it."""
    return f"{partition_name(day)}_market_idx"


def partition_ddl(day: date, *, citus: bool = False) -> list[str]:
    """Create the table and its lookup index (on an empty table nothing else sees yet), then attach it:
    ATTACH PARTITION locks the parent in SHARE UPDATE EXCLUSIVE mode, which inserts do not wait for,
    where CREATE TABLE ... PARTITION OF would take ACCESS EXCLUSIVE and stall every writer for as long
    as it waits.

    On Citus, attaching a table to the distributed parent distributes it from inside the transaction
    and ends in "involved in a distributed deadlock"; PARTITION OF creates the partition's shards with
    the parent's (what Citus's own create_time_partitions() runs). Its ACCESS EXCLUSIVE lock is held
    only while the shards are created, and the lock timeout below bounds what writers wait."""
    start = datetime.combine(day, time(), UTC)
    end = start + timedelta(days=1)
    name = partition_name(day)
    bounds = f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
    index = f"CREATE INDEX {index_name(day)} ON {name} {INDEX_COLUMNS}"
    if citus:
        return [f"CREATE TABLE {name} PARTITION OF market_odds_history {bounds}", index]
    return [
        f"CREATE TABLE {name} (LIKE market_odds_history INCLUDING DEFAULTS INCLUDING CONSTRAINTS)",
        index,
        f"ALTER TABLE market_odds_history ATTACH PARTITION {name} {bounds}",
    ]


async def ensure_partition(pool: asyncpg.Pool, day: date) -> None:
    """Creates a day's history partition if it is missing, in its own short transaction under a
    lock timeout (never for the length of a write batch)."""
    async with pool.acquire() as conn:
        if await conn.fetchval(PARTITION_EXISTS, partition_name(day)):
            return
        statements = partition_ddl(day, citus=await citus.installed(conn))
        # A bounded loop, no sleep: the lock timeout is the wait. Hand-written because "created by someone
        # else" ends it as a success, which a retry library would have to be told through a callback.
        for attempt in range(20):
            try:
                async with conn.transaction():
                    await conn.execute("SET LOCAL lock_timeout = '2s'")
                    for statement in statements:
                        await conn.execute(statement)
                logger.info("created history partition %s", partition_name(day))
                return
            except asyncpg.exceptions.LockNotAvailableError:
                logger.warning("partition %s: lock busy, retry %d", partition_name(day), attempt + 1)
            except (asyncpg.exceptions.DuplicateTableError, asyncpg.exceptions.UniqueViolationError):
                return  # created concurrently by another writer
        raise asyncpg.exceptions.LockNotAvailableError(f"could not create {partition_name(day)}")
