"""The retention benchmark's data: two expired days of history with identical rows (COPY), and today's partition."""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import asyncpg

from oddstore import codec
from oddstore.history_partitions import ensure_partition, partition_name
from services.retention.partitions import day_start
from services.writer import repository as writer_repo

logger = logging.getLogger(__name__)

EVENTS = 1300  # production's event count
BOOKMAKERS = ("betpawa", "sportybet", "bet9ja")
MARKET_IDS = tuple(str(3700 + k) for k in range(50))
DISAPPEAR_SHARE = 0.03


@dataclass(frozen=True, slots=True)
class Partition:
    day: date
    rows: int
    total_bytes: int  # heap + indexes + TOAST + maps
    heap_bytes: int
    index_bytes: int

    @property
    def name(self) -> str:
        return partition_name(self.day)


def day_rows(rows: int, seed: int) -> list[tuple[object, ...]]:
    """One day of history rows relative to midnight (captured_at is a timedelta), in time order."""
    rng = random.Random(seed)
    offsets = sorted(rng.random() * 86_400 for _ in range(rows))
    out: list[tuple[object, ...]] = []
    encode = codec.encode
    for offset in offsets:
        market_id = rng.choice(MARKET_IDS)
        line = None if market_id < "3720" else float(rng.randrange(1, 8)) - 0.5
        milli = [rng.randrange(1_010, 9_000, 10) for _ in range(3)]
        outcomes = encode(zip(("1", "X", "2"), milli, (True, True, True), strict=True))
        out.append(
            (
                5_000_000 + rng.randrange(EVENTS),
                timedelta(seconds=offset),
                line,
                rng.random() >= DISAPPEAR_SHARE,
                rng.choice(BOOKMAKERS),
                market_id,
                outcomes,
            )
        )
    return out


async def measure(conn: asyncpg.Connection, day: date) -> Partition:
    name = partition_name(day)  # from a date only
    row = await conn.fetchrow(
        f"""
        SELECT (SELECT count(*) FROM {name}), pg_total_relation_size('{name}'::regclass),
               pg_relation_size('{name}'::regclass), pg_indexes_size('{name}'::regclass)
        """
    )
    return Partition(day, int(row[0]), int(row[1]), int(row[2]), int(row[3]))


async def load(pool: asyncpg.Pool, days: list[date], live_days: list[date], rows: int, seed: int) -> list[Partition]:
    """Creates the partitions of `days` and `live_days`; fills each of `days` with the same `rows` rows (only the
    date differs), then VACUUM ANALYZE: an expired day in production was vacuumed and analyzed long ago."""
    for day in [*days, *live_days]:
        await ensure_partition(pool, day)
    began = time.perf_counter()
    template = day_rows(rows, seed)
    logger.info("generated %d history rows per day in %.1fs", rows, time.perf_counter() - began)
    for day in days:
        t = time.perf_counter()
        midnight: datetime = day_start(day)
        records = [(r[0], midnight + r[1], *r[2:]) for r in template]  # type: ignore[operator]
        async with pool.acquire() as conn:
            await writer_repo.copy_history(conn, records)
        logger.info("%s: %d rows copied in %.1fs", partition_name(day), rows, time.perf_counter() - t)
    async with pool.acquire() as conn:
        for day in days:
            t = time.perf_counter()
            await conn.execute(f"VACUUM (ANALYZE) {partition_name(day)}")
            logger.info("VACUUM (ANALYZE) %s in %.1fs", partition_name(day), time.perf_counter() - t)
        return [await measure(conn, day) for day in days]
