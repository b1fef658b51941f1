"""The writer's service layer: classifies snapshots against the last known state and commits the
changes of a batch in one transaction."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import Enum
from typing import Any

import asyncpg

from oddstore import codec
from oddstore.history_partitions import ensure_partition
from oddstore.model import Event, Market, Snapshot
from services.writer import metrics
from services.writer import repository as repo
from services.writer.change_detection import Counts, Kind, Known, MarketKey, detect

logger = logging.getLogger(__name__)

# The change feed is PostgreSQL LISTEN/NOTIFY rather than a Redis stream: a notification sent inside
# the batch transaction is delivered exactly when the batch commits and never when it rolls back, so
# the feed cannot disagree with the database (a publish after commit can be lost to a crash in
# between), it needs no second dependency on the write path, and the embedded PostgreSQL of
# `make run` provides it. A listener that was disconnected resynchronises from market_odds_current
# by last_updated_at; notifications carry keys, and readers load the committed rows.
FEED_CHANNEL = "oddstore_changes"
NOTIFY_PAYLOAD_BYTES = 7900  # PostgreSQL caps one notification at 8000 bytes


class Status(Enum):
    ACCEPTED = "accepted"
    SUPERSEDED = "superseded"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class Result:
    status: Status
    counts: Counts = field(default_factory=Counts)
    reason: str = ""


@dataclass(slots=True)
class PairState:
    """What is stored for one event at one bookmaker: the newest snapshot time and its markets."""

    captured_at: datetime | None
    markets: dict[MarketKey, Known]


@dataclass(slots=True)
class Observed:
    """A snapshot as the writer consumes it: every market's wire form by key; its encoded outcomes
    and the full market are computed on demand, for the few that differ from the last observation."""

    event: Event
    bookmaker: str
    external_event_id: str
    captured_at: datetime | None
    markets: dict[MarketKey, bytes]
    outcomes: Callable[[MarketKey], bytes]  # raises one of codec.ENCODE_ERRORS for unstorable odds
    details: Callable[[MarketKey], Market]
    error: str | None = None  # set when the snapshot cannot be applied (it is rejected whole)


def observe(snapshot: Snapshot) -> Observed:
    """Observed from a domain snapshot (the gRPC edge builds it straight from protobuf)."""
    outcomes: dict[MarketKey, bytes] = {}
    markets: dict[MarketKey, Market] = {}
    error = None
    for i, m in enumerate(snapshot.markets):
        key = (m.market_id, m.line)
        if key in outcomes:
            error = f"markets[{i}]: duplicate market {m.market_id!r} line {m.line}"
            break
        try:
            outcomes[key] = codec.encode([(o.name, codec.to_milli(o.odds), o.is_active) for o in m.outcomes])
        except codec.ENCODE_ERRORS as exc:
            error = f"markets[{i}] ({m.market_id!r}): cannot store outcomes: {exc}"
            break
        markets[key] = m
    s = snapshot
    return Observed(
        s.event,
        s.bookmaker,
        s.external_event_id,
        s.captured_at,
        outcomes,
        outcomes.__getitem__,
        markets.__getitem__,
        error,
    )


class Writer:
    def __init__(self, pool: asyncpg.Pool, *, home_bookmaker: str = "betpawa", warm_days: float = 3) -> None:
        self._pool = pool
        self._home = home_bookmaker
        self._warm_days = warm_days
        # Last known state per (event, bookmaker): unchanged markets cost no database work. The
        # database stays the judge: each batch compares these times with latest_snapshots under a
        # row lock and reloads any pair that another writer (or a lost commit) moved.
        self._pairs: dict[repo.Pair, PairState] = {}
        self._events: dict[int, tuple[Any, ...]] = {}  # metadata last written from the home bookmaker
        self._created: set[int] = set()  # events known to exist (created from a competitor's snapshot)
        self._links: dict[repo.Pair, str] = {}
        self._partitions: set[date] = set()
        # Batches are applied one at a time: the in-memory state must advance in commit order.
        self._lock = asyncio.Lock()

    @property
    def tracked_markets(self) -> int:
        return sum(len(s.markets) for s in self._pairs.values())

    async def warm_up(self, now: datetime) -> int:
        """Loads the state of pairs written to in the last `warm_days`; older ones load on demand."""
        since = now - timedelta(days=self._warm_days)
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            pairs = {(r[0], r[1]): PairState(r[2], {}) for r in await conn.fetch(repo.WARM_PAIRS, since)}
            async for r in conn.cursor(repo.WARM_MARKETS, since, prefetch=10_000):
                pairs[(r[0], r[1])].markets[(r[2], r[3])] = Known(r[4], r[5])
        self._pairs.update(pairs)
        return self.tracked_markets

    async def write_snapshots(self, snapshots: Sequence[Snapshot]) -> list[Result]:
        return await self.write([observe(s) for s in snapshots])

    async def write(self, snapshots: Sequence[Observed]) -> list[Result]:
        results: list[Result | None] = [None] * len(snapshots)
        by_pair: dict[repo.Pair, list[int]] = defaultdict(list)
        for i, s in enumerate(snapshots):
            if s.error is None and (s.captured_at is None or s.captured_at.tzinfo is None):
                s.error = "captured_at: missing or without time zone"
            if s.error is not None:
                results[i] = Result(Status.REJECTED, reason=s.error)
            else:
                by_pair[(s.event.id, s.bookmaker)].append(i)
        if by_pair:
            metrics.QUEUE_DEPTH.inc()
            try:
                async with self._lock:
                    try:
                        await self._apply(snapshots, by_pair, results)
                    except asyncpg.exceptions.CheckViolationError:
                        # No partition for a row: one this process created may have been dropped
                        # by retention since. Forget what is known and apply once more (nothing of
                        # the failed attempt was committed).
                        self._partitions.clear()
                        await self._apply(snapshots, by_pair, results)
            finally:
                metrics.QUEUE_DEPTH.dec()
        return [r if r is not None else Result(Status.REJECTED, reason="not processed") for r in results]

    async def _apply(
        self,
        snapshots: Sequence[Observed],
        by_pair: dict[repo.Pair, list[int]],
        results: list[Result | None],
    ) -> None:
        started = time.perf_counter()
        days = {_at(snapshots[i]).date() for ids in by_pair.values() for i in ids}
        for day in sorted(days - self._partitions):
            await ensure_partition(self._pool, day)
            self._partitions.add(day)

        pairs = sorted(by_pair)
        async with self._pool.acquire() as conn, conn.transaction():
            claimed = await repo.claim_pairs(conn, pairs)
            working = await self._working_states(conn, pairs, claimed)
            rejected_events = await self._check_events(conn, snapshots, by_pair)

            upserts: dict[tuple[repo.Pair, MarketKey], tuple[Any, ...]] = {}
            unavailable: dict[tuple[repo.Pair, MarketKey], tuple[Any, ...]] = {}
            history: list[tuple[Any, ...]] = []
            advanced: dict[repo.Pair, datetime] = {}
            applied: list[int] = []
            for pair in pairs:
                event_id, slug = pair
                state = working[pair]
                for i in sorted(by_pair[pair], key=lambda j: _at(snapshots[j])):
                    s = snapshots[i]
                    at = _at(s)
                    if event_id in rejected_events:
                        results[i] = Result(Status.REJECTED, reason=rejected_events[event_id])
                        continue
                    if state.captured_at is not None and at <= state.captured_at:
                        results[i] = Result(Status.SUPERSEDED)
                        continue
                    try:
                        new_markets, transitions, counts = detect(state.markets, s.markets, s.outcomes)
                    except codec.ENCODE_ERRORS as exc:  # ingest validates odds; this is the last line
                        results[i] = Result(Status.REJECTED, reason=f"outcomes cannot be stored: {exc}")
                        continue
                    for t in transitions:
                        ck = (pair, t.key)
                        market_id, line = t.key
                        if t.kind is Kind.UNAVAILABLE:
                            unavailable[ck] = (event_id, slug, market_id, line, at, state.captured_at)
                        else:
                            m = s.details(t.key)
                            upserts[ck] = (
                                event_id, slug, market_id, line, m.market_name, m.handicap_type,
                                m.handicap_home, m.handicap_away, "\x1f".join(m.market_groups),
                                t.outcomes, at,
                            )  # fmt: skip
                            unavailable.pop(ck, None)
                        history.append(
                            (event_id, at, line, t.kind is not Kind.UNAVAILABLE, slug, market_id, t.outcomes)
                        )
                    state = PairState(at, new_markets)
                    advanced[pair] = at
                    results[i] = Result(Status.ACCEPTED, counts)
                    applied.append(i)
                working[pair] = state

            if upserts:
                await conn.execute(repo.UPSERT_CURRENT, *repo.columns(list(upserts.values()), 11))
            if unavailable:
                await conn.execute(repo.MARK_UNAVAILABLE, *repo.columns(list(unavailable.values()), 6))
            await repo.copy_history(conn, history)
            if advanced:
                await conn.execute(
                    repo.ADVANCE_PAIRS,
                    [p[0] for p in advanced],
                    [p[1] for p in advanced],
                    list(advanced.values()),
                )
            home_rows, created, link_cache = await self._write_metadata(conn, [snapshots[i] for i in applied])
            if advanced:
                await conn.execute(repo.NOTIFY, FEED_CHANNEL, feed_payloads(history, advanced))

        # Committed: only now does the in-memory state move.
        self._pairs.update(working)
        self._events.update(home_rows)
        self._created.update(created)
        self._links.update(link_cache)
        total = Counts()
        for i in applied:
            r = results[i]
            assert r is not None
            total.add(r.counts)
        metrics.record_batch(len(snapshots), total, len(history), time.perf_counter() - started)

    async def _working_states(
        self, conn: asyncpg.Connection, pairs: list[repo.Pair], claimed: dict[repo.Pair, datetime | None]
    ) -> dict[repo.Pair, PairState]:
        working: dict[repo.Pair, PairState] = {}
        stale: list[repo.Pair] = []
        for pair in pairs:
            known = self._pairs.get(pair)
            if known is not None and known.captured_at == claimed[pair]:
                working[pair] = known
            else:
                stale.append(pair)
                working[pair] = PairState(claimed[pair], {})
        if stale:
            for r in await repo.load_pairs(conn, stale):
                working[(r[0], r[1])].markets[(r[2], r[3])] = Known(r[4], r[5])
            metrics.PAIRS_LOADED.inc(len(stale))
        return working

    async def _check_events(
        self, conn: asyncpg.Connection, snapshots: Sequence[Observed], by_pair: dict[repo.Pair, list[int]]
    ) -> dict[int, str]:
        """Snapshots whose sportradar id already belongs to another event are rejected whole."""
        claims: dict[str, int] = {}
        rejected: dict[int, str] = {}
        for ids in by_pair.values():
            for i in ids:
                e = snapshots[i].event
                if not e.sportradar_id or self._events.get(e.id, (None, None))[1] == e.sportradar_id:
                    continue
                first = claims.setdefault(e.sportradar_id, e.id)
                if first != e.id:
                    rejected[e.id] = f"event.sportradar_id: {e.sportradar_id!r} also sent for event {first}"
        if not claims:
            return rejected
        for owner, sportradar_id in await conn.fetch(repo.FIND_SPORTRADAR_OWNERS, list(claims)):
            event_id = claims[sportradar_id]
            if owner != event_id:
                rejected[event_id] = (
                    f"event.sportradar_id: {sportradar_id!r} already belongs to event {owner}, not {event_id}"
                )
        return rejected

    async def _write_metadata(
        self, conn: asyncpg.Connection, applied: list[Observed]
    ) -> tuple[dict[int, tuple[Any, ...]], set[int], dict[repo.Pair, str]]:
        """Upserts sports, tournaments, events and event_bookmakers for what changed since the last
        write (kept in memory, so steady scraping of known events costs no metadata statements)."""
        home: dict[int, tuple[Any, ...]] = {}
        other: dict[int, tuple[Any, ...]] = {}
        links: dict[repo.Pair, str] = {}
        for s in applied:
            row = event_row(s.event)
            if s.bookmaker == self._home:
                if self._events.get(s.event.id) != row:
                    home[s.event.id] = row
            elif s.event.id not in self._events and s.event.id not in self._created:
                other.setdefault(s.event.id, row)
            if self._links.get((s.event.id, s.bookmaker)) != s.external_event_id:
                links[(s.event.id, s.bookmaker)] = s.external_event_id
        for event_id in home:
            other.pop(event_id, None)
        rows = [*home.values(), *other.values()]
        if rows:
            await conn.execute(repo.ENSURE_SPORTS, sorted({r[2] for r in rows}))
            tournaments = sorted({(r[2], r[3], r[4]) for r in rows})
            await conn.execute(repo.ENSURE_TOURNAMENTS, *repo.columns(tournaments, 3))
            if home:
                await conn.execute(repo.UPSERT_EVENTS, *repo.columns(list(home.values()), 9))
            if other:
                await conn.execute(repo.INSERT_EVENTS, *repo.columns(list(other.values()), 9))
        if links:
            await conn.execute(repo.ENSURE_BOOKMAKERS, sorted({p[1] for p in links}))
            await conn.execute(
                repo.UPSERT_EVENT_BOOKMAKERS,
                [p[0] for p in links],
                [p[1] for p in links],
                list(links.values()),
            )
        return home, set(other), links


def _at(s: Observed) -> datetime:
    """The capture time of a snapshot that passed write()'s checks (it has one, time-zone aware)."""
    assert s.captured_at is not None
    return s.captured_at


