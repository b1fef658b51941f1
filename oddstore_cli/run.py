"""`oddstore run`: the whole local system (PostgreSQL, services, simulated scrapers) until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from oddstore import migrate
from oddstore.embedded_pg import EmbeddedPostgres, EmbeddedPostgresError
from oddstore_cli.arguments import positive_float, positive_int
from oddstore_cli.simulate import submit_cycle
from oddstore_cli.simulator import Simulator
from oddstore_cli.submit import Counts, SubmitFailed, SubmitOptions, Submitter

EXIT_OK, EXIT_FAILED = 0, 1
DATABASE = "oddstore"
HEALTH_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0  # children drain within SHUTDOWN_GRACE_SECONDS (10 s by default), then are killed
STATUS_EVERY = 2.0
BATCH_SIZE = 200
LOG_TAIL_LINES = 30
# A count(*) of a long-lived history table can take minutes; beyond this the planner's estimate will do.
COUNT_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Service:
    """A service run as its own process, as deployed. `env` values are templates over `{dsn}` and every
    service's `{<name>_port}` and `{<name>_metrics_port}`, all assigned before the first one starts."""

    name: str
    module: str
    env: Mapping[str, str]
    http_health: str | None = None  # a path to GET for 200, for HTTP services; otherwise gRPC health on *_LISTEN


# In start order: each reports SERVING before the next starts, so a service may depend on those above it.
SERVICES: tuple[Service, ...] = (
    Service(
        "writer",
        "services.writer.main",
        {
            "DATABASE_URL": "{dsn}",
            "WRITER_LISTEN": "127.0.0.1:{writer_port}",
            "WRITER_METRICS_PORT": "{writer_metrics_port}",
        },
    ),
    Service(
        "ingest",
        "services.ingest.main",
        {
            "INGEST_LISTEN": "127.0.0.1:{ingest_port}",
            "INGEST_WRITERS": "127.0.0.1:{writer_port}",
            "INGEST_METRICS_PORT": "{ingest_metrics_port}",
        },
    ),
    Service(
        "query",
        "services.query.main",
        {
            "DATABASE_URL": "{dsn}",
            "QUERY_LISTEN": "127.0.0.1:{query_port}",
            "QUERY_WRITERS": "127.0.0.1:{writer_port}",
            "QUERY_METRICS_PORT": "{query_metrics_port}",
        },
    ),
    Service(
        "retention",
        "services.retention.main",
        {
            "DATABASE_URL": "{dsn}",
            "RETENTION_LISTEN": "127.0.0.1:{retention_port}",
            "RETENTION_METRICS_PORT": "{retention_metrics_port}",
        },
    ),
    Service(
        "gateway",
        "services.gateway.main",
        {
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_PORT": "{gateway_port}",
            "GATEWAY_QUERY_ADDRESS": "127.0.0.1:{query_port}",
            "GATEWAY_RETENTION_ADDRESS": "127.0.0.1:{retention_port}",
        },
        http_health="/api/health",
    ),
)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "run",
        help="start PostgreSQL, the services and simulated scrapers, with a live status line, until Ctrl-C",
        description="Start the local system: $DATABASE_URL or an embedded PostgreSQL in DATA_DIR/pg, migrated; "
        "each service as its own process, logging to DATA_DIR/logs; and the simulator submitting a cycle "
        "every --interval seconds through ingest. Ctrl-C stops everything gracefully.",
    )
    parser.add_argument("--events", type=positive_int, default=1300, help="events per cycle (1300)")
    parser.add_argument("--interval", type=positive_float, default=60.0, help="seconds between cycles (60)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the simulator (0)")
    parser.add_argument("--cycles", type=positive_int, default=None, help="stop by itself after this many cycles")
    parser.add_argument("--ingest-port", type=int, default=50051, help="ingest port if free, else any free one (50051)")
    parser.add_argument("--gateway-port", type=int, default=8000, help="gateway port if free, else any free one (8000)")
    parser.add_argument("--data-dir", type=Path, default=Path(".data"), help="embedded database and logs (.data)")
    parser.set_defaults(handler=command)


def command(args: argparse.Namespace) -> int:
    return asyncio.run(run(args))


class RunError(Exception):
    """Start-up or a running part of the system failed; the message says what and where to look."""


@dataclass(slots=True)
class Child:
    service: Service
    process: asyncio.subprocess.Process
    address: str
    log_path: Path

    def tail(self) -> str:
        return _tail(self.log_path)


