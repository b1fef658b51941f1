"""The UI's WebSocket (contract §(g)) with a real WebSocket client against the gateway served by uvicorn on loopback,
over the real query service following a real writer, with snapshots submitted through ingest."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import grpc
import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from oddstore.convert import snapshot_to_pb
from oddstore.model import Snapshot
from oddstore.v1 import ingest_pb2, ingest_pb2_grpc, snapshot_pb2
from services.gateway.app import create_app
from services.gateway.live import LiveOdds
from services.gateway.query_client import QueryClient
from services.gateway.ws_protocol import UVICORN_WEBSOCKETS
from services.ingest import bootstrap as ingest_bootstrap
from services.ingest.config import IngestSettings
from services.query import bootstrap as query_bootstrap
from services.query.config import QuerySettings
from services.writer import bootstrap as writer_bootstrap
from services.writer.config import WriterSettings
from tests.factories import market, new_event_id, now, snapshot
from tests.feeds import ManualTimer
from tests.polling import TIMEOUT_SECONDS, eventually
from tests.proxy import Proxy


@dataclass
class Stack:
    query: query_bootstrap.QueryApp
    ingest: ingest_pb2_grpc.IngestServiceStub
    live: LiveOdds
    timer: ManualTimer  # of the conflation windows: moved by the test, never waited through
    url: str
    proxy: Proxy  # between the gateway and the query service: the test drops the gateway's stream with it
    settings: QuerySettings

    async def submit(self, *snapshots: Snapshot) -> None:
        response = await self.ingest.SubmitSnapshots(
            ingest_pb2.SubmitSnapshotsRequest(snapshots=[snapshot_to_pb(s) for s in snapshots]), timeout=TIMEOUT_SECONDS
        )
        assert all(r.status == snapshot_pb2.SNAPSHOT_STATUS_ACCEPTED for r in response.results), response

    async def live_following(self) -> None:
        await eventually(
            lambda: self.query.feed.updates.subscribers >= 1, "the gateway subscribed to the query service"
        )

    def end_window(self) -> None:
        self.timer.now += 1.0  # LiveOdds' window_seconds
        self.live.flush()


@pytest.fixture
async def stack(migrated_dsn: str) -> AsyncIterator[Stack]:
    writer = await writer_bootstrap.start(WriterSettings(database_url=migrated_dsn, listen="127.0.0.1:0"))
    writers = f"127.0.0.1:{writer.server.port}"
    settings = QuerySettings(database_url=migrated_dsn, listen="127.0.0.1:0", database_wait_seconds=5, writers=writers)
    query = await query_bootstrap.start(settings)
    ingest = await ingest_bootstrap.start(IngestSettings(listen="127.0.0.1:0", writers=writers))
    proxy = Proxy("127.0.0.1", query.server.port)
    await proxy.start()
    client = QueryClient(f"127.0.0.1:{proxy.port}", TIMEOUT_SECONDS)
    timer = ManualTimer()
    live = LiveOdds(client, window_seconds=1.0, timer=timer)
    app = create_app(client, live=live)
    # As bootstrap serves it: frames written once per loop tick, uncompressed.
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_config=None,
        lifespan="on",
        **UVICORN_WEBSOCKETS,
    )
    gateway = uvicorn.Server(config)
    serving = asyncio.create_task(gateway.serve())
    await eventually(lambda: gateway.started, "the gateway serving")
    port = gateway.servers[0].sockets[0].getsockname()[1]
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{ingest.server.port}")
    stack = Stack(
        query, ingest_pb2_grpc.IngestServiceStub(channel), live, timer, f"ws://127.0.0.1:{port}/api/ws", proxy,
        settings,
    )  # fmt: skip
    yield stack
    await channel.close()
    gateway.should_exit = True
    await serving
    await proxy.cut()
    await ingest.stop(1)
    await stack.query.stop(1)
    await writer.stop(1)


async def receive(ws: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT_SECONDS))
    return message


async def nothing_queued(ws: ClientConnection) -> None:
    """Replies go out in order behind anything queued: a pong next means nothing else was waiting."""
    await ws.send(json.dumps({"type": "ping"}))
    assert (await receive(ws))["type"] == "pong"


async def test_the_socket_acknowledges_answers_pings_and_subscriptions_and_ignores_malformed_frames(
    stack: Stack,
) -> None:
    async with connect(stack.url) as ws:  # no topics: every known topic
        ack = await receive(ws)
        assert ack["type"] == "connection_ack" and ack["data"] == {"topics": ["odds_updates", "scrape_progress"]}
        assert ack["timestamp"].endswith("Z")
    async with connect(stack.url + "?topics=odds_updates,nonsense") as ws:
        assert (await receive(ws))["data"] == {"topics": ["odds_updates"]}
        for junk in ("{not json", "[1, 2]", '"ping"', json.dumps({"type": "nonsense"}), json.dumps({"no": "type"})):
            await ws.send(junk)  # ignored: the socket stays open
        await ws.send(json.dumps({"type": "ping"}))
        pong = await receive(ws)
        assert (pong["type"], pong["data"]) == ("pong", {}) and pong["timestamp"].endswith("Z")

        await ws.send(json.dumps({"type": "subscribe", "topics": ["scrape_progress", "nonsense", 5]}))
        update = await receive(ws)
        assert set(update) == {"type", "topics", "timestamp"}  # no data wrapper, as the old backend
        assert (update["type"], update["topics"]) == ("subscription_update", ["odds_updates", "scrape_progress"])
        await ws.send(json.dumps({"type": "unsubscribe", "topics": ["odds_updates"]}))
        assert (await receive(ws))["topics"] == ["scrape_progress"]

        # Unsubscribed from odds_updates: an update is not sent to it.
        await stack.live_following()
        e, t = new_event_id(), now() - timedelta(minutes=5)
        await stack.submit(snapshot(e, t, [market()]))
        await eventually(lambda: stack.live.messages == 1 and not stack.live.pending, "the update sent")
        await nothing_queued(ws)


async def test_an_ingested_change_reaches_the_socket_at_once_and_later_ones_merged_at_the_windows_end(
    stack: Stack,
) -> None:
    async with connect(stack.url + "?topics=odds_updates") as ws:
        assert (await receive(ws))["type"] == "connection_ack"
        await stack.live_following()
        e, t = new_event_id(), now() - timedelta(minutes=10)
        # The event's first change: at once, with no window to wait for (the test's clock does not move).
        await stack.submit(snapshot(e, t, [market(odds=(2.0, 3.0, 4.0))]))
        first = await receive(ws)
        assert first["type"] == "odds_update" and first["timestamp"].endswith("Z")
        assert first["data"] == {
            "event_ids": [e], "source": "betpawa", "snapshot_count": 1, "event_id": e, "bookmaker": "betpawa",
            "snapshot_time": t.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }  # fmt: skip
        # Two more within its window, two bookmakers: held, then one message when the window ends.
        await stack.submit(snapshot(e, t + timedelta(minutes=1), [market(odds=(2.2, 3.0, 3.6))]))
        await stack.submit(snapshot(e, t + timedelta(minutes=2), [market()], bookmaker="sportybet"))
        await eventually(
            lambda: e in stack.live.pending and stack.live.pending[e].snapshots == 2, "the two changes gathered"
        )
        await nothing_queued(ws)
        stack.end_window()
        update = await receive(ws)
        assert update["data"] == {
            "event_ids": [e], "source": "sportybet", "snapshot_count": 2, "event_id": e, "bookmaker": "sportybet",
            "snapshot_time": (t + timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }  # fmt: skip
        await nothing_queued(ws)  # one message for the two changes

        # A snapshot that changes nothing is no odds update.
        await stack.submit(snapshot(e, t + timedelta(minutes=3), [market()], bookmaker="sportybet"))
        await eventually(
            lambda: stack.query.cache.books_of(e)["sportybet"].captured_at == t + timedelta(minutes=3), "confirmed"
        )
        assert e not in stack.live.pending


async def test_a_commits_changes_to_many_events_arrive_as_one_message_per_event_however_they_are_written(
    stack: Stack,
) -> None:
    # 300 messages of ~300 bytes leave in one loop tick: written together (ws_protocol.py), and past FLUSH_BYTES.
    async with connect(stack.url + "?topics=odds_updates") as ws:
        assert (await receive(ws))["type"] == "connection_ack"
        await stack.live_following()
        events, t = [new_event_id() for _ in range(300)], now() - timedelta(minutes=10)
        await stack.submit(*(snapshot(e, t, [market()]) for e in events))
        received = [await receive(ws) for _ in events]
        assert {m["type"] for m in received} == {"odds_update"}
        assert sorted(m["data"]["event_id"] for m in received) == events
        await nothing_queued(ws)


async def test_a_change_made_while_the_gateways_stream_was_down_still_reaches_the_socket(stack: Stack) -> None:
    async with connect(stack.url + "?topics=odds_updates") as ws:
        assert (await receive(ws))["type"] == "connection_ack"
        await stack.live_following()
        await eventually(lambda: stack.live.resume_token != "", "the gateway holds a resume token")
        await stack.proxy.cut()
        await eventually(lambda: stack.query.feed.updates.subscribers == 0, "the gateway's stream dropped")
        e, t = new_event_id(), now() - timedelta(minutes=10)
        await stack.submit(snapshot(e, t, [market()]))  # while the gateway is not following
        await eventually(lambda: e in stack.query.cache.books, "the change in the query's cache")
        await stack.proxy.restore()
        update = await receive(ws)  # delivered on the resumed stream
        assert (update["type"], update["data"]["event_id"]) == ("odds_update", e)


async def test_when_the_gateways_stream_cannot_be_resumed_the_sockets_are_closed_so_browsers_refetch(
    stack: Stack,
) -> None:
    async with connect(stack.url + "?topics=odds_updates") as ws:
        assert (await receive(ws))["type"] == "connection_ack"
        await stack.live_following()
        await eventually(lambda: stack.live.resume_token != "", "the gateway holds a resume token")
        # The query service restarts: a new process, which cannot resume the old one's token.
        await stack.proxy.cut()
        await stack.query.stop(1)
        stack.query = await query_bootstrap.start(stack.settings)
        stack.proxy.retarget(stack.query.server.port)
        await stack.proxy.restore()
        with pytest.raises(ConnectionClosed) as closed:
            await receive(ws)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
        await eventually(lambda: stack.live.resume_token.startswith(stack.query.feed.updates.epoch), "resubscribed")
