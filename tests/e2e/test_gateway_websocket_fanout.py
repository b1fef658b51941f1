"""The UI's WebSocket as bootstrap serves it (ws_protocol.py): the updates' frames encoded once and written straight to
every socket. Real uvicorn on loopback, real WebSocket clients; the updates are recorded into the gateway's LiveOdds
directly (the query service's part is tested in test_gateway_websocket.py)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import uvicorn
from websockets.asyncio.client import connect

from oddstore.convert import to_timestamp
from oddstore.v1 import query_pb2
from services.gateway.app import create_app
from services.gateway.live import CLOSE_TOO_SLOW, LiveOdds
from services.gateway.ws_protocol import UVICORN_WEBSOCKETS
from tests.feeds import ManualTimer
from tests.polling import TIMEOUT_SECONDS, eventually

MAX_BUFFERED = 64 * 1024


class SilentQuery:
    """The query client's place: its stream never yields, so only the test's updates are sent."""

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def subscribe(self, request: Any, **_: Any) -> AsyncIterator[Any]:
        await asyncio.Event().wait()
        yield  # pragma: no cover


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[LiveOdds, str, ManualTimer]]:
    timer = ManualTimer()
    live = LiveOdds(SilentQuery(), window_seconds=1.0, timer=timer, max_buffered=MAX_BUFFERED)  # type: ignore[arg-type]
    app = create_app(SilentQuery(), live=live)  # type: ignore[arg-type]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on", **UVICORN_WEBSOCKETS)
    )
    serving = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, "the gateway serving")
    port = server.servers[0].sockets[0].getsockname()[1]
    yield live, f"127.0.0.1:{port}", timer
    server.should_exit = True
    await serving


def push(live: LiveOdds, timer: ManualTimer, first: int, events: int) -> int:
    """Changes to `events` new events, sent at once (a writer commit); how many messages went out."""
    at = to_timestamp(datetime.now(UTC))
    timer.now += 1.0
    live.record(query_pb2.OddsChanged(event_id=e, bookmaker="betpawa", snapshots=1, captured_at=at)
                for e in range(first, first + events))  # fmt: skip
    return live.flush()


async def test_updates_written_straight_to_the_sockets_arrive_whole_in_order_after_the_ack(
    gateway: tuple[LiveOdds, str, ManualTimer],
) -> None:
    live, address, timer = gateway
    async with connect(f"ws://{address}/api/ws?topics=odds_updates") as a, connect(f"ws://{address}/api/ws") as b:
        for ws in (a, b):
            assert json.loads(await ws.recv())["type"] == "connection_ack"
        await eventually(lambda: live.sockets == 2, "both sockets connected")
        await b.send('{"type":"ping"}')
        assert json.loads(await b.recv())["type"] == "pong"
        assert push(live, timer, 1, 300) == 300  # ~90 KB each: past the transport's high-water mark
        for ws in (a, b):
            received = [json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT_SECONDS)) for _ in range(300)]
            assert [m["data"]["event_id"] for m in received] == list(range(1, 301))
            # Replies still come after what was written straight out.
            await ws.send('{"type":"ping"}')
            assert json.loads(await ws.recv())["type"] == "pong"


async def stalled_socket(address: str) -> socket.socket:
    """A browser that completes the handshake and then never reads: its receive buffer kept small."""
    host, port = address.split(":")
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.setblocking(False)
    await asyncio.get_running_loop().sock_connect(raw, (host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /api/ws?topics=odds_updates HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await asyncio.get_running_loop().sock_sendall(raw, request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += await asyncio.get_running_loop().sock_recv(raw, 1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return raw


async def test_a_socket_that_stops_reading_is_closed_as_too_slow_and_the_others_get_everything(
    gateway: tuple[LiveOdds, str, ManualTimer],
) -> None:
    live, address, timer = gateway
    stalled = await stalled_socket(address)
    try:
        async with connect(f"ws://{address}/api/ws?topics=odds_updates", max_queue=None) as reader:
            assert json.loads(await reader.recv())["type"] == "connection_ack"
            await eventually(lambda: live.sockets == 2, "both sockets connected")
            sockets = list(live._sockets)
            rounds, events = 0, 300
            # Far more than the kernel's buffers between the two ends hold: the stalled socket's bytes pile up in the
            # gateway's transport until past MAX_BUFFERED, then it is closed; the reader gets every message.
            while not any(s.ended.is_set() for s in sockets) and rounds < 200:
                push(live, timer, 1 + rounds * events, events)
                ids = [json.loads(await asyncio.wait_for(reader.recv(), TIMEOUT_SECONDS))["data"]["event_id"]
                       for _ in range(events)]  # fmt: skip
                assert ids == list(range(1 + rounds * events, 1 + (rounds + 1) * events))
                rounds += 1
            await eventually(lambda: live.sockets == 1, "the stalled socket dropped (it takes no close frame)")
            assert [s.close[0] for s in sockets if s.ended.is_set()] == [CLOSE_TOO_SLOW]
            assert rounds < 200
    finally:
        stalled.close()
