"""The FastAPI application: routes of UI contract §(a), §(b), §(f) plus point-in-time and time-to-kickoff reads,
and, with a retention client, §(c) storage, §(d) cleanup and §(e) settings (retention_api.py).

`create_app` is the only way in; the clients are passed in and opened in the lifespan, so importing this
module opens nothing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request, WebSocket
from fastapi.responses import JSONResponse, Response
from pydantic import AfterValidator, BaseModel, BeforeValidator, Field

from oddstore.convert import to_timestamp
from oddstore.platforms import PLATFORMS
from oddstore.v1 import query_pb2
from services.gateway import convert, models, retention_api
from services.gateway.query_client import Conflict, InvalidArgument, NotFound, QueryClient, QueryFailed, Unavailable
from services.gateway.retention_client import RetentionClient

logger = logging.getLogger(__name__)


def _json(model: BaseModel) -> Response:
    """The model serialized once, by pydantic-core. Returned as a model, FastAPI would validate it
    again and encode it through Python's json: 1.8 against 0.35 ms for a 336-market event detail."""
    return Response(model.model_dump_json(by_alias=True), media_type="application/json")


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT32_MAX = 2**31 - 1
MAX_OFFSET_HOURS = 24 * 365
MAX_OFFSETS = 24

# What the UI's layout shell calls on every page but this gateway does not serve: answered with an
# immediate 404 so that polling never waits on a timeout (contract §0).
OUT_OF_SCOPE: tuple[tuple[str, str], ...] = (
    ("GET", "/api/palimpsest/coverage"),
    ("GET", "/api/scheduler/status"),
    ("POST", "/api/scheduler/pause"),
    ("POST", "/api/scheduler/resume"),
    ("GET", "/api/scrape/runs"),
    ("GET", "/api/scrape/runs/active"),
    ("GET", "/api/ws"),
)
OUT_OF_SCOPE_DETAIL = "Not served by this gateway"


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


_ISO_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:?\d{2})?")


def _iso_only(value: object) -> object:
    # pydantic would also take numbers as Unix times ("0.5"); the contract sends ISO strings only.
    if isinstance(value, str) and not _ISO_DATETIME.fullmatch(value):
        raise ValueError("expected an ISO 8601 date-time, e.g. 2026-02-24T23:00:00.000Z")
    return value


def _wall_time_as_utc(value: datetime) -> datetime:
    # Contract §1: the offset of kickoff_from/to is dropped and the wall time read as UTC.
    return value.replace(tzinfo=UTC)


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)  # the contract's rule: without an offset, an instant is UTC
    try:
        return value.astimezone(UTC)
    except OverflowError:
        # Only instants in the first or last hours of years 1 and 9999 overflow; nothing is stored that
        # early or late, so the nearest representable instant gives the same answer.
        return (datetime.min if value.year == 1 else datetime.max).replace(tzinfo=UTC)


Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
KickoffBound = Annotated[datetime, BeforeValidator(_iso_only), AfterValidator(_wall_time_as_utc)]
UtcInstant = Annotated[datetime, BeforeValidator(_iso_only), AfterValidator(_as_utc)]
Line = Annotated[float, Field(allow_inf_nan=False)]
OffsetHours = Annotated[float, Field(ge=0, le=MAX_OFFSET_HOURS, allow_inf_nan=False)]

IdPath = Annotated[int, Path(ge=INT64_MIN, le=INT64_MAX, examples=[1234])]
MarketIdPath = Annotated[str, Path(description="BetPawa market id", examples=["3743"])]
LineQuery = Annotated[Line | None, Query(description="exact line; omitted: only the line-less market")]
OffsetsQuery = Annotated[
    list[OffsetHours] | None,
    Query(max_length=MAX_OFFSETS, description="hours before kickoff; omitted: 168, 72, 24, 6, 1, 0"),
]


def get_query(request: Request) -> QueryClient:
    client: QueryClient = request.app.state.query
    return client


QueryDep = Annotated[QueryClient, Depends(get_query)]


def _error(description: str) -> dict[str, Any]:
    return {"model": models.ErrorDetail, "description": description}


UPSTREAM_ERRORS: dict[int | str, dict[str, Any]] = {
    502: _error("the query service failed"),
    503: _error("the query service is unavailable or did not answer in time"),
}

router = APIRouter(prefix="/api", responses=UPSTREAM_ERRORS)


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
    return _json(convert.event_list(await query.list_events(request), page, page_size))


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
    responses={404: _error("unknown event")},
    tags=["events"],
)
async def get_event(query: QueryDep, event_id: IdPath) -> Response:
    try:
        detail = await query.get_event(event_id)
    except NotFound as exc:
        raise HTTPException(404, "Event not found") from exc
    return _json(convert.event_detail(detail))


BookmakerSlugQuery = Annotated[str, Query(description="betpawa, sportybet or bet9ja", examples=["betpawa"])]
TimeBoundQuery = Annotated[UtcInstant | None, Query(description="inclusive")]


