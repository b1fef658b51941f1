"""Protobuf from the query service to the UI contract's response models, and request values to protobuf.

Proto3 cannot tell 0.0 from absent, so lines and margins are `optional` in query.proto and unset
Timestamps mean null; everything here keeps that distinction (contract §0: `line` null is not 0.0).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from oddstore.v1 import query_pb2
from services.gateway import models

SECONDS_PER_HOUR = 3600


def to_datetime(ts: Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


def optional_datetime(message: Message, field: str) -> datetime | None:
    if not message.HasField(field):
        return None
    value: Timestamp = getattr(message, field)
    return to_datetime(value)


def optional_float(message: Message, field: str) -> float | None:
    if not message.HasField(field):
        return None
    value: float = getattr(message, field)
    return value


def to_timestamp(value: datetime) -> Timestamp:
    """A naive datetime is UTC; an aware one is converted to UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    ts = Timestamp()
    ts.FromDatetime(value.astimezone(UTC))
    return ts


def drop_timezone(value: datetime) -> datetime:
    """kickoff_from/to: the old backend drops the offset and reads the wall time as UTC (contract §1)."""
    return value.replace(tzinfo=UTC)


def hours_to_seconds(hours: Iterable[float]) -> list[int]:
    return [round(h * SECONDS_PER_HOUR) for h in hours]


def seconds_to_hours(seconds: int) -> float:
    return seconds / SECONDS_PER_HOUR


def inline_market(m: query_pb2.InlineMarket) -> models.InlineOdds:
    return models.InlineOdds(
        market_id=m.market_id,
        market_name=m.market_name,
        line=optional_float(m, "line"),
        outcomes=[models.Outcome(name=o.name, odds=o.odds) for o in m.outcomes],
        margin=optional_float(m, "margin"),
        available=m.available,
        unavailable_since=optional_datetime(m, "unavailable_since"),
    )


def bookmaker_odds(b: query_pb2.BookmakerOdds) -> models.BookmakerOdds:
    return models.BookmakerOdds(
        bookmaker_slug=b.bookmaker_slug,
        bookmaker_name=b.bookmaker_name,
        external_event_id=b.external_event_id,
        event_url=None,
        has_odds=b.has_odds,
        inline_odds=[inline_market(m) for m in b.inline_odds],
        snapshot_time=optional_datetime(b, "snapshot_time"),
    )


def _event_fields(e: query_pb2.EventSummary) -> dict[str, object]:
    return {
        "id": e.id,
        "sportradar_id": e.sportradar_id,
        "name": e.name,
        "home_team": e.home_team,
        "away_team": e.away_team,
        "kickoff": to_datetime(e.kickoff),
        "tournament_id": e.tournament_id,
        "tournament_name": e.tournament_name,
        # The old detail endpoint always sent null here (a defect, contract §2); we send the real country.
        "tournament_country": e.tournament_country if e.HasField("tournament_country") else None,
        "sport_name": e.sport_name,
        "bookmakers": [bookmaker_odds(b) for b in e.bookmakers],
        "created_at": to_datetime(e.created_at),
    }


def matched_event(e: query_pb2.EventSummary) -> models.MatchedEvent:
    return models.MatchedEvent.model_validate(_event_fields(e))


def event_list(response: query_pb2.ListEventsResponse, page: int, page_size: int) -> models.MatchedEventList:
    return models.MatchedEventList(
        events=[matched_event(e) for e in response.events], total=response.total, page=page, page_size=page_size
    )


def market_detail(m: query_pb2.MarketDetail) -> models.MarketOddsDetail:
    return models.MarketOddsDetail(
        betpawa_market_id=m.market_id,
        betpawa_market_name=m.market_name,
        line=optional_float(m, "line"),
        outcomes=[models.OutcomeWithActive(name=o.name, odds=o.odds, is_active=o.is_active) for o in m.outcomes],
        margin=optional_float(m, "margin"),
        market_groups=None if m.market_groups_null else list(m.market_groups),
        available=m.available,
        unavailable_since=optional_datetime(m, "unavailable_since"),
    )


def bookmaker_markets(b: query_pb2.BookmakerMarkets) -> models.BookmakerMarketData:
    return models.BookmakerMarketData(
        bookmaker_slug=b.bookmaker_slug,
        bookmaker_name=b.bookmaker_name,
        snapshot_time=optional_datetime(b, "snapshot_time"),
        markets=[market_detail(m) for m in b.markets],
    )


