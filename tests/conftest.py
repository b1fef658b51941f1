"""Shared fixtures: a PostgreSQL server (TEST_DATABASE_URL or an embedded one) and fresh databases on it."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from oddstore import migrate
from tests import pawarisk

REPO_ROOT = Path(__file__).resolve().parent.parent
EMBEDDED_DATA_DIR = REPO_ROOT / ".data" / "test-pg"
T = TypeVar("T")


def dsn_for_database(server_dsn: str, database: str) -> str:
    """The same server, user and options as server_dsn, but another database."""
    parts = urlsplit(server_dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


def dsn_for_node(server_dsn: str, host: str, port: int, database: str) -> str:
    """The same user and options as server_dsn, on another node of a Citus cluster."""
    parts = urlsplit(server_dsn)
    user = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}:{port}" if user else f"{host}:{port}", path=f"/{database}"))


async def _execute(dsn: str, *statements: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def _citus_nodes(server_dsn: str) -> list[tuple[str, int]] | None:
    """The coordinator then the workers as (host, port) when the server is a Citus coordinator, else None."""
    conn = await asyncpg.connect(server_dsn)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_extension WHERE extname = 'citus'"):
            return None
        rows = await conn.fetch("SELECT nodename, nodeport FROM pg_dist_node ORDER BY groupid")
        return [(r[0], r[1]) for r in rows]
    finally:
        await conn.close()


async def _create(server_dsn: str, name: str) -> None:
    await _execute(server_dsn, f'CREATE DATABASE "{name}"')
    nodes = await _citus_nodes(server_dsn)
    if not nodes:
        return
    # Citus keeps its metadata per database: a new database needs the extension on every node (the workers
    # hold its shards, so they need the database too) and the cluster registered again from its coordinator.
    (host, port), workers = nodes[0], nodes[1:]
    for w_host, w_port in workers:
        await _execute(dsn_for_node(server_dsn, w_host, w_port, "postgres"), f'CREATE DATABASE "{name}"')
        await _execute(dsn_for_node(server_dsn, w_host, w_port, name), "CREATE EXTENSION citus")
    await _execute(
        dsn_for_database(server_dsn, name),
        "CREATE EXTENSION citus",
        f"SELECT citus_set_coordinator_host('{host}', {port})",
        *(f"SELECT citus_add_node('{w_host}', {w_port})" for w_host, w_port in workers),
    )


async def _drop(server_dsn: str, name: str) -> None:
    nodes = await _citus_nodes(server_dsn)
    await _execute(server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    for w_host, w_port in (nodes or [])[1:]:
        await _execute(
            dsn_for_node(server_dsn, w_host, w_port, "postgres"), f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
        )


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    # Its own loop in a worker thread, so that async tests can call the make_database factory too.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def is_citus(server_dsn: str) -> bool:
    return bool(_run(_citus_nodes(server_dsn)))


def create_database(server_dsn: str, prefix: str = "oddstore_t") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    _run(_create(server_dsn, name))
    return name


def drop_database(server_dsn: str, name: str) -> None:
    _run(_drop(server_dsn, name))


@pytest.fixture(scope="session")
def pg_server_dsn() -> Iterator[str]:
    """DSN of a server where tests may CREATE DATABASE: TEST_DATABASE_URL, else an embedded server."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    from oddstore.embedded_pg import EmbeddedPostgres

    server = EmbeddedPostgres(EMBEDDED_DATA_DIR)
    # A server someone started by hand is reused and left running; one started here is stopped.
    started_here = not server.is_running()
    yield server.start()
    if started_here:
        server.stop()


@pytest.fixture(scope="session")
def on_citus(pg_server_dsn: str) -> bool:
    """True when the server is a Citus coordinator (`make test-citus`)."""
    return is_citus(pg_server_dsn)


@pytest.fixture
def make_database(pg_server_dsn: str) -> Iterator[Callable[[], str]]:
    """Factory: each call creates an empty, uniquely named database and returns its DSN."""
    created: list[str] = []

    def make() -> str:
        name = create_database(pg_server_dsn)
        created.append(name)
        return dsn_for_database(pg_server_dsn, name)

    yield make
    for name in created:
        drop_database(pg_server_dsn, name)


@pytest.fixture
def fresh_database(make_database: Callable[[], str]) -> str:
    """DSN of an empty, uniquely named database, dropped after the test."""
    return make_database()


@pytest.fixture(scope="session")
def migrated_dsn(pg_server_dsn: str) -> Iterator[str]:
    """DSN of one database migrated to head, shared by the session: tests must use unique ids."""
    name = create_database(pg_server_dsn, prefix="oddstore_s")
    dsn = dsn_for_database(pg_server_dsn, name)
    try:
        migrate.upgrade(dsn)
        yield dsn
    finally:
        drop_database(pg_server_dsn, name)


@pytest.fixture
def old_database(make_database: Callable[[], str]) -> str:
    """DSN of a fresh database holding the pawaRisk fixture (tests/pawarisk.py), dropped after the test."""
    dsn = make_database()
    pawarisk.restore(dsn)
    return dsn
