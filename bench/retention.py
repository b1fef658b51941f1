"""Retention benchmark: one day of history dropped by partition (the retention service) against the same rows
deleted 1,000 at a time, each while the real Writer writes concurrently.

Run as `python -m bench.retention [--rows-per-day 6192000] [--database-url URL]` (default: a production day).
One fresh database holds two expired days with identical rows (COPY, then VACUUM ANALYZE) and today's partition,
which a concurrent Writer appends to throughout: a small batch every ~50 ms, every call timed. The same rows are
loaded once more into the old system's table shape (its surrogate id, PRIMARY KEY (id, captured_at), monthly
partitions). In one run:
(a) one day dropped with the retention service's own detach_and_drop (DETACH PARTITION CONCURRENTLY, DROP TABLE,
under a lock timeout with retries);
(b) the same rows deleted the old system's way: ids selected by captured_at through the parent, 1,000 per
autocommitted DELETE, until none remain; the target (drop >= 100x faster) is judged against this;
(c) the other day deleted by the fastest batched delete we could write against our own table (ctid batches
addressed to the partition), shown so the ratio is not read as the drop against a weak baseline only.
For each: wall time, WAL written, and the writer's p50/p99 during the operation's window against a quiet window
of the same length right after it.
Progress goes to stderr; the result, a markdown table for BENCHMARKS.md, goes to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import asyncpg

from bench import retention_data
from bench.databases import Server
from bench.results import configure_logging
from bench.retention_measure import Window, overlapping, percentile, wal_lsn
from bench.retention_writer import ConcurrentWriter, Feed
from bench.write import cpu_model, memory_gib, run_and_report, server_dsn
from oddstore import migrate
from oddstore.db import create_pool
from oddstore.history_partitions import partition_name
from services.retention import partition_repository as retention_repo
from services.retention.config import RetentionSettings
from services.retention.partitions import day_start

logger = logging.getLogger("bench.retention")

# One day of history as production writes it (origin-system.md): ~430,000 market observations per 5-minute cycle,
# 288 cycles a day, ~5 % of markets changing: 6,192,000 rows. (The seed's own sizing, 500 events x 50 markets,
# was 360,000 rows a day: `--rows-per-day 360000`.)
PRODUCTION_ROWS_PER_DAY = 430_000 * 288 * 5 // 100
TARGET_SPEEDUP = 100.0
# The retention service's own defaults, so the drop runs exactly as the service would run it.
LOCK_TIMEOUT: float = RetentionSettings.model_fields["lock_timeout"].default
LOCK_RETRIES: int = RetentionSettings.model_fields["lock_retries"].default
SETTLE_SECONDS = 2.0  # after each CHECKPOINT, before a window opens
EXTRA_SETTINGS = ("autovacuum", "full_page_writes", "wal_compression", "checkpoint_timeout")


def old_delete_sql(batch: int) -> str:
    """The old system's retention statement: ids of rows older than the cutoff, `batch` at a time."""
    table = retention_data.OLD_TABLE
    return f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE captured_at < $1 LIMIT {int(batch)})"


class RetentionServer(Server):
    """Throw-away databases named for this benchmark."""

    def __init__(self, dsn: str) -> None:
        super().__init__(dsn)
        self._prefix = f"bench_retention_{os.getpid()}_{int(time.time())}"


@dataclass(slots=True)
class Operation:
    name: str
    day: date
    rows_before: int = 0
    seconds: float = 0.0
    wal_bytes: int = 0
    batches: int = 0  # DELETE statements run (each its own transaction); 0 for the drop
    batch_seconds: list[float] = field(default_factory=list)
    window: Window | None = None  # writer calls that started while the operation ran, padded to --min-window
    baseline: Window | None = None  # a quiet window of the same length right after
    during: list[float] = field(default_factory=list)  # latencies of writer calls in flight during the operation
    verified: str = ""

    @property
    def writer_wal(self) -> float:
        """The concurrent writer's estimated share of wal_bytes: its WAL rate in the quiet window x duration."""
        return self.baseline.wal_rate * self.seconds if self.baseline else 0.0


