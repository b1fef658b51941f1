"""Builds the ingest process: writer channels and the gRPC server. Nothing is opened at import time."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

import grpc

from oddstore import entry_files, metrics, tls, tokens
from oddstore.grpc_server import Server, client_options, create_server, wait_for_signal
from oddstore.v1 import ingest_pb2, ingest_pb2_grpc, writer_pb2_grpc
from services.ingest.auth import Authenticator
from services.ingest.config import IngestSettings
from services.ingest.grpc_api import IngestServicer, WriterClient
from services.ingest.validation import Limits

logger = logging.getLogger(__name__)

SERVICE_NAME = ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name


@dataclass
class IngestApp:
    server: Server
    channels: list[grpc.aio.Channel]

    async def stop(self, grace: float) -> None:
        await self.server.stop(grace)
        for channel in self.channels:
            await channel.close()


def authenticator(settings: IngestSettings) -> Authenticator:
    """Reads the tokens file, and again whenever it changes; a bad one stops the start with the reason
    (tokens.TokenFileError), a bad change keeps the tokens in force (entry_files.Watched)."""
    if settings.auth_tokens_file is None:
        logger.warning("INGEST_AUTH_TOKENS_FILE is not set: only loopback clients may write, without a token")
        return Authenticator(None)
    grants = entry_files.Watched(settings.auth_tokens_file, tokens.load)
    names = sorted(g.name for g in grants().values())
    logger.info("ingest tokens from %s: %s", settings.auth_tokens_file, ", ".join(names) or "none")
    return Authenticator(grants)


async def start(settings: IngestSettings) -> IngestApp:
    auth = authenticator(settings)
    channels = [
        tls.channel(a, settings.tls, client_options(settings.max_message_bytes)) for a in settings.writer_addresses
    ]
    writers = [
        WriterClient(
            a,
            writer_pb2_grpc.WriterServiceStub(c),
            settings.writer_timeout_seconds,
            settings.writer_retry_seconds,
        )
        for a, c in zip(settings.writer_addresses, channels, strict=True)
    ]
    limits = Limits(max_markets=settings.max_markets, max_age=timedelta(days=settings.retention_days))
    servicer = IngestServicer(writers, limits, settings.max_batch_snapshots, settings.max_in_flight_observations, auth)
    server = create_server(
        settings.listen,
        lambda s: ingest_pb2_grpc.add_IngestServiceServicer_to_server(servicer, s),
        [SERVICE_NAME],
        tls_files=settings.tls,
        allowed_clients=settings.allowed_clients,
        allowed_clients_variable="INGEST_ALLOWED_CLIENTS",
        max_message_bytes=settings.max_message_bytes,
    )
    await server.start()
    await server.set_serving(True)
    logger.info("ingest on port %d, writers %s", server.port, ", ".join(settings.writer_addresses))
    return IngestApp(server, channels)


async def run(settings: IngestSettings) -> None:
    metrics.serve(settings.metrics_port)
    app = await start(settings)
    try:
        await wait_for_signal()
    finally:
        await app.stop(settings.grace_seconds)
        logger.info("ingest stopped")
