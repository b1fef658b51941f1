"""RetentionService servicer: protobuf to domain and back, errors to status codes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from oddstore.convert import to_timestamp
from oddstore.grpc_errors import StatusMapping
from oddstore.v1 import retention_pb2 as pb
from oddstore.v1 import retention_pb2_grpc
from services.retention.audit_repository import AuditEntry
from services.retention.cleanup import CleanupInProgress, Counts, Cutoffs, RunRecord, TableStat
from services.retention.partitions import PartitionDay
from services.retention.retention import AlertNotFound, Retention
from services.retention.storage import Alert, TableSize
from services.retention.stored_settings import InvalidSetting, SettingsUpdate, StoredSettings

DEFAULT_RUNS_LIMIT = 10
DEFAULT_SAMPLES_LIMIT = 30
MAX_LIMIT = 100

_SETTING_FIELDS = (
    "scrape_interval_minutes",
    "odds_retention_days",
    "match_retention_days",
    "cleanup_frequency_hours",
    "betpawa_concurrency",
    "sportybet_concurrency",
    "bet9ja_concurrency",
    "bet9ja_delay_ms",
    "batch_size",
    "max_concurrent_events",
)

AUDIT_DEFAULT, AUDIT_MAX = 100, 1000


def _audit(e: AuditEntry) -> pb.AuditEntry:
    return pb.AuditEntry(
        id=e.id, at=to_timestamp(e.at), actor=e.actor, action=e.action, status=e.status, client=e.client
    )


_ERRORS = StatusMapping(
    "retention",
    (
        (InvalidSetting, grpc.StatusCode.INVALID_ARGUMENT),
        (CleanupInProgress, grpc.StatusCode.ABORTED),
        (AlertNotFound, grpc.StatusCode.NOT_FOUND),
    ),
)


def _set_ts(field: Timestamp, value: datetime | None) -> None:
    """Fills an optional Timestamp field; None leaves it unset (null at the gateway)."""
    if value is not None:
        field.CopyFrom(to_timestamp(value))


def settings_to_pb(s: StoredSettings) -> pb.Settings:
    msg = pb.Settings(enabled_platforms=list(s.enabled_platforms), **{f: getattr(s, f) for f in _SETTING_FIELDS})
    _set_ts(msg.updated_at, s.updated_at)
    return msg


def update_from_pb(r: pb.UpdateSettingsRequest) -> SettingsUpdate:
    update = SettingsUpdate(
        **{f: getattr(r, f) for f in _SETTING_FIELDS if r.HasField(f)}  # type: ignore[arg-type]
    )
    if r.set_enabled_platforms:
        update = replace(update, enabled_platforms=tuple(r.enabled_platforms))
    return update


def counts_to_pb(cutoffs: Cutoffs, c: Counts, duration: float = 0.0, run_id: int = 0) -> pb.CleanupCounts:
    msg = pb.CleanupCounts(
        odds_cutoff=to_timestamp(cutoffs.odds),
        match_cutoff=to_timestamp(cutoffs.match),
        odds_snapshots=c.odds_snapshots,
        competitor_odds_snapshots=c.competitor_odds_snapshots,
        market_odds_history=c.market_odds_history,
        history_partitions=c.history_partitions,
        market_odds_current=c.market_odds_current,
        scrape_runs=c.scrape_runs,
        scrape_batches=c.scrape_batches,
        events=c.events,
        competitor_events=c.competitor_events,
        tournaments=c.tournaments,
        competitor_tournaments=c.competitor_tournaments,
        duration_seconds=round(duration, 2),
        run_id=run_id,
    )
    _set_ts(msg.oldest_odds_date, c.oldest_odds_date)
    _set_ts(msg.oldest_match_date, c.oldest_match_date)
    return msg


def _table_stats(stat: TableStat) -> pb.TableStats:
    count, oldest, newest = stat
    msg = pb.TableStats(count=count)
    _set_ts(msg.oldest, oldest)
    _set_ts(msg.newest, newest)
    return msg


def run_to_pb(r: RunRecord) -> pb.CleanupRun:
    msg = pb.CleanupRun(
        id=r.id,
        started_at=to_timestamp(r.started_at),
        trigger=r.trigger,
        odds_retention_days=r.odds_retention_days,
        match_retention_days=r.match_retention_days,
        deleted=counts_to_pb(r.cutoffs, r.counts, r.duration_seconds or 0.0, r.id),
        status=r.status,
    )
    _set_ts(msg.completed_at, r.completed_at)
    if r.error_message is not None:
        msg.error_message = r.error_message
    if r.duration_seconds is not None:
        msg.duration_seconds = round(r.duration_seconds, 2)
    return msg


def _table_size(t: TableSize) -> pb.TableSize:
    return pb.TableSize(
        table_name=t.table_name,
        size_bytes=t.size_bytes,
        size_human=t.size_human,
        row_count=t.row_count,
        partitions=[_table_size(p) for p in t.partitions],
    )


def _limit(context_field: str, value: int, default: int) -> int:
    if value == 0:  # proto3 cannot tell "unset" from 0: unset means the default
        return default
    if not 1 <= value <= MAX_LIMIT:
        raise InvalidSetting(context_field, f"must be between 1 and {MAX_LIMIT}, got {value}")
    return value


def _retention(r: pb.CleanupRequest) -> tuple[int | None, int | None]:
    odds = r.odds_retention_days if r.HasField("odds_retention_days") else None
    match = r.match_retention_days if r.HasField("match_retention_days") else None
    return odds, match


class RetentionServicer(retention_pb2_grpc.RetentionServiceServicer):
    def __init__(self, retention: Retention) -> None:
        self._retention = retention

    async def GetSettings(self, request: pb.GetSettingsRequest, context: grpc.aio.ServicerContext) -> pb.Settings:
        return settings_to_pb(await _ERRORS.answer(context, "GetSettings", self._retention.get_settings))

    async def UpdateSettings(self, request: pb.UpdateSettingsRequest, context: grpc.aio.ServicerContext) -> pb.Settings:
        update = update_from_pb(request)
        return settings_to_pb(
            await _ERRORS.answer(context, "UpdateSettings", lambda: self._retention.update_settings(update))
        )

    async def GetDataStats(self, request: pb.GetDataStatsRequest, context: grpc.aio.ServicerContext) -> pb.DataStats:
        s = await _ERRORS.answer(context, "GetDataStats", self._retention.data_stats)
        return pb.DataStats(
            odds_snapshots=_table_stats(s.odds_snapshots),
            competitor_odds_snapshots=_table_stats(s.competitor_odds_snapshots),
            events=_table_stats(s.events),
            competitor_events=_table_stats(s.competitor_events),
            tournaments=_table_stats(s.tournaments),
            competitor_tournaments=_table_stats(s.competitor_tournaments),
            scrape_runs=_table_stats(s.scrape_runs),
            scrape_batches=_table_stats(s.scrape_batches),
            events_by_platform=[pb.PlatformCount(platform=p, count=n) for p, n in s.events_by_platform],
            competitor_events_by_source=[
                pb.PlatformCount(platform=p, count=n) for p, n in s.competitor_events_by_source
            ],
            market_odds_history=_table_stats(s.market_odds_history),
        )

    async def PreviewCleanup(self, request: pb.CleanupRequest, context: grpc.aio.ServicerContext) -> pb.CleanupCounts:
        cutoffs, counts = await _ERRORS.answer(
            context, "PreviewCleanup", lambda: self._retention.preview(*_retention(request))
        )
        return counts_to_pb(cutoffs, counts)

    async def RunCleanup(self, request: pb.CleanupRequest, context: grpc.aio.ServicerContext) -> pb.CleanupCounts:
        odds, match = _retention(request)
        r = await _ERRORS.answer(context, "RunCleanup", lambda: self._retention.run_cleanup("manual", odds, match))
        return counts_to_pb(r.cutoffs, r.counts, r.duration_seconds, r.run_id)

    async def ListCleanupRuns(
        self, request: pb.ListCleanupRunsRequest, context: grpc.aio.ServicerContext
    ) -> pb.CleanupRuns:
        async def call() -> pb.CleanupRuns:
            runs, total = await self._retention.list_runs(_limit("limit", request.limit, DEFAULT_RUNS_LIMIT))
            return pb.CleanupRuns(runs=[run_to_pb(r) for r in runs], total=total)

        return await _ERRORS.answer(context, "ListCleanupRuns", call)

    async def GetStorageSizes(
        self, request: pb.GetStorageSizesRequest, context: grpc.aio.ServicerContext
    ) -> pb.StorageSizes:
        s = await _ERRORS.answer(context, "GetStorageSizes", self._retention.storage_sizes)
        return pb.StorageSizes(
            tables=[_table_size(t) for t in s.tables],
            total_bytes=s.total_bytes,
            total_human=s.total_human,
            measured_at=to_timestamp(s.measured_at),
        )

    async def ListStorageSamples(
        self, request: pb.ListStorageSamplesRequest, context: grpc.aio.ServicerContext
    ) -> pb.StorageSamples:
        async def call() -> pb.StorageSamples:
            samples, total = await self._retention.list_samples(_limit("limit", request.limit, DEFAULT_SAMPLES_LIMIT))
            return pb.StorageSamples(
                samples=[
                    pb.StorageSample(
                        id=s.id,
                        sampled_at=to_timestamp(s.sampled_at),
                        total_bytes=s.total_bytes,
                        table_sizes=s.table_sizes,
                    )
                    for s in samples
                ],
                total=total,
            )

        return await _ERRORS.answer(context, "ListStorageSamples", call)

    async def ListStorageAlerts(
        self, request: pb.ListStorageAlertsRequest, context: grpc.aio.ServicerContext
    ) -> pb.StorageAlerts:
        alerts = await _ERRORS.answer(context, "ListStorageAlerts", self._retention.open_alerts)
        return pb.StorageAlerts(alerts=[_alert(a) for a in alerts])

    async def ResolveStorageAlert(
        self, request: pb.ResolveStorageAlertRequest, context: grpc.aio.ServicerContext
    ) -> pb.StorageAlert:
        return _alert(
            await _ERRORS.answer(
                context, "ResolveStorageAlert", lambda: self._retention.resolve_alert(request.alert_id)
            )
        )

    async def RecordAudit(self, request: pb.AuditEntry, context: grpc.aio.ServicerContext) -> pb.AuditEntry:
        at = request.at.ToDatetime(tzinfo=UTC) if request.HasField("at") else None
        entry = await _ERRORS.answer(
            context,
            "RecordAudit",
            lambda: self._retention.record_audit(request.actor, request.action, request.status, request.client, at),
        )
        return _audit(entry)

    async def ListAudit(self, request: pb.ListAuditRequest, context: grpc.aio.ServicerContext) -> pb.AuditEntries:
        limit = min(request.limit, AUDIT_MAX) if request.limit > 0 else AUDIT_DEFAULT
        entries = await _ERRORS.answer(context, "ListAudit", lambda: self._retention.audit_log(limit))
        return pb.AuditEntries(entries=[_audit(e) for e in entries])

    async def GetPartitions(self, request: pb.GetPartitionsRequest, context: grpc.aio.ServicerContext) -> pb.Partitions:
        parts, ahead = await _ERRORS.answer(context, "GetPartitions", self._retention.partitions)
        out = []
        for p in parts:
            msg = pb.Partition(name=p.name, size_bytes=p.size_bytes)
            if p.day is not None:  # a partition this service did not name has no known bounds
                _set_ts(msg.start, PartitionDay(p.day).start)
                _set_ts(msg.end, PartitionDay(p.day).end)
            out.append(msg)
        return pb.Partitions(partitions=out, days_ahead=ahead)


def _alert(a: Alert) -> pb.StorageAlert:
    msg = pb.StorageAlert(
        id=a.id,
        created_at=to_timestamp(a.created_at),
        alert_type=a.alert_type,
        message=a.message,
        current_bytes=a.current_bytes,
        previous_bytes=a.previous_bytes,
        growth_percent=a.growth_percent,
    )
    _set_ts(msg.resolved_at, a.resolved_at)
    return msg
