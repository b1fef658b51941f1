"""QueryService.Subscribe end to end: snapshots submitted through ingest to a real writer on PostgreSQL, followed by
a real query service; what a client folds from its stream (image, then deltas) equals the database; resume within
and beyond the replica's buffer; heartbeats; a consumer too slow for the buffer."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import grpc
import pytest

from oddstore.convert import from_timestamp, snapshot_to_pb
from oddstore.model import Snapshot
from oddstore.v1 import ingest_pb2, ingest_pb2_grpc, query_pb2_grpc, snapshot_pb2
from oddstore.v1 import query_pb2 as pb
from services.ingest import bootstrap as ingest_bootstrap
from services.ingest.config import IngestSettings
from services.query import bootstrap as query_bootstrap
from services.query import odds
from services.query.config import QuerySettings
from services.writer import bootstrap as writer_bootstrap
from services.writer.config import WriterSettings
from tests.factories import market, new_event_id, now, snapshot
from tests.feeds import SteppedSleep
from tests.polling import TIMEOUT_SECONDS, eventually

BUFFER = 40  # the query's QUERY_STREAM_BUFFER: small, so that tests go beyond it with a few writes

Key = tuple[int, str, str, float | None]  # (event, bookmaker, market_id, line)
State = tuple[str, tuple[tuple[str, float, bool], ...], bool, datetime]  # (name, outcomes, available, captured_at)


async def database_state(pool: asyncpg.Pool, event_ids: Sequence[int]) -> dict[Key, State]:
    rows = await pool.fetch(
        "SELECT event_id, bookmaker_slug, market_id, line, market_name, outcomes, unavailable_at, last_updated_at"
        " FROM market_odds_current WHERE event_id = ANY($1::bigint[])",
        list(event_ids),
    )
    return {
        (r[0], r[1], r[2], r[3]): (r[4], tuple(odds.decode(r[5])), r[6] is None, r[7]) for r in rows
    }  # fmt: skip


@dataclass
class Client:
    """Reads one Subscribe stream in the background and folds it as a client would."""

    call: Any
    state: dict[Key, State] = field(default_factory=dict)
    messages: list[pb.SubscribeResponse] = field(default_factory=list)
    token: str = ""
    error: grpc.aio.AioRpcError | None = None
    task: asyncio.Task[None] | None = None

    def fold(self, m: pb.SubscribeResponse) -> None:
        if m.kind == pb.STREAM_MESSAGE_KIND_IMAGE and not self.messages[-1:]:
            self.state.clear()  # an image replaces whatever the client held
        for s in m.markets:
            key = (s.event_id, s.bookmaker, s.market_id, s.line if s.HasField("line") else None)
            outcomes = tuple((o.name, o.odds, o.is_active) for o in s.outcomes)
            self.state[key] = (s.market_name, outcomes, s.available, from_timestamp(s.captured_at))
        self.messages.append(m)
        if m.resume_token:
            self.token = m.resume_token

    async def _read(self) -> None:
        try:
            async for m in self.call:
                self.fold(m)
        except grpc.aio.AioRpcError as exc:
            self.error = exc

    def kinds(self) -> list[int]:
        return [m.kind for m in self.messages]

    async def close(self) -> None:
        self.call.cancel()
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


@dataclass
class Stack:
    pool: asyncpg.Pool
    query: query_bootstrap.QueryApp
    stub: query_pb2_grpc.QueryServiceStub
    ingest: ingest_pb2_grpc.IngestServiceStub
    window: SteppedSleep  # the streams' conflation window: stepped, never waited through

    async def submit(self, *snapshots: Snapshot) -> None:
        response = await self.ingest.SubmitSnapshots(
            ingest_pb2.SubmitSnapshotsRequest(snapshots=[snapshot_to_pb(s) for s in snapshots]), timeout=TIMEOUT_SECONDS
        )
        assert all(r.status == snapshot_pb2.SNAPSHOT_STATUS_ACCEPTED for r in response.results), response

    def subscribe(self, **request: Any) -> Client:
        client = Client(self.stub.Subscribe(pb.SubscribeRequest(**request)))
        client.task = asyncio.create_task(client._read())
        return client

    async def image(self, **request: Any) -> Client:
        client = self.subscribe(**request)
        await eventually(lambda: client.token != "", "the image received")
        return client

    async def equal_to_database(
        self, client: Client, event_ids: Sequence[int], selected: Callable[[Key], bool] = lambda _: True
    ) -> None:
        async def holds() -> bool:
            stored = await database_state(self.pool, event_ids)
            return client.state == {key: value for key, value in stored.items() if selected(key)}

        await eventually(holds, "the stream's state equal to the database")

    async def settled(self) -> None:
        """Everything acknowledged is applied by the query's cache (the writers' feed is ordered and applied in one
        task): a marker written last and seen in the cache means the writes before it were published too."""
        marker = new_event_id()
        await self.submit(snapshot(marker, now() - timedelta(hours=1), [market()]))
        await eventually(lambda: marker in self.query.cache.books, "the marker cached")


@pytest.fixture
async def stack(migrated_dsn: str) -> AsyncIterator[Stack]:
    writer = await writer_bootstrap.start(WriterSettings(database_url=migrated_dsn, listen="127.0.0.1:0"))
    writers = f"127.0.0.1:{writer.server.port}"
    window = SteppedSleep()
    query = await query_bootstrap.start(
        QuerySettings(
            database_url=migrated_dsn, listen="127.0.0.1:0", database_wait_seconds=5, writers=writers,
            stream_buffer=BUFFER,
        ),
        stream_sleep=window,
    )  # fmt: skip
    ingest = await ingest_bootstrap.start(IngestSettings(listen="127.0.0.1:0", writers=writers))
    pool = await asyncpg.create_pool(migrated_dsn, min_size=1, max_size=2)
    query_channel = grpc.aio.insecure_channel(f"127.0.0.1:{query.server.port}")
    ingest_channel = grpc.aio.insecure_channel(f"127.0.0.1:{ingest.server.port}")
    yield Stack(
        pool, query, query_pb2_grpc.QueryServiceStub(query_channel), ingest_pb2_grpc.IngestServiceStub(ingest_channel),
        window,
    )  # fmt: skip
    await query_channel.close()
    await ingest_channel.close()
    await pool.close()
    await ingest.stop(1)
    await query.stop(1)
    await writer.stop(1)


async def test_an_image_then_deltas_fold_into_exactly_the_database_state_of_what_the_stream_selects(
    stack: Stack,
) -> None:
    e1, e2, other, t = new_event_id(), new_event_id(), new_event_id(), now() - timedelta(minutes=30)
    over = market("5000", 2.5, (1.8, 2.0), ("Over", "Under"))
    await stack.submit(snapshot(e1, t, [market(), over]), snapshot(e2, t, [market()], bookmaker="sportybet"))
    await stack.settled()
    client = await stack.image(event_ids=[e1, e2])
    assert client.kinds()[0] == pb.STREAM_MESSAGE_KIND_IMAGE and not client.messages[-1].fresh_image
    assert len(client.state) == 3
    await stack.equal_to_database(client, [e1, e2])
    goals = await stack.image(market_ids=["5000"], bookmakers=["betpawa"], event_ids=[e1, e2, other])

    # Changed odds, a market gone (unavailable), a new bookmaker, and an event the stream does not select.
    await stack.submit(snapshot(other, t, [market()]))
    await stack.submit(snapshot(e1, t + timedelta(minutes=1), [market(odds=(2.5, 3.0, 3.0))]))
    await stack.submit(snapshot(e2, t + timedelta(minutes=1), [over], bookmaker="sportybet"))
    await stack.submit(snapshot(e1, t + timedelta(minutes=2), [over], bookmaker="bet9ja"))
    await stack.equal_to_database(client, [e1, e2])
    assert client.state[(e1, "betpawa", "5000", 2.5)][2] is False  # unavailable since minute 1
    assert client.state[(e2, "sportybet", "3743", None)][2] is False
    assert all(m.kind == pb.STREAM_MESSAGE_KIND_DELTA for m in client.messages[1:]) and client.messages[-1].changes
    assert not any(key[0] == other for key in client.state)

    await stack.equal_to_database(goals, [e1, e2, other], lambda key: key[1:3] == ("betpawa", "5000"))
    assert list(goals.state) == [(e1, "betpawa", "5000", 2.5)]
    await client.close()
    await goals.close()


async def test_a_stream_resumed_with_its_token_gets_the_deltas_it_missed_and_no_image(stack: Stack) -> None:
    e, t = new_event_id(), now() - timedelta(minutes=30)
    await stack.submit(snapshot(e, t, [market()]))
    await stack.settled()
    client = await stack.image(event_ids=[e])
    await client.close()
    await stack.submit(snapshot(e, t + timedelta(minutes=1), [market(odds=(1.5, 4.0, 6.0))]))  # while away

    resumed = stack.subscribe(event_ids=[e], resume_token=client.token)
    resumed.state = dict(client.state)
    await stack.equal_to_database(resumed, [e])
    assert resumed.kinds() == [pb.STREAM_MESSAGE_KIND_DELTA]
    await resumed.close()


async def test_a_stream_resumed_beyond_the_buffer_gets_a_fresh_image_flagged_as_such(stack: Stack) -> None:
    e, t = new_event_id(), now() - timedelta(minutes=30)
    await stack.submit(snapshot(e, t, [market()]))
    await stack.settled()
    client = await stack.image(event_ids=[e])
    await client.close()
    await stack.submit(snapshot(e, t + timedelta(minutes=1), [market(odds=(1.5, 4.0, 6.0))]))
    for i in range(BUFFER):  # other events' changes push the stream's position out of the buffer
        await stack.submit(snapshot(new_event_id(), t + timedelta(seconds=i), [market()]))
    await stack.settled()

    resumed = stack.subscribe(event_ids=[e], resume_token=client.token)
    resumed.state = dict(client.state)
    await eventually(lambda: resumed.token != "", "the fresh image")
    assert resumed.kinds() == [pb.STREAM_MESSAGE_KIND_IMAGE] and resumed.messages[0].fresh_image
    await stack.equal_to_database(resumed, [e])
    await resumed.close()


async def test_a_quiet_stream_gets_heartbeats_carrying_a_resumable_token(stack: Stack) -> None:
    quiet = await stack.image(event_ids=[new_event_id()], heartbeat_ms=20)
    image_token = quiet.token
    await stack.settled()  # another event's change: the heartbeat's token moves past it
    await eventually(
        lambda: quiet.kinds()[-1] == pb.STREAM_MESSAGE_KIND_HEARTBEAT and quiet.token != image_token,
        "a heartbeat with a newer token",
    )
    await quiet.close()
    resumed = stack.subscribe(event_ids=[new_event_id()], resume_token=quiet.token, heartbeat_ms=20)
    await eventually(lambda: resumed.messages != [], "the resumed stream's first message")
    assert resumed.kinds()[0] == pb.STREAM_MESSAGE_KIND_HEARTBEAT  # resumed: no image
    await resumed.close()


async def test_a_slow_consumer_is_conflated_to_the_latest_state_then_ended_beyond_the_buffer(stack: Stack) -> None:
    e, t = new_event_id(), now() - timedelta(minutes=30)
    await stack.submit(snapshot(e, t, [market()]))
    await stack.settled()
    client = await stack.image(event_ids=[e], conflation_ms=1000)
    images = len(client.messages)

    # Three changes of one market while the stream waits out its window: one delta, the latest state.
    await stack.submit(snapshot(e, t + timedelta(minutes=1), [market(odds=(2.0, 3.0, 4.0))]))
    await eventually(lambda: stack.window.waiting.is_set(), "the stream in its conflation window")
    await stack.submit(snapshot(e, t + timedelta(minutes=2), [market(odds=(2.2, 3.0, 3.6))]))
    await stack.submit(snapshot(e, t + timedelta(minutes=3), [market(odds=(2.4, 3.0, 3.2))]))
    await stack.settled()
    stack.window.step()
    await stack.equal_to_database(client, [e])
    assert len(client.messages) == images + 1 and len(client.messages[-1].markets) == 1
    assert client.messages[-1].changes[0].snapshots == 3

    # Behind by more than the buffer while it waits: ended, with a reason, and no unbounded queue meanwhile.
    await stack.submit(snapshot(e, t + timedelta(minutes=4), [market()]))
    await eventually(lambda: stack.window.waiting.is_set(), "the stream in its conflation window")
    for i in range(BUFFER):
        await stack.submit(snapshot(new_event_id(), t + timedelta(seconds=i), [market()]))
    await stack.settled()
    stack.window.step()
    await eventually(lambda: client.error is not None, "the stream ended")
    assert client.error is not None and client.error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "reads too slowly" in (client.error.details() or "")
    assert stack.query.feed.updates.subscribers == 0
