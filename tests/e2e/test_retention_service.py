"""The retention service end to end: a real RetentionService gRPC server on loopback over its own database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from oddstore.v1 import retention_pb2 as pb
from oddstore.v1 import retention_pb2_grpc
from services.retention import bootstrap
from services.retention.cleanup import INTERRUPTED
from services.retention.config import RetentionSettings
from services.retention.run_repository import CLEANUP_LOCK_KEY
from services.writer.writer import Writer
from tests.factories import market, new_event_id, snapshot, write


class Service:
    def __init__(self, app: bootstrap.RetentionApp, dsn: str) -> None:
        self.app = app
        self.dsn = dsn
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{app.server.port}")
        self.stub = retention_pb2_grpc.RetentionServiceStub(self.channel)


@pytest.fixture
async def dsn(make_migrated_database: Callable[[], str]) -> str:
    url = make_migrated_database()
    # A run a crashed process left behind, to be closed out at start-up.
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "INSERT INTO cleanup_runs (started_at, trigger, odds_retention_days, match_retention_days)"
            " VALUES (now() - interval '1 hour', 'scheduled', 14, 14)"
        )
    finally:
        await conn.close()
    return url


@pytest.fixture
async def service(dsn: str) -> AsyncIterator[Service]:
    # A tick far away: the tests call the RPCs, the periodic work is covered by the integration tests.
    settings = RetentionSettings(database_url=dsn, listen="127.0.0.1:0", tick_seconds=3600, database_wait_seconds=5)
    app = await bootstrap.start(settings)
    s = Service(app, dsn)
    yield s
    await s.channel.close()
    await app.stop(1)


async def test_start_up_serves_marks_crashed_runs_failed_and_makes_the_horizon(service: Service) -> None:
    health = await health_pb2_grpc.HealthStub(service.channel).Check(
        health_pb2.HealthCheckRequest(service="oddstore.v1.RetentionService")
    )
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    runs = await service.stub.ListCleanupRuns(pb.ListCleanupRunsRequest())
    assert runs.total == 1 and runs.runs[0].status == "failed" and runs.runs[0].error_message == INTERRUPTED
    assert runs.runs[0].HasField("completed_at") and runs.runs[0].HasField("duration_seconds")
    parts = await service.stub.GetPartitions(pb.GetPartitionsRequest())
    assert parts.days_ahead == 7 and len(parts.partitions) == 8
    first = parts.partitions[0]
    today = datetime.now(UTC).date()
    assert first.name == f"market_odds_history_p{today:%Y%m%d}"
    assert first.start.ToDatetime(tzinfo=UTC) == datetime.combine(today, datetime.min.time(), UTC)
    assert first.end.ToDatetime(tzinfo=UTC) - first.start.ToDatetime(tzinfo=UTC) == timedelta(days=1)


async def horizon_health(channel: grpc.aio.Channel) -> tuple[int, int]:
    """(the process's status, the partition horizon's status) from grpc.health.v1."""
    stub = health_pb2_grpc.HealthStub(channel)
    process = await stub.Check(health_pb2.HealthCheckRequest(service=""))
    horizon = await stub.Check(health_pb2.HealthCheckRequest(service=bootstrap.HORIZON_HEALTH_NAME))
    return process.status, horizon.status


async def test_health_reports_the_partition_horizon_under_its_own_name(dsn: str) -> None:
    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    started = datetime.now(UTC)  # one clock for both starts: the test cannot straddle midnight

    async def health_at_start(horizon_days: int) -> tuple[int, int, int]:
        settings = RetentionSettings(
            database_url=dsn,
            listen="127.0.0.1:0",
            tick_seconds=3600,
            database_wait_seconds=5,
            horizon_days=horizon_days,
        )
        app = await bootstrap.start(settings, clock=lambda: started)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{app.server.port}") as channel:
                process, horizon = await horizon_health(channel)
                stub = retention_pb2_grpc.RetentionServiceStub(channel)
                return process, horizon, (await stub.GetPartitions(pb.GetPartitionsRequest())).days_ahead
        finally:
            await app.stop(1)

    assert await health_at_start(7) == (serving, serving, 7)
    # Only tomorrow's partition left ahead and a horizon of one day: below the warning threshold of two, the
    # horizon's status says so, while the process, which is what keeps partitions ahead, stays SERVING.
    tomorrow = f"market_odds_history_p{started.date() + timedelta(days=1):%Y%m%d}"
    conn = await asyncpg.connect(dsn)
    try:
        later = await conn.fetch(
            "SELECT relname FROM pg_class"
            " WHERE relkind = 'r' AND relname LIKE 'market_odds_history_p%' AND relname > $1",
            tomorrow,
        )
        assert len(later) == 6
        for row in later:
            await conn.execute(f"DROP TABLE {row['relname']}")
    finally:
        await conn.close()
    assert await health_at_start(1) == (serving, not_serving, 1)


async def test_settings_over_grpc_with_invalid_argument_naming_the_field(service: Service) -> None:
    settings = await service.stub.GetSettings(pb.GetSettingsRequest())
    assert settings.odds_retention_days == 14 and not settings.HasField("updated_at")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await service.stub.UpdateSettings(pb.UpdateSettingsRequest(match_retention_days=400))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "match_retention_days" in (info.value.details() or "")
    updated = await service.stub.UpdateSettings(
        pb.UpdateSettingsRequest(
            cleanup_frequency_hours=6, set_enabled_platforms=True, enabled_platforms=["bet9ja", "x"]
        )
    )
    assert updated.cleanup_frequency_hours == 6 and list(updated.enabled_platforms) == ["bet9ja"]
    assert updated.HasField("updated_at") and updated.odds_retention_days == 14
    # Platforms are left alone unless set_enabled_platforms says so.
    again = await service.stub.UpdateSettings(pb.UpdateSettingsRequest(batch_size=100))
    assert list(again.enabled_platforms) == ["bet9ja"] and again.batch_size == 100


async def test_preview_and_run_agree_and_the_run_is_listed(service: Service) -> None:
    pool = await asyncpg.create_pool(service.dsn, min_size=1, max_size=2)
    try:
        now = datetime.now(UTC).replace(microsecond=0)
        await write(
            Writer(pool),
            [snapshot(new_event_id(), now - timedelta(days=20), [market()], kickoff=now - timedelta(days=19))],
        )
    finally:
        await pool.close()
    request = pb.CleanupRequest(odds_retention_days=14, match_retention_days=14)
    preview = await service.stub.PreviewCleanup(request)
    assert preview.run_id == 0
    assert (preview.market_odds_history, preview.history_partitions, preview.events, preview.market_odds_current) == (
        1,
        1,
        1,
        1,
    )
    result = await service.stub.RunCleanup(request)
    assert result.run_id > 0
    for field in ("market_odds_history", "history_partitions", "market_odds_current", "events", "tournaments"):
        assert getattr(result, field) == getattr(preview, field), field
    assert result.HasField("oldest_odds_date") and result.HasField("oldest_match_date")
    runs = await service.stub.ListCleanupRuns(pb.ListCleanupRunsRequest(limit=1))
    assert runs.total == 2 and runs.runs[0].id == result.run_id and runs.runs[0].trigger == "manual"
    assert runs.runs[0].deleted.market_odds_history == 1 and runs.runs[0].status == "completed"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await service.stub.PreviewCleanup(pb.CleanupRequest(odds_retention_days=0))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_run_while_another_holds_the_lock_is_aborted(service: Service) -> None:
    other = await asyncpg.connect(service.dsn)
    try:
        await other.execute("SELECT pg_advisory_lock($1)", CLEANUP_LOCK_KEY)
        run_id = await other.fetchval(
            "INSERT INTO cleanup_runs (trigger, odds_retention_days, match_retention_days) VALUES ('scheduled', 14, 14)"
            " RETURNING id"
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await service.stub.RunCleanup(pb.CleanupRequest())
        assert info.value.code() == grpc.StatusCode.ABORTED
        assert (info.value.details() or "").startswith(
            f"a cleanup run is already in progress (run {run_id} started at "
        )
    finally:
        await other.close()
    assert (await service.stub.RunCleanup(pb.CleanupRequest())).run_id > run_id


async def test_storage_and_stats_endpoints(service: Service) -> None:
    sizes = await service.stub.GetStorageSizes(pb.GetStorageSizesRequest())
    names = [t.table_name for t in sizes.tables]
    assert "market_odds_history" in names and "settings" in names
    history = sizes.tables[names.index("market_odds_history")]
    assert len(history.partitions) == 8 and history.size_bytes == sum(p.size_bytes for p in history.partitions)
    assert sizes.total_bytes > 0 and sizes.total_human and sizes.HasField("measured_at")
    await service.app.retention.sample_storage_if_due()
    samples = await service.stub.ListStorageSamples(pb.ListStorageSamplesRequest())
    assert samples.total == 1 and samples.samples[0].table_sizes["market_odds_history"] == history.size_bytes
    assert list((await service.stub.ListStorageAlerts(pb.ListStorageAlertsRequest())).alerts) == []
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await service.stub.ResolveStorageAlert(pb.ResolveStorageAlertRequest(alert_id=12345))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await service.stub.ListStorageSamples(pb.ListStorageSamplesRequest(limit=101))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    stats = await service.stub.GetDataStats(pb.GetDataStatsRequest())
    assert stats.scrape_runs.count == 0 and stats.events.count == 0 and not stats.events.HasField("oldest")
    assert stats.tournaments.count == 0 and stats.market_odds_history.count == 0


async def test_audit_entries_are_stored_and_listed_newest_first(service: Service) -> None:
    stub = service.stub
    first = await stub.RecordAudit(
        pb.AuditEntry(actor="ada", action="POST /api/cleanup/execute", status=200, client="10.0.0.7")
    )
    second = await stub.RecordAudit(pb.AuditEntry(actor="vera", action="PUT /api/settings", status=403))
    assert second.id > first.id and first.HasField("at")
    listed = await stub.ListAudit(pb.ListAuditRequest(limit=10))
    assert [(e.actor, e.action, e.status, e.client) for e in listed.entries] == [
        ("vera", "PUT /api/settings", 403, ""),
        ("ada", "POST /api/cleanup/execute", 200, "10.0.0.7"),
    ]
    assert len((await stub.ListAudit(pb.ListAuditRequest(limit=1))).entries) == 1
