"""Contender (c): the floor, a COPY of every observation into a plain table without any index."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import asyncpg

from bench.results import ContenderResult, CycleResult, Storage
from bench.workload import Workload
from oddstore import codec

logger = logging.getLogger(__name__)

CREATE = """
CREATE TABLE floor_observations (
    event_id    bigint NOT NULL,
    bookmaker   text NOT NULL,
    market_id   text NOT NULL,
    line        double precision,
    outcomes    bytea NOT NULL,
    captured_at timestamptz NOT NULL
)
"""
COLUMNS = ("event_id", "bookmaker", "market_id", "line", "outcomes", "captured_at")


@dataclass(slots=True)
class FloorResult(ContenderResult):
    storage: Storage | None = None


async def run(dsn: str, workload: Workload) -> FloorResult:
    result = FloorResult("floor", planned_cycles=len(workload.cycles))
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(CREATE)
        for cycle in workload.cycles:
            # Records are built before the clock starts: the floor is what PostgreSQL needs to take them.
            records: list[tuple[Any, ...]] = []
            for batch in cycle.snapshot_batches():
                for s in batch:
                    at = s.captured_at.ToDatetime(tzinfo=UTC)
                    for m in s.markets:
                        outcomes = codec.encode((o.name, codec.to_milli(o.odds), o.is_active) for o in m.outcomes)
                        line = m.line if m.HasField("line") else None
                        records.append((s.event.id, s.bookmaker, m.market_id, line, outcomes, at))
            started = time.perf_counter()
            await conn.copy_records_to_table("floor_observations", records=records, columns=COLUMNS)
            elapsed = time.perf_counter() - started
            cr = CycleResult(cycle.number, elapsed, cycle.observations, len(records), f"{len(records):,} rows")
            result.cycles.append(cr)
            logger.info(
                "floor: cycle %d/%d: %d observations in %.2fs = %.0f obs/s",
                cycle.number,
                len(workload.cycles),
                cycle.observations,
                elapsed,
                cr.rate,
            )
        rows = int(await conn.fetchval("SELECT count(*) FROM floor_observations"))
        sizes = await conn.fetchrow(
            "SELECT pg_total_relation_size('floor_observations'), pg_relation_size('floor_observations'),"
            " pg_indexes_size('floor_observations')"
        )
        assert sizes is not None
        result.storage = Storage(rows, int(sizes[0]), int(sizes[1]), int(sizes[2]))
    finally:
        await conn.close()
    return result