@dataclass(slots=True)
class Results:
    server: dict[str, str] = field(default_factory=dict)
    partitions: list[retention_data.Partition] = field(default_factory=list)
    drop: Operation | None = None
    old_delete: Operation | None = None  # the old system's statement on its own table shape
    ctid_delete: Operation | None = None  # the fastest batched delete on our table
    writer: ConcurrentWriter | None = None
    live_rows: int | None = None  # rows in today's partition at the end
    started: datetime = field(default_factory=lambda: datetime.now(UTC))


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.retention", description=__doc__)
    p.add_argument("--rows-per-day", type=int, default=PRODUCTION_ROWS_PER_DAY, help="history rows in each expired day")
    p.add_argument(
        "--database-url",
        default=None,
        help="server to create the throw-away database on (default: DATABASE_URL, else an embedded server)",
    )
    p.add_argument("--delete-batch", type=int, default=1000, help="rows per DELETE of the batched deletes")
    p.add_argument(
        "--min-window", type=float, default=30.0, help="seconds a writer window lasts at least (the drop is short)"
    )
    p.add_argument("--interval", type=float, default=0.05, help="seconds between the concurrent writer's calls")
    p.add_argument("--snapshots", type=int, default=20, help="snapshots per write call (30 markets each)")
    p.add_argument("--events", type=int, default=200, help="events the concurrent writer cycles through")
    p.add_argument("--change-rate", type=float, default=0.05, help="share of markets moving per snapshot")
    p.add_argument("--warm-up", type=float, default=5.0, help="seconds the writer runs before any window")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if min(args.rows_per_day, args.delete_batch, args.snapshots, args.events) < 1:
        p.error("--rows-per-day, --delete-batch, --snapshots and --events must be positive")
    if args.events < args.snapshots:
        p.error("--events must be at least --snapshots (one snapshot per event per call)")
    if args.min_window <= 0 or args.interval <= 0 or args.warm_up < 0 or not 0 <= args.change_rate <= 1:
        p.error("--min-window and --interval must be positive, --warm-up >= 0, --change-rate within 0..1")
    return args


# -- formatting ------------------------------------------------------------------------------------


def ms(seconds: float | None) -> str:
    return "—" if seconds is None else f"{1e3 * seconds:,.1f} ms"


def duration(seconds: float) -> str:
    return f"{1e3 * seconds:,.0f} ms" if seconds < 1 else f"{seconds:,.1f} s"


def mb(value: float) -> str:
    return f"{value / 1e6:,.2f} MB" if abs(value) >= 1e5 else f"{value / 1e3:,.1f} kB"


def verdict(ok: bool | None) -> str:
    return "" if ok is None else (" — **met**" if ok else " — **missed**")


def p99_cell(w: Window | None, seed: int) -> str:
    if w is None or not w.calls:
        return "—"
    ci = w.p99_ci(seed)
    interval = f" (95 % CI {ms(ci[0])}–{ms(ci[1])})" if ci else ""
    return f"{ms(w.p(0.99))}{interval}"


def p99_unchanged(op: Operation | None, seed: int) -> bool | None:
    """Unchanged within noise: the operation window's p99 interval does not lie wholly above its baseline's (a
    window that came out faster than its baseline is not a regression)."""
    if op is None or op.window is None or op.baseline is None:
        return None
    a, b = op.window.p99_ci(seed), op.baseline.p99_ci(seed + 1)
    if a is None or b is None:
        return None
    return a[0] <= b[1]


def yes_no(value: bool | None) -> str:
    return "—" if value is None else ("yes" if value else "no")


def during_cell(op: Operation | None) -> str:
    if op is None or not op.during:
        return "0"
    values = sorted(op.during)
    return f"{len(values):,}: {ms(percentile(values, 0.5))} / {ms(percentile(values, 0.99))} / {ms(values[-1])}"


