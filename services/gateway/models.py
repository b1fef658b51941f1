"""Models of the UI contract: every field always emitted, nulls explicit, timestamps in UTC with a Z.

Events, history and health are snake_case; storage, cleanup and settings are camelCase (contract §0).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema
from pydantic.alias_generators import to_camel

from oddstore.convert import format_utc as format_utc  # re-exported: the gateway's modules import it from here

UtcDatetime = Annotated[
    datetime,
    PlainSerializer(format_utc, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


class Model(BaseModel):
    # No exclude_none / exclude_unset anywhere: the UI relies on nulls being present (contract §0).
    model_config = ConfigDict(frozen=True, extra="forbid")


class ErrorDetail(Model):
    detail: str


class Outcome(Model):
    name: str
    odds: float


class OutcomeWithActive(Model):
    name: str
    odds: float
    is_active: bool


class InlineOdds(Model):
    market_id: str
    market_name: str
    line: float | None
    outcomes: list[Outcome]
    margin: float | None
    available: bool
    unavailable_since: UtcDatetime | None


class BookmakerOdds(Model):
    bookmaker_slug: str
    bookmaker_name: str
    external_event_id: str
    event_url: str | None  # never populated, always null (contract §1)
    has_odds: bool
    inline_odds: list[InlineOdds]
    snapshot_time: UtcDatetime | None


class MatchedEvent(Model):
    id: int
    sportradar_id: str
    name: str
    home_team: str
    away_team: str
    kickoff: UtcDatetime
    tournament_id: int
    tournament_name: str
    tournament_country: str | None
    sport_name: str
    bookmakers: list[BookmakerOdds]
    created_at: UtcDatetime


class MatchedEventList(Model):
    events: list[MatchedEvent]
    total: int
    page: int
    page_size: int


class MarketOddsDetail(Model):
    betpawa_market_id: str
    betpawa_market_name: str
    line: float | None
    outcomes: list[OutcomeWithActive]
    margin: float | None
    market_groups: list[str] | None
    available: bool
    unavailable_since: UtcDatetime | None


class BookmakerMarketData(Model):
    bookmaker_slug: str
    bookmaker_name: str
    snapshot_time: UtcDatetime | None
    markets: list[MarketOddsDetail]


class EventDetailResponse(MatchedEvent):
    markets_by_bookmaker: list[BookmakerMarketData]


class AlertsCount(Model):
    count: int


class TournamentItem(Model):
    id: int
    name: str
    country: str | None


class OddsHistoryPoint(Model):
    captured_at: UtcDatetime
    outcomes: list[Outcome]
    margin: float | None
    available: bool
    unavailable_at: UtcDatetime | None
    confirmed: bool


class MarginHistoryPoint(Model):
    captured_at: UtcDatetime
    margin: float | None
    available: bool
    unavailable_at: UtcDatetime | None
    confirmed: bool


class OddsHistoryResponse(Model):
    event_id: int
    bookmaker_slug: str
    bookmaker_name: str
    market_id: str
    market_name: str  # equals market_id, as in the old backend (contract §6)
    line: float | None
    history: list[OddsHistoryPoint]


class MarginHistoryResponse(Model):
    event_id: int
    bookmaker_slug: str
    bookmaker_name: str
    market_id: str
    market_name: str
    line: float | None
    history: list[MarginHistoryPoint]


class PlatformHealth(Model):
    platform: str
    status: str
    response_time_ms: int | None
    error: str | None


class HealthResponse(Model):
    status: str
    database: str
    platforms: list[PlatformHealth]


# New endpoints, in the same style (snake_case, explicit nulls, Z timestamps).


class EventAtResponse(Model):
    event_id: int
    at: UtcDatetime
    markets_by_bookmaker: list[BookmakerMarketData]


class OffsetOdds(Model):
    offset_hours: float
    at: UtcDatetime  # kickoff − offset
    has_data: bool  # false: the market was not yet known at that time
    outcomes: list[OutcomeWithActive]
    margin: float | None
    available: bool


class BookmakerToKickoff(Model):
    bookmaker_slug: str
    bookmaker_name: str
    points: list[OffsetOdds]


class TimeToKickoffResponse(Model):
    event_id: int
    kickoff: UtcDatetime
    market_id: str
    line: float | None
    bookmakers: list[BookmakerToKickoff]


class OffsetMargin(Model):
    offset_hours: float
    average_margin: float | None  # null: no event had a price at that offset
    events: int  # events averaged


class BookmakerMarginToKickoff(Model):
    bookmaker_slug: str
    bookmaker_name: str
    points: list[OffsetMargin]


class TournamentMarginToKickoffResponse(Model):
    tournament_id: int
    market_id: str
    line: float | None
    bookmakers: list[BookmakerMarginToKickoff]


# Storage, cleanup and settings (contract §c, §d, §e): camelCase on the wire. FastAPI serializes responses by
# alias; request bodies accept the camelCase the UI sends and also snake_case (populate_by_name).

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
SCRAPE_RUNS = (
    "The old system's scrape runs and batches, kept in a database taken over from it and cleaned up by the odds "
    "retention; always 0 otherwise (this system's snapshots arrive through the ingest service)."
)


def camel(name: str) -> str:
    """to_camel, except that a letter after a digit stays lower case: bet9ja_delay_ms is bet9jaDelayMs, as in the
    contract (pydantic's to_camel gives bet9JaDelayMs)."""
    return re.sub(r"(?<=\d)([A-Z])", lambda m: m.group(1).lower(), to_camel(name))


class CamelModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=camel, populate_by_name=True)


