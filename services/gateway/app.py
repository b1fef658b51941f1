"""The FastAPI application: the query routes (query_api.py) and, with a retention client, the storage, cleanup and
settings routes (retention_api.py), the live-odds WebSocket (ws_api.py, fed by live.py), the error handlers
(errors.py) and immediate answers to the UI calls this system does not serve.

`create_app` is the only way in; the clients are passed in and opened in the lifespan, so importing this
module opens nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse

from oddstore.users import User
from services.gateway import audit, query_api, retention_api, stream_api, ws_api
from services.gateway.auth import BasicAuth, Verifier
from services.gateway.dependencies import reject_unstorable_text
from services.gateway.errors import add_error_handlers
from services.gateway.limits import Limits, RequestLimits, SecurityHeaders
from services.gateway.live import LiveOdds
from services.gateway.prepared import PreparedReads
from services.gateway.query_client import QueryClient
from services.gateway.retention_client import RetentionClient

logger = logging.getLogger(__name__)

# What the UI's layout shell calls on every page but this gateway does not serve: answered with an
# immediate 404 so that polling never waits on a timeout (contract §0).
OUT_OF_SCOPE: tuple[tuple[str, str], ...] = (
    ("GET", "/api/palimpsest/coverage"),
    ("GET", "/api/scheduler/status"),
    ("POST", "/api/scheduler/pause"),
    ("POST", "/api/scheduler/resume"),
    ("GET", "/api/scrape/runs"),
    ("GET", "/api/scrape/runs/active"),
)
OUT_OF_SCOPE_DETAIL = "Not served by this gateway"


async def _out_of_scope() -> JSONResponse:
    return JSONResponse({"detail": OUT_OF_SCOPE_DETAIL}, status_code=404)


def create_app(
    query: QueryClient,
    retention: RetentionClient | None = None,
    *,
    live: LiveOdds | None = None,
    ws_idle_seconds: float = 90.0,
    users: Mapping[str, User] | Callable[[], Mapping[str, User]] | None = None,
    limits: Limits | None = None,
    limits_clock: Callable[[], float] = time.monotonic,
    prepared: bool = True,
) -> FastAPI:
    """The storage, cleanup and settings routes are mounted only with a retention client (bootstrap always
    passes one; tests of the query endpoints alone do not). `live` feeds the WebSocket (one is made over
    `query` when not given); it follows the query service while the app's lifespan runs. With `users`, every
    request needs their HTTP Basic credentials (auth.py); without, anyone may do anything. `limits`: per-client
    rate and body size (limits.py; `limits_clock` times the rate). Every answer carries the security headers.
    `prepared`: the reads of prepared bodies are answered below FastAPI (prepared.py); False (tests comparing the
    two) leaves them to the routes."""
    live = live if live is not None else LiveOdds(query)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await query.open()
        try:
            if retention is not None:
                await retention.open()
            await live.start()
            yield
        finally:
            try:
                await live.stop()
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
    app.state.live = live
    app.state.ws_idle_seconds = ws_idle_seconds
    checked = [Depends(reject_unstorable_text)]
    app.include_router(query_api.router, dependencies=checked)
    app.include_router(stream_api.router, dependencies=checked)
    if retention is not None:
        app.include_router(retention_api.router, dependencies=checked)
        app.include_router(audit.router, dependencies=checked)
    for method, path in OUT_OF_SCOPE:
        app.add_api_route(path, _out_of_scope, methods=[method], include_in_schema=False)
    app.include_router(ws_api.router)

    add_error_handlers(app)
    if prepared:
        # Added first, so innermost: the middlewares below treat its requests as they treat the routes'.
        app.add_middleware(PreparedReads, query=query)
    if users is not None:
        app.add_middleware(BasicAuth, verifier=Verifier(users))
    if retention is not None:
        # Added last, so outermost: it sees the answers of the authentication middleware too.
        app.add_middleware(audit.AuditLog, retention=retention)
    if limits is not None:
        # Outside the audit log and authentication: a flood costs neither an audit write nor a password hash.
        app.add_middleware(RequestLimits, limits=limits, clock=limits_clock)
    app.add_middleware(SecurityHeaders)  # outermost: on refusals too
    return app
