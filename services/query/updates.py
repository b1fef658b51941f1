"""Fans the cache's applied changes out to live subscribers, conflated per subscriber so that memory stays
bounded whatever a subscriber's speed. No I/O."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from services.query.cache import Pair


@dataclass(frozen=True, slots=True)
class OddsChanged:
    event_id: int
    bookmaker: str
    captured_at: datetime
    snapshots: int  # conflated into this one; 0 when found by a resync


class Overflow(Exception):
    """The subscriber holds more unsent keys than allowed: it is too slow to follow."""


class Closed(Exception):
    """The service is stopping: live streams end (they would otherwise hold its drain to the end of the grace)."""


class Subscriber:
    """Holds the latest unsent change per (event, bookmaker): a burst of changes to one key costs one
    entry, so the pending set is bounded by the keys that exist, and further by `max_pending`."""

    def __init__(self, event_ids: Iterable[int], bookmakers: Iterable[str], max_pending: int) -> None:
        self._events = frozenset(event_ids)
        self._bookmakers = frozenset(bookmakers)
        self._max_pending = max_pending
        self._pending: dict[Pair, OddsChanged] = {}
        self._ready = asyncio.Event()
        self.overflowed = False
        self.closed = False

    def wants(self, change: OddsChanged) -> bool:
        return (not self._events or change.event_id in self._events) and (
            not self._bookmakers or change.bookmaker in self._bookmakers
        )

    def offer(self, change: OddsChanged) -> None:
        if self.overflowed:
            return  # it is being ended: hold nothing more
        key = (change.event_id, change.bookmaker)
        held = self._pending.get(key)
        if held is not None:
            change = OddsChanged(
                change.event_id, change.bookmaker, max(held.captured_at, change.captured_at),
                held.snapshots + change.snapshots,
            )  # fmt: skip
        elif len(self._pending) >= self._max_pending:
            self.overflowed = True
        self._pending[key] = change
        self._ready.set()

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    async def next(self) -> list[OddsChanged]:
        """Waits for pending changes and takes them all; Overflow once the subscriber fell too far behind."""
        await self._ready.wait()
        if self.closed:
            raise Closed("the query service is stopping")
        if self.overflowed:
            raise Overflow(f"more than {self._max_pending} unsent changes: the subscriber reads too slowly")
        self._ready.clear()
        taken, self._pending = list(self._pending.values()), {}
        return taken


class Updates:
    def __init__(self, max_pending: int = 50_000) -> None:
        self._max_pending = max_pending
        self._subscribers: set[Subscriber] = set()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def subscribe(self, event_ids: Iterable[int] = (), bookmakers: Iterable[str] = ()) -> Subscriber:
        s = Subscriber(event_ids, bookmakers, self._max_pending)
        self._subscribers.add(s)
        return s

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)

    def close(self) -> None:
        for s in self._subscribers:
            s.close()

    def publish(self, changes: Iterable[OddsChanged]) -> None:
        if not self._subscribers:
            return
        for change in changes:
            for s in self._subscribers:
                if s.wants(change):
                    s.offer(change)
