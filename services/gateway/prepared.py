"""The reads whose bodies the query service prepares (event detail, history, point in time), answered below FastAPI.

On these routes the gateway only forwards bytes, and FastAPI's routing, dependency solving and parameter models were
most of its time per request (issue 14: a 99 kB detail spent ~1.7 ms in the gateway over the query service's
answer). This ASGI layer sits innermost among the middlewares (inside the rate limits, the audit log, authentication
and the security headers, which therefore treat these requests exactly as before) and answers a request only when it
can decide it as FastAPI would: a GET with the route's parameters only, each once, each valid by the same pydantic
types the routes declare (dependencies.py), none with text PostgreSQL cannot store. Anything else (a bad parameter,
an unknown one, a repeated one, HEAD) goes on to FastAPI, whose answer (a 422 naming the parameter) is the contract.
The answers are built by the same code as the routes' (query_api's body, errors.py's translations, the 404 details),
so they are the same bytes and headers; tests/e2e/test_gateway_prepared.py compares both paths request by request.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import TypeAdapter, ValidationError
from starlette.datastructures import QueryParams
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from oddstore.convert import to_timestamp
from oddstore.text import unstorable
from oddstore.v1 import query_pb2
from services.gateway.dependencies import Int64, Line, UtcInstant
from services.gateway.errors import error_answer
from services.gateway.query_api import body_response
from services.gateway.query_client import NotFound, QueryClient, QueryError

# The routes' own parameter types: what FastAPI accepts, this accepts, read the same way.
_ID = TypeAdapter(Int64)
_LINE = TypeAdapter(Line)
_INSTANT = TypeAdapter(UtcInstant)

# Starlette's `{name}` path parameters match one segment each.
_DETAIL = re.compile(r"/api/events/([^/]+)")
_HISTORY = re.compile(r"/api/events/([^/]+)/markets/([^/]+)/history")
_AT = re.compile(r"/api/events/([^/]+)/at")
_HISTORY_PARAMS = frozenset({"bookmaker_slug", "line", "from_time", "to_time"})


class _FallThrough(Exception):
    """FastAPI decides this request (its validation error is the answer)."""


def _parse(adapter: TypeAdapter[Any], value: str) -> Any:
    try:
        return adapter.validate_python(value)
    except ValidationError:
        raise _FallThrough from None


def _params(scope: Scope, allowed: frozenset[str]) -> dict[str, str]:
    """The query parameters, each at most once and all among `allowed`, with storable text."""
    raw = scope.get("query_string", b"")
    if not raw:
        return {}
    items = QueryParams(raw).multi_items()
    params = dict(items)
    if len(params) != len(items) or not params.keys() <= allowed:
        raise _FallThrough
    for value in params.values():
        if unstorable(value) is not None:
            raise _FallThrough
    return params


def _path_text(value: str) -> str:
    if unstorable(value) is not None:
        raise _FallThrough
    return value


Answer = Callable[[], Awaitable[Response]]


class PreparedReads:
    """Answers GET /api/events/{event_id}, …/markets/{market_id}/history and …/at from the query service's prepared
    JSON; passes every other request (and any it cannot decide as FastAPI would) to `app`."""

    def __init__(self, app: ASGIApp, query: QueryClient) -> None:
        self.app = app
        self.query = query

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = None
        if scope["type"] == "http" and scope["method"] == "GET" and not scope.get("root_path"):
            try:
                answer = self._route(scope)
            except _FallThrough:
                answer = None
        if answer is None:
            await self.app(scope, receive, send)
            return
        try:
            response = await answer()
        except QueryError as exc:
            response = error_answer(exc)
        await response(scope, receive, send)

    def _route(self, scope: Scope) -> Answer | None:
        path: str = scope["path"]
        if not path.startswith("/api/events/"):
            return None
        if (m := _DETAIL.fullmatch(path)) is not None:
            if scope.get("query_string"):
                return None  # FastAPI ignores unknown parameters but still checks their text: it decides
            return self._detail(_parse(_ID, _path_text(m[1])))
        if (m := _HISTORY.fullmatch(path)) is not None:
            return self._history(_parse(_ID, _path_text(m[1])), _path_text(m[2]), _params(scope, _HISTORY_PARAMS))
        if (m := _AT.fullmatch(path)) is not None:
            params = _params(scope, frozenset({"at"}))
            if "at" not in params:
                return None
            return self._at(_parse(_ID, _path_text(m[1])), _parse(_INSTANT, params["at"]))
        return None

    def _detail(self, event_id: int) -> Answer:
        async def answer() -> Response:
            try:
                body = await self.query.json_body("GetEventJson", query_pb2.GetEventRequest(event_id=event_id))
            except NotFound:
                return _not_found("Event not found")
            return body_response(body)

        return answer

    def _history(self, event_id: int, market_id: str, params: dict[str, str]) -> Answer:
        slug = params.get("bookmaker_slug")
        if slug is None:
            raise _FallThrough
        request = query_pb2.GetMarketHistoryRequest(event_id=event_id, market_id=market_id, bookmaker_slug=slug)
        if "line" in params:
            request.line = _parse(_LINE, params["line"])
        for name in ("from_time", "to_time"):
            if name in params:
                at: datetime = _parse(_INSTANT, params[name])
                getattr(request, name).CopyFrom(to_timestamp(at))

        async def answer() -> Response:
            try:
                body = await self.query.json_body("GetMarketHistoryJson", request)
            except NotFound:
                # NOT_FOUND from GetMarketHistory means an unknown bookmaker only (query_api._bookmaker_known).
                return _not_found(f"Bookmaker not found: {slug}")
            return body_response(body)

        return answer

    def _at(self, event_id: int, at: datetime) -> Answer:
        request = query_pb2.GetEventAtRequest(event_id=event_id, at=to_timestamp(at))

        async def answer() -> Response:
            try:
                body = await self.query.json_body("GetEventAtJson", request)
            except NotFound:
                return _not_found("Event not found")
            return body_response(body)

        return answer


def _not_found(detail: str) -> Response:
    # What FastAPI's handler of the routes' HTTPException(404, detail) answers.
    return JSONResponse({"detail": detail}, status_code=404)
