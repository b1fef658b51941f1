"""The in-memory current state the reads are served from: events with their bookmaker links, and
every current market per event and bookmaker. No I/O: feed.py fills it, events.py reads it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

MarketKey = tuple[str, float | None]  # (market_id, line)
# A row of market_odds_current as OddsCache.load_rows takes it (an asyncpg Record, or a tuple of the same fields).
MarketRow = Sequence[Any]
Pair = tuple[int, str]  # (event_id, bookmaker_slug)


class Link(NamedTuple):
    """A platform that lists the event (event_bookmakers), in link order."""

    slug: str
    name: str
    external_event_id: str


@dataclass(frozen=True, slots=True)
class EventInfo:
    id: int
    sportradar_id: str
    name: str
    home_team: str
    away_team: str
    kickoff: datetime
    created_at: datetime | None
    tournament_id: int
    tournament_name: str
    tournament_country: str | None
    sport_id: int
    sport_name: str
    links: tuple[Link, ...]


# A NamedTuple rather than a dataclass: 430,000 are built at warm-up, and outcomes stay in the
# stored codec bytes until a read decodes the few markets it returns (measured: see feed.warm_up).
class CurrentMarket(NamedTuple):
    market_name: str
    market_groups: tuple[str, ...] | None
    outcomes: bytes
    last_updated_at: datetime
    last_confirmed_at: datetime
    unavailable_at: datetime | None


def market_from_row(r: Sequence[Any]) -> CurrentMarket:
    """From a row as load_rows documents it."""
    return CurrentMarket(r[4], tuple(r[5]) if r[5] is not None else None, r[6], r[7], r[8], r[9])


@dataclass(slots=True)
class Book:
    """One bookmaker's current markets for one event."""

    captured_at: datetime | None = None  # latest_snapshots: when every available market was last confirmed
    last_change: datetime | None = None  # newest last_updated_at of any market
    markets: dict[MarketKey, CurrentMarket] = field(default_factory=dict)
    unavailable: int = 0  # markets with unavailable_at set, kept so alerts need no scan
    # Moves on every change to `markets` (only `put` changes them), so a read may keep what it built
    # from the markets alone (grpc_api's serialized pieces, in `memo`) for as long as it is unchanged.
    # Per Book: a Book that leaves (sweep) takes its memo along; a new Book starts empty.
    version: int = field(default=0, compare=False)
    memo: dict[str, tuple[int, bytes]] = field(default_factory=dict, compare=False, repr=False)

    def piece(self, kind: str, build: Callable[[], bytes]) -> bytes:
        """A serialized piece built from `markets` alone, kept until they change (`version`): most reads find a
        bookmaker's markets as the previous read left them."""
        held = self.memo.get(kind)
        if held is not None and held[0] == self.version:
            return held[1]
        piece = build()
        self.memo[kind] = (self.version, piece)
        return piece

    @property
    def snapshot_time(self) -> datetime | None:
        """The contract's freshness: the newest confirmation, falling back to the newest change."""
        if self.captured_at is not None and (self.last_change is None or self.captured_at >= self.last_change):
            return self.captured_at
        return self.last_change

    @property
    def has_odds(self) -> bool:
        return self.last_change is not None

    def put(self, key: MarketKey, market: CurrentMarket) -> int:
        """Stores `market` unless the held state is newer. Returns +1 for a new key, 0 for a
        replacement, -1 when ignored (older than what is held, or the same)."""
        old = self.markets.get(key)
        if old is not None:
            # Identical too: a resync or a repeated reload brings back what is held, which is no change.
            if market.last_updated_at < old.last_updated_at or market == old:
                return -1
            if old.unavailable_at is not None:
                self.unavailable -= 1
        self.markets[key] = market
        self.version += 1
        if market.unavailable_at is not None:
            self.unavailable += 1
        if self.last_change is None or market.last_updated_at > self.last_change:
            self.last_change = market.last_updated_at
        return 1 if old is None else 0

    def confirm(self, captured_at: datetime | None) -> None:
        """latest_snapshots only moves forward; an older reading (a late reload) is ignored."""
        if captured_at is not None and (self.captured_at is None or captured_at > self.captured_at):
            self.captured_at = captured_at


