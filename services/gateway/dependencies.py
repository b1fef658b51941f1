"""Request parameters of the query routes: their types, validators and limits, and the dependencies that give
a route its query client and the history request both history routes share."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator, BeforeValidator, Field

from oddstore.convert import to_timestamp
from oddstore.text import unstorable
from oddstore.v1 import query_pb2
from services.gateway.query_client import QueryClient
from services.gateway.retention_client import RetentionClient

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT32_MAX = 2**31 - 1
MAX_OFFSET_HOURS = 24 * 365
MAX_OFFSETS = 24


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


# The dependencies are `async def` though they never wait: FastAPI runs a plain `def` dependency in its thread pool,
# and those hand-offs were ~8 % of the gateway's samples in bench-read's profile (two per request).
async def get_query(request: Request) -> QueryClient:
    client: QueryClient = request.app.state.query
    return client


QueryDep = Annotated[QueryClient, Depends(get_query)]


async def get_retention(request: Request) -> RetentionClient:
    client: RetentionClient = request.app.state.retention
    return client


RetentionDep = Annotated[RetentionClient, Depends(get_retention)]


BookmakerSlugQuery = Annotated[str, Query(description="betpawa, sportybet or bet9ja", examples=["betpawa"])]
TimeBoundQuery = Annotated[UtcInstant | None, Query(description="inclusive")]


async def _history_request(
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


async def reject_unstorable_text(request: Request) -> None:
    """A path or query parameter with text PostgreSQL cannot hold (oddstore.text: a NUL would fail the
    query service's statement) is the caller's fault: 422 naming the parameter, for every route."""
    for where, params in (("path", request.path_params.items()), ("query", request.query_params.multi_items())):
        for name, value in params:
            problem = unstorable(value) if isinstance(value, str) else None
            if problem is not None:
                raise RequestValidationError(
                    [{"type": "value_error", "loc": (where, name), "msg": f"Value error, {problem}", "input": value}]
                )