def window_cell(w: Window | None) -> str:
    return "—" if w is None else f"{w.seconds:,.1f} s, {len(w.calls):,} calls"


def ratio(op: Operation | None, drop: Operation | None) -> float | None:
    """How many times longer `op` took than the partition drop."""
    return op.seconds / drop.seconds if op and drop and op.seconds > 0 and drop.seconds > 0 else None


def report(results: Results, args: argparse.Namespace, wall: float) -> str:
    s, d, w = results.server, results.drop, results.writer
    ops = (d, results.old_delete, results.ctid_delete)
    sizes = ", ".join(
        f"{p.name}: {p.rows:,} rows, {mb(p.total_bytes)} (heap {mb(p.heap_bytes)}, index {mb(p.index_bytes)})"
        for p in results.partitions
    )
    feed_markets = 30
    lines = [
        f"Date: {results.started.date().isoformat()}. Machine: {os.cpu_count()} CPUs ({cpu_model()}), "
        f"{memory_gib():.1f} GiB RAM, {platform.system()} {platform.release()}, Python {platform.python_version()}; "
        f"PostgreSQL {s.get('server_version', '?')} (shared_buffers {s.get('shared_buffers', '?')}, "
        f"synchronous_commit {s.get('synchronous_commit', '?')}, max_wal_size {s.get('max_wal_size', '?')}, "
        f"full_page_writes {s.get('full_page_writes', '?')}, wal_compression {s.get('wal_compression', '?')}, "
        f"autovacuum {s.get('autovacuum', '?')}), benchmark and PostgreSQL on the same machine.",
        "",
        f"Workload: `python -m bench.retention --rows-per-day {args.rows_per_day}` (seed {args.seed}): the same "
        f"day of rows three times (COPY for the first, INSERT … SELECT for the others, then VACUUM (ANALYZE)) "
        f"({sizes or '—'}). Throughout, the real "
        f"`Writer.write` appends to today's partition: {args.snapshots} snapshots × {feed_markets} "
        f"markets per call, {args.change_rate:.0%} of markets moving, one call every {1e3 * args.interval:.0f} ms, "
        f"{args.events} events in turn. CHECKPOINT before each window. Whole run {wall / 60:.1f} min.",
        "",
    ]
    old, fastest = ratio(results.old_delete, d), ratio(results.ctid_delete, d)
    failed = len(w.failures) if w else None

    def row(label: str, cell: Callable[[Operation], str], target: str = "") -> tuple[str, ...]:
        return (label, *("—" if op is None else cell(op) for op in ops), target)

    def batches(op: Operation) -> str:
        if not op.batch_seconds:
            return "—"
        values = sorted(op.batch_seconds)
        return f"{ms(percentile(values, 0.5))} / {ms(percentile(values, 0.99))}"

    def p99_met(op: Operation) -> str:
        ok = p99_unchanged(op, args.seed)
        return yes_no(ok) + (verdict(ok) if op is d else "")

    def failed_cell(op: Operation) -> str:
        return "—" if failed is None or w is None else f"{failed:,} of {len(w.calls):,} calls"

    table = [
        row("rows removed", lambda op: f"{op.rows_before:,}" + (f" in {op.batches:,} DELETEs" if op.batches else "")),
        row("wall time", lambda op: duration(op.seconds)),
        (
            "batched delete ÷ partition drop, wall time",
            "1×",
            (f"{old:,.0f}×" + verdict(old >= TARGET_SPEEDUP)) if old else "—",
            f"{fastest:,.0f}×" if fastest else "—",
            f"drop ≥ {TARGET_SPEEDUP:.0f}× faster than the old way",
        ),
        row("DELETE batch time p50 / p99", batches),
        row("WAL written during the operation (server-wide, pg_wal_lsn_diff)", lambda op: mb(op.wal_bytes)),
        row(
            "… less the concurrent writer's share (its quiet-window WAL rate × duration)",
            lambda op: mb(max(0.0, op.wal_bytes - op.writer_wal)),
        ),
        row(
            "writer window (from the operation's start)",
            lambda op: window_cell(op.window),
            f"≥ {args.min_window:.0f} s",
        ),
        row(
            "writer p50, during / quiet baseline of the same length",
            lambda op: f"{ms(op.window.p(0.5))} / {ms(op.baseline.p(0.5))}" if op.window and op.baseline else "—",
        ),
        row("writer p99, during the operation's window", lambda op: p99_cell(op.window, args.seed)),
        row("writer p99, quiet baseline of the same length", lambda op: p99_cell(op.baseline, args.seed + 1)),
        row(
            "writer p99 unchanged within noise (its 95 % interval not wholly above the baseline's)",
            p99_met,
            "unchanged for the drop",
        ),
        row("writer calls in flight during the operation itself: count, p50 / p99 / max", during_cell),
        row(
            "failed writes, whole run (one writer throughout)",
            failed_cell,
            "0" + verdict(failed == 0 if failed is not None else None),
        ),
    ]
    lines += [
        "| | (a) partition drop: retention service's `detach_and_drop` | (b) old system's batched DELETE on its "
        "table shape, 1,000 rows per commit | (c) fastest batched DELETE on our partition, 1,000 rows per commit "
        "| target |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {' | '.join(r)} |" for r in table]
    notes = [
        "",
        f"Notes: (a) calls `services.retention.partition_repository.detach_and_drop` with its defaults (lock_timeout "
        f"{LOCK_TIMEOUT:g} s, {LOCK_RETRIES} retries): `ALTER TABLE market_odds_history DETACH PARTITION … "
        "CONCURRENTLY`, then `DROP TABLE`, in autocommit. (b) the same rows in the old system's table shape (our "
        f"columns plus its surrogate `id`, `PRIMARY KEY (id, captured_at)`, monthly partitions: assumed from its "
        'partitions "created by hand for three months"), deleted by '
        f"`{old_delete_sql(args.delete_batch)}` "
        "with $1 = midnight after the day, each statement its own transaction, until it deletes nothing; the old "
        'source is not here, so this is our reconstruction of "deleted history in batches of 1,000 rows" '
        "(origin-system.md); its month holds only this day, which favours it (in production the retained days "
        f"follow in the same partition). (c) `DELETE FROM <day's partition> WHERE ctid IN (SELECT ctid FROM <day's "
        f"partition> LIMIT {args.delete_batch})`: addressed to the partition because ctids are per partition. The "
        "writer always writes to our table, so in (b) it does not contend for the table being deleted from as the "
        "old system's writer did. Writer windows start with the operation and last its duration or "
        f"{args.min_window:.0f} s, whichever is longer; the baseline is the same length, right after, with only "
        "the writer running. p99 intervals: 95 % percentile bootstrap over each window's calls.",
    ]
    if w is not None:
        notes.append(
            f"Writer: {len(w.calls):,} calls in the run, {w.history_rows:,} history rows, {w.late:,} started late "
            f"because the previous call overran the {1e3 * args.interval:.0f} ms slot; today's partition holds "
            f"{results.live_rows if results.live_rows is not None else '?'} rows at the end."
        )
    for op in ops:
        if op is not None and op.verified:
            notes.append(f"Check ({op.name}): {op.verified}.")
    if failed:
        notes.append(f"**{failed} writes FAILED**: " + "; ".join(sorted(set(w.failures))[:5] if w else []))
    return "\n".join(lines + notes)


