"""Live odds for the UI's WebSocket (contract §(g)): one Subscribe stream from the query service for the whole
gateway, conflated per event to at most one `odds_update` per window, encoded once (JSON and WebSocket frames) and
written to every socket subscribed to `odds_updates`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from websockets.frames import Frame, Opcode

from oddstore.convert import from_timestamp
from oddstore.v1 import query_pb2
from services.gateway.models import format_utc
from services.gateway.query_client import QueryClient, QueryError

logger = logging.getLogger(__name__)

ODDS_UPDATES = "odds_updates"
# scrape_progress belongs to scraping, which this system does not do: accepted as a name, never sent.
TOPICS = frozenset({ODDS_UPDATES, "scrape_progress"})


def _now() -> datetime:
    return datetime.now(UTC)


def parse_topics(raw: str | None) -> set[str]:
    """The `topics` query parameter: comma-separated; unknown names ignored; none valid → every known topic."""
    topics = {t.strip() for t in (raw or "").split(",")} & TOPICS
    return topics or set(TOPICS)


def envelope(kind: str, data: dict[str, Any], at: datetime) -> str:
    return json.dumps({"type": kind, "timestamp": format_utc(at), "data": data}, separators=(",", ":"))


@dataclass(slots=True)
class EventUpdate:
    """What is gathered for one event: the newest change's bookmaker and time, how many snapshots, and when it
    may be sent (a monotonic time)."""

    bookmaker: str
    snapshot_time: datetime
    snapshots: int
    due: float


def odds_update(event_id: int, u: EventUpdate, at: datetime) -> str:
    """Both payload shapes of §(g) in one: the old backend's (event_ids, source, snapshot_count) and the one
    the UI's type reads (event_id, bookmaker, snapshot_time), so the open detail page refreshes too."""
    data = {
        "event_ids": [event_id],
        "source": u.bookmaker,
        "snapshot_count": u.snapshots,
        "event_id": event_id,
        "bookmaker": u.bookmaker,
        "snapshot_time": format_utc(u.snapshot_time),
    }
    return envelope("odds_update", data, at)


CLOSE_TOO_SLOW = 1013  # "try again later": the UI reconnects with back-off and refetches
CLOSE_RESTART = 1012  # "service restart": the same, when updates may have been missed


# Writes WebSocket frames encoded once for every socket straight to one socket's connection, after what it has
# pending; returns the bytes its connection holds unsent (ws_protocol.FRAMES_EXTENSION).
WriteFrames = Callable[[bytes], int]


def encode_frames(texts: list[str]) -> bytes:
    """Unmasked text frames, as a server sends them: the same bytes for every socket."""
    return b"".join(Frame(Opcode.TEXT, t.encode()).serialize(mask=False) for t in texts)


class Socket:
    """One browser: its topics and its outgoing frames, bounded: a socket that does not take them is ended
    (CLOSE_TOO_SLOW), so a stuck browser never holds the gateway's memory. Updates go straight to the connection
    when the server offers `write_frames` (at most `max_buffered` bytes unsent), else through the queue of
    `max_frames` that replies (pong, subscription_update) always take."""

    def __init__(
        self, topics: set[str], max_frames: int, write_frames: WriteFrames | None = None, max_buffered: int = 0
    ) -> None:
        self.topics = topics
        self.frames: asyncio.Queue[str] = asyncio.Queue(max_frames)
        self.ended = asyncio.Event()  # ws_api closes the socket with `close`
        self.close = (1000, "")
        self._write_frames = write_frames
        self._max_buffered = max_buffered

    def send(self, frame: str) -> None:
        if self.ended.is_set():
            return
        try:
            self.frames.put_nowait(frame)
        except asyncio.QueueFull:
            self.end(CLOSE_TOO_SLOW, "too slow: reconnect")

    def send_all(self, texts: list[str], encoded: bytes) -> None:
        """`texts` as messages; `encoded` is them as frames (encode_frames)."""
        if self.ended.is_set():
            return
        if self._write_frames is None:
            for text in texts:
                self.send(text)
        elif self._write_frames(encoded) > self._max_buffered:
            self.end(CLOSE_TOO_SLOW, "too slow: reconnect")

    def end(self, code: int, reason: str) -> None:
        if not self.ended.is_set():
            self.close = (code, reason)
            self.ended.set()