def event_row(e: Event) -> tuple[Any, ...]:
    return (
        e.id,
        e.sportradar_id or None,
        e.sport or "Football",
        e.tournament or "Unknown",
        e.country or "Unknown",
        e.name or f"{e.home_team} - {e.away_team}",
        e.home_team,
        e.away_team,
        e.kickoff,
    )


def feed_payloads(history: Sequence[tuple[Any, ...]], advanced: Mapping[repo.Pair, datetime]) -> list[str]:
    """The change feed: JSON arrays of [event_id, bookmaker_slug, market_id, line, captured_at ms],
    chunked under PostgreSQL's notification size limit. A snapshot without changes still moves its
    pair's confirmation time, announced as [event_id, bookmaker_slug, null, null, captured_at ms]."""
    items = [
        json.dumps([event_id, slug, market_id, line, int(at.timestamp() * 1000)])
        for event_id, at, line, _available, slug, market_id, _outcomes in history
    ]
    changed = {(row[0], row[4]) for row in history}
    items += [
        json.dumps([event_id, slug, None, None, int(at.timestamp() * 1000)])
        for (event_id, slug), at in advanced.items()
        if (event_id, slug) not in changed
    ]
    payloads: list[str] = []
    chunk: list[str] = []
    size = 2
    for item in items:
        if chunk and size + len(item) + 1 > NOTIFY_PAYLOAD_BYTES:
            payloads.append("[" + ",".join(chunk) + "]")
            chunk, size = [], 2
        chunk.append(item)
        size += len(item) + 1
    if chunk:
        payloads.append("[" + ",".join(chunk) + "]")
    return payloads
