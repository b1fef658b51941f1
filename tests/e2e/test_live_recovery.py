"""Recovery of the live path under load: a writer process killed with SIGKILL mid-stream and replaced, a query
replica restarted; afterwards every replica's cache, and a client stream that resumed across it all, equal the
database. The writer is a real subprocess (`python -m services.writer.main`); ingest, the two query replicas and
the client run in-process over real gRPC on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Sequence
from datetime import timedelta

import asyncpg
import grpc

from oddstore.convert import from_timestamp, snapshot_to_pb
from oddstore.v1 import ingest_pb2, ingest_pb2_grpc, query_pb2_grpc, snapshot_pb2
from oddstore.v1 import query_pb2 as pb
from services.ingest import bootstrap as ingest_bootstrap
from services.ingest.config import IngestSettings
from services.query import bootstrap as query_bootstrap
from services.query import odds
from services.query.cache import OddsCache
from services.query.config import QuerySettings
from tests.factories import market, new_event_id, now, snapshot
from tests.polling import TIMEOUT_SECONDS, eventually

Key = tuple[int, str, str, float | None]
State = tuple[bytes, object, object]  # (outcomes, last_updated_at, unavailable_at)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def start_writer(dsn: str, port: int) -> asyncio.subprocess.Process:
    env = {**os.environ, "DATABASE_URL": dsn, "WRITER_LISTEN": f"127.0.0.1:{port}", "LOG_LEVEL": "WARNING"}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.writer.main", env=env, stderr=asyncio.subprocess.DEVNULL
    )


async def database_state(pool: asyncpg.Pool, event_ids: Sequence[int]) -> dict[Key, State]:
    rows = await pool.fetch(
        "SELECT event_id, bookmaker_slug, market_id, line, outcomes, last_updated_at, unavailable_at"
        " FROM market_odds_current WHERE event_id = ANY($1::bigint[])",
        list(event_ids),
    )
    return {(r[0], r[1], r[2], r[3]): (bytes(r[4]), r[5], r[6]) for r in rows}


def cache_state(cache: OddsCache, event_ids: Sequence[int]) -> dict[Key, State]:
    return {
        (e, slug, key[0], key[1]): (m.outcomes, m.last_updated_at, m.unavailable_at)
        for e in event_ids
        for slug, book in cache.books_of(e).items()
        for key, m in book.markets.items()
    }


class Load:
    """Submits a changing snapshot of every event per round through ingest, until stopped; counts acknowledgements."""

    def __init__(self, ingest: ingest_pb2_grpc.IngestServiceStub, event_ids: Sequence[int]) -> None:
        self._ingest = ingest
        self._events = event_ids
        self.acknowledged = 0
        self._stop = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        start, i = now() - timedelta(hours=1), 0
        while not self._stop.is_set():
            i += 1
            at = start + timedelta(seconds=i)
            markets = [market(odds=(2.0 + i % 7 / 10, 3.0, 4.0))]
            if i % 3:  # the second market comes and goes: availability changes too
                markets.append(market("5000", 2.5, (1.8 + i % 5 / 10, 2.0), ("Over", "Under")))
            batch = [snapshot_to_pb(snapshot(e, at, markets, bookmaker=("betpawa", "sportybet")[i % 2]))
                     for e in self._events]  # fmt: skip
            # Ingest holds the batch while the writer is away (INGEST_WRITER_RETRY_SECONDS) and answers after commit.
            response = await self._ingest.SubmitSnapshots(
                ingest_pb2.SubmitSnapshotsRequest(snapshots=batch), timeout=TIMEOUT_SECONDS
            )
            assert {r.status for r in response.results} <= {
                snapshot_pb2.SNAPSHOT_STATUS_ACCEPTED,
                snapshot_pb2.SNAPSHOT_STATUS_SUPERSEDED,  # a batch retried after the kill that had committed
            }, response
            self.acknowledged += 1

    async def until(self, acknowledged: int) -> None:
        target = self.acknowledged + acknowledged
        await eventually(lambda: self.acknowledged >= target or self.task.done(), f"{acknowledged} more batches")
        if self.task.done():
            self.task.result()  # its failure, not a timeout

    async def stop(self) -> None:
        self._stop.set()
        await self.task


async def test_after_a_writer_killed_mid_stream_and_a_replica_restarted_every_replica_equals_the_database(
    migrated_dsn: str,
) -> None:
    port = free_port()
    writer = await start_writer(migrated_dsn, port)
    # The safety check is pushed out of the way: recovery must come from the feed (resume, new-epoch resync).
    settings = QuerySettings(
        database_url=migrated_dsn, listen="127.0.0.1:0", database_wait_seconds=5, writers=f"127.0.0.1:{port}",
        resync_seconds=3600,
    )  # fmt: skip
    replicas = [await query_bootstrap.start(settings) for _ in range(2)]
    ingest = await ingest_bootstrap.start(IngestSettings(listen="127.0.0.1:0", writers=f"127.0.0.1:{port}"))
    pool = await asyncpg.create_pool(migrated_dsn, min_size=1, max_size=2)
    ingest_channel = grpc.aio.insecure_channel(f"127.0.0.1:{ingest.server.port}")
    query_channel = grpc.aio.insecure_channel(f"127.0.0.1:{replicas[0].server.port}")
    events = [new_event_id() for _ in range(5)]
    streamed: dict[Key, tuple[tuple[tuple[str, float, bool], ...], object, bool]] = {}
    load: Load | None = None

    async def follow() -> None:
        call = query_pb2_grpc.QueryServiceStub(query_channel).Subscribe(pb.SubscribeRequest(event_ids=events))
        async for m in call:
            for s in m.markets:
                key = (s.event_id, s.bookmaker, s.market_id, s.line if s.HasField("line") else None)
                outcomes = tuple((o.name, o.odds, o.is_active) for o in s.outcomes)
                streamed[key] = (outcomes, from_timestamp(s.captured_at), s.available)

    client = asyncio.create_task(follow())
    try:
        load = Load(ingest_pb2_grpc.IngestServiceStub(ingest_channel), events)
        await load.until(5)
        writer.send_signal(signal.SIGKILL)  # mid-stream: batches in flight, some committed and not yet published
        await writer.wait()
        writer = await start_writer(migrated_dsn, port)  # its replacement: a new epoch
        await load.until(5)
        await replicas[1].stop(1)
        replicas[1] = await query_bootstrap.start(settings)
        await load.until(5)
        await load.stop()

        async def all_equal() -> bool:
            stored = await database_state(pool, events)
            return bool(stored) and all(cache_state(r.cache, events) == stored for r in replicas)

        await eventually(all_equal, "every replica's cache equal to the database")
        assert replicas[0].feed.resyncs >= 2  # its first start and the killed writer's new epoch
        # The client's stream stayed on replica 0 throughout: what it folded equals the database too.
        stored = await database_state(pool, events)
        expected = {k: (tuple(odds.decode(o)), updated, gone is None) for k, (o, updated, gone) in stored.items()}
        await eventually(lambda: streamed == expected, "the client stream equal to the database")
    finally:
        client.cancel()
        with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
            await client
        if load is not None and not load.task.done():
            load.task.cancel()
        await ingest_channel.close()
        await query_channel.close()
        await pool.close()
        await ingest.stop(1)
        for r in replicas:
            await r.stop(1)
        if writer.returncode is None:
            writer.terminate()
            await writer.wait()
