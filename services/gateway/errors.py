"""The query and retention services' errors as HTTP answers, in one shape for every route."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from services.gateway import models
from services.gateway.query_client import Conflict, InvalidArgument, NotFound, QueryError, QueryFailed, Unavailable


def error_response(description: str) -> dict[str, Any]:
    """An error answer in the OpenAPI document: its body model and what it means."""
    return {"model": models.ErrorDetail, "description": description}


def upstream_errors(service: str) -> dict[int | str, dict[str, Any]]:
    """The answers a route gives when the service behind it fails or cannot be reached."""
    return {
        502: error_response(f"the {service} service failed"),
        503: error_response(f"the {service} service is unavailable or did not answer in time"),
    }


def _validation_error(message: str) -> list[dict[str, Any]]:
    # The shape of FastAPI's own 422 body, so that clients and the OpenAPI schema see one format.
    return [{"type": "value_error", "loc": ["request"], "msg": message, "input": None}]


def error_answer(exc: QueryError) -> JSONResponse:
    """The HTTP answer to a backend's error (query_client translates gRPC status codes to them): the handlers below
    give it to FastAPI's routes, prepared.py to the reads it answers below FastAPI."""
    if isinstance(exc, NotFound):
        return JSONResponse({"detail": exc.message}, status_code=404)
    if isinstance(exc, InvalidArgument):
        return JSONResponse({"detail": _validation_error(exc.message)}, status_code=422)
    if isinstance(exc, Conflict):
        return JSONResponse({"detail": exc.message}, status_code=409)
    if isinstance(exc, Unavailable):
        return JSONResponse({"detail": exc.message}, status_code=503, headers={"Retry-After": "1"})
    return JSONResponse({"detail": exc.message}, status_code=502)


def add_error_handlers(app: FastAPI) -> None:
    """Each backend error as error_answer's HTTP status and body."""

    async def answer(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, QueryError)
        return error_answer(exc)

    for error in (NotFound, InvalidArgument, Conflict, Unavailable, QueryFailed):
        app.add_exception_handler(error, answer)