@dataclass(slots=True)
class Progress:
    started: float
    cycles: int = 0
    rate: float = 0.0  # observations acknowledged per second over the last cycle
    history_base: int = 0  # rows in market_odds_history before this run's writer started
    history_exact: bool = True


@dataclass(frozen=True, slots=True)
class Stats:
    history_rows: int | None
    database_bytes: int
    history_bytes: int


async def run(args: argparse.Namespace) -> int:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    try:
        # Whatever happened, the exit stack stops the services, then the embedded server.
        async with contextlib.AsyncExitStack() as stack:
            try:
                return await _run(args, stack, stopping)
            except RunError as exc:
                print(f"oddstore run: {exc}", file=sys.stderr)
                return EXIT_FAILED
    except (OSError, asyncpg.PostgresError, EmbeddedPostgresError) as exc:
        print(f"oddstore run: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED


async def _run(args: argparse.Namespace, stack: contextlib.AsyncExitStack, stopping: asyncio.Event) -> int:
    progress = Progress(started=time.monotonic())
    data_dir: Path = args.data_dir.resolve()
    dsn = await _open_database(data_dir, stack)
    print(f"database {_safe(dsn)}", file=sys.stderr)
    await asyncio.to_thread(migrate.upgrade, dsn)
    conn = await asyncpg.connect(dsn)
    stack.push_async_callback(conn.close)
    progress.history_base, progress.history_exact = await _history_rows_before(conn)
    children: list[Child] = []
    stack.push_async_callback(_stop_children, children)
    ports = _assign_ports({"ingest_port": args.ingest_port, "gateway_port": args.gateway_port})
    for service in SERVICES:
        if stopping.is_set():
            return _stopped_early()
        child = await _start_child(service, {"dsn": dsn, **ports}, data_dir / "logs")
        children.append(child)
        await _wait_healthy(child, stopping)
    if stopping.is_set():
        return _stopped_early()
    ingest = f"127.0.0.1:{ports['ingest_port']}"
    print(
        f"ingest {ingest}, up in {time.monotonic() - progress.started:.1f} s; service logs in {data_dir / 'logs'}",
        file=sys.stderr,
    )
    print(f"gateway http://127.0.0.1:{ports['gateway_port']}/api/events (OpenAPI at /docs)", file=sys.stderr)
    simulator = Simulator(args.events, seed=args.seed)
    async with Submitter(SubmitOptions(target=ingest)) as submitter:
        writer_metrics = ports["writer_metrics_port"]
        status = asyncio.create_task(_report(conn, writer_metrics, progress, submitter.counts))
        try:
            feed = _feed(simulator, submitter, progress, interval=args.interval, cycles=args.cycles)
            code = await _supervise(feed, children, stopping)
        finally:
            status.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await status
        # Taken before the services stop: every acknowledged snapshot is committed, and the writer's
        # counter dies with it.
        _print_summary(progress, submitter, await _stats(conn, writer_metrics, progress))
    return code


async def _open_database(data_dir: Path, stack: contextlib.AsyncExitStack) -> str:
    """$DATABASE_URL, or database `oddstore` on an embedded server, stopped at exit if started here."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    server = EmbeddedPostgres(data_dir / "pg")
    # One someone started by hand (or a run killed with SIGKILL left behind) is reused and left running.
    if not server.is_running():
        stack.push_async_callback(asyncio.to_thread, server.stop)
    print(f"starting embedded PostgreSQL in {server.data_dir} ...", file=sys.stderr)
    await asyncio.to_thread(server.start)
    return await asyncio.to_thread(server.ensure_database, DATABASE)


def _assign_ports(preferred: Mapping[str, int]) -> dict[str, int]:
    """A port for every `{<name>_port}` and `{<name>_metrics_port}`: the preferred one if free, else any.

    The probe sockets stay open until all are chosen so no two names get the same port; a process
    grabbing one before the service binds it makes that service fail at start-up, clearly.
    """
    ports: dict[str, int] = {}
    with contextlib.ExitStack() as stack:
        for name in (f"{s.name}{suffix}" for s in SERVICES for suffix in ("_port", "_metrics_port")):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            # As gRPC does: connections of our own last run left in TIME_WAIT do not make a port busy.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", preferred.get(name, 0)))
            except OSError:
                sock.bind(("127.0.0.1", 0))
            ports[name] = sock.getsockname()[1]
    return ports


async def _start_child(service: Service, values: Mapping[str, object], log_dir: Path) -> Child:
    env = {key: template.format_map(values) for key, template in service.env.items()}
    log_path = log_dir / f"{service.name}.log"
    with _create_log(log_path) as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            service.module,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**_without_tls(os.environ), **env},
            # Its own process group: a terminal's Ctrl-C reaches only us, so we stop the feed before
            # the services, instead of the services draining while we still submit.
            process_group=0,
        )
    if service.http_health:
        address = f"{env['GATEWAY_HOST']}:{env['GATEWAY_PORT']}"
    else:
        address = next(v for k, v in env.items() if k.endswith("_LISTEN"))
    return Child(service, process, address, log_path)


def _without_tls(environ: Mapping[str, str]) -> dict[str, str]:
    """`oddstore run` is the loopback development system, plaintext by design: TLS files meant for some other
    service in this shell must not turn on TLS in some of its children and not in its own health probes."""
    return {key: value for key, value in environ.items() if not key.startswith("TLS_")}


async def _wait_healthy(child: Child, stopping: asyncio.Event) -> None:
    """Polls the standard health service until SERVING; RunError if the child exits or takes too long."""
    name, deadline = child.service.name, time.monotonic() + HEALTH_TIMEOUT
    if child.service.http_health:
        return await _wait_http(child, stopping, deadline)
    async with grpc.aio.insecure_channel(child.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while not stopping.is_set():
            if child.process.returncode is not None:
                raise RunError(
                    f"{name} exited with code {child.process.returncode} while starting; "
                    f"tail of {child.log_path}:\n{child.tail()}"
                )
            try:
                response = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise RunError(
                    f"{name} did not report SERVING on {child.address} within {HEALTH_TIMEOUT:.0f} s; "
                    f"tail of {child.log_path}:\n{child.tail()}"
                )
            await asyncio.sleep(0.1)


async def _wait_http(child: Child, stopping: asyncio.Event, deadline: float) -> None:
    url = f"http://{child.address}{child.service.http_health}"
    async with httpx.AsyncClient(timeout=1.0) as client:
        while not stopping.is_set():
            if child.process.returncode is not None:
                raise RunError(
                    f"{child.service.name} exited with code {child.process.returncode} while starting; "
                    f"tail of {child.log_path}:\n{child.tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url)).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RunError(f"{child.service.name} did not answer {url} within {HEALTH_TIMEOUT:.0f} s")
            await asyncio.sleep(0.1)


async def _supervise(feed: Coroutine[Any, Any, None], children: list[Child], stopping: asyncio.Event) -> int:
    """Runs the feed until it finishes, a signal arrives or a child dies; returns the exit code.

    A hand-written supervisor rather than honcho, circus or supervisord: those start processes from a
    config file and know neither gRPC health (each service starts only once the one before is SERVING) nor
    our feed; here start order, health, the drain order on stop and the log tail on failure are one file."""
    feeding: asyncio.Task[None] = asyncio.create_task(feed)
    signalled = asyncio.create_task(stopping.wait())
    deaths = {asyncio.create_task(c.process.wait()): c for c in children}
    try:
        await asyncio.wait({feeding, signalled, *deaths}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (feeding, signalled, *deaths):
            task.cancel()
    for task, child in deaths.items():
        if task.done() and not task.cancelled():
            raise RunError(
                f"{child.service.name} exited unexpectedly with code {task.result()}; "
                f"tail of {child.log_path}:\n{child.tail()}"
            )
    if feeding.done() and not feeding.cancelled() and feeding.exception() is not None:
        raise RunError(f"feeding stopped: {feeding.exception()}")
    with contextlib.suppress(asyncio.CancelledError):
        await feeding
    return EXIT_OK


async def _feed(
    simulator: Simulator, submitter: Submitter, progress: Progress, *, interval: float, cycles: int | None
) -> None:
    """Submits a cycle every `interval` seconds, stamped with the wall clock, until `cycles` or cancelled."""
    due = time.monotonic()
    while cycles is None or progress.cycles < cycles:
        observed, began = submitter.counts.observations, time.monotonic()
        await submit_cycle(simulator, submitter, datetime.now(UTC), BATCH_SIZE)
        if submitter.failure is not None:
            raise SubmitFailed(submitter.failure)
        progress.cycles += 1
        progress.rate = (submitter.counts.observations - observed) / max(time.monotonic() - began, 1e-9)
        due = max(due + interval, time.monotonic())  # an overrun starts the next cycle at once
        if cycles is None or progress.cycles < cycles:
            await asyncio.sleep(due - time.monotonic())


HISTORY_PARTITIONS = "SELECT inhrelid FROM pg_inherits WHERE inhparent = 'market_odds_history'::regclass"
HISTORY_COUNT = "SELECT count(*) FROM market_odds_history"
# The live-tuple counter, not reltuples: that stays -1 until a table is analysed (never, with autovacuum off).
HISTORY_ESTIMATE = f"SELECT coalesce(sum(pg_stat_get_live_tuples(inhrelid)), 0)::bigint FROM ({HISTORY_PARTITIONS}) p"
HISTORY_BYTES = f"SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0)::bigint FROM ({HISTORY_PARTITIONS}) p"
DATABASE_BYTES = "SELECT pg_database_size(current_database())"


async def _history_rows_before(conn: asyncpg.Connection) -> tuple[int, bool]:
    """Rows already in the history, and whether the number is exact; the writer's counter adds the rest."""
    try:
        return int(await conn.fetchval(HISTORY_COUNT, timeout=COUNT_TIMEOUT)), True
    except TimeoutError:
        return int(await conn.fetchval(HISTORY_ESTIMATE)), False


async def _stats(conn: asyncpg.Connection, writer_metrics_port: int, progress: Progress) -> Stats:
    # Counting the history each refresh would scan millions of rows; the writer counts what it appends.
    appended = await asyncio.to_thread(_scrape, writer_metrics_port, "oddstore_writer_history_rows_total")
    history_rows = None if appended is None else progress.history_base + int(appended)
    return Stats(history_rows, int(await conn.fetchval(DATABASE_BYTES)), int(await conn.fetchval(HISTORY_BYTES)))


def _scrape(port: int, sample: str) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2.0) as response:
            text = response.read().decode()
    except OSError:
        return None
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == sample:
                return float(s.value)
    return None


