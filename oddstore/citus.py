"""Whether a database runs on Citus: the few statements that must differ there branch on this (issue 12)."""

from __future__ import annotations

import asyncpg

CITUS_INSTALLED = "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')"


async def installed(conn: asyncpg.Connection | asyncpg.Pool) -> bool:
    return bool(await conn.fetchval(CITUS_INSTALLED))


# One transaction at a time writes the shared event metadata (reference tables: sports, tournaments, events,
# event_bookmakers) on Citus: the writer's batches that create or change events and retention's deletes of expired
# events and empty tournaments. Such a transaction takes Citus's shard locks of the reference tables shared (its
# writes to tables that reference them) and then exclusive (its own writes to them); two at once deadlocked
# ("involved in a distributed deadlock": bench-citus-write with 2 writers, and a writer beside a cleanup in
# test-citus). Taken first in the transaction, this lock makes them queue instead.
METADATA_TURN = "SELECT pg_advisory_xact_lock(hashtext('oddstore.event_metadata'))"
