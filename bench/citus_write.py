"""Write-path benchmark on Citus beside plain PostgreSQL: the same workload through ingest, rounds interleaved.

Run as `python -m bench.citus_write --citus-url URL [--database-url URL] [--writers 1,2] [--cycles 12]`.
Each setup (plain PostgreSQL or the Citus cluster, with 1 or N writers behind one ingest) has its own database
and services, all started before the first cycle; then every cycle is sent to each setup in turn, the order
rotated per cycle, so the setups share the machine's load alike and Citus ÷ plain is a ratio of paired rounds.
Per round: observations/s, CPU seconds of each node's PostgreSQL processes and of the services (/proc), WAL
bytes per node. Progress goes to stderr; the result, a markdown table for BENCHMARKS.md, goes to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench import nodes, ours
from bench.databases import Server
from bench.results import CycleResult, configure_logging
from bench.workload import CYCLE_INTERVAL, Workload
from bench.write import cpu_model, make_workload, memory_gib, migrated, n, run_and_report

logger = logging.getLogger("bench.citus_write")

IDLE_SECONDS = 10.0
DEFAULT_CITUS_URL = "postgresql://postgres@127.0.0.1:9700/postgres"


@dataclass(slots=True)
class Setup:
    name: str  # e.g. "citus, 2 writers"
    citus: bool
    writers: int
    stack: ours.Stack
    nodes: list[nodes.Node]
    cycles: list[CycleResult] = field(default_factory=list)
    history: list[int] = field(default_factory=list)
    node_cpu: list[list[float]] = field(default_factory=list)  # per cycle, per node
    node_wal: list[list[int]] = field(default_factory=list)
    service_cpu: list[float] = field(default_factory=list)  # writers + ingest, per cycle
    stored: list[tuple[int, int, int]] = field(default_factory=list)  # per node, after the run
    idle_cpu: list[float] = field(default_factory=list)  # per node, CPU s per s with nothing sent
    table_history: int = 0  # count(*) of market_odds_history after the run

    async def idle(self, seconds: float) -> None:
        before = [await node.sample() for node in self.nodes]
        await asyncio.sleep(seconds)
        after = [await node.sample() for node in self.nodes]
        self.idle_cpu = [node.cpu_between(b, a) / seconds for node, b, a in zip(self.nodes, before, after, strict=True)]

    def services_cpu(self) -> float:
        return sum(nodes.process_cpu(s.pid) for s in self.stack.services)

    async def round(self, cycle_number: int, workload: Workload) -> None:
        cycle = workload.cycles[cycle_number - 1]
        before = [await node.sample() for node in self.nodes]
        services_before = self.services_cpu()
        result, history = await self.stack.submit(cycle)
        services_after = self.services_cpu()
        after = [await node.sample() for node in self.nodes]
        self.cycles.append(result)
        self.history.append(history)
        self.node_cpu.append([node.cpu_between(b, a) for node, b, a in zip(self.nodes, before, after, strict=True)])
        self.node_wal.append([a.wal - b.wal for b, a in zip(before, after, strict=True)])
        self.service_cpu.append(services_after - services_before)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.citus_write", description=__doc__)
    p.add_argument("--citus-url", default=DEFAULT_CITUS_URL, help="a Citus coordinator (make citus-up)")
    p.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="the plain PostgreSQL server (default: DATABASE_URL, else 127.0.0.1:5432)",
    )
    p.add_argument("--writers", default="1,2", help="comma-separated writer counts, each a setup on both")
    p.add_argument("--shard-count", type=int, default=32, help="citus.shard_count of the Citus databases")
    p.add_argument("--events", type=int, default=1300)
    p.add_argument("--cycles", type=int, default=12)
    p.add_argument("--change-rate", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=200)
    p.add_argument("--in-flight", type=int, default=4)
    args = p.parse_args(argv)
    args.writer_counts = [int(w) for w in args.writers.split(",") if w.strip()]
    if not args.writer_counts or min(args.writer_counts) < 1 or args.cycles < 2 or args.events < 1:
        p.error("--writers must list positive counts; --cycles at least 2; --events positive")
    if args.cycles * CYCLE_INTERVAL.total_seconds() > 13 * 86400:
        p.error("--cycles: captured_at must stay within ingest's 14-day window")
    return args


# -- report ----------------------------------------------------------------------------------------


def _mb(value: float | None) -> float | None:
    return None if value is None else value / 1e6


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def paired_ratio(a: Setup, b: Setup) -> float | None:
    """Median over the sustained cycles of a's rate ÷ b's rate in the same cycle (rounds next to each other)."""
    return median([x.rate / y.rate for x, y in zip(a.cycles[1:], b.cycles[1:], strict=False) if y.rate])


def report(setups: list[Setup], args: argparse.Namespace, described: dict[str, dict[str, str]], wall: float) -> str:
    def sustained(values: list[float], s: Setup) -> float | None:
        return median(values[1 : len(s.cycles)])

    lines = [
        f"Date: {datetime.now(UTC).date().isoformat()}. Machine: {os.cpu_count()} CPUs ({cpu_model()}), "
        f"{memory_gib():.1f} GiB RAM; every server, service and the client on it.",
        *(
            f"{name}: PostgreSQL {d.get('server_version', '?')}, shared_buffers {d.get('shared_buffers', '?')}, "
            f"fsync {d.get('fsync', '?')}, synchronous_commit {d.get('synchronous_commit', '?')}."
            for name, d in described.items()
        ),
        f"Workload: `python -m bench.citus_write --events {args.events} --cycles {args.cycles} --change-rate "
        f"{args.change_rate} --writers {args.writers} --shard-count {args.shard_count}` (seed {args.seed}), batches "
        f"of {args.batch_size} snapshots, {args.in_flight} in flight; each cycle sent to every setup in turn, "
        f"the order rotated per cycle. Whole run {wall / 60:.1f} min. Sustained = median of cycles 2–N.",
        "",
        "| | " + " | ".join(s.name for s in setups) + " |",
        "|---|" + "---|" * len(setups),
    ]

    def row(label: str, cells: list[str]) -> None:
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    row("observations/s, sustained", [n(median([c.rate for c in s.cycles[1:]])) for s in setups])
    row("observations/s, cycle 1 (every market new)", [n(s.cycles[0].rate) if s.cycles else "—" for s in setups])
    row("seconds per cycle, sustained", [n(median([c.seconds for c in s.cycles[1:]]), 2) for s in setups])
    plain = {s.writers: s for s in setups if not s.citus}
    row(
        "÷ plain with as many writers, paired by cycle",
        [
            "1×" if not s.citus else (n(paired_ratio(s, plain[s.writers]), 2) + "×" if s.writers in plain else "—")
            for s in setups
        ],
    )
    one = {s.citus: s for s in setups if s.writers == 1}
    row(
        "÷ 1 writer on the same database, paired by cycle",
        [n(paired_ratio(s, one[s.citus]), 2) + "×" if s.citus in one else "—" for s in setups],
    )
    observations = median([float(c.observations) for c in setups[0].cycles[1:]]) or 1.0
    for i in range(max(len(s.nodes) for s in setups)):
        row(
            f"CPU s per cycle: node {i + 1} (server; coordinator, worker 1, …)",
            [
                f"{s.nodes[i].name} {n(sustained([c[i] for c in s.node_cpu], s), 2)}" if i < len(s.nodes) else ""
                for s in setups
            ],
        )
    row(
        "idle CPU s per s, per node (before the first cycle)",
        [" / ".join(f"{x:.3f}" for x in s.idle_cpu) for s in setups],
    )
    totals = [sustained([sum(c) for c in s.node_cpu], s) for s in setups]
    row("CPU s per cycle: all PostgreSQL nodes", [n(t, 2) for t in totals])
    row("CPU s per cycle: writers + ingest", [n(sustained(s.service_cpu, s), 2) for s in setups])
    row(
        "PostgreSQL CPU µs per observation, sustained",
        [n(t / observations * 1e6, 1) if t is not None else "—" for t in totals],
    )
    row(
        "WAL per cycle per node, MB (sustained)",
        [
            " / ".join(n(_mb(sustained([float(c[i]) for c in s.node_wal], s)), 1) for i in range(len(s.nodes)))
            + ("" if s.citus else " (server-wide: shared server)")
            for s in setups
        ],
    )
    row("batches resent after UNAVAILABLE", [str(s.stack.resends) for s in setups])
    history_rows = [s.table_history for s in setups]
    row("history rows in the table after the run", [f"{h:,}" for h in history_rows])
    row(
        "history bytes per node after the run, MB",
        [" / ".join(f"{st[0] / 1e6:,.1f}" for st in s.stored) for s in setups],
    )
    row(
        "bytes per history row, all nodes",
        [f"{sum(st[0] for st in s.stored) / h:.1f}" if h else "—" for s, h in zip(setups, history_rows, strict=True)],
    )
    row(
        "odds tables (history, current, latest_snapshots) per node, MB",
        [" / ".join(f"{st[1] / 1e6:,.1f}" for st in s.stored) for s in setups],
    )
    same = len(set(history_rows)) == 1
    lines += [
        "",
        "CPU: a Citus node counts every process of its server (the cluster is ours alone); the shared plain server "
        "counts only the backends of the benchmark's database (its WAL writer and checkpointer are left out, so "
        "plain's CPU is an underestimate). History rows in the table after the run "
        + ("identical in every setup." if same else "**differ between setups**."),
    ]
    return "\n".join(lines)


# -- orchestration ---------------------------------------------------------------------------------


async def run(args: argparse.Namespace, setups: list[Setup], described: dict[str, dict[str, str]]) -> None:
    workload = make_workload(args)
    plain, citus = Server(args.database_url), Server(args.citus_url, shard_count=args.shard_count)
    cluster = await citus.nodes()
    if not cluster:
        raise SystemExit(f"{args.citus_url} is not a Citus coordinator (no citus extension)")
    if await plain.nodes():
        raise SystemExit(f"{args.database_url} is a Citus coordinator; give a plain PostgreSQL server")
    log_dir = Path(tempfile.mkdtemp(prefix="bench-citus-write-"))
    ok = False
    try:
        described["plain"] = await plain.describe()
        described["Citus coordinator"] = await citus.describe()
        for is_citus, server in ((False, plain), (True, citus)):
            for writers in args.writer_counts:
                name = f"{'citus' if is_citus else 'plain'}, {writers} writer{'s' if writers > 1 else ''}"
                dsn = await migrated(server, f"{'citus' if is_citus else 'plain'}_{writers}w")
                stack = ours.Stack(
                    name.replace(", ", "-"), dsn, writers=writers, in_flight=args.in_flight, log_dir=log_dir
                )
                setup = Setup(name, is_citus, writers, stack, await nodes.open_nodes(dsn, cluster if is_citus else []))
                setups.append(setup)
                await stack.start()
        # What a node costs with nothing sent (Citus's maintenance daemon, the services' health checks).
        for setup in setups:
            await setup.idle(IDLE_SECONDS)
        for k in range(1, len(workload.cycles) + 1):
            shift = (k - 1) % len(setups)
            for setup in setups[shift:] + setups[:shift]:
                await setup.round(k, workload)
                c = setup.cycles[-1]
                logger.info(
                    "cycle %d/%d %s: %.2fs = %.0f obs/s, PostgreSQL CPU %s s, services %.2f s",
                    k,
                    len(workload.cycles),
                    setup.name,
                    c.seconds,
                    c.rate,
                    " + ".join(f"{x:.2f}" for x in setup.node_cpu[-1]),
                    setup.service_cpu[-1],
                )
        for setup in setups:
            setup.stored = [await node.stored() for node in setup.nodes]
            setup.table_history = int(await setup.nodes[0].conn.fetchval("SELECT count(*) FROM market_odds_history"))
        ok = True
    finally:
        for setup in setups:
            await setup.stack.stop()
            for node in setup.nodes:
                await node.close()
        await plain.drop_all()
        await citus.drop_all()
        if ok:
            shutil.rmtree(log_dir, ignore_errors=True)
        else:
            logger.error("service logs kept in %s", log_dir)


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    args = parse_args(sys.argv[1:] if argv is None else argv)
    setups: list[Setup] = []
    described: dict[str, dict[str, str]] = {}
    return run_and_report(
        lambda: run(args, setups, described),
        lambda seconds: report(setups, args, described, seconds),
        None,
        "services stopped and databases dropped",
    )


if __name__ == "__main__":
    sys.exit(main())
