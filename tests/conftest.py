"""Shared fixtures: a PostgreSQL server (TEST_DATABASE_URL or an embedded one) and fresh databases on it."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from oddstore import migrate
from tests import pawarisk

REPO_ROOT = Path(__file__).resolve().parent.parent
EMBEDDED_DATA_DIR = REPO_ROOT / ".data" / "test-pg"


def dsn_for_database(server_dsn: str, database: str) -> str:
    """The same server, user and options as server_dsn, but another database."""
    parts = urlsplit(server_dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


async def _admin(server_dsn: str, statement: str) -> None:
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def _run_admin(server_dsn: str, statement: str) -> None:
    # Its own loop in a worker thread, so that async tests can call the make_database factory too.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, _admin(server_dsn, statement)).result()


def create_database(server_dsn: str, prefix: str = "oddstore_t") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    _run_admin(server_dsn, f'CREATE DATABASE "{name}"')
    return name


def drop_database(server_dsn: str, name: str) -> None:
    _run_admin(server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