class OddsCache:
    def __init__(self) -> None:
        self.events: dict[int, EventInfo] = {}
        self.books: dict[int, dict[str, Book]] = {}
        self.market_count = 0
        self.newest_update: datetime | None = None  # high-water mark of last_updated_at applied
        # Pairs whose markets changed since the background renderer last looked (rendering.keep_rendered): it
        # takes them from here rather than scanning every book each second (~10 % of the service's CPU at
        # 3,900 books in bench-read's profile). At most one entry per book.
        self.changed: set[Pair] = set()
        # Set by the feed while its first load runs: the cache then holds part of the horizon and no read may
        # be answered from it (reads.py goes to PostgreSQL). A cache filled directly (tests) is what it holds.
        self.loading = False
        # One copy of each market key and name for the whole cache (load_rows); bounded by the markets bookmakers
        # offer (market ids × lines), not by the number of events.
        self._keys: dict[MarketKey, MarketKey] = {}
        self._names: dict[str, str] = {}

    def books_of(self, event_id: int) -> dict[str, Book]:
        return self.books.get(event_id, {})

    def put_event(self, info: EventInfo) -> None:
        self.events[info.id] = info

    def put_market(self, event_id: int, slug: str, key: MarketKey, market: CurrentMarket) -> bool:
        """Applies one market state if it is not older than the held one; markets of events the
        cache does not hold are ignored (they are outside the horizon)."""
        if event_id not in self.events:
            return False
        books = self.books.setdefault(event_id, {})
        book = books.get(slug)
        if book is None:
            book = books[slug] = Book()
        outcome = book.put(key, market)
        if outcome < 0:
            return False
        self.market_count += outcome
        self.changed.add((event_id, slug))
        if self.newest_update is None or market.last_updated_at > self.newest_update:
            self.newest_update = market.last_updated_at
        return True

    def confirm(self, event_id: int, slug: str, captured_at: datetime | None) -> None:
        if event_id not in self.events:
            return
        books = self.books.setdefault(event_id, {})
        book = books.get(slug)
        if book is None:
            book = books[slug] = Book()
        book.confirm(captured_at)

    def load_rows(
        self, rows: Iterable[Sequence[Any]], applied: list[tuple[int, str, MarketKey, CurrentMarket]] | None = None
    ) -> int:
        """Bulk path of warm-up and resync: rows of (event_id, slug, market_id, line, market_name,
        market_groups, outcomes, last_updated_at, last_confirmed_at, unavailable_at). Groups arrive
        as lists and are shared as one tuple per distinct value (a few dozen across all markets).
        `applied`, when given, collects the states that were applied (for the live streams)."""
        groups_seen: dict[tuple[str, ...], tuple[str, ...]] = {}
        # Every row brings its own copies of values that repeat across markets: the market's name and key (a few
        # hundred distinct across 434,200 markets) and the instants (one per snapshot, shared by its markets). Held
        # once each, they were ~1/4 of the cache's memory, as much as the prepared JSON added (issue 14).
        keys, names = self._keys, self._names
        instants: dict[datetime, datetime] = {}
        count = 0
        put = self.put_market
        for r in rows:
            groups = r[5]
            if groups is not None:
                as_tuple = tuple(groups)
                groups = groups_seen.setdefault(as_tuple, as_tuple)
            key: MarketKey = (r[2], r[3])
            key = keys.setdefault(key, key)
            name: str = r[4]
            unavailable_at = r[9]
            market = CurrentMarket(
                names.setdefault(name, name),
                groups,
                r[6],
                instants.setdefault(r[7], r[7]),
                instants.setdefault(r[8], r[8]),
                None if unavailable_at is None else instants.setdefault(unavailable_at, unavailable_at),
            )
            if put(r[0], r[1], key, market):
                count += 1
                if applied is not None:
                    applied.append((r[0], r[1], key, market))
        return count

    def pair_times(self) -> dict[Pair, datetime | None]:
        return {(e, slug): b.captured_at for e, books in self.books.items() for slug, b in books.items()}

    def sweep(self, cutoff: datetime) -> list[int]:
        """Drops events whose kickoff is at or before `cutoff`; returns those that left."""
        gone = [e.id for e in self.events.values() if e.kickoff <= cutoff]
        for event_id in gone:
            del self.events[event_id]
            for book in self.books.pop(event_id, {}).values():
                self.market_count -= len(book.markets)
        return gone
