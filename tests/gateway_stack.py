"""The gateway app in-process over the real query and retention services on one database, as an HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime

import httpx

from services.gateway.app import create_app
from services.gateway.query_client import QueryClient
from services.gateway.retention_client import RetentionClient
from services.query import bootstrap as query_bootstrap
from services.query.config import QuerySettings
from services.retention import bootstrap as retention_bootstrap
from services.retention.config import RetentionSettings


@asynccontextmanager
async def gateway_over_services(
    dsn: str, *, clock: Callable[[], datetime] = query_bootstrap.utc_now, writers: str | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """`clock` is both services' "now"; `writers` the change feeds the query service follows (its default if None)."""
    followed = {"writers": writers} if writers is not None else {}
    query = await query_bootstrap.start(
        QuerySettings(database_url=dsn, listen="127.0.0.1:0", database_wait_seconds=5, **followed), clock=clock
    )
    retention = await retention_bootstrap.start(
        RetentionSettings(database_url=dsn, listen="127.0.0.1:0", tick_seconds=3600, database_wait_seconds=5), clock
    )
    query_client = QueryClient(f"127.0.0.1:{query.server.port}", deadline_seconds=30)
    retention_client = RetentionClient(f"127.0.0.1:{retention.server.port}", deadline_seconds=30)
    await query_client.open()
    await retention_client.open()
    # httpx's ASGI transport runs no lifespan: the clients are opened here instead.
    app = create_app(query_client, retention_client)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as api:
            yield api
    finally:
        await query_client.close()
        await retention_client.close()
        await query.stop(1)
        await retention.stop(1)
