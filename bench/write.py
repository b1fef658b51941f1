"""Write-path benchmark: this system end to end against the old system's approach and a COPY floor.

Run as `python -m bench.write [--events 1300] [--cycles 20] [--change-rate 0.05] [--database-url URL]`.
Progress goes to stderr; the result, a markdown table for BENCHMARKS.md, goes to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import floor, legacy, ours
from bench.databases import Server
from bench.results import ContenderResult, Storage, configure_logging
from bench.workload import CYCLE_INTERVAL, Workload, generate
from oddstore import migrate
from oddstore.embedded_pg import EmbeddedPostgres

logger = logging.getLogger("bench.write")

CONTENDERS = ("ours", "old", "floor")
EMBEDDED_DIR = Path(".data/bench-pg")

# The seed's sizing of a day: 500 events x 50 markets x 288 scrapes, 5 % of markets changing per scrape.
REF_OBSERVATIONS_PER_DAY = 500 * 50 * 288
REF_CHANGES_PER_DAY = REF_OBSERVATIONS_PER_DAY * 5 // 100
REF_SNAPSHOTS_PER_DAY = 500 * 288  # one snapshot row per event and scrape

TARGET_RATE = 50_000.0
TARGET_RATIO_OLD = 20.0
TARGET_BYTES_PER_CHANGE = 120.0
TARGET_RSS_MB = 500.0
TARGET_TRACKED = 430_000


@dataclass(slots=True)
class Results:
    ours: ours.OursResult | None = None
    old: legacy.LegacyResult | None = None
    floor: floor.FloorResult | None = None


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.write", description=__doc__)
    p.add_argument("--events", type=int, default=1300, help="events per cycle (production: ~1,300)")
    p.add_argument("--cycles", type=int, default=20, help="scrape cycles, 5 simulated minutes apart")
    p.add_argument("--change-rate", type=float, default=0.05, help="share of markets whose odds move per cycle")
    p.add_argument(
        "--database-url",
        default=None,
        help="server to create the throw-away databases on (default: DATABASE_URL, else an embedded server)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=200, help="snapshots per SubmitSnapshots call")
    p.add_argument("--in-flight", type=int, default=4, help="SubmitSnapshots calls in flight")
    p.add_argument(
        "--baseline-cycles", type=int, default=3, help="cycles the old approach runs (it is slow; its rate is compared)"
    )
    p.add_argument(
        "--contenders",
        default=",".join(CONTENDERS),
        help="comma-separated subset of " + ",".join(CONTENDERS),
    )
    args = p.parse_args(argv)
    chosen = [c.strip() for c in args.contenders.split(",") if c.strip()]
    unknown = sorted(set(chosen) - set(CONTENDERS))
    if unknown or not chosen:
        p.error(f"--contenders: unknown {', '.join(unknown) or '(none given)'}")
    args.contenders = chosen
    if args.events < 1 or args.cycles < 1 or args.batch_size < 1 or args.in_flight < 1 or args.baseline_cycles < 1:
        p.error("--events, --cycles, --batch-size, --in-flight and --baseline-cycles must be positive")
    if args.cycles * CYCLE_INTERVAL.total_seconds() > 13 * 86400:
        p.error("--cycles: captured_at must stay within ingest's 14-day window")
    return args


# -- machine ---------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return 0.0


# -- formatting ------------------------------------------------------------------------------------


def n(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def mb(value: float | None) -> str:
    return "—" if value is None else f"{value / 1e6:,.1f} MB"


def verdict(ok: bool | None) -> str:
    return "" if ok is None else (" — **met**" if ok else " — **missed**")


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def rows_cell(result: ContenderResult | None, pick: Callable[[ContenderResult], str]) -> str:
    return "not run" if result is None or not result.cycles else pick(result)


def split(storage: Storage | None) -> str:
    if storage is None or not storage.rows:
        return "—"
    other = (storage.total_bytes - storage.heap_bytes - storage.index_bytes) / storage.rows
    return f"heap {storage.heap_per_row:.1f} + index {storage.index_per_row:.1f} + other {other:.1f}"


def report(results: Results, workload: Workload, args: argparse.Namespace, server: dict[str, str], wall: float) -> str:
    o, old, fl = results.ours, results.old, results.floor
    first = workload.cycles[0]
    later = workload.cycles[1:]
    obs_later = sorted(c.observations for c in later)
    lines = [
        f"Date: {datetime.now(UTC).date().isoformat()}. Machine: {os.cpu_count()} CPUs ({cpu_model()}), "
        f"{memory_gib():.1f} GiB RAM, {platform.system()} {platform.release()}, Python {platform.python_version()}; "
        f"PostgreSQL {server.get('server_version', '?')} (shared_buffers {server.get('shared_buffers', '?')}, "
        f"synchronous_commit {server.get('synchronous_commit', '?')}, max_wal_size {server.get('max_wal_size', '?')}), "
        "services, benchmark client and PostgreSQL on the same machine.",
        "",
        f"Workload: `python -m bench.write --events {args.events} --cycles {args.cycles} "
        f"--change-rate {args.change_rate}` (seed {args.seed}): {first.snapshots:,} snapshots and "
        f"{first.observations:,} market observations per cycle"
        + (f" ({obs_later[0]:,}–{obs_later[-1]:,} after cycle 1)" if obs_later else "")
        + f", identical for every contender; ours sent in batches of {args.batch_size} snapshots, "
        f"{args.in_flight} in flight. Whole run {wall / 60:.1f} min.",
        "",
    ]
    o_rate = o.sustained_rate() if o else None
    old_rate = old.sustained_rate() if old else None
    fl_rate = fl.sustained_rate() if fl else None
    vs_old = ratio(o_rate, old_rate)

    def cycles_cell(r: ContenderResult | None) -> str:
        if r is None:
            return "not run"
        note = f"{len(r.cycles)} of {args.cycles}" if len(r.cycles) < args.cycles else str(len(r.cycles))
        return note

    ours_bytes = o.storage.per_row if o and o.storage else None
    marginal = o.storage.minus(o.storage_after_first) if o and o.storage and o.storage_after_first else None
    old_mo = old.market_odds if old else None
    old_sn = old.snapshots if old else None
    old_growth = (
        REF_OBSERVATIONS_PER_DAY * old_mo.per_row + REF_SNAPSHOTS_PER_DAY * old_sn.per_row
        if old_mo and old_sn and old_mo.rows and old_sn.rows
        else None
    )
    rss_mb = o.writer_peak_rss_kib * 1024 / 1e6 if o else None
    rss_ok = rss_mb <= TARGET_RSS_MB and o.tracked_markets >= TARGET_TRACKED if o and rss_mb is not None else None
    table: list[tuple[str, str, str, str, str]] = [
        (
            "observations/s, sustained (median of cycles 2–N)",
            n(o_rate) + verdict(o_rate >= TARGET_RATE if o_rate is not None else None),
            n(old_rate),
            n(fl_rate),
            f"≥ {TARGET_RATE:,.0f}",
        ),
        (
            "observations/s, cycle 1 (every market new)",
            n(o.first.rate if o and o.first else None),
            n(old.first.rate if old and old.first else None),
            n(fl.first.rate if fl and fl.first else None),
            "",
        ),
        (
            "seconds per cycle, sustained (median)",
            n(_median_seconds(o), 1),
            n(_median_seconds(old), 1),
            n(_median_seconds(fl), 1),
            "5 min scrape interval",
        ),
        ("cycles measured", cycles_cell(o), cycles_cell(old), cycles_cell(fl), ""),
        (
            "ours ÷ this, sustained observations/s",
            "1×",
            n(vs_old, 1) + "×" + verdict(vs_old >= TARGET_RATIO_OLD if vs_old is not None else None),
            n(ratio(o_rate, fl_rate), 2) + "×",
            f"≥ {TARGET_RATIO_OLD:.0f}× old",
        ),
        (
            "rows written per cycle, sustained (median)",
            rows_cell(o, lambda r: n(r.sustained_rows()) + f" ({_median_detail(r)})"),
            rows_cell(old, lambda r: n(r.sustained_rows()) + f" ({_median_detail(r)})"),
            rows_cell(fl, lambda r: n(r.sustained_rows())),
            "",
        ),
        (
            "rows written, cycle 1",
            rows_cell(o, lambda r: f"{r.cycles[0].rows:,} ({r.cycles[0].detail})"),
            rows_cell(old, lambda r: f"{r.cycles[0].rows:,} ({r.cycles[0].detail})"),
            rows_cell(fl, lambda r: f"{r.cycles[0].rows:,}"),
            "",
        ),
        (
            "bytes per stored row, all-in",
            (
                f"{ours_bytes:.1f} per history row ({o.storage.rows:,} rows, {o.partitions} partition(s), "
                f"{mb(o.storage.total_bytes)})" + verdict(ours_bytes <= TARGET_BYTES_PER_CHANGE)
                if o and o.storage and ours_bytes is not None
                else "—"
            ),
            (
                f"{old.per_market_row_all_in:.1f} per market_odds row, snapshots included "
                f"({old_mo.rows:,} rows, {mb(old_mo.total_bytes + old_sn.total_bytes)})"
                if old and old_mo and old_sn
                else "—"
            ),
            (
                f"{fl.storage.per_row:.1f} per row ({fl.storage.rows:,} rows, {mb(fl.storage.total_bytes)})"
                if fl and fl.storage
                else "—"
            ),
            f"≤ {TARGET_BYTES_PER_CHANGE:.0f} per stored change",
        ),
        (
            "… of which heap / index / other (FSM, VM, TOAST)",
            split(o.storage if o else None),
            (
                f"market_odds {split(old_mo)}; odds_snapshots {old_sn.per_row:.1f} per snapshot row"
                if old_mo and old_sn
                else "—"
            ),
            split(fl.storage if fl else None),
            "",
        ),
        (
            "bytes per change row, cycles 2–N only (marginal)",
            f"{marginal.per_row:.1f} ({split(marginal)})" if marginal and marginal.rows else "—",
            "—",
            "—",
            "",
        ),
        (
            "growth per simulated day at the seed's reference rate",
            (
                f"{mb(REF_CHANGES_PER_DAY * ours_bytes)} ({REF_CHANGES_PER_DAY:,} history rows × {ours_bytes:.1f} B)"
                if ours_bytes is not None
                else "—"
            ),
            (
                f"{mb(old_growth)} ({REF_OBSERVATIONS_PER_DAY:,} market_odds rows × {old_mo.per_row:.1f} B + "
                f"{REF_SNAPSHOTS_PER_DAY:,} snapshot rows × {old_sn.per_row:.1f} B)"
                if old_growth is not None and old_mo and old_sn
                else "—"
            ),
            "—",
            "seed: < 200 MB/day",
        ),
        (
            "writer peak RSS (VmHWM)",
            (f"{rss_mb:,.0f} MB" + verdict(rss_ok) if o and rss_mb is not None else "—"),
            "—",
            "—",
            f"≤ {TARGET_RSS_MB:.0f} MB with {TARGET_TRACKED:,} markets",
        ),
        ("markets tracked by the writer", n(o.tracked_markets) if o else "—", "—", "—", f"{TARGET_TRACKED:,}"),
        ("ingest peak RSS (VmHWM)", f"{o.ingest_peak_rss_kib * 1024 / 1e6:,.0f} MB" if o else "—", "—", "—", ""),
    ]
    header = (
        "| | ours: ingest → writer over gRPC, end to end | old approach (v2.9 write path) "
        "| floor: COPY, no index | target |"
    )
    lines += [header, "|---|---|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in table]
    lines += [
        "",
        "Notes: observations/s = market observations acknowledged (ours) or stored (old, floor) per second of wall "
        "time from the first send to the last commit of a cycle. Ours includes protobuf decoding, validation, "
        "routing, change detection and event metadata in the two service processes; the old approach includes "
        "building its rows and JSON from in-memory snapshots; the floor's records are built before its clock starts. "
        "Bytes per row are after the run; the current tables (bounded by live markets) are not counted for either. "
        f"Old growth assumes one snapshot row per event and scrape ({REF_SNAPSHOTS_PER_DAY:,}/day).",
    ]
    if old is not None and len(old.cycles) < args.cycles:
        lines.append(
            f"The old approach ran {len(old.cycles)} of {args.cycles} cycles (--baseline-cycles): "
            "its per-cycle throughput is what is compared."
        )
    if o is not None and o.counted_history_rows != sum(o.history_rows):
        lines.append(
            f"Warning: {o.counted_history_rows:,} history rows in the table, "
            f"{sum(o.history_rows):,} from the acknowledged change counts."
        )
    return "\n".join(lines)


def _median_seconds(result: ContenderResult | None) -> float | None:
    if result is None or len(result.cycles) < 2:
        return None
    return statistics.median(c.seconds for c in result.sustained)


def _median_detail(result: ContenderResult) -> str:
    later = sorted(result.sustained, key=lambda c: c.rows)
    return later[len(later) // 2].detail if later else "—"


# -- orchestration ---------------------------------------------------------------------------------


async def migrated(server: Server, role: str) -> str:
    dsn = await server.create(role)
    began = time.perf_counter()
    # In a thread: Alembic's env.py runs its own event loop.
    await asyncio.to_thread(migrate.upgrade, dsn)
    logger.info("migrated %s to head in %.1fs", role, time.perf_counter() - began)
    return dsn


def make_workload(args: argparse.Namespace) -> Workload:
    """Every cycle generated and serialized before any timing; the last lands a minute before now (ingest
    refuses scrape times in the future)."""
    started_at = datetime.now(UTC).replace(microsecond=0)
    start = started_at - args.cycles * CYCLE_INTERVAL - (CYCLE_INTERVAL / 5)
    logger.info("generating %d cycles of %d events before any timing", args.cycles, args.events)
    began = time.perf_counter()
    workload = generate(
        events=args.events,
        cycles=args.cycles,
        change_rate=args.change_rate,
        seed=args.seed,
        batch_size=args.batch_size,
        start=start,
    )
    logger.info(
        "workload ready in %.0fs: %.0f MB serialized",
        time.perf_counter() - began,
        sum(c.payload_bytes for c in workload.cycles) / 1e6,
    )
    return workload


async def run(args: argparse.Namespace, server_dsn: str) -> tuple[Results, Workload, dict[str, str]]:
    workload = make_workload(args)
    server = Server(server_dsn)
    results = Results()
    log_dir = Path(tempfile.mkdtemp(prefix="bench-write-"))
    ok = False
    try:
        described = await server.describe()
        for contender in args.contenders:
            dsn = await migrated(server, contender)
            logger.info("contender %s", contender)
            if contender == "ours":
                results.ours = await ours.run(dsn, workload, in_flight=args.in_flight, log_dir=log_dir)
            elif contender == "old":
                results.old = await legacy.run(dsn, workload, cycles=min(args.baseline_cycles, args.cycles))
            else:
                results.floor = await floor.run(dsn, workload)
        ok = True
    finally:
        await server.drop_all()
        if ok:
            shutil.rmtree(log_dir, ignore_errors=True)
        else:
            logger.error("service logs kept in %s", log_dir)
    return results, workload, described


def server_dsn(args: argparse.Namespace) -> tuple[str, EmbeddedPostgres | None]:
    """The server to benchmark on, and the embedded server if we started it (to stop it again)."""
    url: str | None = args.database_url or os.environ.get("DATABASE_URL")
    if url:
        return url, None
    embedded = EmbeddedPostgres(EMBEDDED_DIR)
    was_running = embedded.is_running()
    dsn = embedded.start()
    return dsn, None if was_running else embedded


def run_and_report(
    run: Callable[[], Coroutine[Any, Any, None]],
    report: Callable[[float], str],
    embedded: EmbeddedPostgres | None,
    cleaned: str,
) -> int:
    """The shell of a benchmark program: runs it, prints its report even after a failure (what was
    measured before it), stops an embedded server it started; 0, 1 on failure, 130 on Ctrl-C."""
    began = time.perf_counter()
    failure: BaseException | None = None
    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        logger.error("interrupted: %s", cleaned)
        return 130
    except Exception as exc:  # report what was measured before the failure, then fail
        logger.exception("benchmark failed: %s", cleaned)
        failure = exc
    finally:
        if embedded is not None:
            embedded.stop()
    print(report(time.perf_counter() - began))
    if failure is not None:
        first_line = str(failure).partition("\n")[0]  # empty for e.g. a bare TimeoutError
        print(f"\n**The run failed before finishing**: {type(failure).__name__}: {first_line}")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    args = parse_args(sys.argv[1:] if argv is None else argv)
    dsn, embedded = server_dsn(args)
    began = time.perf_counter()
    try:
        results, workload, described = asyncio.run(run(args, dsn))
    except KeyboardInterrupt:
        logger.error("interrupted: services stopped and databases dropped")
        return 130
    finally:
        if embedded is not None:
            embedded.stop()
    print(report(results, workload, args, described, time.perf_counter() - began))
    return 0


if __name__ == "__main__":
    sys.exit(main())
