"""Throw-away databases on one PostgreSQL server or Citus cluster: created with unique names, always dropped."""

from __future__ import annotations

import logging
import os
import time
from urllib.parse import urlsplit, urlunsplit

import asyncpg

logger = logging.getLogger(__name__)


def with_database(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


def on_node(dsn: str, host: str, port: int) -> str:
    """The same user, database and options as dsn, on another node of a Citus cluster."""
    parts = urlsplit(dsn)
    user = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}:{port}" if user else f"{host}:{port}"))


def quote_ident(name: str) -> str:
    return '"{}"'.format(name.replace('"', '""'))


async def execute(dsn: str, *statements: str) -> None:
    """The statements in order on a connection of their own (CREATE/DROP DATABASE cannot run in a transaction)."""
    conn = await asyncpg.connect(dsn)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


class Server:
    """Creates databases next to the one `dsn` names; `drop_all` removes every one it created.

    On a Citus coordinator a database is created on every node, with the extension, and the cluster is
    registered in it (Citus keeps its metadata per database); `shard_count` then sets the database's
    citus.shard_count, which the migrations' create_distributed_table takes.
    """

    def __init__(self, dsn: str, *, shard_count: int | None = None) -> None:
        self.dsn = dsn
        self.shard_count = shard_count
        self.created: list[str] = []
        self._prefix = f"bench_write_{os.getpid()}_{int(time.time())}"
        self._nodes: list[tuple[str, int]] | None = None

    async def _admin(self) -> asyncpg.Connection:
        try:
            conn: asyncpg.Connection = await asyncpg.connect(self.dsn)
        except asyncpg.exceptions.InvalidCatalogNameError:
            # The URL may name a database that does not exist yet; the server is what matters.
            conn = await asyncpg.connect(with_database(self.dsn, "postgres"))
        return conn

    async def nodes(self) -> list[tuple[str, int]]:
        """The coordinator then the workers as (host, port) on Citus; an empty list on plain PostgreSQL."""
        if self._nodes is None:
            conn = await self._admin()
            try:
                if await conn.fetchval("SELECT 1 FROM pg_extension WHERE extname = 'citus'"):
                    rows = await conn.fetch("SELECT nodename, nodeport FROM pg_dist_node ORDER BY groupid")
                    self._nodes = [(r[0], r[1]) for r in rows]
                else:
                    self._nodes = []
            finally:
                await conn.close()
        return self._nodes

    async def create(self, role: str) -> str:
        name = f"{self._prefix}_{role}"
        admin = with_database(self.dsn, "postgres")
        await execute(admin, f"CREATE DATABASE {quote_ident(name)}")
        self.created.append(name)
        dsn = with_database(self.dsn, name)
        nodes = await self.nodes()
        if nodes:
            (host, port), workers = nodes[0], nodes[1:]
            for w_host, w_port in workers:
                await execute(on_node(admin, w_host, w_port), f"CREATE DATABASE {quote_ident(name)}")
                await execute(on_node(dsn, w_host, w_port), "CREATE EXTENSION citus")
            shards = (
                []
                if self.shard_count is None
                else [f"ALTER DATABASE {quote_ident(name)} SET citus.shard_count = {self.shard_count:d}"]
            )
            await execute(
                dsn,
                "CREATE EXTENSION citus",
                f"SELECT citus_set_coordinator_host('{host}', {port})",
                *(f"SELECT citus_add_node('{w_host}', {w_port})" for w_host, w_port in workers),
                *shards,
            )
        logger.info("created database %s%s", name, f" on {len(nodes)} Citus nodes" if nodes else "")
        return dsn

    async def drop_all(self) -> None:
        admin = with_database(self.dsn, "postgres")
        nodes = await self.nodes()
        while self.created:
            name = self.created.pop()
            # FORCE: a child process killed mid-run may still hold connections. Workers after the coordinator.
            for node_dsn in [admin, *(on_node(admin, host, port) for host, port in nodes[1:])]:
                await execute(node_dsn, f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
            logger.info("dropped database %s", name)

    async def describe(self) -> dict[str, str]:
        conn = await self._admin()
        try:
            settings = {
                name: str(await conn.fetchval(f"SHOW {name}"))
                for name in ("server_version", "shared_buffers", "synchronous_commit", "max_wal_size", "fsync")
            }
        finally:
            await conn.close()
        return settings
