"""Read-path benchmark: the gateway (HTTP → query service over gRPC) against direct SQL on the same database.

Run as `python -m bench.read [--events 1300] [--days 14] [--requests 500] [--database-url URL]`.
One fresh database holds the current state of `--events` events at three bookmakers (written through
the real Writer) and `--days` daily partitions of history at the seed's reference rate (COPY). Then,
in one run: event list page, event detail, history of one market over the whole period and point in
time, each through the gateway and as direct SQL (the floor), p50/p99 and requests/s; the query
service's warm-up; and freshness, from ingest's acknowledgement of a change to the gateway showing it.
Progress goes to stderr; the result, a markdown table for BENCHMARKS.md, goes to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench import read_data, read_measure
from bench.databases import Server
from bench.http_client import HttpClient
from bench.read_measure import Floor, Freshness, Gateway, QueryDirect, Timing
from bench.results import configure_logging
from bench.services import ServiceProcess, free_port, scrape_gauge, wait_serving
from bench.write import cpu_model, memory_gib, run_and_report, server_dsn
from oddstore import migrate
from oddstore.grpc_server import client_options

logger = logging.getLogger("bench.read")

TARGET_DETAIL_P50_MS = 5.0
TARGET_HISTORY_P99_MS = 25.0
TARGET_FRESHNESS_P99_MS = 100.0
TARGET_WARM_UP_S = 3.0
OLD_LIST_P50_MS = 24.0  # the old system's cached event list
OLD_DETAIL_P50_MS = 13.0

READS = ("event_list", "event_detail", "history", "event_at")
COPY_ROUNDS = 3
# The issue-14 targets, as ratios within one run: gateway ÷ direct-SQL floor, warm-up ÷ COPY floor.
TARGET_RATIOS = {"event_list": (1.5, 1.5), "event_detail": (1.5, 1.5), "history": (None, 2.0), "event_at": (1.5, 1.5)}
TARGET_WARM_UP_RATIO = 2.0


class ReadServer(Server):
    """Throw-away databases named for this benchmark."""

    def __init__(self, dsn: str, *, shard_count: int | None = None) -> None:
        super().__init__(dsn, shard_count=shard_count)
        self._prefix = f"bench_read_{os.getpid()}_{int(time.time())}"


@dataclass(slots=True)
class Results:
    data: read_data.DataSet | None = None
    gateway: dict[str, Timing] = field(default_factory=dict)
    floor: dict[str, Timing] = field(default_factory=dict)
    query: dict[str, Timing] = field(default_factory=dict)  # the query service's gRPC API, no gateway
    bare: Timing | None = None  # the gateway answering a 404 without calling anything
    warm_up_seconds: float | None = None  # process start -> health SERVING
    warm_up_metric: float | None = None  # the service's own figure (cache load only)
    loaded_seconds: float | None = None  # process start -> cache complete (reads served from memory)
    loading_reads: list[float] = field(default_factory=list)  # event details answered while the cache loaded
    warm_up_log: list[str] = field(default_factory=list)
    copy_floor_seconds: float | None = None  # `COPY market_odds_current TO STDOUT`, best of COPY_ROUNDS
    query_rss_kib: int = 0
    freshness: Freshness | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    server: dict[str, str] = field(default_factory=dict)
    load_seconds: float = 0.0


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.read", description=__doc__)
    p.add_argument("--events", type=int, default=1300, help="events in the current state (production: ~1,300)")
    p.add_argument("--days", type=int, default=14, help="days of history (daily partitions)")
    p.add_argument("--requests", type=int, default=500, help="requests per read, sequential and again concurrent")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight for the concurrent figure")
    p.add_argument("--freshness-samples", type=int, default=50)
    p.add_argument(
        "--database-url",
        default=None,
        help="server to create the throw-away database on (default: DATABASE_URL, else an embedded server)",
    )
    p.add_argument(
        "--citus-url",
        default=None,
        help="a Citus coordinator: the whole benchmark again on it in the same run, and a Citus ÷ plain table",
    )
    p.add_argument("--shard-count", type=int, default=32, help="citus.shard_count of the Citus database")
    p.add_argument("--rounds", type=int, default=2, help="with --citus-url: rounds of both, alternating which is first")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if min(args.events, args.days, args.requests, args.concurrency, args.freshness_samples) < 1:
        p.error("--events, --days, --requests, --concurrency and --freshness-samples must be positive")
    if args.days > 14:
        p.error("--days: ingest and retention keep 14 days")
    return args


# -- formatting ------------------------------------------------------------------------------------


def ms(seconds: float | None) -> str:
    return "—" if seconds is None else f"{1e3 * seconds:,.1f} ms"


def rate(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def verdict(ok: bool | None) -> str:
    return "" if ok is None else (" — **met**" if ok else " — **missed**")


def latency_cell(t: Timing | None) -> str:
    return "not run" if t is None else f"{ms(t.p50)} / {ms(t.p99)}"


def rate_cell(t: Timing | None) -> str:
    return "not run" if t is None else f"{rate(t.sequential_rate)} / {rate(t.concurrent_rate)}"


def report(results: Results, args: argparse.Namespace, wall: float) -> str:
    d, server, load = results.data, results.server, results.load_seconds
    g, f = results.gateway, results.floor
    lines = [
        f"Date: {datetime.now(UTC).date().isoformat()}. Machine: {os.cpu_count()} CPUs ({cpu_model()}), "
        f"{memory_gib():.1f} GiB RAM, {platform.system()} {platform.release()}, Python {platform.python_version()}; "
        f"PostgreSQL {server.get('server_version', '?')} (shared_buffers {server.get('shared_buffers', '?')}); "
        "services, benchmark client and PostgreSQL on the same machine.",
        "",
    ]
    if d is not None:
        lines += [
            f"Data: `python -m bench.read --events {args.events} --days {args.days} --requests {args.requests}` "
            f"(seed {args.seed}): {len(d.events):,} events, {d.current_rows:,} market_odds_current rows written "
            f"through the Writer (captured {d.captured_at:%H:%M} UTC); {d.history_rows:,} history rows by COPY "
            f"over {d.partitions} daily partitions from {d.history_start:%Y-%m-%d} at the seed's reference rate "
            f"({read_data.REF_HISTORY_ROWS_PER_DAY:,} rows/day), plus the writer's {d.writer_history_rows:,} rows "
            f"of the current state; history {d.history_bytes / 1e6:,.0f} MB; then VACUUM (ANALYZE). "
            f"Loaded in {load:.0f} s; whole run {wall / 60:.1f} min.",
            "",
        ]
    fr = results.freshness

    def target(read: str) -> str:
        return {
            "event_detail": f"p50 ≤ {TARGET_DETAIL_P50_MS:.0f} ms",
            "history": f"p99 ≤ {TARGET_HISTORY_P99_MS:.0f} ms",
        }.get(read, "")

    def ok(read: str) -> bool | None:
        t = g.get(read)
        if t is None:
            return None
        if read == "event_detail" and t.p50 is not None:
            return 1e3 * t.p50 <= TARGET_DETAIL_P50_MS
        if read == "history" and t.p99 is not None:
            return 1e3 * t.p99 <= TARGET_HISTORY_P99_MS
        return None

    pages = -(-len(d.events) // read_measure.PAGE_SIZE) if d else "?"
    names = {
        "event_list": f"event list page ({read_measure.PAGE_SIZE} events, pages 1–{pages})",
        "event_detail": "event detail (all markets, 3 bookmakers)",
        "history": f"odds history of one market, {args.days} days",
        "event_at": "point in time (every market of an event at an instant)",
    }
    old = {"event_list": f"p50 {OLD_LIST_P50_MS:.0f} ms (cached)", "event_detail": f"p50 {OLD_DETAIL_P50_MS:.0f} ms"}
    qd = results.query
    rows: list[tuple[str, ...]] = []
    for read in READS:
        gt, qt, ft = g.get(read), qd.get(read), f.get(read)
        rows.append(
            (
                f"{names[read]}: p50 / p99",
                latency_cell(gt) + verdict(ok(read)),
                latency_cell(qt),
                latency_cell(ft),
                target(read),
                old.get(read, "—"),
            )
        )
        rows.append(
            (
                f"… req/s: 1 client sequential / {args.concurrency} in flight",
                rate_cell(gt),
                rate_cell(qt),
                rate_cell(ft),
                "",
                "",
            )
        )
    if results.bare is not None:
        rows.append(
            (
                "gateway alone (an out-of-scope route answered 404 at once): p50 / p99; req/s",
                f"{latency_cell(results.bare)}; {rate_cell(results.bare)}",
                "—",
                "—",
                "",
                "",
            )
        )
    warm = results.warm_up_seconds
    rows.append(
        (
            "query service warm-up: process start → health SERVING",
            (
                f"{warm:.2f} s"
                + verdict(warm <= TARGET_WARM_UP_S)
                + (f" (cache load {results.warm_up_metric:.2f} s)" if results.warm_up_metric is not None else "")
                + (f", cache complete at {results.loaded_seconds:.2f} s" if results.loaded_seconds is not None else "")
                if warm is not None
                else "not run"
            ),
            "(same process)",
            "—",
            f"≤ {TARGET_WARM_UP_S:.0f} s for 430,000 markets",
            "",
        )
    )
    if fr is not None and fr.samples:
        p99 = fr.q(fr.samples, 0.99)
        rows.append(
            (
                f"freshness: ingest ack → visible in event detail, p50 / p99 / max ({len(fr.samples)} samples)",
                f"{ms(fr.q(fr.samples, 0.5))} / {ms(p99)} / {ms(max(fr.samples))}"
                + verdict(p99 is not None and 1e3 * p99 <= TARGET_FRESHNESS_P99_MS)
                + (f", {fr.timeouts} not seen within {read_measure.FRESH_TIMEOUT:.0f} s" if fr.timeouts else ""),
                "—",
                "—",
                f"p99 ≤ {TARGET_FRESHNESS_P99_MS:.0f} ms",
                "",
            )
        )
    else:
        rows.append(
            ("freshness: ingest ack → visible", "not run", "—", "—", f"p99 ≤ {TARGET_FRESHNESS_P99_MS:.0f} ms", "")
        )
    lines += [
        "| | ours: gateway (HTTP) → query (gRPC) | query service alone (gRPC, no gateway) "
        "| floor: the same reads as direct SQL (asyncpg) | target | old system |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {' | '.join(r)} |" for r in rows]
    lines += ["", *ratio_table(results)]
    notes = [
        "",
        f"Latency is per request from one client on a kept-alive connection ({args.requests} requests per read, "
        f"after {read_measure.WARM_CALLS} untimed), the three columns interleaved request by request with the order "
        "rotating, so that each is the first to read a request's pages for a third of them; req/s is the sequential "
        f"latencies' sum and then the same request list again with {args.concurrency} in flight "
        "(bench.http_client against the gateway: kept-alive HTTP/1.1 connections, "
        f"one per request in flight, parsed by httptools; an asyncpg pool of "
        f"{args.concurrency} for the floor). The client, the gateway, the query service and PostgreSQL share "
        "the machine's CPUs, so the concurrent figures measure the machine as much as the services. "
        "Gateway times run to the last byte of the body (JSON not parsed); gRPC times to the response bytes "
        "(not decoded); the floor fetches the rows the "
        "service needs (legacy tables included, empty here), without decoding outcomes, margins or serialising.",
    ]
    sizes = []
    for read in READS:
        gt, qt, ft = g.get(read), results.query.get(read), f.get(read)
        if gt and qt and ft and None not in (gt.median_size, qt.median_size, ft.median_size):
            assert gt.median_size is not None and qt.median_size is not None
            sizes.append(
                f"{read.replace('_', ' ')} {gt.median_size / 1e3:,.1f} kB of JSON, "
                f"{qt.median_size / 1e3:,.1f} kB from the query service (contract JSON), {ft.median_size:,.0f} rows"
            )
    if sizes:
        notes.append("Median response: " + "; ".join(sizes) + ".")
    if d is not None:
        notes.append(
            f"History requests are for the markets the list shows inline (1X2, O/U 2.5, BTTS, double chance; "
            f"{len(d.inline):,} of them), each changing ~{read_data.MAIN_CHANGES_PER_DAY:.1f} times a day as at "
            "the seed's 5 % per 5-minute scrape; about 3 % of changes are disappearances (available=false). "
            "Point-in-time instants are uniform over the history period (at least 1 h back)."
        )
    if results.facts:
        fa = results.facts
        notes.append(
            f"Spot check before timing: one history read returned {fa.get('history_points', '?')} points for "
            f"{fa.get('history_rows', '?')} history rows; one event detail {fa.get('detail_markets', '?')} markets; "
            f"one point-in-time read {fa.get('at_markets', '?')} markets."
        )
    if fr is not None and fr.samples:
        notes.append(
            "Freshness: per sample, one event's full Betpawa snapshot with the 1X2 home price moved is submitted "
            "to ingest (real `services.ingest.main` → `services.writer.main`), and from the acknowledgement the "
            "gateway's event detail is polled back to back until the new price shows; the figure is the end of "
            f"the first poll that showed it (an upper bound; one poll took {ms(fr.q(fr.polls, 0.5))} at p50; the "
            f"lower bound, start of the last poll that did not, is p50 {ms(fr.q(fr.lower, 0.5))}, "
            f"p99 {ms(fr.q(fr.lower, 0.99))}). Ingest's acknowledgement itself (submit → ack, after the writer's "
            f"commit) took p50 {ms(fr.q(fr.acks, 0.5))}, p99 {ms(fr.q(fr.acks, 0.99))}."
            + (f" With {len(fr.samples)} samples, p99 is the slowest one." if len(fr.samples) < 100 else "")
        )
        first = ["not seen" if w is None else f"{ms(w[0])} (not before {ms(w[1])}; ack {ms(w[2])})" for w in fr.warm]
        if first:
            notes.append(
                f"The first {len(first)} changes after writer and ingest started were sent untimed, as the reads "
                f"get {read_measure.WARM_CALLS} untimed calls; they became visible within: " + ", ".join(first) + "."
            )
    if results.loading_reads:
        during = sorted(results.loading_reads)
        notes.append(
            f"While the cache loaded, the query service answered {len(during)} event details (GetEventJson, from "
            f"PostgreSQL) in {ms(during[len(during) // 2])} p50, {ms(during[-1])} max."
        )
    if results.warm_up_log:
        notes.append("Query service log up to a complete cache (started right after the load, PostgreSQL warm):")
        notes += [f"    {line}" for line in results.warm_up_log]
    if results.copy_floor_seconds is not None:
        notes.append(
            f"Warm-up floor: `COPY market_odds_current TO STDOUT` (text, into a sink that keeps nothing), best of "
            f"{COPY_ROUNDS}, just before the query service starts."
        )
    if results.query_rss_kib:
        notes.append(f"Query service peak RSS (VmHWM) after the run: {results.query_rss_kib * 1024 / 1e6:,.0f} MB.")
    return "\n".join(lines + notes)


def _ratio(a: float | None, b: float | None, target: float | None) -> str:
    if a is None or not b:
        return "—"
    r = a / b
    return f"{r:.2f}×" + ("" if target is None else f" (≤ {target:g}×{'' if r <= target else ', missed'})")


def ratio_table(results: Results) -> list[str]:
    """The ratios issue 14 targets, each within this run."""
    lines = ["| ratio within this run | p50 | p99 |", "|---|---|---|"]
    for read in READS:
        g, f = results.gateway.get(read), results.floor.get(read)
        if g is None or f is None:
            continue
        t50, t99 = TARGET_RATIOS[read]
        lines.append(
            f"| {read.replace('_', ' ')}: gateway ÷ direct-SQL floor | {_ratio(g.p50, f.p50, t50)} "
            f"| {_ratio(g.p99, f.p99, t99)} |"
        )
    copy = results.copy_floor_seconds
    warm = results.warm_up_seconds
    lines.append(
        f"| warm-up ÷ `COPY market_odds_current TO STDOUT` ({'—' if copy is None else f'{copy:.2f} s'}) "
        f"| {_ratio(warm, copy, TARGET_WARM_UP_RATIO)} | |"
    )
    if results.warm_up_metric is not None:
        lines.append(
            f"| cache load (the service's own figure) ÷ COPY | {_ratio(results.warm_up_metric, copy, None)} | |"
        )
    if results.loaded_seconds is not None:
        lines.append(
            f"| process start → cache complete ({results.loaded_seconds:.2f} s) ÷ COPY "
            f"| {_ratio(results.loaded_seconds, copy, None)} | |"
        )
    return lines


async def wait_loaded_timed(
    query: ServiceProcess, port: int, metrics_port: int, event_id: int, started: float, results: Results
) -> None:
    """Reads an event detail every 50 ms until the cache is complete (the loading gauge at 0): the service is
    SERVING from PostgreSQL meanwhile. Sets the time from `started` until the gauge was seen at 0."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=client_options()) as channel:
        direct = QueryDirect(channel)
        while True:
            query.check_alive()
            if await scrape_gauge(metrics_port, "oddstore_query_cache_loading") == 0:
                results.loaded_seconds = time.perf_counter() - started
                return
            began = time.perf_counter()
            await direct.event_detail(event_id)
            results.loading_reads.append(time.perf_counter() - began)
            await asyncio.sleep(0.05)  # a client's pace, not one that takes the service's whole CPU from the load


