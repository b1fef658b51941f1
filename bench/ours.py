"""Contender (a): this system end to end, ingest and writer started as deployed, fed over gRPC."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import grpc

from bench.results import ContenderResult, CycleResult, Storage
from bench.services import ServiceProcess, free_port, scrape_gauge, wait_serving
from bench.workload import Cycle, Workload
from oddstore.v1 import ingest_pb2, snapshot_pb2

logger = logging.getLogger(__name__)

ACCEPTED = snapshot_pb2.SNAPSHOT_STATUS_ACCEPTED
SUPERSEDED = snapshot_pb2.SNAPSHOT_STATUS_SUPERSEDED
RESENDS = 20
_SERVICE = ingest_pb2.DESCRIPTOR.services_by_name["IngestService"]
# IngestService.SubmitSnapshots called with pre-serialized requests (no request serializer): the
# client's own protobuf work stays out of the measurement and off the two processes being measured.
SUBMIT_PATH = f"/{_SERVICE.full_name}/{_SERVICE.methods_by_name['SubmitSnapshots'].name}"
MAX_MESSAGE = 64 * 1024 * 1024
CALL_TIMEOUT = 300.0

HISTORY_STORAGE = """
SELECT count(*),
       coalesce(sum(pg_total_relation_size(i.inhrelid)), 0),
       coalesce(sum(pg_relation_size(i.inhrelid)), 0),
       coalesce(sum(pg_indexes_size(i.inhrelid)), 0)
FROM pg_inherits i WHERE i.inhparent = 'market_odds_history'::regclass
"""


class NotAccepted(RuntimeError):
    """A snapshot came back other than ACCEPTED: the benchmark's data is not what it claims to be."""


@dataclass(slots=True)
class OursResult(ContenderResult):
    history_rows: list[int] = field(default_factory=list)  # per cycle, from the acknowledged counts
    storage: Storage | None = None
    storage_after_first: Storage | None = None
    partitions: int = 0
    counted_history_rows: int = 0  # count(*) after the run, to check the acknowledged counts
    writer_peak_rss_kib: int = 0
    ingest_peak_rss_kib: int = 0
    tracked_markets: int = 0
    writer_pid: int = 0
    ingest_pid: int = 0


async def history_storage(conn: asyncpg.Connection, rows: int) -> tuple[Storage, int]:
    row = await conn.fetchrow(HISTORY_STORAGE)
    assert row is not None  # an aggregate always returns one row
    return Storage(rows, int(row[1]), int(row[2]), int(row[3])), int(row[0])