class LiveOdds:
    """Leading-edge conflation per event: an event's first change after a quiet window goes out at once (on the
    next loop tick, so changes that arrive together go out together); its later changes within `window_seconds`
    of its last message are merged and go out when that window ends. So a browser sees a change at once, and
    still at most one message per event per window however fast a scrape cycle goes. Memory: one entry per
    event with a pending update or a message in the last window."""

    def __init__(
        self,
        query: QueryClient,
        *,
        window_seconds: float = 1.0,
        max_frames: int = 10_000,
        max_buffered: int = 4 * 1024 * 1024,
        clock: Callable[[], datetime] = _now,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._query = query
        self._window = window_seconds
        self._max_frames = max_frames
        self._max_buffered = max_buffered
        self._clock = clock  # the messages' timestamps
        self._timer = timer  # the windows: monotonic, so a wall-clock step cannot hold updates back
        self._pending: dict[int, EventUpdate] = {}
        self._sent: OrderedDict[int, float] = OrderedDict()  # event → its last message, oldest first
        self._wake = asyncio.Event()  # something new is pending: the sender looks again
        self._sockets: set[Socket] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self.resume_token = ""  # of the query service's stream: the last position fully received
        self.messages = 0  # odds_update messages made (each sent to every subscribed socket)

    @property
    def sockets(self) -> int:
        return len(self._sockets)

    @property
    def pending(self) -> Mapping[int, EventUpdate]:
        """What is gathered and not sent yet, by event."""
        return self._pending

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._follow()), asyncio.create_task(self._send_loop())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def connect(self, topics: set[str], write_frames: WriteFrames | None = None) -> Socket:
        socket = Socket(topics, self._max_frames, write_frames, self._max_buffered)
        self._sockets.add(socket)
        return socket

    def disconnect(self, socket: Socket) -> None:
        self._sockets.discard(socket)

    def record(self, changes: Iterable[query_pb2.OddsChanged]) -> None:
        now = self._timer()
        for c in changes:
            at = from_timestamp(c.captured_at)
            held = self._pending.get(c.event_id)
            if held is None:
                last = self._sent.get(c.event_id)
                due = now if last is None else max(now, last + self._window)
                self._pending[c.event_id] = EventUpdate(c.bookmaker, at, c.snapshots, due)
                self._wake.set()
                continue
            held.snapshots += c.snapshots
            if at >= held.snapshot_time:
                held.bookmaker, held.snapshot_time = c.bookmaker, at

    def next_due(self) -> float | None:
        """When the earliest pending update may be sent; None when nothing is pending."""
        return min((u.due for u in self._pending.values()), default=None)

    def flush(self) -> int:
        """Sends every pending update that is due: one message per event. Returns how many."""
        now = self._timer()
        while self._sent and next(iter(self._sent.values())) + self._window <= now:
            self._sent.popitem(last=False)  # quiet for a window: its next change goes out at once
        due = [(event_id, u) for event_id, u in self._pending.items() if u.due <= now]
        if not due:
            return 0
        at = self._clock()
        frames = []
        for event_id, u in due:
            del self._pending[event_id]
            self._sent[event_id] = now
            self._sent.move_to_end(event_id)
            frames.append(odds_update(event_id, u, at))
        self.messages += len(frames)
        # Encoded once: a writer commit is ~65 events to each of 1,000 sockets, and a frame sent through the ASGI
        # send path costs the gateway 3.7 µs per socket (bench/ws_fanout.py, BENCHMARKS.md).
        encoded = encode_frames(frames)
        for socket in self._sockets:
            if ODDS_UPDATES in socket.topics:
                socket.send_all(frames, encoded)
        return len(frames)

    async def _send_loop(self) -> None:
        while True:
            due = self.next_due()
            if due is None or due > self._timer():
                wait = None if due is None else due - self._timer()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
            # Woken by a change: it runs after the follower has handed over whatever had arrived with it.
            self._wake.clear()
            self.flush()

    async def _follow(self) -> None:
        """Follows the query service, resuming with the last token after an interrupted stream so nothing is
        lost. When it cannot be resumed (the replica restarted, or another answered) the query service says so
        with a fresh image: the updates between are unknown, so every socket is closed and the UI, which
        refetches on reconnect, shows them (rather than missing them until its 60 s poll)."""
        delay = 0.1
        while True:
            request = query_pb2.SubscribeRequest(summaries_only=True, resume_token=self.resume_token)
            try:
                async for response in self._query.subscribe(request):
                    if response.fresh_image:
                        self.restart_sockets()
                    self.record(response.changes)
                    if response.resume_token:
                        self.resume_token = response.resume_token
                    delay = 0.1
            except QueryError as exc:
                logger.warning("live odds from the query service interrupted, retrying in %.1fs: %s", delay, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def restart_sockets(self) -> None:
        logger.warning("live odds not resumable: closing %d sockets so that browsers refetch", len(self._sockets))
        for socket in self._sockets:
            socket.end(CLOSE_RESTART, "live odds restarted: reconnect")
