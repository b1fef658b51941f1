"""Whether a database runs on Citus: the few statements that must differ there branch on this (issue 12)."""

from __future__ import annotations

import asyncpg

CITUS_INSTALLED = "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')"


async def installed(conn: asyncpg.Connection | asyncpg.Pool) -> bool:
    return bool(await conn.fetchval(CITUS_INSTALLED))
