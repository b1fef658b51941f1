"""Whether a database runs on Citus: the few statements that must differ there branch on this (issue 12)."""

from __future__ import annotations

import asyncpg

CITUS_INSTALLED = "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')"

# Session settings of the writer's and query's pools. A new connection's first statement with an array parameter
# (bigint[], float8[], ...) runs asyncpg's type introspection, which reads pg_class; on a Citus node every read of
# pg_class is rewritten to hide shards (a function call per row, the index on reltype unused): the introspection
# took 263 ms there against 12 ms with the rewrite off (new connection, coordinator, load 2; plain PostgreSQL 8 ms),
# and ~20 s a connection at a load of 33 in test-compose-citus. Off, the coordinator's own shards (the reference
# tables') show in pg_class: harmless to those two, whose SQL names its tables, but not to retention's listing of
# every table (storage sizes), whose pool keeps the default. A plain server keeps it as an unused placeholder.
POOL_SETTINGS = {"citus.override_table_visibility": "off"}


async def installed(conn: asyncpg.Connection | asyncpg.Pool) -> bool:
    return bool(await conn.fetchval(CITUS_INSTALLED))


# One transaction at a time writes the shared event metadata (reference tables: sports, tournaments, events,
# event_bookmakers) on Citus: the writer's batches that create or change events and retention's deletes of expired
# events and empty tournaments. Such a transaction takes Citus's shard locks of the reference tables shared (its
# writes to tables that reference them) and then exclusive (its own writes to them); two at once deadlocked
# ("involved in a distributed deadlock": bench-citus-write with 2 writers, and a writer beside a cleanup in
# test-citus). Taken first in the transaction, this lock makes them queue instead.
METADATA_TURN = "SELECT pg_advisory_xact_lock(hashtext('oddstore.event_metadata'))"
