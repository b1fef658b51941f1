"""Merged market history shared by the query replicas through Redis, never staler than the database."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from services.query import contract_json, metrics
from services.query.history import MarketHistory, Point
from services.query.history_repository import CurrentState, HistoryReader, MarketChanges

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger(__name__)

KEY_PREFIX = "oddstore:v2:history"  # v2: the stamp includes the cleanup mark
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

# The market's last_updated_at in microseconds since the epoch (None: no current row) and the cleanup mark.
Version = tuple[int | None, int]


def connect(url: str, connect_timeout: float, timeout: float) -> Redis:
    """A client that opens its connections on first use. No retries inside redis-py (its default retries
    with back-off would hold a read for seconds while Redis is down): HistoryCache backs off instead."""
    # Imported here, only with REDIS_URL: importing redis-py measured ~35 % of the query service's imports
    # (python -X importtime), which are most of its time from process start to SERVING.
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return Redis.from_url(
        url, socket_connect_timeout=connect_timeout, socket_timeout=timeout, retry=Retry(NoBackoff(), 0)
    )


def redis_errors() -> tuple[type[Exception], ...]:
    """What a failed Redis operation raises: redis-py's errors and socket errors other than its own (TimeoutError is
    an OSError on Python 3.11)."""
    from redis.exceptions import RedisError

    return (RedisError, OSError)


def history_key(event_id: int, bookmaker_slug: str, market_id: str, line: float | None) -> str:
    # Quoted so that a ':' inside an id cannot make two markets share a key.
    line_part = "none" if line is None else repr(float(line))
    return f"{KEY_PREFIX}:{event_id}:{quote(bookmaker_slug, safe='')}:{quote(market_id, safe='')}:{line_part}"


def _us(at: datetime) -> int:
    return (at - EPOCH) // _MICROSECOND


def _at(us: int) -> datetime:
    return EPOCH + us * _MICROSECOND


def version_of(current: CurrentState | None, cleanup_mark: int) -> Version:
    return (None if current is None else _us(current.last_updated_at)), cleanup_mark


def encode_entry(version: Version, points: tuple[Point, ...]) -> bytes:
    """Compact JSON: {"v": version, "p": [[captured_us, [[name, odds, active], ...], available, unavailable_us]]}.
    Times as integer microseconds and odds as shortest-repr floats, so a decoded point equals the one read."""
    body = [
        [_us(p.captured_at), p.outcomes, p.available, None if p.unavailable_at is None else _us(p.unavailable_at)]
        for p in points
    ]
    return json.dumps({"v": version, "p": body}, separators=(",", ":")).encode()


def decode_entry(raw: bytes) -> tuple[Version, tuple[Point, ...]]:
    """Raises ValueError, KeyError or TypeError on an entry this code did not write."""
    entry: dict[str, Any] = json.loads(raw)
    updated, mark = entry["v"]
    if not (updated is None or isinstance(updated, int)) or not isinstance(mark, int):
        raise TypeError(f"version {entry['v']!r}")
    version = (updated, mark)
    points = tuple(
        Point(
            _at(captured),
            tuple((str(name), float(odds), bool(active)) for name, odds, active in outcomes),
            bool(available),
            None if unavailable is None else _at(unavailable),
        )
        for captured, outcomes, available, unavailable in entry["p"]
    )
    return version, points


class HistoryCache:
    """Read-through cache of one market's merged change points (new and legacy tables, without the confirmation).

    An entry is stamped with the market's last_updated_at and the cleanup mark as read in the same snapshot as its
    points. The writer adds a market's history rows only in the transaction that moves that time forward, and
    retention deletes rows only within a cleanup run, which moves the mark when it starts and when it ends; while
    a run is in progress entries are neither served nor filled. So an entry whose stamp equals the database's
    current one holds exactly the points the database would give: no invalidation, and no race between a replica
    that fills the cache and one that reads it.

    Every read checks the stamp against the database in one round trip: the market's row in
    market_odds_current, the bookmaker's name, the newest cleanup run and latest_snapshots. The trailing
    "confirmed" point needs latest_snapshots anyway: it advances every scrape without a notification, so
    neither Redis nor the in-memory cache could supply it as fresh as the database.

    Redis errors never fail a read: the read goes to PostgreSQL, the error is counted, logged once per outage,
    and Redis is skipped for `backoff_seconds` before the next attempt."""

    def __init__(
        self,
        reader: HistoryReader,
        redis: Redis | None,
        in_horizon: Callable[[int], bool],
        *,
        ttl_seconds: int = 3600,
        backoff_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._reader = reader
        self._redis = redis
        self._errors = redis_errors() if redis is not None else ()
        self._in_horizon = in_horizon
        self._ttl = ttl_seconds
        self._backoff = backoff_seconds
        self._clock = clock
        self._retry_at = 0.0  # monotonic time before which Redis is not tried
        self._down = False

    @property
    def enabled(self) -> bool:
        return self._redis is not None

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()

    async def market_history(
        self,
        event_id: int,
        market_id: str,
        bookmaker_slug: str,
        line: float | None,
        from_time: datetime | None,
        to_time: datetime | None,
    ) -> MarketHistory:
        """As HistoryReader.market_history (raises UnknownBookmaker)."""
        # Only events the in-memory cache holds (kickoff within the horizon) use Redis: they are the ones the UI
        # reads again and again, so older events would only fill Redis with cold entries; and the stamp covers the
        # writer's changes and retention's, while history of older events is what bulk loads change too.
        if self._redis is None or not self._in_horizon(event_id):
            return await self._reader.market_history(event_id, market_id, bookmaker_slug, line, from_time, to_time)
        key = history_key(event_id, bookmaker_slug, market_id, line)
        # Both at once: the stamp check needs the current row, which the answer needs whatever Redis holds.
        raw, current = await asyncio.gather(
            self._get(key), self._reader.market_current(event_id, market_id, bookmaker_slug, line)
        )
        if current.cleaning:
            # A cleanup run may delete history at any moment until it ends: entries are neither served nor filled.
            metrics.REDIS_MISSES.labels("cleaning").inc()
            return await self._reader.market_history(event_id, market_id, bookmaker_slug, line, from_time, to_time)
        if raw is not None:
            try:
                version, points = decode_entry(raw)
                if version == version_of(current.state, current.cleanup_mark):
                    metrics.REDIS_HITS.inc()
                    return MarketChanges(current.bookmaker_name, points, current.state, current.cleanup_mark).history(
                        event_id, market_id, bookmaker_slug, line, from_time, to_time
                    )
                metrics.REDIS_MISSES.labels("stale").inc()
            except (ValueError, KeyError, TypeError) as exc:
                metrics.REDIS_MISSES.labels("unreadable").inc()
                logger.warning("unreadable Redis entry %s replaced: %s", key, exc)
        changes = await self._reader.market_changes(event_id, market_id, bookmaker_slug, line)
        if not changes.cleaning:
            await self._set(key, encode_entry(version_of(changes.current, changes.cleanup_mark), changes.points))
        return changes.history(event_id, market_id, bookmaker_slug, line, from_time, to_time)

    async def market_history_json(
        self,
        event_id: int,
        market_id: str,
        bookmaker_slug: str,
        line: float | None,
        from_time: datetime | None,
        to_time: datetime | None,
    ) -> bytes:
        """The contract's JSON of market_history; without Redis, rendered from the rows (HistoryReader)."""
        if self._redis is None or not self._in_horizon(event_id):
            return await self._reader.market_history_json(event_id, market_id, bookmaker_slug, line, from_time, to_time)
        h = await self.market_history(event_id, market_id, bookmaker_slug, line, from_time, to_time)
        return contract_json.market_history(h)

    async def _get(self, key: str) -> bytes | None:
        """The entry, or None when there is none or Redis cannot be asked now (skipped, or failed)."""
        if self._redis is None or self._clock() < self._retry_at:
            return None
        try:
            value = await self._redis.get(key)
        except self._errors as exc:
            self._failed("get", exc)
            return None
        self._succeeded()
        raw = value.encode() if isinstance(value, str) else value  # str only if the client decodes responses
        if raw is None:
            metrics.REDIS_MISSES.labels("absent").inc()
        return raw

    async def _set(self, key: str, value: bytes) -> None:
        if self._redis is None or self._clock() < self._retry_at:
            return
        try:
            await self._redis.set(key, value, ex=self._ttl)
        except self._errors as exc:
            self._failed("set", exc)
            return
        self._succeeded()

    def _failed(self, operation: str, exc: BaseException) -> None:
        metrics.REDIS_ERRORS.labels(operation).inc()
        self._retry_at = self._clock() + self._backoff
        if not self._down:
            self._down = True
            logger.warning(
                "Redis unavailable (%s: %s): history reads go to PostgreSQL, retrying every %.1fs",
                operation,
                exc,
                self._backoff,
            )

    def _succeeded(self) -> None:
        if self._down:
            self._down = False
            logger.info("Redis available again: history reads use it")
