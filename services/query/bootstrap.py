"""Builds the query process: pool, cache and change feed, gRPC server. Nothing is opened at import time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg

from oddstore import citus, db, metrics, runtime
from oddstore.grpc_server import Server, create_server, health_status, wait_for_signal
from oddstore.v1 import query_pb2, query_pb2_grpc
from services.query import history_repository
from services.query.cache import OddsCache
from services.query.config import QuerySettings
from services.query.feed import Feed
from services.query.grpc_api import QueryServicer
from services.query.history_cache import HistoryCache, connect
from services.query.history_repository import HistoryReader
from services.query.rendering import keep_rendered
from services.query.updates import Updates
from services.query.writer_feed import WriterFeed

logger = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


SERVICE_NAME = query_pb2.DESCRIPTOR.services_by_name["QueryService"].full_name
# NOT_SERVING while the first cache load runs (reads are answered from PostgreSQL meanwhile), SERVING once the
# cache is complete: the service's own name is SERVING during the load.
CACHE_HEALTH_NAME = f"{SERVICE_NAME}/cache"


@dataclass
class QueryApp:
    server: Server
    cache: OddsCache
    feed: Feed
    writers: list[WriterFeed]
    pool: asyncpg.Pool
    history_pool: asyncpg.Pool
    history: HistoryCache
    renderer: asyncio.Task[None] | None = field(default=None)
    complete: asyncio.Event = field(default_factory=asyncio.Event)  # the cache is loaded and health says so

    async def loaded(self) -> None:
        """Returns once the cache is complete and reads are served from it."""
        await self.complete.wait()

    async def stop(self, grace: float) -> None:
        # Live streams never end by themselves: end them first, or they would hold the drain for the whole
        # grace period (subscribers reconnect to another replica).
        self.feed.updates.close()
        await self.server.stop(grace)
        if self.renderer is not None:
            self.renderer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.renderer
        await self.feed.stop()
        await self.history.close()
        await self.pool.close()
        await self.history_pool.close()


async def start(
    settings: QuerySettings,
    *,
    history_clock: Callable[[], float] = time.monotonic,
    clock: Callable[[], datetime] = utc_now,
    stream_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> QueryApp:
    """Opens the pool, starts the server as NOT_SERVING, starts the cache load, then reports SERVING (reads
    go to PostgreSQL until the cache is complete: `QueryApp.loaded`).
    `history_clock` times the Redis back-off and `stream_sleep` the client streams' conflation windows (tests
    step them instead of sleeping through them); `clock` is "now" for the cache horizon and the reads (tests
    over dated data fix it)."""

    def open_pool(server_settings: dict[str, str]) -> Awaitable[asyncpg.Pool]:
        return db.create_pool(
            settings.database_url,
            password=settings.database_password,
            max_size=settings.pool_size,
            wait_seconds=settings.database_wait_seconds,
            # Every read here is one statement or a read-only transaction, and nothing sets session state: skipping
            # asyncpg's reset statement saves a round trip on each history, point-in-time and cache-miss read (5 %
            # of the service's samples under bench-read's history reads, issue 14).
            keep_session=True,
            server_settings=server_settings,
        )

    pool = await open_pool(citus.POOL_SETTINGS)
    # The history reads' own connections, whose settings keep the planner on the closed (columnar) days' index;
    # the cache load and the other reads keep the planner's defaults.
    history_pool = await open_pool({**citus.POOL_SETTINGS, **history_repository.POOL_SETTINGS})
    cache = OddsCache()
    writers = [
        WriterFeed(address, tls_files=settings.tls, keepalive_seconds=settings.feed_keepalive_seconds)
        for address in settings.writer_addresses
    ]
    feed = Feed(
        pool, cache, timedelta(hours=settings.cache_horizon_hours), [w.run for w in writers],
        updates=Updates(settings.stream_buffer), resync_seconds=settings.resync_seconds, clock=clock,
    )  # fmt: skip
    # The current-odds cache stays per replica, fed by every writer's change feed (see services/writer/writer.py
    # for why it is not NOTIFY); what replicas share through Redis is merged history, the read that costs the
    # database most. Without REDIS_URL, or with Redis down, history is read from PostgreSQL.
    reader = HistoryReader(history_pool)
    redis = None
    if settings.redis_url:
        redis = connect(settings.redis_url, settings.redis_connect_timeout_seconds, settings.redis_timeout_seconds)
        logger.info("merged history shared through Redis (entries kept %d s)", settings.redis_ttl_seconds)
    history = HistoryCache(
        reader, redis, lambda event_id: event_id in cache.events,
        ttl_seconds=settings.redis_ttl_seconds, backoff_seconds=settings.redis_backoff_seconds, clock=history_clock,
    )  # fmt: skip
    servicer = QueryServicer(
        cache, pool, reader, feed.cutoff, clock, history=history, updates=feed.updates, stream_sleep=stream_sleep
    )
    server = create_server(
        settings.listen,
        lambda s: query_pb2_grpc.add_QueryServiceServicer_to_server(servicer, s),
        [SERVICE_NAME],
        tls_files=settings.tls,
        allowed_clients=settings.allowed_clients,
        allowed_clients_variable="QUERY_ALLOWED_CLIENTS",
        check_text=True,
    )
    await server.set_serving(False)
    await server.health.set(CACHE_HEALTH_NAME, health_status(False))
    await server.start()
    # SERVING before the cache is loaded: until it is, reads are answered from PostgreSQL (reads.Reads), and a
    # Subscribe waits for the load. Reading the table is the floor of any load (bench-read: decoding the rows in
    # Python alone took 3.5x a COPY of them), so "SERVING once loaded" could never be near that floor.
    await feed.start()
    logger.info("query on port %d, SERVING from PostgreSQL while the cache loads", server.port)
    await server.set_serving(True)
    app = QueryApp(server, cache, feed, writers, pool, history_pool, history)
    app.renderer = asyncio.create_task(_after_load(app))
    return app


async def _after_load(app: QueryApp) -> None:
    cache = app.cache
    await app.feed.updates.ready.wait()
    await app.server.health.set(CACHE_HEALTH_NAME, health_status(True))
    app.complete.set()
    # The loaded cache lives as long as the process: keep the cyclic collector from rescanning it.
    runtime.freeze_long_lived()
    logger.info("%d events and %d markets cached", len(cache.events), cache.market_count)
    # Started after the load, which it would otherwise slow down by rendering books as they arrive.
    await keep_rendered(cache)


async def run(settings: QuerySettings) -> None:
    metrics.serve(settings.metrics_port)
    app = await start(settings)
    try:
        await wait_for_signal()
    finally:
        await app.stop(settings.grace_seconds)
        logger.info("query stopped")
