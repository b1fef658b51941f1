"""Response models of the UI contract (snake_case, every field always emitted, nulls explicit)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, PlainSerializer, WithJsonSchema


def format_utc(value: datetime) -> str:
    """RFC 3339 in UTC with a trailing Z, never +00:00 (the UI appends a Z to strings without one)."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat() + "Z"


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