async def copy_floor(dsn: str) -> float:
    """The floor for reading the current table: a plain text COPY to a sink that keeps nothing."""
    conn = await asyncpg.connect(dsn)
    try:
        best = float("inf")
        for _ in range(COPY_ROUNDS):

            async def sink(_: bytes) -> None:
                return None

            began = time.perf_counter()
            await conn.copy_from_table("market_odds_current", output=sink)
            best = min(best, time.perf_counter() - began)
        return best
    finally:
        await conn.close()


# -- orchestration ---------------------------------------------------------------------------------


async def wait_serving_timed(service: ServiceProcess, port: int, started: float, within: float = 120.0) -> float:
    """Seconds from `started` until health reports SERVING, polled every 10 ms."""
    deadline = time.monotonic() + within
    # gRPC's reconnect back-off starts at 1 s: the channel, opened before the server listens, would otherwise see
    # it up to a second late (measured: SERVING logged 0.8–1.1 s before this poll saw it).
    backoff = [("grpc.initial_reconnect_backoff_ms", 10), ("grpc.min_reconnect_backoff_ms", 10),
               ("grpc.max_reconnect_backoff_ms", 10)]  # fmt: skip
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=backoff) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            service.check_alive()
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return time.perf_counter() - started
            if time.monotonic() > deadline:
                raise RuntimeError(f"{service.name} not SERVING after {within:.0f}s:\n{service.log_tail()}")
            await asyncio.sleep(0.01)


