"""Per-node cost of a benchmark round: CPU seconds of a PostgreSQL server's processes (from /proc), WAL bytes
and stored bytes, for plain PostgreSQL and for every node of a Citus cluster."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from bench.databases import on_node

TICKS = os.sysconf("SC_CLK_TCK")

# The odds tables as every node stores them: partitions and Citus shards are named after their table.
ODDS_BYTES = """
SELECT coalesce(sum(pg_total_relation_size(c.oid)) FILTER (WHERE c.relname LIKE 'market_odds_history%'), 0),
       coalesce(sum(pg_total_relation_size(c.oid)), 0)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname = 'public'
  AND (c.relname LIKE 'market_odds_history%' OR c.relname LIKE 'market_odds_current%'
       OR c.relname LIKE 'latest_snapshots%')
"""


SHOW_SHARDS = {"citus.override_table_visibility": "off"}


def _stat(pid: int) -> tuple[int, float, float]:
    """(parent pid, own CPU seconds, CPU seconds of its reaped children) from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    # After the command: state, ppid, ..., utime (14th field of the line), stime, cutime, cstime.
    ppid, utime, stime, cutime, cstime = int(fields[1]), *(int(f) for f in fields[11:15])
    return ppid, (utime + stime) / TICKS, (cutime + cstime) / TICKS


def process_cpu(pid: int) -> float:
    """CPU seconds one process has used (0 when it is gone)."""
    try:
        return _stat(pid)[1]
    except (FileNotFoundError, ProcessLookupError):
        return 0.0


def server_cpu(postmaster: int) -> float:
    """CPU seconds of a whole server: the postmaster, its live children, and the children it has reaped
    (a finished backend's time moves into the postmaster's cutime/cstime, so the sum never loses it)."""
    _, own, reaped = _stat(postmaster)
    total = own + reaped
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                ppid, child, grandchildren = _stat(int(entry.name))
            except (FileNotFoundError, ProcessLookupError):
                continue
            if ppid == postmaster:
                total += child + grandchildren
    return total


@dataclass(slots=True)
class Sample:
    cpu: float  # seconds
    wal: int  # bytes, server-wide LSN
    backends: dict[int, float] = field(default_factory=dict)


@dataclass(slots=True)
class Node:
    """One PostgreSQL server holding the benchmark's database.

    `whole_server`: count every process of the server (a Citus node of our own, where nothing else runs);
    otherwise (a shared server) only the backends connected to our database, and its background processes
    (WAL writer, checkpointer) are left out.
    """

    name: str
    conn: asyncpg.Connection
    postmaster: int
    whole_server: bool
    baseline_bytes: int = 0

    @classmethod
    async def open(cls, name: str, dsn: str, *, whole_server: bool, settings: dict[str, str] | None = None) -> Node:
        conn = await asyncpg.connect(dsn, server_settings=settings)
        backend = int(await conn.fetchval("SELECT pg_backend_pid()"))
        node = cls(name, conn, _stat(backend)[0], whole_server)
        node.baseline_bytes = int(await conn.fetchval("SELECT pg_database_size(current_database())"))
        return node

    async def sample(self) -> Sample:
        wal = int(await self.conn.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"))
        if self.whole_server:
            return Sample(server_cpu(self.postmaster), wal)
        pids = await self.conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        backends = {r[0]: process_cpu(r[0]) for r in pids}
        return Sample(sum(backends.values()), wal, backends)

    def cpu_between(self, before: Sample, after: Sample) -> float:
        if self.whole_server:
            return after.cpu - before.cpu
        # Backends that started during the round count whole; one that ended during it loses its last part.
        return sum(cpu - before.backends.get(pid, 0.0) for pid, cpu in after.backends.items())

    async def stored(self) -> tuple[int, int, int]:
        """(history bytes, odds-table bytes, database growth since open) on this node."""
        row = await self.conn.fetchrow(ODDS_BYTES)
        assert row is not None
        size = int(await self.conn.fetchval("SELECT pg_database_size(current_database())"))
        return int(row[0]), int(row[1]), size - self.baseline_bytes

    async def close(self) -> None:
        await self.conn.close()


async def open_nodes(dsn: str, citus_nodes: list[tuple[str, int]]) -> list[Node]:
    """The plain server as one node, or a Citus cluster's coordinator and workers, on the database dsn names."""
    if not citus_nodes:
        return [await Node.open("server", dsn, whole_server=False)]
    names = ["coordinator", *(f"worker {i}" for i in range(1, len(citus_nodes)))]
    return [
        # Citus hides shards from pg_class on the workers unless told not to; their sizes are what we want.
        await Node.open(name, on_node(dsn, host, port), whole_server=True, settings=SHOW_SHARDS)
        for name, (host, port) in zip(names, citus_nodes, strict=True)
    ]
