"""Keeps the cache in step with the database: warm-up, the writers' change feeds, resync when a feed
cannot resume and on a periodic safety check, and the sweep of events past the horizon."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from services.query import metrics
from services.query import repository as repo
from services.query.cache import CurrentMarket, EventInfo, MarketKey, MarketRow, OddsCache, Pair
from services.query.updates import MarketDelta, OddsChanged, Updates
from services.query.writer_feed import Changes, FeedItem, Resync, Sink

logger = logging.getLogger(__name__)

Source = Callable[[Sink], Coroutine[Any, Any, None]]  # follows one writer's feed into the sink, until cancelled
LOAD_BATCH = 1_000  # markets applied to the cache between two turns of the event loop during the load
QUEUE_BATCHES = 256  # beyond this the sources wait, and a writer ends a subscriber that falls out of its buffer


def _now() -> datetime:
    return datetime.now(UTC)


class Feed:
    """Applies every writer's committed batches in one consumer task, which also runs the resyncs, so a
    reload and a resync never interleave; reloads use the pool.

    The bound: an acknowledged change is in the cache within `resync_seconds` (plus one resync's
    duration) even when its batch was never announced (a writer that died between commit and
    publish), because the safety check compares every pair's time with latest_snapshots.
    Order at start: the feeds first, then warm-up, then what was queued meanwhile; a feed's first
    stream cannot resume, so a resync follows it and covers whatever committed around the warm-up
    (a reload applies only states newer than the cache holds, so seeing a change twice is harmless).
    The warm-up runs in the background (`loaded`): until it and what was queued during it are applied,
    `cache.loading` is set and the reads answer from PostgreSQL (reads.py)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        cache: OddsCache,
        horizon: timedelta,
        sources: Sequence[Source],
        *,
        updates: Updates | None = None,
        resync_seconds: float = 30.0,
        clock: Callable[[], datetime] = _now,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._pool = pool
        self._cache = cache
        self._horizon = horizon
        self._sources = list(sources)
        self.updates = updates if updates is not None else Updates()
        self._resync_seconds = resync_seconds
        self._clock = clock
        self._sleep = sleep  # of the safety check: tests step it
        self._queue: asyncio.Queue[FeedItem] = asyncio.Queue(QUEUE_BATCHES)
        self._tasks: list[asyncio.Task[None]] = []
        self.warm_up_seconds = 0.0
        self.resyncs = 0  # completed (tests wait on it)
        self.loaded: asyncio.Task[None] | None = None  # the first load; done once the cache is complete
        self.load_progress_rows = 100_000  # a "loading" log line every this many markets

    def cutoff(self) -> datetime:
        """Events whose kickoff is at or before this have left the cache."""
        return self._clock() - self._horizon

    async def start(self) -> None:
        """Follows the feeds and starts the first load in the background; returns at once (the caller
        reports SERVING: reads are answered from PostgreSQL meanwhile). Await `loaded` for the cache."""
        self._cache.loading = True
        metrics.CACHE_LOADING.set(1)
        self._tasks = [asyncio.create_task(source(self._queue.put)) for source in self._sources]
        self.loaded = asyncio.create_task(self._load())
        self._tasks.append(self.loaded)

    async def _load(self) -> None:
        delay = 0.1
        while True:
            try:
                await self.warm_up()
                break
            except Exception as exc:
                # A retried load only adds what the first missed (a state is applied only when newer).
                logger.warning("cache load failed, retrying in %.1fs: %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        # What the feeds queued during the load (at least the resync of a first stream, which cannot resume)
        # is applied before the cache takes over from PostgreSQL: the switch must not step back in time by
        # more than the feed's usual lag.
        queued = self._drain()
        if queued:
            await self._handle(queued)
        self._cache.loading = False
        metrics.CACHE_LOADING.set(0)
        self.updates.ready.set()
        self._tasks += [asyncio.create_task(self._consume()), asyncio.create_task(self._safety_loop())]
        logger.info("cache complete: reads are served from memory")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def warm_up(self) -> int:
        """Loads every event in the horizon with its current markets, in one consistent snapshot
        (repeatable read) and one streaming query for the markets."""
        started = time.perf_counter()
        since = self.cutoff()
        cache = self._cache
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            for info in await repo.events_since(conn, since):
                cache.put_event(info)
            batch: list[asyncpg.Record] = []
            rows = 0
            async for r in repo.stream_markets_since(conn, since):
                batch.append(r)
                if len(batch) >= LOAD_BATCH:
                    cache.load_rows(batch)
                    rows += len(batch)
                    batch = []
                    if rows % self.load_progress_rows < LOAD_BATCH:
                        self._record_size()
                        logger.info("cache loading: %d markets of %d events so far", rows, len(cache.events))
                    # The service is SERVING during the load: reads (from PostgreSQL) and health checks get the
                    # event loop between batches, not only between the cursor's 20,000-row fetches.
                    await asyncio.sleep(0)
            cache.load_rows(batch)
            for event_id, slug, captured_at in await repo.snapshots_since(conn, since):
                cache.confirm(event_id, slug, captured_at)
        self.warm_up_seconds = time.perf_counter() - started
        metrics.WARM_UP_SECONDS.set(self.warm_up_seconds)
        self._record_size()
        logger.info(
            "cache warmed: %d events, %d markets in %.2fs",
            len(cache.events),
            cache.market_count,
            self.warm_up_seconds,
        )
        return cache.market_count

    async def _consume(self) -> None:
        while True:
            items = [await self._queue.get()]
            # Coalesce what has queued up: one reload for many batches under load.
            while not self._queue.empty() and len(items) < 500:
                items.append(self._queue.get_nowait())
            await self._handle(items)

    def _drain(self) -> list[FeedItem]:
        items: list[FeedItem] = []
        while not self._queue.empty():
            items.append(self._queue.get_nowait())
        return items

    async def _handle(self, items: Sequence[FeedItem]) -> None:
        resyncs = [i for i in items if isinstance(i, Resync)]
        if not resyncs:
            try:
                await self.apply([i for i in items if isinstance(i, Changes)])
                return
            except Exception:
                # Whatever went wrong, those changes are unknown: resynchronise rather than
                # let the cache silently stop following the database.
                logger.exception("feed reload failed, resynchronising")
        else:
            logger.info("resynchronising: %s", resyncs[0].reason)
        # A resync reads the database as it is now: it covers every batch queued before it.
        await self._resync_until_done()

    async def _resync_until_done(self) -> None:
        delay = 0.1
        while True:
            try:
                await self.resync()
                return
            except Exception as exc:
                logger.warning("resync failed, retrying in %.1fs: %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def apply(self, batches: Sequence[Changes]) -> int:
        """Applies the batches' committed states, in order (a state older than the held one is ignored), and
        reads back from market_odds_current (set-based) only what the batches do not carry: an unavailable
        market's kept name and outcomes, every market of a writer that sends keys only. The events' metadata
        comes along for the events whose metadata a batch wrote or that the cache does not hold yet."""
        if not any(b.pairs for b in batches):
            return 0
        keys: set[tuple[int, str, MarketKey]] = set()
        given: list[MarketRow] = []
        read_events: set[int] = set()
        cache = self._cache
        for b in batches:
            batch_events = {p[0] for p in b.pairs}
            if b.states is None:
                keys.update(b.markets)
                read_events |= batch_events
                continue
            for key, state in zip(b.markets, b.states, strict=True):
                if state is None:
                    keys.add(key)
                else:
                    given.append(state)
            read_events.update(b.events)
            read_events.update(e for e in batch_events if e not in cache.events)
        metrics.FEED_BATCHES.inc(len(batches))
        events: list[EventInfo] = []
        rows: list[MarketRow] = []
        if read_events or keys:
            async with self._pool.acquire() as conn:
                events = await repo.events_by_id(conn, sorted(read_events)) if read_events else []
                rows = await repo.markets_by_key(conn, list(keys)) if keys else []
        cutoff = self.cutoff()
        for info in events:
            if info.kickoff > cutoff:
                cache.put_event(info)
        # Read back or given, a state applies only when newer than the held one: the order between them is free.
        states: list[tuple[int, str, MarketKey, CurrentMarket]] = []
        applied = cache.load_rows([*rows, *given], states)
        for b in batches:
            for event_id, slug, captured_at in b.pairs:
                cache.confirm(event_id, slug, captured_at)
        # No await between the cache's change and its publication: see Updates.publish.
        self.updates.publish([MarketDelta(*s) for s in states], odds_changed(batches))
        oldest = min(b.committed_at for b in batches)
        metrics.FEED_LAG_SECONDS.observe(max(0.0, (_now() - oldest).total_seconds()))
        self._record_size()
        return applied

    async def resync(self) -> int:
        """When a feed cannot resume, and periodically: every write advances latest_snapshots of its (event, bookmaker)
        in the same transaction, so a pair whose stored time differs from the cache's is exactly a
        pair that changed meanwhile. Comparing pair times (rather than last_updated_at with a
        high-water mark) also catches late snapshots, whose times are older than newer ones
        already seen. New events in the horizon come with their metadata."""
        started = time.perf_counter()
        cache, since = self._cache, self.cutoff()
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            for info in await repo.events_since(conn, since):
                cache.put_event(info)
            held = cache.pair_times()
            stored = await repo.snapshots_since(conn, since)
            changed: list[Pair] = [(e, slug) for e, slug, at in stored if held.get((e, slug)) != at]
            rows = await repo.markets_of_pairs(conn, changed) if changed else []
        states: list[tuple[int, str, MarketKey, CurrentMarket]] = []
        applied = cache.load_rows(rows, states)
        for event_id, slug, captured_at in stored:
            cache.confirm(event_id, slug, captured_at)
        times = {(e, slug): at for e, slug, at in stored}
        self.updates.publish(
            [MarketDelta(*s) for s in states], [OddsChanged(e, slug, times[(e, slug)], 0) for e, slug in changed]
        )
        metrics.RESYNCS.inc()
        self.resyncs += 1
        self._record_size()
        logger.info(
            "change feed resynchronised: %d pairs reloaded, %d markets applied in %.2fs",
            len(changed),
            applied,
            time.perf_counter() - started,
        )
        return applied

    async def _safety_loop(self) -> None:
        while True:
            await self._sleep(self._resync_seconds)
            self.sweep()
            # Through the consumer, after what is queued. It also refreshes the horizon's event
            # metadata, which changes (a moved kickoff, a new link) without odds changing.
            await self._queue.put(Resync("periodic safety check"))

    def sweep(self) -> int:
        gone = self._cache.sweep(self.cutoff())
        # Announced, with no await between, so a client stream holding their states drops them too (its image
        # would otherwise differ from the cache's for as long as it runs).
        self.updates.publish([], [], gone)
        if gone:
            logger.info("%d events past the horizon left the cache", len(gone))
        self._record_size()
        return len(gone)

    def _record_size(self) -> None:
        metrics.CACHE_EVENTS.set(len(self._cache.events))
        metrics.CACHE_MARKETS.set(self._cache.market_count)


def odds_changed(batches: Sequence[Changes]) -> list[OddsChanged]:
    """One per (event, bookmaker) whose markets the batches changed, at its newest snapshot time (a
    snapshot that only confirmed unchanged odds is not a change a live client needs)."""
    found: dict[Pair, OddsChanged] = {}
    for b in batches:
        changed = {(e, slug) for e, slug, _key in b.markets}
        for e, slug, at in b.pairs:
            if (e, slug) not in changed:
                continue
            held = found.get((e, slug))
            if held is not None:
                at, count = max(at, held.captured_at), held.snapshots + 1
            else:
                count = 1
            found[(e, slug)] = OddsChanged(e, slug, at, count)
    return list(found.values())