async def wait_http(service: ServiceProcess, url: str, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=2.0) as client:
        while True:
            service.check_alive()
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url)).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{service.name} not answering {url} after {within:.0f}s:\n{service.log_tail()}")
            await asyncio.sleep(0.1)


async def wait_following(query: ServiceProcess, metrics_port: int, within: float = 60.0) -> None:
    """Until the query service follows the writer's change feed: its first stream's resync is done."""
    deadline = time.monotonic() + within
    while await scrape_gauge(metrics_port, "oddstore_query_resyncs_total") < 1:
        query.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError(f"query not following the writer's feed after {within:.0f}s:\n{query.log_tail()}")
        await asyncio.sleep(0.1)


async def run(args: argparse.Namespace, server_url: str, results: Results, *, shard_count: int | None = None) -> None:
    server = ReadServer(server_url, shard_count=shard_count)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-read-"))
    services: list[ServiceProcess] = []
    ok = False
    try:
        results.server = await server.describe()
        dsn = await server.create("data")
        began = time.perf_counter()
        await asyncio.to_thread(migrate.upgrade, dsn)
        data = await read_data.load(dsn, events=args.events, days=args.days, seed=args.seed)
        results.data = data
        results.load_seconds = time.perf_counter() - began
        logger.info("data set ready in %.0fs", results.load_seconds)
        requests = read_measure.build_requests(data, args.requests, args.seed)

        # The floor for the warm-up, measured before the query service starts so nothing competes with it.
        results.copy_floor_seconds = await copy_floor(dsn)
        logger.info("COPY market_odds_current TO STDOUT: %.2fs", results.copy_floor_seconds)
        # The query service, started on the freshly loaded database: its warm-up is timed from process start.
        query_port, query_metrics, gateway_port = free_port(), free_port(), free_port()
        writer_port, writer_metrics, ingest_port, ingest_metrics = (free_port() for _ in range(4))
        started = time.perf_counter()
        query = ServiceProcess(
            "query",
            "services.query.main",
            {
                "DATABASE_URL": dsn,
                "QUERY_LISTEN": f"127.0.0.1:{query_port}",
                "QUERY_METRICS_PORT": str(query_metrics),
                "QUERY_WRITERS": f"127.0.0.1:{writer_port}",  # started later, for freshness
            },
            log_dir,
        )
        services.append(query)
        results.warm_up_seconds = await wait_serving_timed(query, query_port, started)
        logger.info("query SERVING %.2fs after process start", results.warm_up_seconds)
        await wait_loaded_timed(query, query_port, query_metrics, data.events[0], started, results)
        logger.info("query cache complete %.2fs after process start", results.loaded_seconds)
        results.warm_up_log = query.log_path.read_text(errors="replace").splitlines()[-12:]
        with contextlib.suppress(Exception):
            results.warm_up_metric = await scrape_gauge(query_metrics, "oddstore_query_warm_up_seconds")
        gateway_proc = ServiceProcess(
            "gateway",
            "services.gateway.main",
            {
                "GATEWAY_HOST": "127.0.0.1",
                "GATEWAY_PORT": str(gateway_port),
                "GATEWAY_QUERY_ADDRESS": f"127.0.0.1:{query_port}",
                # One client asking as fast as it can is the benchmark, not an abuse to throttle.
                "GATEWAY_RATE_LIMIT_PER_SECOND": "0",
            },
            log_dir,
        )
        services.append(gateway_proc)
        base = f"http://127.0.0.1:{gateway_port}"
        await wait_http(gateway_proc, f"{base}/api/events/{data.events[0]}")

        pool = await asyncpg.create_pool(dsn, min_size=args.concurrency, max_size=args.concurrency)
        limits = httpx.Limits(max_connections=args.concurrency * 2, max_keepalive_connections=args.concurrency * 2)
        http = HttpClient("127.0.0.1", gateway_port)  # the timed reads; httpx for the checks and freshness
        try:
            async with httpx.AsyncClient(base_url=base, timeout=30.0, limits=limits) as client:
                floor = Floor(pool, data.captured_at)
                gateway = Gateway(http)
                results.facts = await read_measure.check_gateway(client, data, requests, floor)
                params: dict[str, Sequence[Any]] = {
                    "event_list": requests.pages,
                    "event_detail": requests.details,
                    "history": requests.histories,
                    "event_at": requests.instants,
                }
                # Side by side: each read through the gateway, straight to the query service and as SQL, interleaved.
                async with grpc.aio.insecure_channel(f"127.0.0.1:{query_port}", options=client_options()) as channel:
                    direct = QueryDirect(channel)
                    for read in READS:
                        timings = await read_measure.measure_side_by_side(
                            {
                                f"gateway {read}": getattr(gateway, read),
                                f"query gRPC {read}": getattr(direct, read),
                                f"floor {read}": getattr(floor, read),
                            },
                            params[read],
                            args.concurrency,
                        )
                        results.gateway[read], results.query[read], results.floor[read] = timings.values()
                        query.check_alive()
                        gateway_proc.check_alive()
                results.bare = await read_measure.measure(
                    "gateway 404 route", gateway.nothing, range(args.requests), args.concurrency
                )

                # Freshness: the write path joins in.
                writer = ServiceProcess(
                    "writer",
                    "services.writer.main",
                    {
                        "DATABASE_URL": dsn,
                        "WRITER_LISTEN": f"127.0.0.1:{writer_port}",
                        "WRITER_METRICS_PORT": str(writer_metrics),
                    },
                    log_dir,
                )
                services.append(writer)
                await wait_serving(writer, writer_port, within=180)
                await wait_following(query, query_metrics)
                ingest = ServiceProcess(
                    "ingest",
                    "services.ingest.main",
                    {
                        "INGEST_LISTEN": f"127.0.0.1:{ingest_port}",
                        "INGEST_WRITERS": f"127.0.0.1:{writer_port}",
                        "INGEST_METRICS_PORT": str(ingest_metrics),
                    },
                    log_dir,
                )
                services.append(ingest)
                await wait_serving(ingest, ingest_port)
                results.freshness = await read_measure.freshness(
                    data, client, ingest_port, args.freshness_samples, args.seed
                )
                results.query_rss_kib = query.status_kib("VmHWM")
        finally:
            await http.close()
            await pool.close()
        ok = True
    finally:
        for service in reversed(services):
            service.stop()
        await server.drop_all()
        if ok:
            shutil.rmtree(log_dir, ignore_errors=True)
        else:
            logger.error("service logs kept in %s", log_dir)


