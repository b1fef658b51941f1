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
from bench.workload import Workload
from oddstore.v1 import ingest_pb2, snapshot_pb2

logger = logging.getLogger(__name__)

ACCEPTED = snapshot_pb2.SNAPSHOT_STATUS_ACCEPTED
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


async def run(dsn: str, workload: Workload, *, in_flight: int, log_dir: Path) -> OursResult:
    result = OursResult("ours", planned_cycles=len(workload.cycles))
    writer_port, writer_metrics, ingest_port, ingest_metrics = (free_port() for _ in range(4))
    services: list[ServiceProcess] = []
    try:
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
        await wait_serving(writer, writer_port)
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
        result.writer_pid, result.ingest_pid = writer.pid, ingest.pid

        await _submit_all(result, workload, ingest_port, in_flight, dsn, services)

        result.tracked_markets = int(await scrape_gauge(writer_metrics, "oddstore_writer_tracked_markets"))
        result.writer_peak_rss_kib = writer.status_kib("VmHWM")
        result.ingest_peak_rss_kib = ingest.status_kib("VmHWM")
    finally:
        for service in reversed(services):
            service.stop()

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


async def _submit_all(
    result: OursResult,
    workload: Workload,
    port: int,
    in_flight: int,
    dsn: str,
    services: list[ServiceProcess],
) -> None:
    options = [("grpc.max_send_message_length", MAX_MESSAGE), ("grpc.max_receive_message_length", MAX_MESSAGE)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        call = channel.unary_unary(
            SUBMIT_PATH, request_serializer=None, response_deserializer=ingest_pb2.SubmitSnapshotsResponse.FromString
        )
        slots = asyncio.Semaphore(in_flight)

        async def send(raw: bytes) -> ingest_pb2.SubmitSnapshotsResponse:
            # The batches of one cycle are disjoint in (event, bookmaker) and cycles are never
            # overlapped, so batches in flight together never race on the same pair.
            async with slots:
                response: ingest_pb2.SubmitSnapshotsResponse = await call(raw, timeout=CALL_TIMEOUT)
            return response

        total = len(workload.cycles)
        for cycle in workload.cycles:
            started = time.perf_counter()
            responses = await asyncio.gather(*(send(raw) for raw in cycle.batches))
            elapsed = time.perf_counter() - started
            for service in services:
                service.check_alive()

            accepted, history = 0, 0
            problems: list[str] = []
            for b, response in enumerate(responses):
                for r in response.results:
                    if r.status == ACCEPTED:
                        accepted += 1
                        c = r.counts
                        history += c.new + c.changed + c.unavailable + c.returned
                    elif len(problems) < 5:
                        status = snapshot_pb2.SnapshotStatus.Name(r.status)
                        problems.append(f"batch {b} index {r.index}: {status} {r.reason}")
            if accepted != cycle.snapshots:
                raise NotAccepted(
                    f"cycle {cycle.number}: {accepted} of {cycle.snapshots} snapshots ACCEPTED; "
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
            result.cycles.append(cr)
            result.history_rows.append(history)
            logger.info(
                "ours: cycle %d/%d: %d observations in %.2fs = %.0f obs/s, %d history rows",
                cycle.number,
                total,
                cycle.observations,
                elapsed,
                cr.rate,
                history,
            )
            if cycle.number == 1:
                conn = await asyncpg.connect(dsn)
                try:
                    result.storage_after_first, _ = await history_storage(conn, history)
                finally:
                    await conn.close()
