"""Keeps the cache in step with the database: warm-up, the writer's change feed (LISTEN), resync
after a lost connection, and the periodic sweep of events past the horizon."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg

from oddstore.db import TRANSIENT_ERRORS
from services.query import metrics
from services.query import repository as repo
from services.query.cache import MarketKey, OddsCache, Pair

logger = logging.getLogger(__name__)

FEED_CHANNEL = "oddstore_changes"  # services/writer/writer.py
_LOST = None  # queued when the listening connection is gone


def _now() -> datetime:
    return datetime.now(UTC)


class Feed:
    """Owns one dedicated LISTEN connection and one consumer task; reloads use the pool.

    Order matters at start: LISTEN first, then warm up, then apply what was queued meanwhile, so a
    batch committed between the warm-up snapshot and LISTEN cannot be missed (a reload applies
    only states newer than the cache holds, so seeing a change twice is harmless)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        dsn: str,
        cache: OddsCache,
        horizon: timedelta,
        *,
        sweep_seconds: float = 60.0,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self._pool = pool
        self._dsn = dsn
        self._cache = cache
        self._horizon = horizon
        self._sweep_seconds = sweep_seconds
        self._clock = clock
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._conn: asyncpg.Connection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.warm_up_seconds = 0.0

    @property
    def listener_pid(self) -> int | None:
        """The server process of the LISTEN connection (operators and tests terminate it)."""
        return None if self._conn is None else int(self._conn.get_server_pid())

    def cutoff(self) -> datetime:
        """Events whose kickoff is at or before this have left the cache."""
        return self._clock() - self._horizon

    async def start(self) -> None:
        await self._listen()
        await self.warm_up()
        self._tasks = [asyncio.create_task(self._consume()), asyncio.create_task(self._sweep_loop())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._drop_listener()

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
            async for r in repo.stream_markets_since(conn, since):
                batch.append(r)
                if len(batch) >= 20_000:
                    cache.load_rows(batch)
                    batch = []
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

    async def _listen(self) -> None:
        conn: asyncpg.Connection = await asyncpg.connect(self._dsn)
        conn.add_termination_listener(self._on_lost)
        await conn.add_listener(FEED_CHANNEL, self._on_notify)
        self._conn = conn

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self._queue.put_nowait(payload)

    def _on_lost(self, conn: object) -> None:
        if conn is self._conn:
            self._queue.put_nowait(_LOST)

    async def _consume(self) -> None:
        while True:
            first = await self._queue.get()
            payloads = [first]
            # Coalesce what has queued up: one reload for many notifications under load.
            while not self._queue.empty() and len(payloads) < 500:
                payloads.append(self._queue.get_nowait())
            if _LOST not in payloads:
                try:
                    await self.apply([p for p in payloads if p is not None])
                    continue
                except TRANSIENT_ERRORS as exc:
                    logger.warning("feed reload failed, resynchronising: %s", exc)
                except Exception:
                    # Whatever went wrong, those changes are unknown: resynchronise rather than
                    # let the cache silently stop following the database.
                    logger.exception("feed reload failed, resynchronising")
            await self._reconnect()

    def _drop_listener(self) -> None:
        conn, self._conn = self._conn, None  # first, so its termination is not reported as a loss
        if conn is not None:
            conn.terminate()

    async def _reconnect(self) -> None:
        # Hand-written, not tenacity: every failed attempt must drop its half-open listener first, which
        # a retry library would take as a callback; the loop says it in order.
        self._drop_listener()
        delay = 0.1
        while True:
            try:
                await self._listen()
                await self.resync()
                return
            except Exception as exc:
                logger.warning("change feed unavailable, retrying in %.1fs: %s", delay, exc)
                self._drop_listener()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def apply(self, payloads: list[str]) -> int:
        """Reloads the notified keys from market_odds_current (set-based) and applies the newer
        states; the notified events' metadata and latest_snapshots times come along."""
        keys: dict[tuple[int, str, MarketKey], int] = {}
        notified: set[int] = set()
        newest = 0
        for payload in payloads:
            for event_id, slug, market_id, line, at_ms in json.loads(payload):
                notified.add(event_id)
                newest = max(newest, at_ms)
                if market_id is not None:  # else a snapshot without changes: only its time moved
                    k = (event_id, slug, (market_id, line))
                    keys[k] = max(keys.get(k, 0), at_ms)
        if not notified:
            return 0
        metrics.FEED_NOTIFICATIONS.inc(len(payloads))
        event_ids = sorted(notified)
        async with self._pool.acquire() as conn:
            events = await repo.events_by_id(conn, event_ids)
            rows = await repo.markets_by_key(conn, list(keys)) if keys else []
            snapshots = await repo.snapshots_of(conn, event_ids)
        cache, cutoff = self._cache, self.cutoff()
        for info in events:
            if info.kickoff > cutoff:
                cache.put_event(info)
        applied = cache.load_rows(rows)
        for event_id, slug, captured_at in snapshots:
            cache.confirm(event_id, slug, captured_at)
        now_ms = time.time() * 1000
        metrics.FEED_LAG_SECONDS.observe(max(0.0, now_ms - newest) / 1000)
        self._record_size()
        return applied

    async def resync(self) -> int:
        """After a lost connection: every write advances latest_snapshots of its (event, bookmaker)
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
        applied = cache.load_rows(rows)
        for event_id, slug, captured_at in stored:
            cache.confirm(event_id, slug, captured_at)
        metrics.RESYNCS.inc()
        self._record_size()
        logger.info(
            "change feed resynchronised: %d pairs reloaded, %d markets applied in %.2fs",
            len(changed),
            applied,
            time.perf_counter() - started,
        )
        return applied

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_seconds)
            try:
                self.sweep()
                # Metadata edits (a moved kickoff, a new link) come without odds changes, so
                # without a notification: refresh the horizon's events now and then.
                async with self._pool.acquire() as conn:
                    for info in await repo.events_since(conn, self.cutoff()):
                        self._cache.put_event(info)
            except Exception as exc:
                logger.warning("event metadata refresh skipped: %s", exc)

    def sweep(self) -> int:
        gone = self._cache.sweep(self.cutoff())
        if gone:
            logger.info("%d events past the horizon left the cache", gone)
        self._record_size()
        return gone

    def _record_size(self) -> None:
        metrics.CACHE_EVENTS.set(len(self._cache.events))
        metrics.CACHE_MARKETS.set(self._cache.market_count)
