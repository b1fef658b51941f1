"""Builds the retention process: pool, recovery of interrupted runs, partitions, gRPC server, periodic tick.
Nothing is opened at import time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import asyncpg

from oddstore import db, metrics
from oddstore.grpc_server import Server, create_server, health_status, wait_for_signal
from oddstore.v1 import retention_pb2, retention_pb2_grpc
from services.retention.config import RetentionSettings
from services.retention.grpc_api import RetentionServicer
from services.retention.retention import HORIZON_WARNING_DAYS, Clock, Retention, utc_now

logger = logging.getLogger(__name__)

SERVICE_NAME = retention_pb2.DESCRIPTOR.services_by_name["RetentionService"].full_name
# A grpc.health.v1 service name of its own for the partition horizon: SERVING while history partitions exist at
# least HORIZON_WARNING_DAYS ahead, NOT_SERVING below (the days themselves: GetPartitions and the gauge). The
# process's own status ("" and SERVICE_NAME) does not follow it: the service is what repairs the horizon.
HORIZON_HEALTH_NAME = f"{SERVICE_NAME}/partition-horizon"


@dataclass
class RetentionApp:
    server: Server
    retention: Retention
    pool: asyncpg.Pool
    ticker: asyncio.Task[None]

    async def stop(self, grace: float) -> None:
        # The tick first: a scheduled run in progress is cancelled and recorded as failed before the pool closes.
        self.ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.ticker
        await self.server.stop(grace)
        await self.pool.close()


async def start(settings: RetentionSettings, clock: Clock = utc_now) -> RetentionApp:
    """Opens the pool, closes out runs a crash left behind, makes the partition horizon, then serves."""
    pool = await db.create_pool(
        settings.database_url,
        password=settings.database_password,
        max_size=settings.pool_size,
        wait_seconds=settings.database_wait_seconds,
    )

    async def report_horizon(days_ahead: int) -> None:
        # Called only once `server` below exists (the first call is right after create_server).
        await server.health.set(HORIZON_HEALTH_NAME, health_status(days_ahead >= HORIZON_WARNING_DAYS))

    retention = Retention(pool, settings, clock, report_horizon)
    server = create_server(
        settings.listen,
        lambda s: retention_pb2_grpc.add_RetentionServiceServicer_to_server(RetentionServicer(retention), s),
        [SERVICE_NAME],
        tls_files=settings.tls,
        allowed_clients=settings.allowed_clients,
        allowed_clients_variable="RETENTION_ALLOWED_CLIENTS",
        check_text=True,
    )
    await report_horizon(0)  # unknown until the first check
    await server.set_serving(False)
    await server.start()
    await retention.recover_interrupted()
    ahead = await retention.ensure_partitions()
    ticker = asyncio.create_task(retention.run_forever(), name="retention-tick")
    logger.info("retention on port %d, history partitions %d day(s) ahead", server.port, ahead)
    await server.set_serving(True)
    return RetentionApp(server, retention, pool, ticker)


async def run(settings: RetentionSettings) -> None:
    metrics.serve(settings.metrics_port)
    app = await start(settings)
    try:
        await wait_for_signal()
    finally:
        await app.stop(settings.grace_seconds)
        logger.info("retention stopped")