def event_detail(d: query_pb2.EventDetail) -> models.EventDetailResponse:
    fields = _event_fields(d.event)
    fields["markets_by_bookmaker"] = [bookmaker_markets(b) for b in d.markets_by_bookmaker]
    return models.EventDetailResponse.model_validate(fields)


def tournament(t: query_pb2.Tournament) -> models.TournamentItem:
    return models.TournamentItem(id=t.id, name=t.name, country=t.country if t.HasField("country") else None)


def _history_line(h: query_pb2.MarketHistory) -> float | None:
    # Contract §6: the line of the first point, or null when there are no points.
    return optional_float(h, "line") if h.points else None


def odds_history(h: query_pb2.MarketHistory) -> models.OddsHistoryResponse:
    return models.OddsHistoryResponse(
        event_id=h.event_id,
        bookmaker_slug=h.bookmaker_slug,
        bookmaker_name=h.bookmaker_name,
        market_id=h.market_id,
        market_name=h.market_id,
        line=_history_line(h),
        history=[
            models.OddsHistoryPoint(
                captured_at=to_datetime(p.captured_at),
                outcomes=[models.Outcome(name=o.name, odds=o.odds) for o in p.outcomes],
                margin=optional_float(p, "margin"),
                available=p.available,
                unavailable_at=optional_datetime(p, "unavailable_at"),
                confirmed=p.confirmed,
            )
            for p in h.points
        ],
    )


def margin_history(h: query_pb2.MarketHistory) -> models.MarginHistoryResponse:
    return models.MarginHistoryResponse(
        event_id=h.event_id,
        bookmaker_slug=h.bookmaker_slug,
        bookmaker_name=h.bookmaker_name,
        market_id=h.market_id,
        market_name=h.market_id,
        line=_history_line(h),
        history=[
            models.MarginHistoryPoint(
                captured_at=to_datetime(p.captured_at),
                margin=optional_float(p, "margin"),
                available=p.available,
                unavailable_at=optional_datetime(p, "unavailable_at"),
                confirmed=p.confirmed,
            )
            for p in h.points
        ],
    )


def event_at(e: query_pb2.EventAt) -> models.EventAtResponse:
    return models.EventAtResponse(
        event_id=e.event_id,
        at=to_datetime(e.at),
        markets_by_bookmaker=[bookmaker_markets(b) for b in e.markets_by_bookmaker],
    )


def time_to_kickoff(t: query_pb2.TimeToKickoff) -> models.TimeToKickoffResponse:
    return models.TimeToKickoffResponse(
        event_id=t.event_id,
        kickoff=to_datetime(t.kickoff),
        market_id=t.market_id,
        line=optional_float(t, "line"),
        bookmakers=[
            models.BookmakerToKickoff(
                bookmaker_slug=b.bookmaker_slug,
                bookmaker_name=b.bookmaker_name,
                points=[
                    models.OffsetOdds(
                        offset_hours=seconds_to_hours(p.offset_seconds),
                        at=to_datetime(p.at),
                        has_data=p.has_data,
                        outcomes=[
                            models.OutcomeWithActive(name=o.name, odds=o.odds, is_active=o.is_active)
                            for o in p.outcomes
                        ],
                        margin=optional_float(p, "margin"),
                        available=p.available,
                    )
                    for p in b.points
                ],
            )
            for b in t.bookmakers
        ],
    )


def tournament_margin_to_kickoff(
    t: query_pb2.TournamentMarginToKickoff,
) -> models.TournamentMarginToKickoffResponse:
    return models.TournamentMarginToKickoffResponse(
        tournament_id=t.tournament_id,
        market_id=t.market_id,
        line=optional_float(t, "line"),
        bookmakers=[
            models.BookmakerMarginToKickoff(
                bookmaker_slug=b.bookmaker_slug,
                bookmaker_name=b.bookmaker_name,
                points=[
                    models.OffsetMargin(
                        offset_hours=seconds_to_hours(p.offset_seconds),
                        average_margin=optional_float(p, "average_margin"),
                        events=p.events,
                    )
                    for p in b.points
                ],
            )
            for b in t.bookmakers
        ],
    )
