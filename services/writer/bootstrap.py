"""Builds the writer process: pool, warmed state, gRPC server. Nothing is opened at import time."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from oddstore import citus, db, metrics, runtime
from oddstore.grpc_server import Server, create_server, wait_for_signal
from oddstore.v1 import writer_pb2, writer_pb2_grpc
from services.writer import metrics as writer_metrics
from services.writer.changes import ChangeLog
from services.writer.config import WriterSettings
from services.writer.grpc_api import WriterServicer
from services.writer.writer import Writer

logger = logging.getLogger(__name__)

SERVICE_NAME = writer_pb2.DESCRIPTOR.services_by_name["WriterService"].full_name


@dataclass
class WriterApp:
    server: Server
    writer: Writer
    pool: asyncpg.Pool

    async def stop(self, grace: float) -> None:
        # The feed's streams never end by themselves: end them first, or they would hold the drain
        # for the whole grace period (subscribers reconnect to the next process and resynchronise).
        self.writer.changes.close()
        await self.server.stop(grace)
        await self.pool.close()


async def start(settings: WriterSettings) -> WriterApp:
    """Opens the pool, starts the server as NOT_SERVING, warms up, then reports SERVING."""
    pool = await db.create_pool(
        settings.database_url,
        password=settings.database_password,
        max_size=settings.pool_size,
        wait_seconds=settings.database_wait_seconds,
        server_settings=citus.POOL_SETTINGS,
    )
    writer = Writer(
        pool,
        home_bookmaker=settings.home_bookmaker,
        warm_days=settings.warm_days,
        changes=ChangeLog(settings.feed_buffer),
    )
    # Counted when /metrics is scraped, not after every batch (a walk over every pair's state).
    writer_metrics.TRACKED_MARKETS.set_function(lambda: writer.tracked_markets)
    server = create_server(
        settings.listen,
        lambda s: writer_pb2_grpc.add_WriterServiceServicer_to_server(WriterServicer(writer), s),
        [SERVICE_NAME],
        tls_files=settings.tls,
        allowed_clients=settings.allowed_clients,
        allowed_clients_variable="WRITER_ALLOWED_CLIENTS",
    )
    await server.set_serving(False)
    await server.start()
    tracked = await writer.warm_up(datetime.now(UTC))
    runtime.freeze_long_lived()
    logger.info("writer on port %d, %d markets warmed, feed epoch %s", server.port, tracked, writer.changes.epoch)
    await server.set_serving(True)
    return WriterApp(server, writer, pool)


async def run(settings: WriterSettings) -> None:
    metrics.serve(settings.metrics_port)
    app = await start(settings)
    try:
        await wait_for_signal()
    finally:
        await app.stop(settings.grace_seconds)
        logger.info("writer stopped")