async def _report(conn: asyncpg.Connection, writer_metrics_port: int, progress: Progress, counts: Counts) -> None:
    """Refreshes the status line every STATUS_EVERY seconds: in place on a terminal, a line each otherwise."""
    tty = sys.stderr.isatty()
    stats: Stats | None = None
    try:
        while True:
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                stats = await _stats(conn, writer_metrics_port, progress)
            line = _status(progress, counts, stats)
            sys.stderr.write(f"\r{line}\x1b[K" if tty else f"{line}\n")
            sys.stderr.flush()
            await asyncio.sleep(STATUS_EVERY)
    finally:
        if tty:
            sys.stderr.write("\n")


def _status(progress: Progress, counts: Counts, stats: Stats | None) -> str:
    uptime = timedelta(seconds=int(time.monotonic() - progress.started))
    parts = [
        f"up {uptime}",
        f"cycles {progress.cycles}",
        f"{progress.rate:,.0f} obs/s",
        f"new {counts.new:,} changed {counts.changed:,} unavailable {counts.unavailable:,} "
        f"returned {counts.returned:,}",
    ]
    if stats is not None:
        approx = "" if progress.history_exact else "~"
        rows = "?" if stats.history_rows is None else f"{approx}{stats.history_rows:,}"
        per_row = f"{stats.history_bytes / stats.history_rows:,.0f} B/row" if stats.history_rows else "- B/row"
        parts += [f"history {rows} rows", f"db {_human(stats.database_bytes)}", per_row]
    return " | ".join(parts)