def citus_report(plain: list[Results], citus: list[Results]) -> str:
    """The same reads on both servers in one run: each side's median over rounds, and the median over rounds
    of Citus ÷ plain (each round measured both, back to back)."""

    def pair(label: str, pick: Callable[[Results], float | None], unit: str = "ms", scale: float = 1e3) -> str:
        ps, cs = [pick(r) for r in plain], [pick(r) for r in citus]
        ratios = [c / p for p, c in zip(ps, cs, strict=False) if p and c is not None]

        def cell(xs: list[float | None]) -> str:
            got = [x for x in xs if x is not None]
            return f"{statistics.median(got) * scale:,.1f} {unit}" if got else "—"

        ratio = f"{statistics.median(ratios):.2f}×" if ratios else "—"
        spread = f" ({min(ratios):.2f}–{max(ratios):.2f})" if len(ratios) > 1 else ""
        return f"| {label} | {cell(ps)} | {cell(cs)} | {ratio}{spread} |"

    def timing(where: str, read: str, p: float) -> Callable[[Results], float | None]:
        def pick(r: Results) -> float | None:
            t = getattr(r, where).get(read)
            return None if t is None else (t.p50 if p == 0.5 else t.p99)

        return pick

    def fresh(p: float) -> Callable[[Results], float | None]:
        return lambda r: r.freshness.q(r.freshness.samples, p) if r.freshness else None

    lines = ["| | plain PostgreSQL | Citus (coordinator + workers) | Citus ÷ plain |", "|---|---|---|---|"]
    for read in READS:
        for where, label in (("gateway", "gateway"), ("query", "query service alone"), ("floor", "SQL floor")):
            lines.append(pair(f"{read}, {label}: p50", timing(where, read, 0.5)))
            lines.append(pair(f"{read}, {label}: p99", timing(where, read, 0.99)))
    lines.append(pair("query warm-up, start → SERVING", lambda r: r.warm_up_seconds, "s", 1))
    lines.append(pair("freshness p50", fresh(0.5)))
    lines.append(pair("freshness p99", fresh(0.99)))
    lines.append(pair("data load (migrate, current state, history)", lambda r: r.load_seconds, "s", 1))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    args = parse_args(sys.argv[1:] if argv is None else argv)
    dsn, embedded = server_dsn(args)
    if args.citus_url is None:
        results = Results()
        return run_and_report(
            lambda: run(args, dsn, results),
            lambda seconds: report(results, args, seconds),
            embedded,
            "services stopped and the database dropped",
        )
    plain: list[Results] = []
    citus: list[Results] = []

    async def rounds() -> None:
        # Rounds alternate which server goes first (plain, Citus, Citus, plain, …): a load that drifts over
        # the run weighs on both alike.
        for i in range(args.rounds):
            order = [False, True] if i % 2 == 0 else [True, False]
            for on_citus in order:
                logger.info("round %d/%d: %s", i + 1, args.rounds, "Citus" if on_citus else "plain PostgreSQL")
                results = Results()
                (citus if on_citus else plain).append(results)
                if on_citus:
                    await run(args, args.citus_url, results, shard_count=args.shard_count)
                else:
                    await run(args, dsn, results)

    return run_and_report(
        rounds,
        lambda seconds: "\n\n".join(
            [
                f"### Citus ÷ plain, {args.rounds} round(s)\n\n" + citus_report(plain, citus),
                "### plain PostgreSQL, round 1\n\n" + (report(plain[0], args, seconds) if plain else "not run"),
                "### Citus, round 1\n\n" + (report(citus[0], args, seconds) if citus else "not run"),
            ]
        ),
        embedded,
        "services stopped and the databases dropped",
    )


if __name__ == "__main__":
    sys.exit(main())