# -- orchestration ---------------------------------------------------------------------------------


async def window(
    name: str, monitor: asyncpg.Connection, writer: ConcurrentWriter, start: float, end: float, lsn0: int
) -> Window:
    """Waits until `end`, then collects the writer's calls that started in [start, end) and the WAL since lsn0."""
    while (left := end - time.perf_counter()) > 0:
        writer.check()
        await asyncio.sleep(min(left, 1.0))
    wal = await wal_lsn(monitor) - lsn0
    # A call is recorded when it finishes, and calls run one after another: once one that started after `end`
    # is recorded, every call that started inside the window is too.
    deadline = time.perf_counter() + 30
    while writer.running and not (writer.calls and writer.calls[-1].start >= end):
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{name}: the concurrent writer's last call has not finished after 30 s")
        await asyncio.sleep(0.01)
    return Window.of(name, start, end, writer.calls, wal)


async def checkpoint(monitor: asyncpg.Connection) -> None:
    # Each window starts right after a checkpoint, so the first change to every page costs the same full-page
    # image in every window: an expired day's pages were last written many checkpoints ago in production.
    t = time.perf_counter()
    await monitor.execute("CHECKPOINT")
    logger.info("CHECKPOINT in %.1fs", time.perf_counter() - t)
    await asyncio.sleep(SETTLE_SECONDS)


