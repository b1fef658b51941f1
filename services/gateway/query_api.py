"""Routes of UI contract §(a), §(b), §(f) plus point-in-time and time-to-kickoff reads, served from the query
service."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response
from pydantic import BaseModel

from oddstore.convert import to_timestamp
from oddstore.platforms import PLATFORMS
from oddstore.v1 import query_pb2
from services.gateway import convert, models
from services.gateway.dependencies import (
    INT32_MAX,
    HistoryRequest,
    IdPath,
    Int64,
    KickoffBound,
    LineQuery,
    MarketIdPath,
    OffsetsQuery,
    QueryDep,
    UtcInstant,
)
from services.gateway.errors import error_response, upstream_errors
from services.gateway.query_client import NotFound


def body_response(body: bytes) -> Response:
    """A body the query service rendered in the contract's JSON (its *Json methods): sent without re-validation,
    which for a 99 kB event detail was ~90 % of the gateway's time (issue 14)."""
    return Response(body, media_type="application/json")


def _json(model: BaseModel) -> Response:
    """The model serialized once, by pydantic-core. Returned as a model, FastAPI would validate it
    again and encode it through Python's json: 1.8 against 0.35 ms for a 336-market event detail."""
    return Response(model.model_dump_json(by_alias=True), media_type="application/json")


class Availability(StrEnum):
    betpawa = "betpawa"
    competitor = "competitor"
    alerts = "alerts"


class ListAvailability(StrEnum):
    betpawa = "betpawa"
    competitor = "competitor"


_AVAILABILITY_PB = {
    "betpawa": query_pb2.AVAILABILITY_BETPAWA,
    "competitor": query_pb2.AVAILABILITY_COMPETITOR,
    "alerts": query_pb2.AVAILABILITY_ALERTS,
}


router = APIRouter(prefix="/api", responses=upstream_errors("query"))


@router.get("/events", response_model=models.MatchedEventList, tags=["events"])
async def list_events(
    query: QueryDep,
    availability: Availability = Availability.betpawa,
    tournament_ids: Annotated[list[Int64] | None, Query()] = None,
    tournament_id: Annotated[Int64 | None, Query(deprecated=True, description="only without tournament_ids")] = None,
    sport_id: Annotated[Int64 | None, Query()] = None,
    kickoff_from: Annotated[KickoffBound | None, Query(description="inclusive; offset dropped, read as UTC")] = None,
    kickoff_to: Annotated[KickoffBound | None, Query(description="inclusive; offset dropped, read as UTC")] = None,
    include_started: bool = False,
    min_bookmakers: Annotated[int, Query(ge=1, le=3)] = 1,
    search: str | None = None,
    countries: Annotated[list[str] | None, Query()] = None,
    page: Annotated[int, Query(ge=1, le=INT32_MAX)] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 50,
) -> Response:
    ids = tournament_ids or ([tournament_id] if tournament_id is not None else [])
    request = query_pb2.ListEventsRequest(
        availability=_AVAILABILITY_PB[availability],
        tournament_ids=ids,
        include_started=include_started,
        min_bookmakers=min_bookmakers,
        search=search or "",
        countries=countries or [],
        page=page,
        page_size=page_size,
    )
    if sport_id is not None:
        request.sport_id = sport_id
    if kickoff_from is not None:
        request.kickoff_from.CopyFrom(to_timestamp(kickoff_from))
    if kickoff_to is not None:
        request.kickoff_to.CopyFrom(to_timestamp(kickoff_to))
    return body_response(await query.json_body("ListEventsJson", request))


# The three fixed paths below are registered before /events/{event_id} so that they are not read as ids.


@router.get("/events/alerts/count", response_model=models.AlertsCount, tags=["events"])
async def count_alerts(query: QueryDep) -> models.AlertsCount:
    return models.AlertsCount(count=await query.count_alerts())


@router.get("/events/tournaments", response_model=list[models.TournamentItem], tags=["events"])
async def list_tournaments(
    query: QueryDep,
    availability: ListAvailability = ListAvailability.betpawa,
    with_events_only: Annotated[
        bool, Query(description="accepted for compatibility; only tournaments with upcoming events are listed")
    ] = True,
) -> list[models.TournamentItem]:
    return [convert.tournament(t) for t in await query.list_tournaments(_AVAILABILITY_PB[availability])]


@router.get("/events/countries", response_model=list[str], tags=["events"])
async def list_countries(query: QueryDep, availability: ListAvailability = ListAvailability.betpawa) -> list[str]:
    return await query.list_countries(_AVAILABILITY_PB[availability])


@router.get(
    "/events/{event_id}",
    response_model=models.EventDetailResponse,
    responses={404: error_response("unknown event")},
    tags=["events"],
)
async def get_event(query: QueryDep, event_id: IdPath) -> Response:
    try:
        return body_response(await query.json_body("GetEventJson", query_pb2.GetEventRequest(event_id=event_id)))
    except NotFound as exc:
        raise HTTPException(404, "Event not found") from exc