def _history_request(
    event_id: IdPath,
    market_id: MarketIdPath,
    bookmaker_slug: BookmakerSlugQuery,
    line: LineQuery = None,
    from_time: TimeBoundQuery = None,
    to_time: TimeBoundQuery = None,
) -> query_pb2.GetMarketHistoryRequest:
    """The parameters both history endpoints share, as the query service's request."""
    request = query_pb2.GetMarketHistoryRequest(event_id=event_id, market_id=market_id, bookmaker_slug=bookmaker_slug)
    if line is not None:
        request.line = line
    if from_time is not None:
        request.from_time.CopyFrom(to_timestamp(from_time))
    if to_time is not None:
        request.to_time.CopyFrom(to_timestamp(to_time))
    return request


HistoryRequest = Annotated[query_pb2.GetMarketHistoryRequest, Depends(_history_request)]


async def _history(query: QueryClient, request: query_pb2.GetMarketHistoryRequest) -> query_pb2.MarketHistory:
    try:
        return await query.get_market_history(request)
    except NotFound as exc:
        # NOT_FOUND from GetMarketHistory means an unknown bookmaker only; unknown events have no points.
        raise HTTPException(404, f"Bookmaker not found: {request.bookmaker_slug}") from exc


@router.get(
    "/events/{event_id}/markets/{market_id}/history",
    response_model=models.OddsHistoryResponse,
    responses={404: _error("unknown bookmaker")},
    tags=["history"],
)
async def odds_history(query: QueryDep, request: HistoryRequest) -> Response:
    return _json(convert.odds_history(await _history(query, request)))


@router.get(
    "/events/{event_id}/markets/{market_id}/margin-history",
    response_model=models.MarginHistoryResponse,
    responses={404: _error("unknown bookmaker")},
    tags=["history"],
)
async def margin_history(query: QueryDep, request: HistoryRequest) -> Response:
    return _json(convert.margin_history(await _history(query, request)))


@router.get(
    "/events/{event_id}/at",
    response_model=models.EventAtResponse,
    responses={404: _error("unknown event")},
    tags=["point in time"],
)
async def event_at(
    query: QueryDep,
    event_id: IdPath,
    at: Annotated[UtcInstant, Query(description="the instant, ISO 8601; without an offset it is UTC")],
) -> Response:
    request = query_pb2.GetEventAtRequest(event_id=event_id, at=to_timestamp(at))
    try:
        return _json(convert.event_at(await query.get_event_at(request)))
    except NotFound as exc:
        raise HTTPException(404, "Event not found") from exc


@router.get(
    "/events/{event_id}/markets/{market_id}/time-to-kickoff",
    response_model=models.TimeToKickoffResponse,
    responses={404: _error("unknown event")},
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
    responses={404: _error("unknown tournament")},
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


async def _out_of_scope() -> JSONResponse:
    return JSONResponse({"detail": OUT_OF_SCOPE_DETAIL}, status_code=404)


async def _websocket_out_of_scope(websocket: WebSocket) -> None:
    # With the denial-response extension (uvicorn has it) the handshake gets a real 404; else a plain refusal.
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(JSONResponse({"detail": OUT_OF_SCOPE_DETAIL}, status_code=404))
    else:
        await websocket.close()


def _validation_error(message: str) -> list[dict[str, Any]]:
    # The shape of FastAPI's own 422 body, so that clients and the OpenAPI schema see one format.
    return [{"type": "value_error", "loc": ["request"], "msg": message, "input": None}]


def create_app(query: QueryClient, retention: RetentionClient | None = None) -> FastAPI:
    """The storage, cleanup and settings routes are mounted only with a retention client (bootstrap always
    passes one; tests of the query endpoints alone do not)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await query.open()
        try:
            if retention is not None:
                await retention.open()
            yield
        finally:
            try:
                if retention is not None:
                    await retention.close()
            finally:
                await query.close()

    description = "The pawaRisk UI's events, history and health endpoints, served from the query service"
    if retention is not None:
        description += "; its storage, cleanup and settings endpoints, served from the retention service"
    app = FastAPI(title="oddstore gateway", description=description + ".", version="1", lifespan=lifespan)
    app.state.query = query
    app.state.retention = retention
    app.include_router(router)
    if retention is not None:
        app.include_router(retention_api.router)
    for method, path in OUT_OF_SCOPE:
        app.add_api_route(path, _out_of_scope, methods=[method], include_in_schema=False)
    app.add_api_websocket_route("/api/ws", _websocket_out_of_scope)

    @app.exception_handler(NotFound)
    async def not_found(_: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=404)

    @app.exception_handler(InvalidArgument)
    async def invalid_argument(_: Request, exc: InvalidArgument) -> JSONResponse:
        return JSONResponse({"detail": _validation_error(exc.message)}, status_code=422)

    @app.exception_handler(Conflict)
    async def conflict(_: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=409)

    @app.exception_handler(Unavailable)
    async def unavailable(_: Request, exc: Unavailable) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(QueryFailed)
    async def failed(_: Request, exc: QueryFailed) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=502)

    return app
