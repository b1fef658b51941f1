"""Throw-away databases on one PostgreSQL server: created with unique names, always dropped."""

from __future__ import annotations

import logging
import os
import time
from urllib.parse import urlsplit, urlunsplit

import asyncpg

logger = logging.getLogger(__name__)


def with_database(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


def quote_ident(name: str) -> str:
    return '"{}"'.format(name.replace('"', '""'))


class Server:
    """Creates databases next to the one `dsn` names; `drop_all` removes every one it created."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.created: list[str] = []
        self._prefix = f"bench_write_{os.getpid()}_{int(time.time())}"

    async def _admin(self) -> asyncpg.Connection:
        try:
            conn: asyncpg.Connection = await asyncpg.connect(self.dsn)
        except asyncpg.exceptions.InvalidCatalogNameError:
            # The URL may name a database that does not exist yet; the server is what matters.
            conn = await asyncpg.connect(with_database(self.dsn, "postgres"))
        return conn

    async def create(self, role: str) -> str:
        name = f"{self._prefix}_{role}"
        conn = await self._admin()
        try:
            await conn.execute(f"CREATE DATABASE {quote_ident(name)}")
        finally:
            await conn.close()
        self.created.append(name)
        logger.info("created database %s", name)
        return with_database(self.dsn, name)

    async def drop_all(self) -> None:
        conn = await self._admin()
        try:
            while self.created:
                name = self.created.pop()
                # FORCE: a child process killed mid-run may still hold connections.
                await conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
                logger.info("dropped database %s", name)
        finally:
            await conn.close()

    async def describe(self) -> dict[str, str]:
        conn = await self._admin()
        try:
            settings = {
                name: str(await conn.fetchval(f"SHOW {name}"))
                for name in ("server_version", "shared_buffers", "synchronous_commit", "max_wal_size")
            }
        finally:
            await conn.close()
        return settings
