"""Service plumbing: routing over several writers, overload, reflection, metrics, graceful stop."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import REGISTRY

from oddstore.convert import snapshot_to_pb
from oddstore.v1 import ingest_pb2, ingest_pb2_grpc, snapshot_pb2
from services.ingest import bootstrap as ingest_bootstrap
from services.ingest.config import IngestSettings
from services.query import bootstrap as query_bootstrap
from services.query.config import QuerySettings
from services.retention import bootstrap as retention_bootstrap
from services.retention.config import RetentionSettings
from services.writer import bootstrap as writer_bootstrap
from services.writer.config import WriterSettings
from tests.factories import market, new_event_id, now, snapshot
from tests.polling import eventually


async def submit(port: int, snapshots: list[snapshot_pb2.Snapshot]) -> ingest_pb2.SubmitSnapshotsResponse:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        response: ingest_pb2.SubmitSnapshotsResponse = await stub.SubmitSnapshots(
            ingest_pb2.SubmitSnapshotsRequest(snapshots=snapshots), timeout=30
        )
        return response


async def test_events_are_spread_over_writers_and_each_event_stays_with_one(migrated_dsn: str) -> None:
    writers = [await writer_bootstrap.start(WriterSettings(database_url=migrated_dsn, listen="127.0.0.1:0"))
               for _ in range(2)]  # fmt: skip
    ingest = await ingest_bootstrap.start(
        IngestSettings(listen="127.0.0.1:0", writers=",".join(f"127.0.0.1:{w.server.port}" for w in writers))
    )
    try:
        events, t = [new_event_id() for _ in range(6)], now()
        batch = [snapshot_to_pb(snapshot(e, t, [market()])) for e in events]
        response = await submit(ingest.server.port, batch)
        assert {r.status for r in response.results} == {snapshot_pb2.SNAPSHOT_STATUS_ACCEPTED}
        owned = [{pair[0] for pair in w.writer._pairs} & set(events) for w in writers]
        assert owned[0] and owned[1] and not owned[0] & owned[1]
        assert owned[0] == {e for e in events if e % 2 == 0}
    finally:
        await ingest.stop(1)
        for w in writers:
            await w.stop(1)


async def test_an_overloaded_ingest_answers_resource_exhausted(migrated_dsn: str) -> None:
    ingest = await ingest_bootstrap.start(
        IngestSettings(listen="127.0.0.1:0", writers="127.0.0.1:1", max_in_flight_observations=10)
    )
    try:
        many = [market(str(i)) for i in range(11)]
        with pytest.raises(grpc.aio.AioRpcError) as failure:
            await submit(ingest.server.port, [snapshot_to_pb(snapshot(new_event_id(), now(), many))])
        assert failure.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        await ingest.stop(1)


async def test_reflection_lists_the_services_and_metrics_count_the_work(migrated_dsn: str) -> None:
    writer = await writer_bootstrap.start(WriterSettings(database_url=migrated_dsn, listen="127.0.0.1:0"))
    ingest = await ingest_bootstrap.start(
        IngestSettings(listen="127.0.0.1:0", writers=f"127.0.0.1:{writer.server.port}")
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{ingest.server.port}") as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            async for reply in stub.ServerReflectionInfo(iter([request])):
                names = {s.name for s in reply.list_services_response.service}
        assert {"oddstore.v1.IngestService", "grpc.health.v1.Health"} <= names
        before = REGISTRY.get_sample_value("oddstore_writer_observations_total") or 0
        await submit(ingest.server.port, [snapshot_to_pb(snapshot(new_event_id(), now(), [market(), market("1")]))])
        assert REGISTRY.get_sample_value("oddstore_writer_observations_total") == before + 2
        assert REGISTRY.get_sample_value(
            "oddstore_grpc_requests_total", {"method": "/oddstore.v1.IngestService/SubmitSnapshots", "code": "OK"}
        )
    finally:
        await ingest.stop(1)
        await writer.stop(1)


async def test_the_writer_and_query_pools_start_with_citus_shard_hiding_off_and_retention_keeps_the_default(
    migrated_dsn: str,
) -> None:
    # citus.POOL_SETTINGS: the writer's and query's asyncpg type introspection is slow on Citus with shards hidden;
    # retention lists every table (storage sizes), where the coordinator's shards must stay hidden.
    writer = await writer_bootstrap.start(WriterSettings(database_url=migrated_dsn, listen="127.0.0.1:0"))
    query = await query_bootstrap.start(QuerySettings(database_url=migrated_dsn, listen="127.0.0.1:0"))
    retention = await retention_bootstrap.start(
        RetentionSettings(database_url=migrated_dsn, listen="127.0.0.1:0", tick_seconds=3600)
    )
    setting = "SELECT current_setting('citus.override_table_visibility', true)"
    try:
        assert await writer.pool.fetchval(setting) == "off"
        assert await query.pool.fetchval(setting) == "off"
        # Unset (NULL) on plain PostgreSQL, Citus's default "on" on a Citus coordinator.
        assert await retention.pool.fetchval(setting) in (None, "on")
        # The history reads' own pool keeps the planner on the columnar days' index; the cache load's does not.
        scans = "SELECT current_setting('columnar.enable_custom_scan', true), current_setting('enable_seqscan')"
        assert tuple(await query.history_pool.fetchrow(scans)) == ("off", "off")
        assert tuple(await query.pool.fetchrow(scans))[1] == "on"
    finally:
        await retention.stop(1)
        await query.stop(1)
        await writer.stop(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_sigterm_reports_not_serving_then_stops_cleanly(migrated_dsn: str) -> None:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": migrated_dsn, "WRITER_LISTEN": f"127.0.0.1:{port}"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.writer.main", env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)

            async def serving() -> bool:
                try:
                    reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=5)
                except grpc.aio.AioRpcError:
                    return False  # not listening yet
                return reply.status == health_pb2.HealthCheckResponse.SERVING

            await eventually(serving, "the writer process reporting SERVING")
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 20) == 0
        assert process.stderr is not None
        log = (await process.stderr.read()).decode()
        assert "stop requested" in log and "writer stopped" in log
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_the_writer_waits_for_a_database_that_is_starting(make_database) -> None:  # type: ignore[no-untyped-def]
    # create_pool retries while the database is unreachable, then gives up with a clear error.
    from oddstore.db import create_pool

    with pytest.raises(ConnectionError, match="database not reachable after 1s"):
        await create_pool(f"postgresql://postgres@127.0.0.1:{free_port()}/none", wait_seconds=1)
    pool = await create_pool(make_database(), wait_seconds=5)
    assert isinstance(pool, asyncpg.Pool)
    await pool.close()
