"""Columnar closed days: bytes per stored change and 14-day history reads, heap against columnar, in one run.

Run as `python -m bench.columnar [--rows-per-day 1000000] [--shape production|sparse] [--queries 400]
[--database-url URL] [--shard-count 32]`.
One fresh database (the real migrations) holds 14 days of identical synthetic history (bench.retention_data, 3
bookmakers x 50 markets an event; the first day COPYed, the others copied from it one day later each, then VACUUM
ANALYZE), shaped as production's (--shape production: every market changing ~14.4 times a day by a few ticks, over
as many events as the rows need) or as the earlier records of BENCHMARKS.md (--shape sparse: independent random rows
over 1,300 events, ~0.6 changes per market a day). Then:
(a) all 14 days heap with their index, as the system kept them before: bytes per row of the closed days, and the
p50/p99 of the query service's own 14-day history read (HistoryReader.market_history) of random markets;
(b) the retention service converts the 13 closed days (Retention.convert_closed_days, default settings): the time
each day took (the day's reads and late writes wait that long), then the same bytes and the same reads again.
Targets (issue 12): <= 25 B per stored change for a closed day; the history p99 within 2x of (a).
On a Citus coordinator (URL of the cluster, `make citus-up`) the database is created on every node with
--shard-count shards per table: each day is then split by event, a read of one event goes to one shard per day, and
the bytes are summed over all nodes.
Progress goes to stderr; the result, a markdown table for BENCHMARKS.md, goes to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import asyncpg

from bench import retention_data
from bench.databases import Server
from bench.results import configure_logging
from bench.retention_measure import percentile
from bench.write import cpu_model, memory_gib, run_and_report, server_dsn
from oddstore import migrate
from oddstore.db import create_pool
from services.query import history_repository
from services.query.history_repository import HistoryReader
from services.retention import partition_repository
from services.retention.config import RetentionSettings
from services.retention.retention import Retention

logger = logging.getLogger("bench.columnar")

DAYS = 14
TARGET_BYTES = 25.0
TARGET_RATIO = 2.0
# Markets below 3720 have no line in the generated data (bench.retention_data.day_rows).
LINELESS = tuple(m for m in retention_data.MARKET_IDS if m < "3720")


@dataclass(slots=True)
class Phase:
    name: str
    bytes_per_row: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    points: int = 0

    def p(self, q: float) -> float:
        return percentile(sorted(self.latencies_ms), q)


@dataclass(slots=True)
class Results:
    rows_per_day: int = 0
    heap: Phase = field(default_factory=lambda: Phase("heap + B-tree (before)"))
    columnar: Phase = field(default_factory=lambda: Phase("columnar with its index (after)"))
    convert_seconds: list[float] = field(default_factory=list)
    server: dict[str, str] = field(default_factory=dict)
    workers: int | None = None  # Citus workers; None on plain PostgreSQL
    load: list[float] = field(default_factory=list)  # 1-minute load average before each phase's reads and at the end


async def closed_bytes_per_row(conn: asyncpg.Connection, days: list[date], rows_per_day: int) -> float:
    sizes = {p.day: p.size_bytes for p in await partition_repository.list_partitions(conn)}
    return sum(sizes[d] for d in days) / (rows_per_day * len(days))


async def read_history(pool: asyncpg.Pool, phase: Phase, queries: int, seed: int, events: int) -> None:
    """The same random markets in both phases (same seed); a warm-up first, not counted."""
    reader, rng = HistoryReader(pool), random.Random(seed)
    for n in range(queries + queries // 10):
        event_id = 5_000_000 + rng.randrange(events)
        bookmaker, market_id = rng.choice(retention_data.BOOKMAKERS), rng.choice(LINELESS)
        t = time.perf_counter()
        history = await reader.market_history(event_id, market_id, bookmaker, None, None, None)
        if n >= queries // 10:
            phase.latencies_ms.append((time.perf_counter() - t) * 1000)
            phase.points += len(history.points)


async def run(args: argparse.Namespace, server_url: str, results: Results) -> None:
    server = Server(server_url, shard_count=args.shard_count)
    results.server = await server.describe()
    nodes = await server.nodes()
    results.workers = len(nodes) - 1 if nodes else None
    pool: asyncpg.Pool | None = None
    try:
        dsn = await server.create("columnar")
        await asyncio.to_thread(migrate.upgrade, dsn)
        pool = await create_pool(dsn, min_size=1, max_size=4, server_settings=history_repository.POOL_SETTINGS)
        if not await pool.fetchval(partition_repository.COLUMNAR_AVAILABLE):
            raise RuntimeError("no columnar access method on this server: install citus_columnar (make citus)")
        today = datetime.now(UTC).date()
        days = [today - timedelta(days=k) for k in range(DAYS - 1, -1, -1)]
        closed = days[:-1]
        production = args.shape == "production"
        generate = retention_data.production_day_rows if production else retention_data.day_rows
        events = retention_data.production_events(args.rows_per_day) if production else retention_data.EVENTS
        partitions = await retention_data.load(pool, days, [], args.rows_per_day, args.seed, generate)
        results.rows_per_day = partitions[0].rows
        async with pool.acquire() as conn:
            results.heap.bytes_per_row = await closed_bytes_per_row(conn, closed, results.rows_per_day)
        results.load.append(os.getloadavg()[0])
        await read_history(pool, results.heap, args.queries, args.seed, events)
        logger.info("heap: %.1f B/row, history p99 %.2f ms", results.heap.bytes_per_row, results.heap.p(0.99))

        retention = Retention(pool, RetentionSettings())  # type: ignore[call-arg]
        for day in closed:
            t = time.perf_counter()
            assert await retention.convert_closed_days(limit=1) == [day], f"{day} was not converted"
            results.convert_seconds.append(time.perf_counter() - t)
        async with pool.acquire() as conn:
            results.columnar.bytes_per_row = await closed_bytes_per_row(conn, closed, results.rows_per_day)
        results.load.append(os.getloadavg()[0])
        await read_history(pool, results.columnar, args.queries, args.seed, events)
        results.load.append(os.getloadavg()[0])
        logger.info(
            "columnar: %.1f B/row, history p99 %.2f ms", results.columnar.bytes_per_row, results.columnar.p(0.99)
        )
    finally:
        if pool is not None:
            await pool.close()
        await server.drop_all()


def report(r: Results, args: argparse.Namespace, wall: float) -> str:
    h, c = r.heap, r.columnar
    conv = sorted(r.convert_seconds)
    lines = [
        f"### bench-columnar — {datetime.now(UTC):%Y-%m-%d}",
        "",
        f"Machine: {cpu_model()}, {memory_gib():.0f} GiB, {platform.system()}; PostgreSQL "
        f"{r.server.get('server_version', '?')}"
        + (f", Citus coordinator + {r.workers} workers, {args.shard_count} shards" if r.workers is not None else "")
        + f". {r.rows_per_day:,} rows per day ({args.shape} shape), {DAYS} days, "
        f"{args.queries} history reads per phase (14 days, one market), run in {wall:.0f}s; load average (1 min) "
        f"before the heap reads, before the columnar reads, after: {', '.join(f'{x:.1f}' for x in r.load)}.",
        "",
        "| closed days | bytes per change | history p50 ms | history p99 ms | points read |",
        "|---|---:|---:|---:|---:|",
    ]
    for phase in (h, c):
        if phase.latencies_ms:
            lines.append(
                f"| {phase.name} | {phase.bytes_per_row:.1f} | {phase.p(0.5):.2f} | {phase.p(0.99):.2f} "
                f"| {phase.points:,} |"
            )
    if h.latencies_ms and c.latencies_ms:
        ratio = c.p(0.99) / h.p(0.99)
        lines += [
            "",
            f"- bytes per change, closed day: {c.bytes_per_row:.1f} (target <= {TARGET_BYTES:.0f}: "
            f"{'met' if c.bytes_per_row <= TARGET_BYTES else 'MISSED'}), {h.bytes_per_row / c.bytes_per_row:.1f}x "
            "smaller than heap + B-tree",
            f"- history p99 columnar / heap: {ratio:.2f} (target <= {TARGET_RATIO:.0f}: "
            f"{'met' if ratio <= TARGET_RATIO else 'MISSED'})",
            f"- conversion per day (its reads and late writes wait this long): median {conv[len(conv) // 2]:.1f}s, "
            f"max {conv[-1]:.1f}s",
        ]
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.columnar", description=__doc__)
    p.add_argument("--rows-per-day", type=int, default=1_000_000, help="history rows in each of the 14 days")
    p.add_argument(
        "--shape", choices=("production", "sparse"), default="production", help="how the day's rows are spread"
    )
    p.add_argument("--queries", type=int, default=400, help="history reads per phase")
    p.add_argument("--seed", type=int, default=12)
    p.add_argument("--database-url", help="a PostgreSQL server with citus_columnar (default: DATABASE_URL)")
    p.add_argument("--shard-count", type=int, default=32, help="citus.shard_count of the database on a Citus cluster")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    args = parse_args(sys.argv[1:] if argv is None else argv)
    dsn, embedded = server_dsn(args)
    results = Results()
    return run_and_report(
        lambda: run(args, dsn, results),
        lambda seconds: report(results, args, seconds),
        embedded,
        "the benchmark database dropped",
    )


if __name__ == "__main__":
    sys.exit(main())