async def measure(
    op: Operation,
    action: Callable[[], Awaitable[None]],
    monitor: asyncpg.Connection,
    writer: ConcurrentWriter,
    min_window: float,
) -> None:
    await checkpoint(monitor)
    lsn0 = await wal_lsn(monitor)
    start = time.perf_counter()
    await action()
    end = time.perf_counter()
    op.seconds = end - start
    op.wal_bytes = await wal_lsn(monitor) - lsn0
    logger.info("%s: %s in %.3fs, %s WAL", op.name, op.day, op.seconds, mb(op.wal_bytes))
    length = max(op.seconds, min_window)
    op.window = await window(f"{op.name} window", monitor, writer, start, start + length, lsn0)
    op.during = [c.latency for c in overlapping(writer.calls, start, end)]
    await checkpoint(monitor)
    lsn1 = await wal_lsn(monitor)
    quiet = time.perf_counter()
    logger.info("%s: quiet baseline window of %.1fs", op.name, length)
    op.baseline = await window(f"{op.name} baseline", monitor, writer, quiet, quiet + length, lsn1)


async def delete_batches(
    conn: asyncpg.Connection, op: Operation, sql: str, writer: ConcurrentWriter, *params: object
) -> None:
    """Runs `sql` until it deletes nothing, each statement its own transaction (`conn` is in autocommit)."""
    removed = 0
    while True:
        t = time.perf_counter()
        status = await conn.execute(sql, *params)
        op.batch_seconds.append(time.perf_counter() - t)
        n = int(status.rsplit(" ", 1)[-1])
        if n == 0:
            break
        removed += n
        op.batches += 1
        if op.batches % 50 == 0:
            logger.info("%s: %d rows in %d batches so far", op.name, removed, op.batches)
            writer.check()
    op.verified = f"{removed:,} rows deleted"


async def check_empty(conn: asyncpg.Connection, op: Operation, table: str) -> None:
    left = int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
    if left:
        raise RuntimeError(f"{table}: {left} rows left after the {op.name}")
    op.verified += f", {table} now empty"


async def partition_exists(conn: asyncpg.Connection, day: date) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM pg_class WHERE relname = $1", partition_name(day)))