def _print_summary(progress: Progress, submitter: Submitter, stats: Stats) -> None:
    total = submitter.counts
    print(
        f"oddstore run: stopped after {_status(progress, total, stats)}\n"
        f"  snapshots: accepted {total.accepted:,}, superseded {total.superseded:,}, rejected {total.rejected:,}, "
        f"not acknowledged {total.unacknowledged:,}",
        file=sys.stderr,
    )
    for entry in submitter.rejections:
        print(f"  {entry}", file=sys.stderr)


async def _stop_children(children: list[Child]) -> None:
    """SIGTERM in reverse start order (ingest drains into the writer), kill after STOP_TIMEOUT."""
    for child in reversed(children):
        process = child.process
        if process.returncode is not None:
            continue
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
        except TimeoutError:
            print(f"oddstore run: {child.service.name} did not stop in {STOP_TIMEOUT:.0f} s; killed", file=sys.stderr)
            process.kill()
            await process.wait()


def _stopped_early() -> int:
    print("oddstore run: stopped during start-up", file=sys.stderr)
    return EXIT_OK


def _create_log(path: Path) -> BinaryIO:
    """A fresh log per run, so the tail shown on failure is this run's."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "wb")


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(unreadable: {exc})"


def _safe(dsn: str) -> str:
    """The DSN without its password, for printing."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def _human(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1024:
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size:,.1f} TB"
