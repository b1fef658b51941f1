"""The UI's WebSocket `/api/ws` (contract §(g)): connection_ack, ping/pong, subscribe/unsubscribe, and the
`odds_update` messages of live.py. Malformed or unknown client frames are ignored; the socket stays open."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from services.gateway.live import TOPICS, LiveOdds, Socket, envelope, parse_topics
from services.gateway.models import format_utc
from services.gateway.ws_protocol import FRAMES_EXTENSION

logger = logging.getLogger(__name__)

router = APIRouter()

CLOSE_IDLE = 1001
# A browser that does not read takes no close frame either: after this long its connection is dropped.
CLOSE_SECONDS = 5.0


@router.websocket("/api/ws")
async def live_socket(websocket: WebSocket, topics: str | None = None) -> None:
    live: LiveOdds = websocket.app.state.live
    idle_seconds: float = websocket.app.state.ws_idle_seconds
    await websocket.accept()
    subscribed = parse_topics(topics)
    # Sent before the socket is connected to the updates, so it is the first message.
    await websocket.send_text(envelope("connection_ack", {"topics": sorted(subscribed)}, datetime.now(UTC)))
    # Served by ws_protocol: updates go straight out, and a socket can be dropped.
    direct = (websocket.scope.get("extensions") or {}).get(FRAMES_EXTENSION, {})
    socket = live.connect(subscribed, direct.get("write"))
    tasks = [
        asyncio.create_task(_send(websocket, socket)),
        asyncio.create_task(_receive(websocket, socket, idle_seconds)),
        asyncio.create_task(socket.ended.wait()),
    ]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if tasks[2] in done:
            logger.info("closing a WebSocket: %s", socket.close[1])
            await _close(websocket, *socket.close, direct.get("abort"))
        elif tasks[1] in done and tasks[1].result():
            await _close(websocket, CLOSE_IDLE, "idle", direct.get("abort"))
    finally:
        live.disconnect(socket)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                await task


async def _close(websocket: WebSocket, code: int, reason: str, abort: Callable[[], None] | None) -> None:
    try:
        async with asyncio.timeout(CLOSE_SECONDS):
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                await websocket.close(code, reason)
    except TimeoutError:
        logger.info("dropping a WebSocket that took no close frame in %.0fs", CLOSE_SECONDS)
        if abort is not None:
            abort()


async def _send(websocket: WebSocket, socket: Socket) -> None:
    # Replies (pong, subscription_update), and the updates when the server does not offer FRAMES_EXTENSION. A writer
    # commit queues ~65 frames at once; `get` returns without suspending while frames are queued, so they already go
    # out in one wake-up (a get_nowait loop here measured no different, 7.6 vs 7.7 µs per frame: bench/ws_fanout.py).
    while True:
        await websocket.send_text(await socket.frames.get())


async def _receive(websocket: WebSocket, socket: Socket, idle_seconds: float) -> bool:
    """Until the browser goes (False) or sends nothing for `idle_seconds` (True: the UI pings every 30 s)."""
    while True:
        try:
            async with asyncio.timeout(idle_seconds):
                message = await websocket.receive()
        except TimeoutError:
            return True
        if message["type"] == "websocket.disconnect":
            return False
        text = message.get("text")
        if text is not None:
            _answer(socket, text)


def _answer(socket: Socket, text: str) -> None:
    try:
        frame: Any = json.loads(text)
    except ValueError:
        return  # malformed: ignored, the socket stays open
    if not isinstance(frame, dict):
        return
    kind = frame.get("type")
    now = datetime.now(UTC)
    if kind == "ping":
        socket.send(envelope("pong", {}, now))
    elif kind in ("subscribe", "unsubscribe"):
        names = frame.get("topics")
        named = {t for t in names if isinstance(t, str)} & TOPICS if isinstance(names, list) else set()
        if kind == "subscribe":
            socket.topics |= named
        else:
            socket.topics -= named
        # The old backend's shape: no data wrapper.
        update = {"type": "subscription_update", "topics": sorted(socket.topics), "timestamp": format_utc(now)}
        socket.send(json.dumps(update, separators=(",", ":")))
