"""Shared fixtures: a PostgreSQL server (TEST_DATABASE_URL or an embedded one) and fresh databases on it."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import asyncpg
import pytest

from bench.databases import execute, on_node, with_database
from oddstore import migrate
from tests import pawarisk

REPO_ROOT = Path(__file__).resolve().parent.parent
EMBEDDED_DATA_DIR = REPO_ROOT / ".data" / "test-pg"
T = TypeVar("T")


def dsn_for_database(server_dsn: str, database: str) -> str:
    """The same server, user and options as server_dsn, but another database."""
    return with_database(server_dsn, database)


def dsn_for_node(server_dsn: str, host: str, port: int, database: str) -> str:
    """The same user and options as server_dsn, on another node of a Citus cluster."""
    return with_database(on_node(server_dsn, host, port), database)


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


async def _admin_dsns(server_dsn: str) -> list[str]:
    """Where to create and drop a test database: the server, and on Citus each worker too (it holds shards)."""
    workers = (await _citus_nodes(server_dsn) or [])[1:]
    return [server_dsn, *(dsn_for_node(server_dsn, host, port, "postgres") for host, port in workers)]


async def _create(server_dsn: str, name: str) -> None:
    nodes = await _citus_nodes(server_dsn)
    if not nodes:
        await execute(server_dsn, f'CREATE DATABASE "{name}"')
        return
    # Citus keeps its metadata per database: a new database needs the extension on every node (the workers
    # hold its shards, so they need the database too) and the cluster registered again from its coordinator.
    (host, port), workers = nodes[0], nodes[1:]

    async def on_worker(w_host: str, w_port: int) -> None:
        await execute(dsn_for_node(server_dsn, w_host, w_port, "postgres"), f'CREATE DATABASE "{name}"')
        await execute(dsn_for_node(server_dsn, w_host, w_port, name), "CREATE EXTENSION citus")

    await execute(server_dsn, f'CREATE DATABASE "{name}"')
    await asyncio.gather(*(on_worker(w_host, w_port) for w_host, w_port in workers))
    await execute(
        dsn_for_database(server_dsn, name),
        "CREATE EXTENSION citus",
        f"SELECT citus_set_coordinator_host('{host}', {port})",
        *(f"SELECT citus_add_node('{w_host}', {w_port})" for w_host, w_port in workers),
    )


async def _seal(server_dsn: str, name: str) -> None:
    """No connection to database `name` from now on, on any node that has it: CREATE DATABASE … TEMPLATE needs its
    template idle, and DROP DATABASE … WITH (FORCE) needs nobody to come back. On Citus the nodes' maintenance
    daemons connect to each other's copies of a database by themselves (2PC recovery, deadlock detection)."""

    async def on_node(dsn: str) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                await conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
                await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
        finally:
            await conn.close()

    await asyncio.gather(*(on_node(dsn) for dsn in await _admin_dsns(server_dsn)))


