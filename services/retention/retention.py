"""The retention service layer: partition upkeep, cleanup runs, the schedule tick and storage monitoring."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import asyncpg

from oddstore.history_partitions import ensure_partition
from services.retention import audit_repository as audit_repo
from services.retention import cleanup_repository as cleanup_repo
from services.retention import metrics
from services.retention import partition_repository as partition_repo
from services.retention import run_repository as run_repo
from services.retention import settings_repository as settings_repo
from services.retention import storage_repository as storage_repo
from services.retention.cleanup import (
    INTERRUPTED,
    MANUAL,
    SCHEDULED,
    CleanupInProgress,
    Counts,
    Cutoffs,
    DataStats,
    RunRecord,
    RunResult,
)
from services.retention.config import RetentionSettings
from services.retention.naive_utc import naive
from services.retention.partitions import PartitionDay, closed_days, days_ahead, expired_days, missing_days
from services.retention.schedule import due_slot
from services.retention.storage import SAMPLES_KEPT, Alert, Sample, TableSize, growth_alert, sample_due, size_alert
from services.retention.stored_settings import (
    RETENTION_RANGE,
    InvalidSetting,
    SettingsUpdate,
    StoredSettings,
    validated,
)

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
HorizonListener = Callable[[int], Awaitable[None]]

HORIZON_WARNING_DAYS = 2
CANCELLED = "cancelled: the retention service stopped or the caller went away mid-run"


def utc_now() -> datetime:
    return datetime.now(UTC)


class AlertNotFound(LookupError):
    def __init__(self, alert_id: int) -> None:
        super().__init__(f"alert {alert_id} not found")


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    name: str
    day: date | None
    size_bytes: int


@dataclass(frozen=True, slots=True)
class StorageReport:
    tables: list[TableSize]
    total_bytes: int
    total_human: str
    measured_at: datetime


class Retention:
    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: RetentionSettings,
        clock: Clock = utc_now,
        on_horizon: HorizonListener | None = None,
    ) -> None:
        self._pool = pool
        self._settings = settings
        self._clock = clock
        self._on_horizon = on_horizon  # told the days ahead after every check (the health status follows it)
        self._columnar_missing_told = False

    def now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the clock must return an aware datetime")
        return now.astimezone(UTC)

    # --- the gateway's audit log --------------------------------------------------------------------------------

    async def record_audit(
        self, actor: str, action: str, status: int, client: str, at: datetime | None = None
    ) -> audit_repo.AuditEntry:
        return await audit_repo.record(self._pool, at or self.now(), actor, action, status, client)

    async def audit_log(self, limit: int) -> list[audit_repo.AuditEntry]:
        return await audit_repo.latest(self._pool, limit)

    # --- partitions -------------------------------------------------------------------------------------------

    async def ensure_partitions(self) -> int:
        """Creates the missing daily partitions from today to the horizon; returns the days ahead."""
        now = self.now()
        async with self._pool.acquire() as conn:
            attached = await partition_repo.list_partitions(conn)
        existing = {p.day for p in attached if p.day is not None and not p.detach_pending}
        try:
            for day in missing_days(now, self._settings.horizon_days, existing):
                # The writer's own function: one definition of a partition's name and bounds in the system.
                await ensure_partition(self._pool, day)
                existing.add(day)
                metrics.PARTITIONS_CREATED.inc()
        finally:  # reported even when creating one failed: a shrinking horizon is what must show
            ahead = days_ahead(now, existing)
            metrics.HORIZON_DAYS.set(ahead)
            if ahead < HORIZON_WARNING_DAYS:
                logger.warning("history partitions exist for only %d day(s) ahead", ahead)
            if self._on_horizon is not None:
                await self._on_horizon(ahead)
        return ahead

    async def partitions(self) -> tuple[list[PartitionInfo], int]:
        async with self._pool.acquire() as conn:
            attached = await partition_repo.list_partitions(conn)
        live = [p for p in attached if not p.detach_pending]
        ahead = days_ahead(self.now(), [p.day for p in live if p.day is not None])
        return [PartitionInfo(p.name, p.day, p.size_bytes) for p in live], ahead

    async def convert_closed_days(self, limit: int | None = None) -> list[date]:
        """Moves closed history days (columnar_after_days) to columnar storage, oldest first, at most `limit` of
        them; returns the days converted. A day whose partition stays locked is left for the next call."""
        settings = self._settings
        if settings.columnar_after_days == 0:
            return []
        converted: list[date] = []
        async with self._pool.acquire() as conn:
            if not await partition_repo.columnar_available(conn):
                if not self._columnar_missing_told:
                    logger.warning("no columnar access method (citus_columnar not installed): closed days stay heap")
                    self._columnar_missing_told = True
                return []
            attached = await partition_repo.list_partitions(conn)
            sizes = {p.day: p.size_bytes for p in attached}
            grace = timedelta(minutes=settings.columnar_grace_minutes)
            for day in closed_days(attached, self.now(), settings.columnar_after_days, grace)[:limit]:
                name, started = PartitionDay(day).name, time.perf_counter()
                logger.info("converting %s to columnar (%d bytes)", name, sizes[day])
                try:
                    done = await partition_repo.convert_to_columnar(conn, day, settings.lock_timeout)
                except asyncpg.exceptions.LockNotAvailableError:
                    logger.warning("partition %s busy for %.1fs: left for the next check", name, settings.lock_timeout)
                    break
                if done:
                    converted.append(day)
                    metrics.PARTITIONS_CONVERTED.inc()
                    size = await partition_repo.partition_size(conn, day)
                    logger.info(
                        "converted %s to columnar in %.1fs: %d -> %d bytes",
                        name,
                        time.perf_counter() - started,
                        sizes[day],
                        size,
                    )
        return converted

    # --- settings ---------------------------------------------------------------------------------------------

    async def get_settings(self) -> StoredSettings:
        return await settings_repo.get_settings(self._pool)

    async def update_settings(self, update: SettingsUpdate) -> StoredSettings:
        return await settings_repo.update_settings(self._pool, validated(update), self.now())

    async def _cutoffs(self, odds_days: int | None, match_days: int | None, now: datetime) -> Cutoffs:
        low, high = RETENTION_RANGE
        for name, value in (("odds_retention_days", odds_days), ("match_retention_days", match_days)):
            if value is not None and not low <= value <= high:
                raise InvalidSetting(name, f"must be between {low} and {high}, got {value}")
        if odds_days is None or match_days is None:
            stored = await settings_repo.get_settings(self._pool)
            odds_days = stored.odds_retention_days if odds_days is None else odds_days
            match_days = stored.match_retention_days if match_days is None else match_days
        return Cutoffs(now, odds_days, match_days)

    # --- cleanup ----------------------------------------------------------------------------------------------

    async def preview(self, odds_days: int | None = None, match_days: int | None = None) -> tuple[Cutoffs, Counts]:
        """What a run with these retentions would delete now: the same cutoffs and selections, counted."""
        cutoffs = await self._cutoffs(odds_days, match_days, self.now())
        counts = Counts()
        async with self._pool.acquire() as conn:
            attached = await partition_repo.list_partitions(conn)
            for day in expired_days([p.day for p in attached if p.day is not None], cutoffs.odds):
                rows, oldest = await partition_repo.partition_contents(conn, day)
                counts.market_odds_history += rows
                counts.history_partitions += 1
                counts.saw_odds(oldest)
            await cleanup_repo.preview_rows(conn, cutoffs.odds, cutoffs.match, counts)
        return cutoffs, counts

    async def recover_interrupted(self) -> list[int]:
        """Marks failed the runs a crashed process left "running". Only done while holding the cleanup lock,
        so a run in progress in another process is never touched."""
        async with self._pool.acquire() as conn:
            if not await run_repo.try_cleanup_lock(conn):
                return []
            try:
                ids = await run_repo.mark_interrupted(conn, self.now(), INTERRUPTED)
            finally:
                await run_repo.release_cleanup_lock(conn)
        for run_id in ids:
            logger.warning("cleanup run %d was left running by a stopped process: marked failed", run_id)
        return ids

    async def run_cleanup(
        self, trigger: str = MANUAL, odds_days: int | None = None, match_days: int | None = None
    ) -> RunResult:
        """One cleanup run, recorded in cleanup_runs. Raises CleanupInProgress when any process runs one."""
        cutoffs = await self._cutoffs(odds_days, match_days, self.now())
        conn: asyncpg.Connection = await self._pool.acquire()
        try:
            if not await run_repo.try_cleanup_lock(conn):
                running = await run_repo.running_run(self._pool)
                raise CleanupInProgress(*(running or (None, None)))
            try:
                return await self._locked_run(conn, trigger, cutoffs)
            finally:
                try:
                    await run_repo.release_cleanup_lock(conn)
                except Exception:  # a dead connection has released its session lock already
                    logger.debug("cleanup lock release failed", exc_info=True)
        finally:
            await self._pool.release(conn)

    async def _locked_run(self, conn: asyncpg.Connection, trigger: str, cutoffs: Cutoffs) -> RunResult:
        run_id = await run_repo.insert_run(
            conn, cutoffs.now, trigger, cutoffs.odds_retention_days, cutoffs.match_retention_days
        )
        logger.info(
            "cleanup run %d (%s): odds before %s, matches before %s",
            run_id,
            trigger,
            cutoffs.odds.isoformat(),
            cutoffs.match.isoformat(),
        )
        counts, started = Counts(), time.perf_counter()
        try:
            await self._clean(conn, cutoffs, counts)
        except BaseException as exc:
            duration = time.perf_counter() - started
            message = CANCELLED if isinstance(exc, asyncio.CancelledError) else f"{type(exc).__name__}: {exc}"
            metrics.RUNS.labels(trigger, "failed").inc()
            logger.exception("cleanup run %d failed after %.1fs", run_id, duration)
            try:
                # On the pool, not `conn`: the run's connection may be what failed.
                await run_repo.finish_run(self._pool, run_id, self.now(), "failed", message, duration, counts)
            except Exception:
                logger.exception("cleanup run %d: could not record the failure", run_id)
            raise
        duration = time.perf_counter() - started
        await run_repo.finish_run(conn, run_id, self.now(), "completed", None, duration, counts)
        metrics.RUNS.labels(trigger, "completed").inc()
        metrics.RUN_SECONDS.observe(duration)
        for table in (
            "odds_snapshots",
            "competitor_odds_snapshots",
            "market_odds_history",
            "market_odds_current",
            "scrape_runs",
            "scrape_batches",
            "events",
            "competitor_events",
            "tournaments",
            "competitor_tournaments",
        ):
            metrics.ROWS_DELETED.labels(table).inc(getattr(counts, table))
        logger.info("cleanup run %d completed in %.2fs: %s", run_id, duration, counts.as_dict())
        return RunResult(run_id, cutoffs, counts, duration)

    async def _clean(self, conn: asyncpg.Connection, cutoffs: Cutoffs, counts: Counts) -> None:
        batch = self._settings.delete_batch
        await self._drop_expired_partitions(conn, cutoffs.odds, counts)
        n, oldest = await cleanup_repo.delete_snapshots(
            conn, cleanup_repo.OLD_ODDS_SNAPSHOTS, cutoffs.odds, batch, competitor=False
        )
        counts.odds_snapshots += n
        counts.saw_odds(oldest)
        n, oldest = await cleanup_repo.delete_snapshots(
            conn, cleanup_repo.OLD_COMPETITOR_SNAPSHOTS, naive(cutoffs.odds), batch, competitor=True
        )
        counts.competitor_odds_snapshots += n
        counts.saw_odds(oldest)
        await cleanup_repo.delete_expired_events(conn, cutoffs.match, batch, counts)
        await cleanup_repo.delete_expired_competitor_events(conn, cutoffs.match, batch, counts)
        await cleanup_repo.delete_old_scrape_runs(conn, cutoffs.odds, batch, counts)
        await cleanup_repo.delete_empty_tournaments(conn, cutoffs.match, batch, counts)

    async def _drop_expired_partitions(self, conn: asyncpg.Connection, cutoff: datetime, counts: Counts) -> None:
        for day in await partition_repo.detached_leftovers(conn):
            # Detached by a run that stopped before its DROP: no longer part of history, so not counted again.
            if PartitionDay(day).end <= cutoff and await partition_repo.drop_detached_leftover(conn, day):
                logger.info("dropped %s, detached by an earlier run", PartitionDay(day).name)
        attached = await partition_repo.list_partitions(conn)
        pending = {p.day for p in attached if p.detach_pending}
        for day in expired_days([p.day for p in attached if p.day is not None], cutoff):
            rows, oldest = await partition_repo.partition_contents(conn, day)
            dropped = await partition_repo.detach_and_drop(
                conn, day, day in pending, self._settings.lock_timeout, self._settings.lock_retries
            )
            if not dropped:
                # PostgreSQL allows one pending detach per table: the others wait for the next run too.
                logger.warning("partition %s still locked after retries: left for the next run", PartitionDay(day).name)
                return
            counts.market_odds_history += rows
            counts.history_partitions += 1
            counts.saw_odds(oldest)
            metrics.PARTITIONS_DROPPED.inc()
            logger.info("dropped history partition %s (%d rows)", PartitionDay(day).name, rows)

    async def list_runs(self, limit: int) -> tuple[list[RunRecord], int]:
        return await run_repo.list_runs(self._pool, limit)

    # --- the periodic tick ------------------------------------------------------------------------------------

    async def run_if_due(self) -> RunResult | None:
        """A scheduled run when a slot of the cadence has passed without one. Settings are read here, each
        time, so a new frequency or retention applies from the next tick."""
        now = self.now()
        stored = await settings_repo.get_settings(self._pool)
        slot = due_slot(now, stored.cleanup_frequency_hours, await run_repo.last_scheduled_start(self._pool))
        if slot is None:
            return None
        logger.info("scheduled cleanup for %s", slot.isoformat())
        try:
            return await self.run_cleanup(SCHEDULED)
        except CleanupInProgress as exc:
            logger.info("scheduled cleanup postponed: %s", exc)
            return None

    async def sample_storage_if_due(self) -> int | None:
        """The day's storage sample (one per UTC day, the newest SAMPLES_KEPT kept) and its growth alert."""
        now = self.now()
        last = await storage_repo.last_sample(self._pool)
        if not sample_due(now, last[0] if last else None):
            return None
        sizes = await storage_repo.table_sizes(self._pool)
        total, _ = await storage_repo.database_size(self._pool)
        async with self._pool.acquire() as conn:
            sample_id = await storage_repo.insert_sample(
                conn, now, total, {t.table_name: t.size_bytes for t in sizes}, SAMPLES_KEPT
            )
            alert = growth_alert(last[1] if last else None, total, self._settings.growth_warning_percent)
            if alert is not None:
                await storage_repo.insert_alert(conn, now, alert)
                logger.warning("storage: %s", alert.message)
        return sample_id

    async def check_size(self) -> None:
        total, _ = await storage_repo.database_size(self._pool)
        metrics.DATABASE_BYTES.set(total)
        alert = size_alert(total, self._settings.size_critical_bytes, await storage_repo.critical_open(self._pool))
        if alert is not None:
            await storage_repo.insert_alert(self._pool, self.now(), alert)
            logger.error("storage: %s", alert.message)

    async def tick(self) -> None:
        """One pass of the periodic work; a failing step is logged and does not stop the others."""
        steps = (
            ("partitions", self.ensure_partitions),
            ("schedule", self.run_if_due),
            # One day per tick: a first start with many heap days converts them a tick apart, not in one long step.
            ("columnar", lambda: self.convert_closed_days(limit=1)),
            ("sample", self.sample_storage_if_due),
            ("size", self.check_size),
        )
        for name, step in steps:
            try:
                await step()
            except asyncio.CancelledError:
                raise
            except Exception:
                metrics.TICK_ERRORS.labels(name).inc()
                logger.exception("retention tick: %s failed", name)

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self._settings.tick_seconds)
            await self.tick()

    # --- storage ----------------------------------------------------------------------------------------------

    async def storage_sizes(self) -> StorageReport:
        async with self._pool.acquire() as conn:
            tables = await storage_repo.table_sizes(conn)
            total, human = await storage_repo.database_size(conn)
        return StorageReport(tables, total, human, self.now())

    async def list_samples(self, limit: int) -> tuple[list[Sample], int]:
        return await storage_repo.list_samples(self._pool, limit)

    async def open_alerts(self) -> list[Alert]:
        return await storage_repo.open_alerts(self._pool)

    async def resolve_alert(self, alert_id: int) -> Alert:
        alert = await storage_repo.resolve_alert(self._pool, alert_id, self.now())
        if alert is None:
            raise AlertNotFound(alert_id)
        return alert

    async def data_stats(self) -> DataStats:
        return await cleanup_repo.data_stats(self._pool)
