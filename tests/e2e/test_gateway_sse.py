"""`GET /api/stream` (Server-Sent Events) with a real HTTP client against the gateway served by uvicorn on loopback,
over the real query service following a real writer, with snapshots submitted through ingest."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import grpc
import httpx
import pytest
import uvicorn

from oddstore.convert import snapshot_to_pb
from oddstore.model import Snapshot
from oddstore.v1 import ingest_pb2, ingest_pb2_grpc, snapshot_pb2
from services.gateway.app import create_app
from services.gateway.query_client import QueryClient
from services.ingest import bootstrap as ingest_bootstrap
from services.ingest.config import IngestSettings
from services.query import bootstrap as query_bootstrap
from services.query.config import QuerySettings
from services.writer import bootstrap as writer_bootstrap
from services.writer.config import WriterSettings
from tests.factories import market, new_event_id, now, snapshot
from tests.polling import TIMEOUT_SECONDS, eventually


@dataclass
class Stack:
    query: query_bootstrap.QueryApp
    ingest: ingest_pb2_grpc.IngestServiceStub
    http: httpx.AsyncClient

    async def submit(self, *snapshots: Snapshot) -> None:
        response = await self.ingest.SubmitSnapshots(
            ingest_pb2.SubmitSnapshotsRequest(snapshots=[snapshot_to_pb(s) for s in snapshots]), timeout=TIMEOUT_SECONDS
        )
        assert all(r.status == snapshot_pb2.SNAPSHOT_STATUS_ACCEPTED for r in response.results), response


@pytest.fixture
async def stack(migrated_dsn: str) -> AsyncIterator[Stack]:
    writer = await writer_bootstrap.start(WriterSettings(database_url=migrated_dsn, listen="127.0.0.1:0"))
    writers = f"127.0.0.1:{writer.server.port}"
    query = await query_bootstrap.start(
        QuerySettings(database_url=migrated_dsn, listen="127.0.0.1:0", database_wait_seconds=5, writers=writers)
    )
    ingest = await ingest_bootstrap.start(IngestSettings(listen="127.0.0.1:0", writers=writers))
    client = QueryClient(f"127.0.0.1:{query.server.port}", TIMEOUT_SECONDS)
    config = uvicorn.Config(create_app(client), host="127.0.0.1", port=0, log_config=None, lifespan="on")
    gateway = uvicorn.Server(config)
    serving = asyncio.create_task(gateway.serve())
    await eventually(lambda: gateway.started, "the gateway serving")
    port = gateway.servers[0].sockets[0].getsockname()[1]
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{ingest.server.port}")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=TIMEOUT_SECONDS) as http:
        yield Stack(query, ingest_pb2_grpc.IngestServiceStub(channel), http)
    await channel.close()
    gateway.should_exit = True
    await serving
    await ingest.stop(1)
    await query.stop(1)
    await writer.stop(1)


ONE_X_TWO = (("1", 2.0), ("X", 3.0), ("2", 4.0))


def rfc3339(at: datetime) -> str:
    text = at.isoformat()
    assert text.endswith("+00:00")
    return text.removesuffix("+00:00") + "Z"


class Events:
    """Parses an event stream as an EventSource does: fields up to a blank line; `id` kept until replaced."""

    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.aiter_lines()
        self.last_id = ""

    async def next(self) -> tuple[str, dict[str, Any], str | None]:
        """(event, data, id of this event or None)."""
        fields: dict[str, str] = {}
        while True:
            line = await asyncio.wait_for(anext(self._lines), TIMEOUT_SECONDS)
            if line == "":
                if "data" in fields:
                    break
                fields = {}
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
        if "id" in fields:
            self.last_id = fields["id"]
        return fields.get("event", "message"), json.loads(fields["data"]), fields.get("id")


async def test_the_stream_sends_an_image_then_deltas_in_the_contracts_casing_and_time_format(stack: Stack) -> None:
    e, t = new_event_id(), now() - timedelta(minutes=10)
    await stack.submit(snapshot(e, t, [market(odds=(2.0, 3.0, 4.0))]))
    await eventually(lambda: e in stack.query.cache.books, "the event cached")
    async with stack.http.stream("GET", "/api/stream", params={"event_ids": [e], "heartbeat_seconds": 0}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = Events(r)
        kind, image, token = await events.next()
        assert (kind, image["kind"], image["fresh_image"], image["changes"]) == ("image", "image", False, [])
        assert token
        assert image["markets"] == [
            {
                "event_id": e, "bookmaker": "betpawa", "market_id": "3743", "line": None, "market_name": "Market 3743",
                "outcomes": [{"name": n, "odds": o, "is_active": True} for n, o in ONE_X_TWO],
                "available": True, "captured_at": rfc3339(t),
            }
        ]  # fmt: skip

        await stack.submit(snapshot(e, t + timedelta(minutes=1), [market(odds=(2.5, 3.0, 3.0))]))
        kind, delta, token = await events.next()
        assert kind == "delta" and token
        assert [o["odds"] for o in delta["markets"][0]["outcomes"]] == [2.5, 3.0, 3.0]
        later = rfc3339(t + timedelta(minutes=1))
        assert delta["markets"][0]["captured_at"] == later
        assert delta["changes"] == [
            {"event_id": e, "bookmaker": "betpawa", "snapshot_time": later, "snapshot_count": 1}
        ]
        last_id = events.last_id

    # Away, then back with Last-Event-ID: what changed meanwhile, and no image.
    await stack.submit(snapshot(e, t + timedelta(minutes=2), [market(odds=(1.5, 4.0, 6.0))]))
    headers = {"Last-Event-ID": last_id}
    async with stack.http.stream("GET", "/api/stream", params={"event_ids": [e]}, headers=headers) as r:
        kind, delta, _ = await Events(r).next()
        assert kind == "delta" and [o["odds"] for o in delta["markets"][0]["outcomes"]] == [1.5, 4.0, 6.0]

    # A token this replica cannot resume: a fresh image, flagged.
    headers = {"Last-Event-ID": "another-replica.5"}
    async with stack.http.stream("GET", "/api/stream", params={"event_ids": [e]}, headers=headers) as r:
        kind, image, _ = await Events(r).next()
        assert kind == "image" and image["fresh_image"] and len(image["markets"]) == 1


async def test_a_quiet_stream_gets_heartbeats_and_bad_parameters_are_422(stack: Stack) -> None:
    params = {"event_ids": [new_event_id()], "heartbeat_seconds": 0.01}
    async with stack.http.stream("GET", "/api/stream", params=params) as r:
        events = Events(r)
        assert (await events.next())[0] == "image"
        kind, beat, token = await events.next()
        assert (kind, beat["kind"], beat["markets"]) == ("heartbeat", "heartbeat", []) and token
    for bad in ({"heartbeat_seconds": -1}, {"conflation_seconds": 61}, {"event_ids": "x"}):
        assert (await stack.http.get("/api/stream", params=bad)).status_code == 422