async def _clone(server_dsn: str, template: str, name: str) -> None:
    """`name` as a copy of the sealed `template` on every node: on Citus each node's database is copied from its
    own copy of the template, so shards, placements and metadata stay consistent (the same ids on the same nodes)."""

    async def on_node(dsn: str) -> None:
        for attempt in range(10):
            try:
                await execute(dsn, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
                return
            except asyncpg.exceptions.ObjectInUseError:
                # A session ended by the seal, still exiting after the server's own 5 s wait for it.
                if attempt == 9:
                    raise

    try:
        await asyncio.gather(*(on_node(dsn) for dsn in await _admin_dsns(server_dsn)))
    except BaseException:
        await _drop(server_dsn, name)  # no copy left behind on the nodes where it was made
        raise


async def _drop(server_dsn: str, name: str) -> None:
    await _seal(server_dsn, name)
    statement = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
    await asyncio.gather(*(execute(dsn, statement) for dsn in await _admin_dsns(server_dsn)))


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    # Its own loop in a worker thread, so that async tests can call the make_database factory too.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def is_citus(server_dsn: str) -> bool:
    return bool(_run(_citus_nodes(server_dsn)))


def _name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def create_database(server_dsn: str, prefix: str = "oddstore_t") -> str:
    name = _name(prefix)
    _run(_create(server_dsn, name))
    return name


def drop_database(server_dsn: str, name: str) -> None:
    _run(_drop(server_dsn, name))


class Templates:
    """Test databases as copies of templates made once per session: an empty database (on Citus: the extension on
    every node and the workers registered), one migrated to head, one holding the pawaRisk fixture. A copy is what
    the steps would have made, and is cheap: on the loaded 2-core machine a Citus database took ~7 s to create and
    ~7 s to migrate, a copy of the migrated one ~0.7 s."""

    # How each template is filled, from a copy of the empty one.
    FILL: ClassVar[dict[str, Callable[[str], None]]] = {"migrated": migrate.upgrade, "pawarisk": pawarisk.restore}

    def __init__(self, server_dsn: str) -> None:
        self.server_dsn = server_dsn
        self._made: dict[str, str] = {}

    def _template(self, kind: str) -> str:
        if kind not in self._made:
            if kind == "empty":
                name = create_database(self.server_dsn, prefix="oddstore_tmpl")
            else:
                name = _name("oddstore_tmpl")
                _run(_clone(self.server_dsn, self._template("empty"), name))
                try:
                    self.FILL[kind](dsn_for_database(self.server_dsn, name))
                except BaseException:
                    drop_database(self.server_dsn, name)  # not a template yet: drop_all would not see it
                    raise
            _run(_seal(self.server_dsn, name))
            self._made[kind] = name
        return self._made[kind]

    def clone(self, kind: str, prefix: str = "oddstore_t") -> str:
        """The name of a new database copied from the `kind` template."""
        name = _name(prefix)
        _run(_clone(self.server_dsn, self._template(kind), name))
        return name

    def drop_all(self) -> None:
        for name in self._made.values():
            drop_database(self.server_dsn, name)
        self._made.clear()


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


@pytest.fixture(scope="session")
def templates(pg_server_dsn: str) -> Iterator[Templates]:
    made = Templates(pg_server_dsn)
    yield made
    made.drop_all()


def _factory(templates: Templates, kind: str) -> Iterator[Callable[[], str]]:
    created: list[str] = []

    def make() -> str:
        name = templates.clone(kind)
        created.append(name)
        return dsn_for_database(templates.server_dsn, name)

    yield make
    for name in created:
        drop_database(templates.server_dsn, name)


@pytest.fixture
def make_database(templates: Templates) -> Iterator[Callable[[], str]]:
    """Factory: each call creates an empty, uniquely named database and returns its DSN."""
    yield from _factory(templates, "empty")


@pytest.fixture
def make_migrated_database(templates: Templates) -> Iterator[Callable[[], str]]:
    """Factory: each call creates a uniquely named database migrated to head and returns its DSN."""
    yield from _factory(templates, "migrated")


@pytest.fixture
def fresh_database(make_database: Callable[[], str]) -> str:
    """DSN of an empty, uniquely named database, dropped after the test."""
    return make_database()


@pytest.fixture(scope="session")
def migrated_dsn(templates: Templates) -> Iterator[str]:
    """DSN of one database migrated to head, shared by the session: tests must use unique ids."""
    name = templates.clone("migrated", prefix="oddstore_s")
    try:
        yield dsn_for_database(templates.server_dsn, name)
    finally:
        drop_database(templates.server_dsn, name)


@pytest.fixture
def old_database(templates: Templates) -> Iterator[str]:
    """DSN of a fresh database holding the pawaRisk fixture (tests/pawarisk.py), dropped after the test."""
    name = templates.clone("pawarisk")
    try:
        yield dsn_for_database(templates.server_dsn, name)
    finally:
        drop_database(templates.server_dsn, name)
