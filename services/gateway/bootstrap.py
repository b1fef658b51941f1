"""Builds the gateway process: query and retention clients, FastAPI app, uvicorn server. Nothing is opened at
import time."""

from __future__ import annotations

import logging

import uvicorn

from oddstore import entry_files, users
from services.gateway.app import create_app
from services.gateway.config import GatewaySettings
from services.gateway.limits import Limits
from services.gateway.live import LiveOdds
from services.gateway.query_client import QueryClient
from services.gateway.retention_client import RetentionClient
from services.gateway.ws_protocol import UVICORN_WEBSOCKETS

logger = logging.getLogger(__name__)


def build_server(settings: GatewaySettings) -> uvicorn.Server:
    query = QueryClient(settings.query_address, settings.request_deadline_seconds, tls_files=settings.tls)
    retention = RetentionClient(
        settings.retention_address,
        settings.request_deadline_seconds,
        stats_deadline_seconds=settings.stats_deadline_seconds,
        cleanup_deadline_seconds=settings.cleanup_deadline_seconds,
        tls_files=settings.tls,
    )
    known = None
    if settings.auth == "basic":
        assert settings.users_file is not None  # GatewaySettings checks it
        # Read again when the file changes: a user added or removed is in force from the next request.
        known = entry_files.Watched(settings.users_file, users.load)
        logger.info("gateway users from %s: %d", settings.users_file, len(known()))
    else:
        logger.warning("GATEWAY_AUTH=none: no authentication, anyone who reaches %s may change data", settings.host)
    config = uvicorn.Config(
        create_app(
            query,
            retention,
            live=LiveOdds(
                query,
                window_seconds=settings.live_window_seconds,
                max_frames=settings.ws_max_frames,
                max_buffered=settings.ws_max_buffer_bytes,
            ),
            ws_idle_seconds=settings.ws_idle_seconds,
            users=known,
            limits=Limits(settings.max_body_bytes, settings.rate_limit_per_second, settings.rate_limit_burst),
        ),
        host=settings.host,
        port=settings.port,
        # HTTPS when given a certificate. Browsers present no client certificate: TLS_CA_FILE is only for the
        # gateway's own channels to the query and retention services.
        ssl_certfile=settings.tls_cert_file,
        ssl_keyfile=settings.tls_key_file,
        # Logging is ours (oddstore.logs); uvicorn's own dictConfig would replace the root handler.
        log_config=None,
        access_log=False,
        lifespan="on",
        # The C parser rather than h11 (pure Python): ~0.2 ms less per request, issue 14's bench-read.
        http="httptools",
        **UVICORN_WEBSOCKETS,  # /api/ws: frames per loop tick, uncompressed (ws_protocol.py)
        # On SIGTERM/SIGINT uvicorn stops accepting, lets in-flight requests finish for up to the grace
        # period, then runs the lifespan shutdown, which closes the gRPC channels.
        timeout_graceful_shutdown=max(1, round(settings.grace_seconds)),  # uvicorn takes whole seconds
    )
    return uvicorn.Server(config)


async def run(settings: GatewaySettings) -> None:
    server = build_server(settings)
    logger.info(
        "gateway on %s://%s:%d (docs at /docs), query service at %s, retention service at %s",
        "https" if settings.tls_cert_file else "http",
        settings.host,
        settings.port,
        settings.query_address,
        settings.retention_address,
    )
    # After a graceful stop uvicorn re-raises the SIGTERM/SIGINT it caught, so the process ends by that
    # signal (exit status 143/130, as a supervisor expects) and nothing after serve() runs.
    await server.serve()
