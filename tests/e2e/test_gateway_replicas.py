"""Two query replicas behind one gateway (GATEWAY_QUERY_ADDRESS with two addresses): reads and the UI's WebSocket
keep working when one replica is killed with SIGKILL, and each replica's state equals the database afterwards. The
replicas are real processes (`python -m services.query.main`); writer, ingest and the gateway (uvicorn) run
in-process over real gRPC and HTTP on loopback, with a real WebSocket client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any

import asyncpg
import grpc
import httpx
import pytest
import uvicorn
from grpc_health.v1 import health_pb2, health_pb2_grpc
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from oddstore.convert import from_timestamp, snapshot_to_pb
from oddstore.v1 import ingest_pb2, ingest_pb2_grpc, query_pb2_grpc, snapshot_pb2
from oddstore.v1 import query_pb2 as pb
from services.gateway.app import create_app
from services.gateway.live import LiveOdds
from services.gateway.query_client import QueryClient
from services.ingest import bootstrap as ingest_bootstrap
from services.ingest.config import IngestSettings
from services.query import odds
from services.writer import bootstrap as writer_bootstrap
from services.writer.config import WriterSettings
from tests.e2e.test_live_recovery import database_state, free_port
from tests.factories import market, new_event_id, now, snapshot
from tests.polling import TIMEOUT_SECONDS, eventually


class Replica:
    """A query service process on a fixed port, so that its replacement answers at the same address."""

    def __init__(self, dsn: str, writers: str) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._env = {**os.environ, "DATABASE_URL": dsn, "QUERY_LISTEN": self.address, "QUERY_WRITERS": writers,
                     "LOG_LEVEL": "WARNING"}  # fmt: skip
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.query.main", env=self._env, stderr=asyncio.subprocess.DEVNULL
        )
        async with grpc.aio.insecure_channel(self.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)

            async def serving() -> bool:
                assert self.process is not None and self.process.returncode is None, "the replica exited"
                with contextlib.suppress(grpc.aio.AioRpcError):
                    reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
                return False

            await eventually(serving, f"query replica {self.address} serving")

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()

    async def image(self, event_ids: Sequence[int]) -> dict[tuple[int, str, str, float | None], Any]:
        """The replica's current state of the events, as Subscribe's image gives it."""
        found = {}
        async with grpc.aio.insecure_channel(self.address) as channel:
            call = query_pb2_grpc.QueryServiceStub(channel).Subscribe(pb.SubscribeRequest(event_ids=event_ids))
            async for m in call:
                for s in m.markets:
                    key = (s.event_id, s.bookmaker, s.market_id, s.line if s.HasField("line") else None)
                    found[key] = (tuple((o.name, o.odds, o.is_active) for o in s.outcomes),
                                  from_timestamp(s.captured_at), s.available)  # fmt: skip
                if m.resume_token:  # the image's last message
                    call.cancel()
                    break
        return found


class System:
    def __init__(self, replicas: list[Replica], ingest: ingest_pb2_grpc.IngestServiceStub, query: QueryClient,
                 live: LiveOdds, base: str, pool: asyncpg.Pool) -> None:  # fmt: skip
        self.replicas = replicas
        self.ingest = ingest
        self.query = query
        self.live = live
        self.base = base
        self.pool = pool

    async def submit(self, event_id: int, minutes_ago: int) -> None:
        s = snapshot(event_id, now() - timedelta(minutes=minutes_ago), [market()])
        response = await self.ingest.SubmitSnapshots(
            ingest_pb2.SubmitSnapshotsRequest(snapshots=[snapshot_to_pb(s)]), timeout=TIMEOUT_SECONDS
        )
        assert [r.status for r in response.results] == [snapshot_pb2.SNAPSHOT_STATUS_ACCEPTED], response

    async def expected(self, event_ids: Sequence[int]) -> dict[tuple[int, str, str, float | None], Any]:
        stored = await database_state(self.pool, event_ids)
        return {k: (tuple(odds.decode(o)), updated, gone is None) for k, (o, updated, gone) in stored.items()}


@pytest.fixture
async def system(migrated_dsn: str) -> AsyncIterator[System]:
    writer = await writer_bootstrap.start(WriterSettings(database_url=migrated_dsn, listen="127.0.0.1:0"))
    writers = f"127.0.0.1:{writer.server.port}"
    replicas = [Replica(migrated_dsn, writers) for _ in range(2)]
    ingest = await ingest_bootstrap.start(IngestSettings(listen="127.0.0.1:0", writers=writers))
    pool = await asyncpg.create_pool(migrated_dsn, min_size=1, max_size=2)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{ingest.server.port}")
    try:
        await asyncio.gather(*(r.start() for r in replicas))
        query = QueryClient(",".join(r.address for r in replicas), TIMEOUT_SECONDS)
        live = LiveOdds(query)
        app = create_app(query, live=live)
        gateway = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on"))
        serving = asyncio.create_task(gateway.serve())
        await eventually(lambda: gateway.started, "the gateway serving")
        port = gateway.servers[0].sockets[0].getsockname()[1]
        yield System(replicas, ingest_pb2_grpc.IngestServiceStub(channel), query, live, f"127.0.0.1:{port}", pool)
        gateway.should_exit = True
        await serving
    finally:
        await channel.close()
        await pool.close()
        await ingest.stop(1)
        for r in replicas:
            await r.stop()
        await writer.stop(1)


async def receive(ws: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT_SECONDS))
    return message


async def odds_update_for(ws: ClientConnection, event_id: int) -> None:
    while (m := await receive(ws))["type"] != "odds_update" or m["data"]["event_id"] != event_id:
        pass


async def test_with_one_of_two_query_replicas_killed_reads_and_the_live_socket_keep_working(system: System) -> None:
    events = [new_event_id() for _ in range(3)]
    async with httpx.AsyncClient(base_url=f"http://{system.base}", timeout=TIMEOUT_SECONDS) as http:
        async with connect(f"ws://{system.base}/api/ws?topics=odds_updates") as ws:
            assert (await receive(ws))["type"] == "connection_ack"
            # The gateway's live stream is open on one replica: a change made now reaches the socket.
            await eventually(lambda: system.live.resume_token != "", "the gateway following a replica")
            await system.submit(events[0], 30)
            await odds_update_for(ws, events[0])
            for _ in range(4):
                assert (await http.get(f"/api/events/{events[0]}")).status_code == 200

            followed = system.replicas[system.query.followed]
            await followed.kill()
            # At once, before the gateway can have noticed: every read answers (from the live replica), not one in two.
            for _ in range(4):
                response = await http.get(f"/api/events/{events[0]}")
                assert response.status_code == 200, response.text
            # The live stream moves to the other replica, which cannot resume the dead one's position: the socket
            # is closed so that the browser refetches.
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await receive(ws)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
        assert system.replicas[system.query.followed] is not followed

        async with connect(f"ws://{system.base}/api/ws?topics=odds_updates") as ws:  # the browser reconnects
            assert (await receive(ws))["type"] == "connection_ack"
            await system.submit(events[1], 20)
            await odds_update_for(ws, events[1])

        await followed.start()  # its replacement, on the same address
        await system.submit(events[2], 10)
        expected = await system.expected(events)
        assert {k[0] for k in expected} == set(events)
        for replica in system.replicas:
            await eventually(lambda r=replica: _equal(r, events, expected), f"replica {replica.address} = database")


async def _equal(replica: Replica, events: Sequence[int], expected: dict[Any, Any]) -> bool:
    return await replica.image(events) == expected
