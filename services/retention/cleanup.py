"""Cleanup runs as the domain sees them: cutoffs, counters, and the errors a run request can meet."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta

MANUAL = "manual"
SCHEDULED = "scheduled"
INTERRUPTED = "interrupted: the retention service stopped mid-run"


@dataclass(frozen=True, slots=True)
class Cutoffs:
    now: datetime
    odds_retention_days: int
    match_retention_days: int

    @property
    def odds(self) -> datetime:
        """Odds (legacy snapshots, history partitions) strictly older than this go."""
        return self.now.astimezone(UTC) - timedelta(days=self.odds_retention_days)

    @property
    def match(self) -> datetime:
        """Events with a kickoff strictly older than this go, with their current state."""
        return self.now.astimezone(UTC) - timedelta(days=self.match_retention_days)


@dataclass(slots=True)
class Counts:
    """What a run deleted, or a preview would delete. Mutable: a run fills it in step by step, so a failed
    run still records what it had done."""

    odds_snapshots: int = 0
    competitor_odds_snapshots: int = 0
    market_odds_history: int = 0
    history_partitions: int = 0
    market_odds_current: int = 0
    scrape_runs: int = 0
    scrape_batches: int = 0
    events: int = 0
    competitor_events: int = 0
    tournaments: int = 0
    competitor_tournaments: int = 0
    oldest_odds_date: datetime | None = None
    oldest_match_date: datetime | None = None

    def saw_odds(self, when: datetime | None) -> None:
        self.oldest_odds_date = _older(self.oldest_odds_date, when)

    def saw_match(self, when: datetime | None) -> None:
        self.oldest_match_date = _older(self.oldest_match_date, when)

    def as_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _older(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


@dataclass(frozen=True, slots=True)
class RunRecord:
    id: int
    started_at: datetime
    completed_at: datetime | None
    trigger: str
    odds_retention_days: int
    match_retention_days: int
    counts: Counts
    status: str
    error_message: str | None
    duration_seconds: float | None

    @property
    def cutoffs(self) -> Cutoffs:
        return Cutoffs(self.started_at, self.odds_retention_days, self.match_retention_days)


@dataclass(frozen=True, slots=True)
class RunResult:
    run_id: int
    cutoffs: Cutoffs
    counts: Counts
    duration_seconds: float


TableStat = tuple[int, datetime | None, datetime | None]


@dataclass(frozen=True, slots=True)
class DataStats:
    odds_snapshots: TableStat
    competitor_odds_snapshots: TableStat
    events: TableStat
    competitor_events: TableStat
    tournaments: TableStat
    competitor_tournaments: TableStat
    market_odds_history: TableStat
    scrape_runs: TableStat
    scrape_batches: TableStat
    events_by_platform: list[tuple[str, int]]
    competitor_events_by_source: list[tuple[str, int]]


class CleanupInProgress(Exception):
    """Another run (in this or another process) holds the cleanup lock."""

    def __init__(self, run_id: int | None, started_at: datetime | None) -> None:
        if run_id is None or started_at is None:
            detail = "another run is starting"
        else:
            detail = f"run {run_id} started at {started_at.astimezone(UTC).isoformat().replace('+00:00', 'Z')}"
        super().__init__(f"a cleanup run is already in progress ({detail})")
        self.run_id = run_id
