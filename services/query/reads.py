"""Read orchestration of the query service: the odds cache first, PostgreSQL for what it does not hold."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg

from services.query import events, metrics
from services.query import repository as repo
from services.query.cache import Book, EventInfo, OddsCache
from services.query.events import EventQuery, EventView, Mode

Clock = Callable[[], datetime]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
END_OF_TIME = datetime(9999, 12, 31, tzinfo=UTC)


class NotFound(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class EventsPage:
    """One page of events. Betpawa and alert modes give events with the books they are rendered from (so
    rendering can use each book's memoized pieces); competitor mode gives views built for this read."""

    total: int
    events: list[tuple[EventInfo, Mapping[str, Book]]] = field(default_factory=list)
    views: list[EventView] = field(default_factory=list)


class Reads:
    """While the cache loads (cache.loading), every read is answered from PostgreSQL with the same pure
    selection and rendering as from the cache: what the cache holds then is part of the horizon, and an
    answer from it could miss events or markets. Slower, never partial."""

    def __init__(self, cache: OddsCache, pool: asyncpg.Pool, cutoff: Clock, clock: Clock) -> None:
        self._cache = cache
        self._pool = pool
        self._cutoff = cutoff  # events with kickoff at or before it are not in the cache
        self._clock = clock

    async def count_alerts(self) -> int:
        cache, now = self._cache, self._clock()
        if cache.loading:
            metrics.FALLBACKS.labels("loading").inc()
            books = await repo.unavailable_since(self._pool, now)
            return events.count_alerts(await repo.events_between(self._pool, now, END_OF_TIME), books_of(books), now)
        return events.count_alerts(cache.events.values(), cache.books_of, now)

    async def _upcoming(self, now: datetime) -> Iterable[EventInfo]:
        """The events tournaments and countries are drawn from (they keep those after `now`)."""
        if self._cache.loading:
            metrics.FALLBACKS.labels("loading").inc()
            return await repo.events_between(self._pool, now, END_OF_TIME)
        return self._cache.events.values()

    async def tournaments(self, mode: Mode) -> list[events.Tournament]:
        now = self._clock()
        if mode is Mode.COMPETITOR:
            return [events.Tournament(*t) for t in await repo.competitor_tournaments(self._pool, now)]
        return events.tournaments(await self._upcoming(now), now)

    async def countries(self, mode: Mode) -> list[str]:
        now = self._clock()
        if mode is Mode.COMPETITOR:
            return await repo.competitor_countries(self._pool, now)
        return events.countries(await self._upcoming(now), now)

    async def list_events(self, q: EventQuery) -> EventsPage:
        q.validate()
        now = self._clock()
        if q.mode is Mode.COMPETITOR:
            keys = await repo.tournament_keys(self._pool, sorted(q.tournament_ids)) if q.tournament_ids else None
            rows = await repo.competitor_events(self._pool, q.lower_bound(now), q.kickoff_to)
            groups, total = events.select_competitor(rows, q, now, keys)
            books = await repo.competitor_latest_odds(self._pool, events.competitor_ids(groups))  # the page only
            return EventsPage(total, views=[events.competitor_view(g, books) for g in groups])

        cache = self._cache
        start = q.lower_bound(now)
        if cache.loading:
            return await self._list_from_database(q, now, start)
        candidates: Iterable[EventInfo] = cache.events.values()
        books_of: Callable[[int], Mapping[str, Book]] = cache.books_of
        cutoff = self._cutoff()
        if start is None or start <= cutoff:
            # The window reaches back before the cache horizon (Historical Analysis): older events
            # come from PostgreSQL; filtering needs only their metadata, odds only for the page.
            end = cutoff if q.kickoff_to is None else min(cutoff, q.kickoff_to)
            older = [e for e in await repo.events_between(self._pool, start or EPOCH, end) if e.id not in cache.events]
            if older:
                metrics.FALLBACKS.labels("list").inc()
                candidates = [*cache.events.values(), *older]
        page, total = events.select(candidates, q, now, books_of)
        missing = [e.id for e in page if e.id not in cache.events]
        if missing:
            loaded = await repo.load_books(self._pool, missing, events.INLINE_MARKETS)
            books_of = lambda event_id: loaded[event_id] if event_id in loaded else cache.books_of(event_id)  # noqa: E731
        return EventsPage(total, events=[(e, books_of(e.id)) for e in page])

    async def _list_from_database(self, q: EventQuery, now: datetime, start: datetime | None) -> EventsPage:
        """list_events while the cache loads: the candidates' metadata, the alerts' unavailable counts (only
        for alerts mode), then the page's odds, as a miss loads them."""
        metrics.FALLBACKS.labels("loading").inc()
        candidates = await repo.events_between(self._pool, start or EPOCH, q.kickoff_to or END_OF_TIME)
        unavailable = await repo.unavailable_since(self._pool, now) if q.mode is Mode.ALERTS else {}
        page, total = events.select(candidates, q, now, books_of(unavailable))
        loaded = await repo.load_books(self._pool, [e.id for e in page], events.INLINE_MARKETS) if page else {}
        return EventsPage(total, events=[(e, loaded.get(e.id, {})) for e in page])

    async def event(self, event_id: int) -> tuple[EventInfo, Mapping[str, Book]]:
        info = None if self._cache.loading else self._cache.events.get(event_id)
        if info is not None:
            return info, self._cache.books_of(event_id)
        # A miss (older than the horizon, or not yet seen): the same answer from PostgreSQL.
        found = await repo.events_by_id(self._pool, [event_id]) if event_id > 0 else []
        if not found:
            raise NotFound(f"event {event_id} not found")
        metrics.FALLBACKS.labels("event").inc()
        books = await repo.load_books(self._pool, [event_id])
        return found[0], books.get(event_id, {})


def books_of(books: Mapping[int, Mapping[str, Book]]) -> Callable[[int], Mapping[str, Book]]:
    return lambda event_id: books.get(event_id, {})