class CamelRequest(BaseModel):
    # Unknown keys are ignored, as the old backend's default pydantic models did.
    model_config = ConfigDict(frozen=True, extra="ignore", alias_generator=camel, populate_by_name=True)


class TableSizeItem(CamelModel):
    table_name: str
    size_bytes: int = Field(description="heap + indexes + TOAST; a partitioned table includes its partitions")
    size_human: str
    row_count: int = Field(description="live rows (pg_stat_user_tables.n_live_tup), summed over partitions")


class StorageSizesResponse(CamelModel):
    tables: list[TableSizeItem] = Field(description="one entry per table, largest first")
    total_bytes: int
    total_human: str
    measured_at: UtcDatetime


class StorageSampleItem(CamelModel):
    id: int
    sampled_at: UtcDatetime
    total_bytes: int
    table_sizes: dict[str, int] = Field(description="table name to bytes")


class StorageHistoryResponse(CamelModel):
    samples: list[StorageSampleItem] = Field(description="newest first")
    total: int = Field(description="count of all samples")


class StorageAlertItem(CamelModel):
    id: int
    created_at: UtcDatetime
    alert_type: str = Field(description="growth_warning or size_critical")
    message: str
    current_bytes: int
    previous_bytes: int
    growth_percent: float = Field(description="0 for size_critical")
    resolved_at: UtcDatetime | None


class StorageAlertsResponse(CamelModel):
    alerts: list[StorageAlertItem] = Field(description="unresolved alerts, newest first")
    count: int = Field(description="the length of alerts")


class TableStats(CamelModel):
    count: int
    oldest: UtcDatetime | None
    newest: UtcDatetime | None


class PlatformCountItem(CamelModel):
    platform: str
    count: int


class DataStatsResponse(CamelModel):
    odds_snapshots: TableStats
    competitor_odds_snapshots: TableStats
    events: TableStats
    competitor_events: TableStats
    tournaments: TableStats = Field(description="oldest and newest are always null")
    competitor_tournaments: TableStats = Field(description="oldest and newest are always null")
    scrape_runs: TableStats = Field(description=SCRAPE_RUNS)
    scrape_batches: TableStats = Field(description=SCRAPE_RUNS)
    events_by_platform: list[PlatformCountItem] = Field(
        description="distinct events per bookmaker, labelled by the bookmaker's slug (the old label was "
        "bookmaker_<id>; ids are not stable across databases)"
    )
    competitor_events_by_source: list[PlatformCountItem]
    market_odds_history: TableStats = Field(
        description="not in the old contract: the partitioned odds history, which the old statistics ignored"
    )


