"""SQL of the gateway's audit log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

INSERT_AUDIT = """
INSERT INTO audit_log (at, actor, action, status, client) VALUES ($1, $2, $3, $4, $5)
RETURNING id, at, actor, action, status, client
"""
LIST_AUDIT = "SELECT id, at, actor, action, status, client FROM audit_log ORDER BY id DESC LIMIT $1"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    status: int
    client: str


async def record(pool: asyncpg.Pool, at: datetime, actor: str, action: str, status: int, client: str) -> AuditEntry:
    row = await pool.fetchrow(INSERT_AUDIT, at, actor, action, status, client)
    return AuditEntry(**dict(row))


async def latest(pool: asyncpg.Pool, limit: int) -> list[AuditEntry]:
    return [AuditEntry(**dict(r)) for r in await pool.fetch(LIST_AUDIT, limit)]
