"""`GET /api/stream`: QueryService.Subscribe as Server-Sent Events, in the contract's casing (snake_case, as the
events group) and time format (RFC 3339 UTC with Z). The resume token is the event id, so a browser's EventSource
resumes by itself (Last-Event-ID); one gRPC stream per HTTP client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from oddstore.convert import from_timestamp
from oddstore.v1 import query_pb2
from services.gateway.dependencies import Int64
from services.gateway.models import format_utc
from services.gateway.query_client import QueryClient, QueryError

router = APIRouter()

KINDS = {
    query_pb2.STREAM_MESSAGE_KIND_IMAGE: "image",
    query_pb2.STREAM_MESSAGE_KIND_DELTA: "delta",
    query_pb2.STREAM_MESSAGE_KIND_HEARTBEAT: "heartbeat",
}
RETRY_MS = 1000  # the EventSource reconnects after this long, with Last-Event-ID


def market_json(m: query_pb2.MarketState) -> dict[str, Any]:
    return {
        "event_id": m.event_id,
        "bookmaker": m.bookmaker,
        "market_id": m.market_id,
        "line": m.line if m.HasField("line") else None,
        "market_name": m.market_name,
        "outcomes": [{"name": o.name, "odds": o.odds, "is_active": o.is_active} for o in m.outcomes],
        "available": m.available,
        "captured_at": format_utc(from_timestamp(m.captured_at)),
    }


def sse(response: query_pb2.SubscribeResponse) -> str:
    """One SSE event. Messages without a token (the parts of an image or a delta before its last) have no id, so
    the client's Last-Event-ID stays the last position it holds in full."""
    kind = KINDS.get(response.kind, "delta")
    data = {
        "kind": kind,
        "fresh_image": response.fresh_image,
        "markets": [market_json(m) for m in response.markets],
        "changes": [
            {
                "event_id": c.event_id,
                "bookmaker": c.bookmaker,
                "snapshot_time": format_utc(from_timestamp(c.captured_at)),
                "snapshot_count": c.snapshots,
            }
            for c in response.changes
        ],
        "removed_event_ids": list(response.removed_event_ids),  # events past the horizon: drop their markets
    }
    head = f"id: {response.resume_token}\n" if response.resume_token else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


@router.get(
    "/api/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
    summary="Live odds as Server-Sent Events: an image, then deltas and heartbeats; resume with Last-Event-ID",
)
async def stream(
    request: Request,
    event_ids: Annotated[list[Int64] | None, Query(description="empty: every event")] = None,
    bookmakers: Annotated[list[str] | None, Query(description="empty: every bookmaker")] = None,
    market_ids: Annotated[list[str] | None, Query(description="empty: every market")] = None,
    heartbeat_seconds: Annotated[float, Query(ge=0, le=3600, description="0: none")] = 15.0,
    conflation_seconds: Annotated[float, Query(ge=0, le=60, description="latest state per market over it")] = 0.0,
    last_event_id: Annotated[str | None, Header(max_length=200)] = None,
) -> StreamingResponse:
    query: QueryClient = request.app.state.query
    wanted = query_pb2.SubscribeRequest(
        event_ids=event_ids or [],
        bookmakers=bookmakers or [],
        market_ids=market_ids or [],
        heartbeat_ms=round(heartbeat_seconds * 1000),
        conflation_ms=round(conflation_seconds * 1000),
        resume_token=last_event_id or "",
    )
    # Answered 200 at once and errors sent as an `error` event: an EventSource stops for good on any other status,
    # while after an event stream ends it reconnects (after RETRY_MS, with its Last-Event-ID). Not waiting for a
    # query service that is down, for the same reason.
    messages = query.subscribe(wanted, wait_for_ready=False)

    async def events() -> AsyncIterator[str]:
        yield f"retry: {RETRY_MS}\n\n"
        try:
            async for response in messages:
                yield sse(response)
        except QueryError as exc:
            # The query service is down, stopping, or ended a stream that fell behind its buffer.
            yield f"event: error\ndata: {json.dumps({'detail': exc.message})}\n\n"
        finally:
            await messages.aclose()

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