class CleanupPreviewResponse(CamelModel):
    odds_cutoff_date: UtcDatetime
    match_cutoff_date: UtcDatetime
    odds_snapshots_count: int
    competitor_odds_snapshots_count: int
    market_odds_history_count: int = Field(description="rows in the history partitions that would be dropped")
    scrape_runs_count: int = Field(description=SCRAPE_RUNS)
    scrape_batches_count: int = Field(description=SCRAPE_RUNS)
    events_count: int
    competitor_events_count: int
    tournaments_count: int
    competitor_tournaments_count: int


class CleanupResultResponse(CamelModel):
    odds_deleted: int
    competitor_odds_deleted: int
    market_odds_history_deleted: int = Field(description="rows in the history partitions dropped")
    scrape_runs_deleted: int = Field(description=SCRAPE_RUNS)
    scrape_batches_deleted: int = Field(description=SCRAPE_RUNS)
    events_deleted: int
    competitor_events_deleted: int
    tournaments_deleted: int
    competitor_tournaments_deleted: int
    oldest_odds_date: UtcDatetime | None = Field(description="the oldest deleted record")
    oldest_match_date: UtcDatetime | None = Field(description="the oldest deleted record")
    duration_seconds: float = Field(description="rounded to 2 decimals")


class CleanupRunItem(CamelModel):
    id: int
    started_at: UtcDatetime
    completed_at: UtcDatetime | None
    trigger: str = Field(description="manual or scheduled")
    odds_retention_days: int
    match_retention_days: int
    odds_deleted: int
    competitor_odds_deleted: int
    scrape_runs_deleted: int = Field(description=SCRAPE_RUNS)
    scrape_batches_deleted: int = Field(description=SCRAPE_RUNS)
    events_deleted: int
    competitor_events_deleted: int
    tournaments_deleted: int
    competitor_tournaments_deleted: int
    oldest_odds_date: UtcDatetime | None
    oldest_match_date: UtcDatetime | None
    status: str = Field(description="running, completed or failed")
    error_message: str | None
    duration_seconds: float | None


class CleanupHistoryResponse(CamelModel):
    runs: list[CleanupRunItem] = Field(description="newest first")
    total: int = Field(description="count of all runs")


class CleanupExecuteRequest(CamelRequest):
    # No range check here (contract §14); the retention service rejects days outside 1–365 (answered 422).
    odds_retention_days: int | None = Field(None, ge=INT32_MIN, le=INT32_MAX, description="missing: the setting")
    match_retention_days: int | None = Field(None, ge=INT32_MIN, le=INT32_MAX, description="missing: the setting")


class SettingsResponse(CamelModel):
    scrape_interval_minutes: int
    enabled_platforms: list[str]
    odds_retention_days: int
    match_retention_days: int
    cleanup_frequency_hours: int
    betpawa_concurrency: int
    sportybet_concurrency: int
    bet9ja_concurrency: int
    bet9ja_delay_ms: int
    batch_size: int
    max_concurrent_events: int
    updated_at: UtcDatetime | None = Field(description="null until the first update")


class SettingsUpdateRequest(CamelRequest):
    """A partial update: only the fields that are present and not null are applied."""

    scrape_interval_minutes: int | None = Field(None, ge=1, le=60)
    enabled_platforms: list[str] | None = Field(
        None, description="slugs other than sportybet, betpawa and bet9ja are dropped; an empty list is accepted"
    )
    odds_retention_days: int | None = Field(None, ge=1, le=365)
    match_retention_days: int | None = Field(None, ge=1, le=365)
    cleanup_frequency_hours: int | None = Field(None, ge=1, le=168)
    betpawa_concurrency: int | None = Field(None, ge=1, le=100)
    sportybet_concurrency: int | None = Field(None, ge=1, le=100)
    bet9ja_concurrency: int | None = Field(None, ge=1, le=50)
    bet9ja_delay_ms: int | None = Field(None, ge=0, le=100)
    batch_size: int | None = Field(None, ge=10, le=200)
    max_concurrent_events: int | None = Field(None, ge=1, le=50)