@contextmanager
def _bookmaker_known(request: query_pb2.GetMarketHistoryRequest) -> Iterator[None]:
    try:
        yield
    except NotFound as exc:
        # NOT_FOUND from GetMarketHistory means an unknown bookmaker only; unknown events have no points.
        raise HTTPException(404, f"Bookmaker not found: {request.bookmaker_slug}") from exc


@router.get(
    "/events/{event_id}/markets/{market_id}/history",
    response_model=models.OddsHistoryResponse,
    responses={404: error_response("unknown bookmaker")},
    tags=["history"],
)
async def odds_history(query: QueryDep, request: HistoryRequest) -> Response:
    with _bookmaker_known(request):
        return body_response(await query.json_body("GetMarketHistoryJson", request))


@router.get(
    "/events/{event_id}/markets/{market_id}/margin-history",
    response_model=models.MarginHistoryResponse,
    responses={404: error_response("unknown bookmaker")},
    tags=["history"],
)
async def margin_history(query: QueryDep, request: HistoryRequest) -> Response:
    with _bookmaker_known(request):
        return _json(convert.margin_history(await query.get_market_history(request)))


@router.get(
    "/events/{event_id}/at",
    response_model=models.EventAtResponse,
    responses={404: error_response("unknown event")},
    tags=["point in time"],
)
async def event_at(
    query: QueryDep,
    event_id: IdPath,
    at: Annotated[UtcInstant, Query(description="the instant, ISO 8601; without an offset it is UTC")],
) -> Response:
    request = query_pb2.GetEventAtRequest(event_id=event_id, at=to_timestamp(at))
    try:
        return body_response(await query.json_body("GetEventAtJson", request))
    except NotFound as exc:
        raise HTTPException(404, "Event not found") from exc


@router.get(
    "/events/{event_id}/markets/{market_id}/time-to-kickoff",
    response_model=models.TimeToKickoffResponse,
    responses={404: error_response("unknown event")},
    tags=["time to kickoff"],
)
async def time_to_kickoff(
    query: QueryDep,
    event_id: IdPath,
    market_id: MarketIdPath,
    line: LineQuery = None,
    offsets_hours: OffsetsQuery = None,
) -> models.TimeToKickoffResponse:
    request = query_pb2.GetTimeToKickoffRequest(
        event_id=event_id, market_id=market_id, offsets_seconds=convert.hours_to_seconds(offsets_hours or [])
    )
    if line is not None:
        request.line = line
    try:
        return convert.time_to_kickoff(await query.get_time_to_kickoff(request))
    except NotFound as exc:
        raise HTTPException(404, "Event not found") from exc


@router.get(
    "/tournaments/{tournament_id}/markets/{market_id}/margin-to-kickoff",
    response_model=models.TournamentMarginToKickoffResponse,
    responses={404: error_response("unknown tournament")},
    tags=["time to kickoff"],
)
async def tournament_margin_to_kickoff(
    query: QueryDep,
    tournament_id: IdPath,
    market_id: MarketIdPath,
    line: LineQuery = None,
    offsets_hours: OffsetsQuery = None,
) -> models.TournamentMarginToKickoffResponse:
    request = query_pb2.GetTournamentMarginToKickoffRequest(
        tournament_id=tournament_id, market_id=market_id, offsets_seconds=convert.hours_to_seconds(offsets_hours or [])
    )
    if line is not None:
        request.line = line
    try:
        return convert.tournament_margin_to_kickoff(await query.get_tournament_margin_to_kickoff(request))
    except NotFound as exc:
        raise HTTPException(404, "Tournament not found") from exc


def overall_status(database_up: bool, platforms_up: list[bool]) -> str:
    """Contract §18: unhealthy if the database is down or no platform is up, healthy if all are up."""
    if not database_up or not any(platforms_up):
        return "unhealthy"
    return "healthy" if all(platforms_up) else "degraded"


@router.get("/health", response_model=models.HealthResponse, tags=["health"])
async def health(query: QueryDep) -> models.HealthResponse:
    """`database` is the query service's grpc.health.v1 status: the gateway has no database of its own.

    Platforms are derived from our services, not probed: every platform's stored odds are served by the
    query service, so each is healthy exactly when it is SERVING, with its health-check round trip as
    `response_time_ms`. Probing the bookmakers' sites from a 30 s UI poll would make the sidebar depend on
    the internet (absent here) and say nothing about what this system can serve.
    """
    state = await query.health()
    platforms = [
        models.PlatformHealth(
            platform=slug,
            status="healthy" if state.serving else "unhealthy",
            response_time_ms=state.latency_ms,
            error=state.error,
        )
        for slug in PLATFORMS
    ]
    return models.HealthResponse(
        status=overall_status(state.serving, [state.serving for _ in PLATFORMS]),
        database="connected" if state.serving else "disconnected",
        platforms=platforms,
    )
