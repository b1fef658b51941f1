"""The query service reports SERVING before its cache is loaded, answers from PostgreSQL meanwhile, and says that it
is loading under the health name QueryService/cache (the reads' correctness during the load:
tests/integration/test_query_loading.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from oddstore.v1 import query_pb2 as pb
from oddstore.v1 import query_pb2_grpc
from services.query import bootstrap
from services.query import repository as repo
from services.query.config import QuerySettings
from services.writer.writer import Writer
from tests.factories import market, new_event_id, now, snapshot, write
from tests.redis_server import free_port


async def test_serving_while_the_cache_loads_answers_from_the_database_and_health_names_the_load(
    migrated_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = await asyncpg.create_pool(migrated_dsn, min_size=1, max_size=2)
    e = new_event_id()
    try:
        await write(Writer(pool), [snapshot(e, now() - timedelta(minutes=5), [market(), market("4693")])])
    finally:
        await pool.close()

    stalled, release = asyncio.Event(), asyncio.Event()
    stream_markets_since = repo.stream_markets_since

    async def slow(conn: asyncpg.Connection, since: datetime) -> AsyncIterator[asyncpg.Record]:
        stalled.set()
        await release.wait()
        async for r in stream_markets_since(conn, since):
            yield r

    monkeypatch.setattr(repo, "stream_markets_since", slow)
    # No writer listens there: its feed waits for one, which does not hold up the load.
    settings = QuerySettings(
        writers=f"127.0.0.1:{free_port()}", database_url=migrated_dsn, listen="127.0.0.1:0", database_wait_seconds=5
    )
    app = await asyncio.wait_for(bootstrap.start(settings), 60)  # before the stalled load ends
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.server.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)

            async def status(service: str) -> int:
                return (await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)).status

            await asyncio.wait_for(stalled.wait(), 60)
            assert await status("") == health_pb2.HealthCheckResponse.SERVING
            assert await status(bootstrap.CACHE_HEALTH_NAME) == health_pb2.HealthCheckResponse.NOT_SERVING
            assert app.cache.loading and not app.cache.books_of(e)  # the event's markets are not loaded yet
            query = query_pb2_grpc.QueryServiceStub(channel)
            detail = json.loads((await query.GetEventJson(pb.GetEventRequest(event_id=e), timeout=10)).json)
            assert {m["betpawa_market_id"] for m in detail["markets_by_bookmaker"][0]["markets"]} == {"3743", "4693"}

            release.set()
            await asyncio.wait_for(app.loaded(), 60)
            assert await status(bootstrap.CACHE_HEALTH_NAME) == health_pb2.HealthCheckResponse.SERVING
            assert set(app.cache.books_of(e)["betpawa"].markets) == {("3743", None), ("4693", None)}
    finally:
        release.set()
        await app.stop(0)