class Stack:
    """Ingest and `writers` writers started as deployed on one database, fed one cycle at a time."""

    def __init__(self, name: str, dsn: str, *, writers: int = 1, in_flight: int, log_dir: Path) -> None:
        self.name, self.dsn, self.writers, self.in_flight = name, dsn, writers, in_flight
        self.log_dir = log_dir / name
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.services: list[ServiceProcess] = []
        self.writer_metrics: list[int] = []
        self._channel: grpc.aio.Channel | None = None
        self._call: grpc.aio.UnaryUnaryMultiCallable | None = None
        self._ingest_port = 0
        self.resends = 0  # batches sent again after UNAVAILABLE

    async def start(self) -> None:
        addresses = []
        for i in range(self.writers):
            port, metrics = free_port(), free_port()
            writer = ServiceProcess(
                f"writer{i + 1}" if self.writers > 1 else "writer",
                "services.writer.main",
                {"DATABASE_URL": self.dsn, "WRITER_LISTEN": f"127.0.0.1:{port}", "WRITER_METRICS_PORT": str(metrics)},
                self.log_dir,
            )
            self.services.append(writer)
            self.writer_metrics.append(metrics)
            addresses.append(f"127.0.0.1:{port}")
            await wait_serving(writer, port)
        port, metrics = free_port(), free_port()
        ingest = ServiceProcess(
            "ingest",
            "services.ingest.main",
            {
                "INGEST_LISTEN": f"127.0.0.1:{port}",
                "INGEST_WRITERS": ",".join(addresses),
                "INGEST_METRICS_PORT": str(metrics),
            },
            self.log_dir,
        )
        self.services.append(ingest)
        await wait_serving(ingest, port)
        self._ingest_port = port

    @property
    def ingest(self) -> ServiceProcess:
        return self.services[-1]

    @property
    def writer_processes(self) -> list[ServiceProcess]:
        return self.services[: self.writers]

    async def submit(self, cycle: Cycle) -> tuple[CycleResult, int]:
        """Sends one cycle and waits for every acknowledgement: its timing and the history rows it wrote."""
        if self._call is None:
            # Opened at the first cycle, not in start(): a process forked (the next stack's services) while
            # a gRPC channel is open here aborted in a run ("epoll_wait error: Bad file descriptor").
            options = [("grpc.max_send_message_length", MAX_MESSAGE), ("grpc.max_receive_message_length", MAX_MESSAGE)]
            self._channel = grpc.aio.insecure_channel(f"127.0.0.1:{self._ingest_port}", options=options)
            self._call = self._channel.unary_unary(
                SUBMIT_PATH,
                request_serializer=None,
                response_deserializer=ingest_pb2.SubmitSnapshotsResponse.FromString,
            )
        call = self._call
        slots = asyncio.Semaphore(self.in_flight)

        async def send(raw: bytes) -> tuple[ingest_pb2.SubmitSnapshotsResponse, bool]:
            # The batches of one cycle are disjoint in (event, bookmaker) and cycles are never
            # overlapped, so batches in flight together never race on the same pair. UNAVAILABLE means
            # "not acknowledged, resend the batch" (ingest has retried its writers for a while already):
            # resent as a scraper would, and counted.
            for attempt in range(RESENDS + 1):
                try:
                    async with slots:
                        response: ingest_pb2.SubmitSnapshotsResponse = await call(raw, timeout=CALL_TIMEOUT)
                    return response, attempt > 0
                except grpc.aio.AioRpcError as exc:
                    if exc.code() != grpc.StatusCode.UNAVAILABLE or attempt == RESENDS:
                        raise
                    self.resends += 1
                    logger.warning("%s: batch resent after UNAVAILABLE: %s", self.name, (exc.details() or "")[:200])
            raise AssertionError("unreachable")

        started = time.perf_counter()
        answered = await asyncio.gather(*(send(raw) for raw in cycle.batches))
        elapsed = time.perf_counter() - started
        for service in self.services:
            service.check_alive()

        accepted, history = 0, 0
        problems: list[str] = []
        for b, (response, resent) in enumerate(answered):
            for r in response.results:
                # A resent batch's snapshots that an earlier attempt committed come back superseded (their
                # change counts are lost with that attempt's answer: the rows are counted in the table).
                if r.status == ACCEPTED or (resent and r.status == SUPERSEDED):
                    accepted += 1
                    c = r.counts
                    history += c.new + c.changed + c.unavailable + c.returned
                elif len(problems) < 5:
                    status = snapshot_pb2.SnapshotStatus.Name(r.status)
                    problems.append(f"batch {b} index {r.index}: {status} {r.reason}")
        if accepted != cycle.snapshots:
            raise NotAccepted(
                f"{self.name} cycle {cycle.number}: {accepted} of {cycle.snapshots} snapshots ACCEPTED; "
                + "; ".join(problems or ["results missing"])
            )
        # Every change is one history row and one write to market_odds_current (an upsert, or
        # the unavailable mark); unchanged markets only advance latest_snapshots, one row per snapshot.
        cr = CycleResult(
            cycle.number,
            elapsed,
            cycle.observations,
            2 * history,
            f"{history:,} history + {history:,} current (+{cycle.snapshots:,} latest_snapshots)",
        )
        return cr, history

    async def stop(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
        for service in reversed(self.services):
            service.stop()


async def run(dsn: str, workload: Workload, *, in_flight: int, log_dir: Path) -> OursResult:
    result = OursResult("ours", planned_cycles=len(workload.cycles))
    stack = Stack("ours", dsn, in_flight=in_flight, log_dir=log_dir)
    try:
        await stack.start()
        result.writer_pid, result.ingest_pid = stack.writer_processes[0].pid, stack.ingest.pid
        total = len(workload.cycles)
        for cycle in workload.cycles:
            cr, history = await stack.submit(cycle)
            result.cycles.append(cr)
            result.history_rows.append(history)
            logger.info(
                "ours: cycle %d/%d: %d observations in %.2fs = %.0f obs/s, %d history rows",
                cycle.number,
                total,
                cycle.observations,
                cr.seconds,
                cr.rate,
                history,
            )
            if cycle.number == 1:
                conn = await asyncpg.connect(dsn)
                try:
                    result.storage_after_first, _ = await history_storage(conn, history)
                finally:
                    await conn.close()

        result.tracked_markets = int(await scrape_gauge(stack.writer_metrics[0], "oddstore_writer_tracked_markets"))
        result.writer_peak_rss_kib = stack.writer_processes[0].status_kib("VmHWM")
        result.ingest_peak_rss_kib = stack.ingest.status_kib("VmHWM")
    finally:
        await stack.stop()

    conn = await asyncpg.connect(dsn)
    try:
        result.counted_history_rows = int(await conn.fetchval("SELECT count(*) FROM market_odds_history"))
        result.storage, result.partitions = await history_storage(conn, result.counted_history_rows)
    finally:
        await conn.close()
    if result.counted_history_rows != sum(result.history_rows):
        logger.warning(
            "history rows: %d in the table, %d from the acknowledged counts",
            result.counted_history_rows,
            sum(result.history_rows),
        )
    return result
