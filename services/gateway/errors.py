"""The query and retention services' errors as HTTP answers, in one shape for every route."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.gateway import models
from services.gateway.query_client import Conflict, InvalidArgument, NotFound, QueryFailed, Unavailable


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


def add_error_handlers(app: FastAPI) -> None:
    """The status of each error the clients raise (query_client translates gRPC status codes to them)."""

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