async def run(args: argparse.Namespace, server_url: str, results: Results) -> None:
    server = RetentionServer(server_url)
    writer: ConcurrentWriter | None = None
    pool: asyncpg.Pool | None = None
    conns: list[asyncpg.Connection] = []
    try:
        results.server = await server.describe()
        dsn = await server.create("history")
        t = time.perf_counter()
        # In a thread: Alembic's env.py runs its own event loop.
        await asyncio.to_thread(migrate.upgrade, dsn)
        logger.info("migrated to head in %.1fs", time.perf_counter() - t)
        pool = await create_pool(dsn, max_size=4)
        monitor: asyncpg.Connection = await asyncpg.connect(dsn)
        conns.append(monitor)
        for name in EXTRA_SETTINGS:
            results.server[name] = str(await monitor.fetchval(f"SHOW {name}"))
        today = datetime.now(UTC).date()
        # Both well past the default 14-day retention; tomorrow exists too, so crossing midnight creates nothing.
        drop_day, delete_day = today - timedelta(days=16), today - timedelta(days=15)
        # Loading a production day takes minutes: no command timeout (the services' pools have one).
        async with asyncpg.create_pool(dsn, min_size=1, max_size=1, command_timeout=None) as loader:
            results.partitions = await retention_data.load(
                loader, [drop_day, delete_day], [today, today + timedelta(days=1)], args.rows_per_day, args.seed
            )
            old_rows = await retention_data.load_old_system(loader, delete_day)
        rows = {p.day: p.rows for p in results.partitions}
        results.partitions.append(old_rows)

        writer = ConcurrentWriter(pool, Feed(args.events, args.snapshots, args.change_rate, args.seed), args.interval)
        results.writer = writer
        writer.start()
        logger.info("concurrent writer started; warming up for %.0fs", args.warm_up)
        await asyncio.sleep(args.warm_up)
        writer.check()
        warm = len(writer.calls)

        op_conn: asyncpg.Connection = await asyncpg.connect(dsn)  # autocommit: DETACH CONCURRENTLY needs it
        conns.append(op_conn)

        drop = results.drop = Operation("partition drop", drop_day, rows_before=rows[drop_day])

        async def drop_partition() -> None:
            # The retention service's own function, as its cleanup run calls it for each expired day.
            if not await retention_repo.detach_and_drop(op_conn, drop_day, False, LOCK_TIMEOUT, LOCK_RETRIES):
                raise RuntimeError(f"{partition_name(drop_day)}: still locked after {LOCK_RETRIES} retries")

        await measure(drop, drop_partition, monitor, writer, args.min_window)
        if await partition_exists(monitor, drop_day):
            raise RuntimeError(f"{partition_name(drop_day)} still exists after the drop")
        drop.verified = f"{partition_name(drop_day)} no longer exists"

        old = results.old_delete = Operation("old system's batched delete", delete_day, rows_before=old_rows.rows)
        cutoff = day_start(delete_day + timedelta(days=1))
        await measure(
            old,
            lambda: delete_batches(op_conn, old, old_delete_sql(args.delete_batch), writer, cutoff),
            monitor,
            writer,
            args.min_window,
        )
        await check_empty(monitor, old, old_rows.name)

        ctid = results.ctid_delete = Operation("ctid batched delete", delete_day, rows_before=rows[delete_day])
        name = partition_name(delete_day)  # from a date only
        sql = f"DELETE FROM {name} WHERE ctid IN (SELECT ctid FROM {name} LIMIT {int(args.delete_batch)})"
        await measure(ctid, lambda: delete_batches(op_conn, ctid, sql, writer), monitor, writer, args.min_window)
        await check_empty(monitor, ctid, name)

        await writer.stop()
        writer.check()
        results.live_rows = int(await monitor.fetchval(f"SELECT count(*) FROM {partition_name(today)}"))
        logger.info(
            "writer: %d calls (%d in warm-up), %d failed, %d history rows; today's partition has %d rows",
            len(writer.calls),
            warm,
            len(writer.failures),
            writer.history_rows,
            results.live_rows,
        )
    finally:
        if writer is not None:
            await writer.stop()
        for conn in conns:
            await conn.close()
        if pool is not None:
            await pool.close()
        await server.drop_all()


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    args = parse_args(sys.argv[1:] if argv is None else argv)
    dsn, embedded = server_dsn(args)
    results = Results()
    code = run_and_report(
        lambda: run(args, dsn, results),
        lambda seconds: report(results, args, seconds),
        embedded,
        "the database was dropped",
    )
    if code == 0 and (results.writer is None or results.writer.failures):
        logger.error("the concurrent writer had failed writes: the benchmark fails")
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
