"""The write-path acceptance workload (simulator cycles through real ingest and writer servers) and the database
contents it leaves, dumped table by table in a fixed order so that two databases compare row for row."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any

import asyncpg
import grpc

from oddstore.v1 import ingest_pb2, ingest_pb2_grpc, snapshot_pb2
from oddstore_cli.simulator import Simulator
from services.ingest import bootstrap as ingest_bootstrap
from services.ingest.config import IngestSettings
from services.writer import bootstrap as writer_bootstrap
from services.writer.config import WriterSettings

ACKNOWLEDGED = {snapshot_pb2.SNAPSHOT_STATUS_ACCEPTED, snapshot_pb2.SNAPSHOT_STATUS_SUPERSEDED}
Batch = list[snapshot_pb2.Snapshot]


def workload(*, events: int = 20, cycles: int = 8, batch_size: int = 10, seed: int = 12) -> list[Batch]:
    """The simulator's cycles (its markets, changes, suspensions, markets withdrawn and back) as ingest batches.
    The cycles five minutes apart straddle the midnight before yesterday (UTC): two daily history partitions, all
    of it within the retention window and never in the future."""
    midnight = datetime.combine(datetime.now(UTC).date() - timedelta(days=1), time(), UTC)
    start = midnight - timedelta(minutes=5 * (cycles // 2))
    simulator = Simulator(events, seed=seed)
    batches: list[Batch] = []
    for k in range(cycles):
        snapshots = simulator.cycle(start + timedelta(minutes=5 * k))
        batches += [snapshots[i : i + batch_size] for i in range(0, len(snapshots), batch_size)]
    return batches


@asynccontextmanager
async def write_path(
    dsn: str, *, writer_retry_seconds: float = 30.0
) -> AsyncIterator[ingest_pb2_grpc.IngestServiceStub]:
    """An ingest server in front of a writer server on `dsn`, both on loopback; yields a client of ingest."""
    writer = await writer_bootstrap.start(WriterSettings(database_url=dsn, listen="127.0.0.1:0"))
    ingest = await ingest_bootstrap.start(
        IngestSettings(
            listen="127.0.0.1:0",
            writers=f"127.0.0.1:{writer.server.port}",
            writer_retry_seconds=writer_retry_seconds,
        )
    )
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{ingest.server.port}")
    try:
        yield ingest_pb2_grpc.IngestServiceStub(channel)
    finally:
        await channel.close()
        await ingest.stop(1)
        await writer.stop(1)


@dataclass
class Client:
    """Submits batches in order as `oddstore replay` does: a batch not acknowledged (UNAVAILABLE) is sent again,
    after a short back-off, until it is; any other failure ends the run. Records every failure it retried."""

    stub: ingest_pb2_grpc.IngestServiceStub
    give_up_after: float = 180.0
    failures: list[grpc.aio.AioRpcError] = field(default_factory=list)
    acknowledged: int = 0  # batches

    async def submit(self, batch: Batch) -> list[snapshot_pb2.SnapshotResult]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.give_up_after
        request = ingest_pb2.SubmitSnapshotsRequest(snapshots=batch)
        while True:
            try:
                response = await self.stub.SubmitSnapshots(request, timeout=60)
            except grpc.aio.AioRpcError as exc:
                if exc.code() is not grpc.StatusCode.UNAVAILABLE or loop.time() > deadline:
                    raise
                self.failures.append(exc)
                await asyncio.sleep(0.2)  # a client's back-off before resending, not a wait for a condition
                continue
            self.acknowledged += 1
            return list(response.results)

    async def run(self, batches: list[Batch], after_batch: Callable[[int], None] = lambda n: None) -> None:
        for n, batch in enumerate(batches, 1):
            results = await self.submit(batch)
            statuses = Counter(snapshot_pb2.SnapshotStatus.Name(r.status) for r in results)
            assert all(r.status in ACKNOWLEDGED for r in results), f"batch {n}: {dict(statuses)}"
            after_batch(n)


# Every table the write path writes, and the history's daily partitions. Generated ids (sports, tournaments,
# event_bookmakers) are replaced by the natural keys they stand for, and the times the database stamps with now()
# (created_at, events.updated_at) are left out: neither is content, and both differ between any two runs. Rows
# are sorted in Python, not by ORDER BY: two servers may sort text by different collations.
CONTENTS: dict[str, str] = {
    "latest_snapshots": "SELECT event_id, bookmaker_slug, captured_at FROM latest_snapshots",
    "market_odds_current": """
        SELECT event_id, bookmaker_slug, market_id, line, market_name, handicap_type, handicap_home, handicap_away,
               market_groups, outcomes, last_updated_at, last_confirmed_at, unavailable_at
        FROM market_odds_current""",
    "market_odds_history": """
        SELECT event_id, bookmaker_slug, market_id, line, captured_at, available, outcomes
        FROM market_odds_history""",
    "market_odds_history partitions": """
        SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'market_odds_history'::regclass""",
    "events": """
        SELECT e.id, e.sportradar_id, s.name, t.name, t.country, e.name, e.home_team, e.away_team, e.kickoff
        FROM events e JOIN tournaments t ON t.id = e.tournament_id JOIN sports s ON s.id = t.sport_id""",
    "event_bookmakers": """
        SELECT eb.event_id, b.slug, eb.external_event_id, eb.event_url
        FROM event_bookmakers eb JOIN bookmakers b ON b.id = eb.bookmaker_id""",
    "tournaments": """
        SELECT s.name, t.name, t.country, t.sportradar_id FROM tournaments t JOIN sports s ON s.id = t.sport_id""",
    "sports": "SELECT name, slug FROM sports",
    "bookmakers": "SELECT slug, name, base_url, is_active FROM bookmakers",
}
Contents = dict[str, list[tuple[Any, ...]]]


def _order(row: tuple[Any, ...]) -> tuple[tuple[bool, Any], ...]:
    return tuple((v is None, "" if v is None else v) for v in row)


async def contents(dsn: str) -> Contents:
    conn = await asyncpg.connect(dsn)
    try:
        return {
            table: sorted((tuple(r) for r in await conn.fetch(query)), key=_order) for table, query in CONTENTS.items()
        }
    finally:
        await conn.close()


def differences(expected: Contents, actual: Contents, *, names: tuple[str, str], shown: int = 5) -> str:
    """What differs, table by table: the row counts and the first rows only one side has ("" when equal)."""
    lines = []
    for table in CONTENTS:
        if expected[table] == actual[table]:
            continue
        want, got = Counter(expected[table]), Counter(actual[table])
        lines.append(f"{table}: {len(expected[table])} rows in {names[0]}, {len(actual[table])} in {names[1]}")
        for side, rows in ((names[0], want - got), (names[1], got - want)):
            for row in sorted(rows, key=_order)[:shown]:
                lines.append(f"  only in {side}: {row!r}"[:400])
            if len(rows) > shown:
                lines.append(f"  … and {sum(rows.values()) - shown} more only in {side}")
    return "\n".join(lines)
