"""SQL for history reads: the new market_odds_history table and the legacy snapshot tables, one query per source.

Legacy timestamps without a time zone (competitor snapshots' captured_at) hold UTC: they are converted with
AT TIME ZONE 'UTC' in SQL, and bounds are converted the other way so that the legacy indexes on captured_at stay
usable. unavailable_at is timestamptz in both legacy market tables (revision 0005) and is read as it is: AT TIME
ZONE on a timestamptz would yield a naive value.
"""

from __future__ import annotations

import contextlib
import json
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from oddstore import citus
from services.query import contract_json, odds
from services.query.history import (
    BookmakerMargins,
    BookmakerMarkets,
    BookmakerToKickoff,
    MarketHistory,
    MarketState,
    OffsetOdds,
    Point,
    average_margins,
    between,
    confirmation_point,
    latest,
    merge,
    with_confirmation,
)

# Closed history days are columnar with their index (services/retention/partition_repository.convert_to_columnar).
# The planner must take that index: columnar's custom scan, which it prefers whenever it is on (costed at a couple
# of pages), loads the chunk metadata of the whole day, 6.0 ms a read of one market of a production day against 0.6
# by the index (BENCHMARKS.md); columnar's plain scan, costed by pages and not by decompression, looks cheaper than
# the index on a small or well-compressed day (a 24,000-row day: 3.7 ms scanned). The reader's pool (query's
# bootstrap) turns both off; a server without citus_columnar keeps the columnar setting as an unused placeholder.
POOL_SETTINGS = {"columnar.enable_custom_scan": "off", "enable_seqscan": "off"}
# The same on Citus, where a session setting stays on the coordinator: SET LOCAL, propagated to the workers'
# connections of the transaction (one round trip).
CITUS_READ_SETTINGS = (
    "SET LOCAL citus.propagate_set_commands = 'local'; SET LOCAL columnar.enable_custom_scan = off; "
    "SET LOCAL enable_seqscan = off"
)

BOOKMAKER_NAMES = "SELECT slug, name FROM bookmakers WHERE slug = ANY($1::text[])"
EVENT_KICKOFF = "SELECT kickoff FROM events WHERE id = $1::bigint"
TOURNAMENT_EVENTS = "SELECT id FROM events WHERE tournament_id = $1::bigint"

# `line IS NOT DISTINCT FROM $n`: a given line matches exactly, a NULL one only the line-less market.
NEW_HISTORY = """
SELECT captured_at, available, outcomes FROM market_odds_history
WHERE event_id = $1::bigint AND bookmaker_slug = $2 AND market_id = $3 AND line IS NOT DISTINCT FROM $4::float8
ORDER BY captured_at
"""

LEGACY_HISTORY = """
SELECT s.captured_at, m.outcomes::text AS outcomes, m.unavailable_at AS unavailable_at
FROM odds_snapshots s
JOIN bookmakers b ON b.id = s.bookmaker_id
JOIN market_odds m ON m.snapshot_id = s.id
WHERE s.event_id = $1::bigint AND b.slug = $2 AND m.betpawa_market_id = $3
  AND m.line IS NOT DISTINCT FROM $4::float8
UNION ALL
SELECT cs.captured_at AT TIME ZONE 'UTC', cm.outcomes::text, cm.unavailable_at
FROM competitor_events ce
JOIN competitor_odds_snapshots cs ON cs.competitor_event_id = ce.id
JOIN competitor_market_odds cm ON cm.snapshot_id = cs.id
WHERE ce.betpawa_event_id = $1::bigint AND ce.source = $2 AND cm.betpawa_market_id = $3
  AND cm.line IS NOT DISTINCT FROM $4::float8
ORDER BY 1
"""

# The bookmaker's name and the market's current row with its pair's latest snapshot time, in one round
# trip: no row means an unknown bookmaker, a NULL last_updated_at a market without a current row. The cleanup
# mark changes when a cleanup run starts and again when it ends (the newest run's id, doubled, plus one once it
# has ended): retention deletes history without touching last_updated_at, so a cache stamp needs both.
# The current row's sources and the cleanup mark, shared by CURRENT and MARKET_CHANGES.
_CURRENT_FROM = """
       (SELECT r.id::bigint * 2 + (r.completed_at IS NOT NULL)::int FROM cleanup_runs r ORDER BY r.id DESC LIMIT 1)
           AS cleanup_mark
FROM bookmakers b
LEFT JOIN market_odds_current c ON c.event_id = $1::bigint AND c.bookmaker_slug = b.slug AND c.market_id = $3
     AND c.line IS NOT DISTINCT FROM $4::float8
LEFT JOIN latest_snapshots s ON s.event_id = c.event_id AND s.bookmaker_slug = c.bookmaker_slug
WHERE b.slug = $2
"""

CURRENT = """
SELECT b.name, c.outcomes, c.unavailable_at, c.last_confirmed_at, c.last_updated_at, s.captured_at AS snapshot_at,
""" + _CURRENT_FROM.lstrip("\n")

# CURRENT, NEW_HISTORY and LEGACY_HISTORY as one statement: one round trip instead of five (BEGIN, three
# queries, COMMIT), and one statement reads one snapshot, which is what the cache stamp needs (see
# market_changes). `k` tells the parts apart: 0 the current row (exactly one, or none for an unknown
# bookmaker), 1 the new table's points, 2 the legacy ones.
MARKET_CHANGES = (
    """
SELECT 0 AS k, b.name, NULL::timestamptz AS captured_at, NULL::bool AS available, c.outcomes,
       NULL::text AS legacy_outcomes, c.unavailable_at, c.last_confirmed_at, c.last_updated_at,
       s.captured_at AS snapshot_at,
"""
    + _CURRENT_FROM.lstrip("\n")
    + """UNION ALL
SELECT 1, NULL, captured_at, available, outcomes, NULL, NULL, NULL, NULL, NULL, NULL FROM market_odds_history
WHERE event_id = $1::bigint AND bookmaker_slug = $2 AND market_id = $3 AND line IS NOT DISTINCT FROM $4::float8
UNION ALL
SELECT 2, NULL, s.captured_at, NULL, NULL, m.outcomes::text, m.unavailable_at, NULL, NULL, NULL, NULL
FROM odds_snapshots s
JOIN bookmakers b ON b.id = s.bookmaker_id
JOIN market_odds m ON m.snapshot_id = s.id
WHERE s.event_id = $1::bigint AND b.slug = $2 AND m.betpawa_market_id = $3
  AND m.line IS NOT DISTINCT FROM $4::float8
UNION ALL
SELECT 2, NULL, cs.captured_at AT TIME ZONE 'UTC', NULL, NULL, cm.outcomes::text, cm.unavailable_at,
       NULL, NULL, NULL, NULL
FROM competitor_events ce
JOIN competitor_odds_snapshots cs ON cs.competitor_event_id = ce.id
JOIN competitor_market_odds cm ON cm.snapshot_id = cs.id
WHERE ce.betpawa_event_id = $1::bigint AND ce.source = $2 AND cm.betpawa_market_id = $3
  AND cm.line IS NOT DISTINCT FROM $4::float8
ORDER BY k, captured_at
"""
)

# The last point at or before $2 of every market of the event; names and groups from current state,
# which the history table does not repeat.
NEW_EVENT_AT = """
WITH last AS (
    SELECT DISTINCT ON (bookmaker_slug, market_id, line)
           bookmaker_slug, market_id, line, captured_at, available, outcomes
    FROM market_odds_history
    WHERE event_id = $1::bigint AND captured_at <= $2::timestamptz
    ORDER BY bookmaker_slug, market_id, line, captured_at DESC
)
SELECT l.*, c.market_name, c.market_groups
FROM last l
LEFT JOIN market_odds_current c ON c.event_id = $1::bigint AND c.bookmaker_slug = l.bookmaker_slug
     AND c.market_id = l.market_id AND c.line IS NOT DISTINCT FROM l.line
"""

LEGACY_EVENT_AT = """
SELECT DISTINCT ON (slug, market_id, line) *
FROM (
    SELECT b.slug, m.betpawa_market_id AS market_id, m.line, s.captured_at, m.outcomes::text AS outcomes,
           m.unavailable_at AS unavailable_at, m.betpawa_market_name AS market_name,
           m.market_groups::text AS market_groups
    FROM odds_snapshots s
    JOIN bookmakers b ON b.id = s.bookmaker_id
    JOIN market_odds m ON m.snapshot_id = s.id
    WHERE s.event_id = $1::bigint AND s.captured_at <= $2::timestamptz
    UNION ALL
    SELECT ce.source, cm.betpawa_market_id, cm.line, cs.captured_at AT TIME ZONE 'UTC', cm.outcomes::text,
           cm.unavailable_at, cm.betpawa_market_name, cm.market_groups::text
    FROM competitor_events ce
    JOIN competitor_odds_snapshots cs ON cs.competitor_event_id = ce.id
    JOIN competitor_market_odds cm ON cm.snapshot_id = cs.id
    WHERE ce.betpawa_event_id = $1::bigint AND cs.captured_at <= ($2::timestamptz AT TIME ZONE 'UTC')
) x
ORDER BY slug, market_id, line, captured_at DESC
"""

# NEW_EVENT_AT, LEGACY_EVENT_AT and the bookmakers' names as one statement (one round trip instead of three);
# `k` 1 is a new-table row, 2 a legacy one, with the columns named as event_at reads them.
EVENT_AT = f"""
WITH new AS ({NEW_EVENT_AT}), legacy AS ({LEGACY_EVENT_AT})
SELECT 1 AS k, n.bookmaker_slug AS slug, b.name AS bookmaker_name, n.market_id, n.line, n.captured_at, n.available,
       n.outcomes, NULL::text AS legacy_outcomes, NULL::timestamptz AS unavailable_at, n.market_name,
       n.market_groups, NULL::text AS legacy_groups
FROM new n LEFT JOIN bookmakers b ON b.slug = n.bookmaker_slug
UNION ALL
SELECT 2, g.slug, b.name, g.market_id, g.line, g.captured_at, NULL, NULL, g.outcomes, g.unavailable_at, g.market_name,
       NULL, g.market_groups
FROM legacy g LEFT JOIN bookmakers b ON b.slug = g.slug
"""

# For each event and offset, the last point at or before kickoff - offset, per bookmaker.
_TARGETS = """
WITH t AS (
    SELECT e.id AS event_id, u.i::int AS i, e.kickoff - u.off AS at
    FROM events e, unnest($2::interval[]) WITH ORDINALITY AS u(off, i)
    WHERE e.id = ANY($1::bigint[])
)
"""

NEW_AT_OFFSETS = (
    _TARGETS
    + """
SELECT t.event_id, t.i, h.*
FROM t CROSS JOIN LATERAL (
    SELECT DISTINCT ON (bookmaker_slug) bookmaker_slug, captured_at, available, outcomes
    FROM market_odds_history
    WHERE event_id = t.event_id AND market_id = $3 AND line IS NOT DISTINCT FROM $4::float8 AND captured_at <= t.at
    ORDER BY bookmaker_slug, captured_at DESC
) h
"""
)

# Citus cannot push a LATERAL subquery over a distributed table below a reference table and a function: there
# the same points come from a plain join on the event (the distribution column), newest first per target.
NEW_AT_OFFSETS_CITUS = (
    _TARGETS
    + """
SELECT DISTINCT ON (h.event_id, t.i, h.bookmaker_slug)
       h.event_id, t.i, h.bookmaker_slug, h.captured_at, h.available, h.outcomes
FROM market_odds_history h JOIN t ON h.event_id = t.event_id AND h.captured_at <= t.at
WHERE h.event_id = ANY($1::bigint[]) AND h.market_id = $3 AND h.line IS NOT DISTINCT FROM $4::float8
ORDER BY h.event_id, t.i, h.bookmaker_slug, h.captured_at DESC
"""
)

LEGACY_AT_OFFSETS = (
    _TARGETS
    + """
SELECT t.event_id, t.i, l.*
FROM t CROSS JOIN LATERAL (
    SELECT DISTINCT ON (slug) *
    FROM (
        SELECT b.slug, s.captured_at, m.outcomes::text AS outcomes,
               m.unavailable_at AS unavailable_at
        FROM odds_snapshots s
        JOIN bookmakers b ON b.id = s.bookmaker_id
        JOIN market_odds m ON m.snapshot_id = s.id
        WHERE s.event_id = t.event_id AND s.captured_at <= t.at
          AND m.betpawa_market_id = $3 AND m.line IS NOT DISTINCT FROM $4::float8
        UNION ALL
        SELECT ce.source, cs.captured_at AT TIME ZONE 'UTC', cm.outcomes::text, cm.unavailable_at
        FROM competitor_events ce
        JOIN competitor_odds_snapshots cs ON cs.competitor_event_id = ce.id
        JOIN competitor_market_odds cm ON cm.snapshot_id = cs.id
        WHERE ce.betpawa_event_id = t.event_id AND cs.captured_at <= (t.at AT TIME ZONE 'UTC')
          AND cm.betpawa_market_id = $3 AND cm.line IS NOT DISTINCT FROM $4::float8
    ) x
    ORDER BY slug, captured_at DESC
) l
"""
)


class UnknownBookmaker(LookupError):
    def __init__(self, slug: str) -> None:
        super().__init__(f"Bookmaker not found: {slug}")
        self.slug = slug


def _new_point(row: asyncpg.Record) -> Point:
    available: bool = row["available"]
    # The history row of a disappearance is the moment the market became unavailable.
    return Point(row["captured_at"], odds.decode(row["outcomes"]), available, None if available else row["captured_at"])


def _legacy_point(row: asyncpg.Record, outcomes: str = "outcomes") -> Point:
    unavailable_at: datetime | None = row["unavailable_at"]
    return Point(row["captured_at"], tuple(odds.legacy_outcomes(row[outcomes])), unavailable_at is None, unavailable_at)


def _groups(raw: Sequence[str] | str | None) -> tuple[str, ...] | None:
    if raw is None:
        return None
    if isinstance(raw, str):  # legacy json
        parsed = json.loads(raw)
        return None if parsed is None else tuple(str(g) for g in parsed)
    return tuple(raw)


@dataclass(frozen=True, slots=True)
class CurrentState:
    """A market's row in market_odds_current, with the latest snapshot time of its event and bookmaker."""

    outcomes: tuple[odds.Odds, ...]
    unavailable_at: datetime | None
    last_confirmed_at: datetime
    last_updated_at: datetime  # moves with every history row the writer adds for the market
    snapshot_at: datetime | None

    def confirmation(self) -> Point:
        return confirmation_point(self.outcomes, self.unavailable_at, self.last_confirmed_at, self.snapshot_at)


def is_cleaning(cleanup_mark: int) -> bool:
    """A cleanup run has started and not ended (0: no run yet)."""
    return cleanup_mark > 0 and cleanup_mark % 2 == 0


@dataclass(frozen=True, slots=True)
class MarketChanges:
    """One market's merged change points (new and legacy, without the confirmation) and its current state."""

    bookmaker_name: str
    points: tuple[Point, ...]
    current: CurrentState | None
    cleanup_mark: int  # of the snapshot the points were read in (CURRENT)

    @property
    def cleaning(self) -> bool:
        return is_cleaning(self.cleanup_mark)

    def history(
        self,
        event_id: int,
        market_id: str,
        bookmaker_slug: str,
        line: float | None,
        from_time: datetime | None,
        to_time: datetime | None,
    ) -> MarketHistory:
        confirmation = None if self.current is None else self.current.confirmation()
        points = with_confirmation(list(self.points), confirmation)
        return MarketHistory(
            event_id, bookmaker_slug, self.bookmaker_name, market_id, line, tuple(between(points, from_time, to_time))
        )


MarketArgs = tuple[int, str, str, float | None]  # (event_id, bookmaker_slug, market_id, line), as the SQL takes them


@dataclass(frozen=True, slots=True)
class Current:
    """The bookmaker's name, the market's current state (None: no current row) and the cleanup mark."""

    bookmaker_name: str
    state: CurrentState | None
    cleanup_mark: int

    @property
    def cleaning(self) -> bool:
        return is_cleaning(self.cleanup_mark)


def _current_of(row: asyncpg.Record | None, slug: str) -> Current:
    if row is None:
        raise UnknownBookmaker(slug)
    mark = row["cleanup_mark"] or 0
    if row["last_updated_at"] is None:
        return Current(row["name"], None, mark)
    state = CurrentState(
        odds.decode(row["outcomes"]),
        row["unavailable_at"],
        row["last_confirmed_at"],
        row["last_updated_at"],
        row["snapshot_at"],
    )
    return Current(row["name"], state, mark)


async def _current(conn: asyncpg.Connection, args: MarketArgs) -> Current:
    return _current_of(await conn.fetchrow(CURRENT, *args), args[1])


def _changes(current: Current, new_rows: Iterable[asyncpg.Record], legacy_points: Iterable[Point]) -> MarketChanges:
    """The market's rows (HistoryReader._market_rows) as its merged change points."""
    points = merge(map(_new_point, new_rows), legacy_points, None)
    return MarketChanges(current.bookmaker_name, tuple(points), current.state, current.cleanup_mark)


MarketKey = tuple[str, str, float | None]  # (bookmaker_slug, market_id, line)


def _market_order(key: MarketKey) -> tuple[str, str, bool, float]:
    """By bookmaker, market and line, the line-less market first."""
    return key[0], key[1], key[2] is not None, key[2] or 0.0


@dataclass(frozen=True, slots=True)
class _EventAtRows:
    """A point-in-time read's rows: per market the new table's last row at or before the instant (with the current
    row's name and groups) and the legacy tables' one, and the bookmakers' names. The legacy columns are named
    `legacy_outcomes` and `legacy_groups` in the one-statement read, `outcomes` and `market_groups` on Citus."""

    new: dict[MarketKey, asyncpg.Record]
    legacy: dict[MarketKey, asyncpg.Record]
    names: dict[str, str]
    legacy_outcomes: str
    legacy_groups: str

    def books(self) -> list[BookmakerMarkets]:
        by_bookmaker: dict[str, list[tuple[Point, MarketState]]] = defaultdict(list)
        for key in sorted(self.new.keys() | self.legacy.keys(), key=_market_order):
            slug, market_id, line = key
            n, g = self.new.get(key), self.legacy.get(key)
            state = latest(_new_point(n) if n else None, _legacy_point(g, self.legacy_outcomes) if g else None)
            assert state is not None
            if n is not None and n["market_name"] is not None:  # the market has a current row
                market_name, groups = n["market_name"], _groups(n["market_groups"])
            elif g is not None:
                market_name, groups = g["market_name"], _groups(g[self.legacy_groups])
            else:
                market_name, groups = market_id, None
            market = MarketState(
                market_id, market_name, line, state.outcomes, state.available, state.unavailable_at, groups
            )
            by_bookmaker[slug].append((state, market))
        return [
            BookmakerMarkets(
                slug,
                self.names.get(slug, slug),
                max(p.captured_at for p, _ in entries),
                tuple(m for _, m in entries),
            )
            for slug, entries in by_bookmaker.items()
        ]


class HistoryReader:
    """Reads over market_odds_history. `pool` is opened with POOL_SETTINGS."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._citus: bool | None = None  # whether the database is Citus; asked on first use

    @contextlib.asynccontextmanager
    async def _reading(self) -> AsyncIterator[tuple[asyncpg.Connection, bool]]:
        """A connection for reads of market_odds_history, and whether the database is Citus. There, a read-only
        repeatable-read transaction (its statements read one snapshot) with CITUS_READ_SETTINGS."""
        async with self._pool.acquire() as conn:
            if self._citus is None:
                self._citus = await citus.installed(conn)
            if not self._citus:
                yield conn, False
                return
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                await conn.execute(CITUS_READ_SETTINGS)
                yield conn, True

    async def _names(self, conn: asyncpg.Connection, slugs: Iterable[str]) -> dict[str, str]:
        rows = await conn.fetch(BOOKMAKER_NAMES, sorted(set(slugs)))
        return {r["slug"]: r["name"] for r in rows}

    async def market_history(
        self,
        event_id: int,
        market_id: str,
        bookmaker_slug: str,
        line: float | None,
        from_time: datetime | None,
        to_time: datetime | None,
    ) -> MarketHistory:
        """Raises UnknownBookmaker; an unknown event or market has no points."""
        changes = await self.market_changes(event_id, market_id, bookmaker_slug, line)
        return changes.history(event_id, market_id, bookmaker_slug, line, from_time, to_time)

    async def market_changes(
        self, event_id: int, market_id: str, bookmaker_slug: str, line: float | None
    ) -> MarketChanges:
        """Raises UnknownBookmaker. One snapshot (repeatable read) for every query, so that the current row's
        last_updated_at and the cleanup mark stamp exactly these points: the writer adds a market's history rows
        in the transaction that moves the one, retention deletes rows only within a run that moves the other,
        and a cache keyed by them (history_cache.py) depends on that."""
        return _changes(*await self._market_rows((event_id, bookmaker_slug, market_id, line)))

    async def market_history_json(
        self,
        event_id: int,
        market_id: str,
        bookmaker_slug: str,
        line: float | None,
        from_time: datetime | None,
        to_time: datetime | None,
    ) -> bytes:
        """contract_json.market_history(self.market_history(...)), rendered straight from the new table's rows when
        the market has no legacy history (every market written since the takeover): no Point per row and no merge,
        which took a 14-day read's Python time from 1.19 to 0.73 ms p50 (~190 points; issue 14). Raises
        UnknownBookmaker."""
        current, new_rows, legacy_points = await self._market_rows((event_id, bookmaker_slug, market_id, line))
        if legacy_points:
            changes = _changes(current, new_rows, legacy_points)
            return contract_json.market_history(
                changes.history(event_id, market_id, bookmaker_slug, line, from_time, to_time)
            )
        confirmation = None if current.state is None else current.state.confirmation()
        return contract_json.market_history_rows(
            event_id,
            bookmaker_slug,
            current.bookmaker_name,
            market_id,
            line,
            new_rows,
            confirmation,
            from_time,
            to_time,
        )

    async def _market_rows(self, args: MarketArgs) -> tuple[Current, Sequence[asyncpg.Record], list[Point]]:
        """The market's current state, its new-table rows (captured_at, available, outcomes; by captured_at) and its
        legacy points, read in one snapshot (see market_changes)."""
        async with self._reading() as (conn, on_citus):
            if on_citus:
                # Not one statement there: Citus does not plan a UNION of a distributed table with local joins.
                current = await _current(conn, args)
                new_rows = await conn.fetch(NEW_HISTORY, *args)
                legacy_rows = await conn.fetch(LEGACY_HISTORY, *args)
                return current, new_rows, [_legacy_point(r) for r in legacy_rows]
            rows = await conn.fetch(MARKET_CHANGES, *args)
        current = _current_of(rows[0] if rows and rows[0]["k"] == 0 else None, args[1])
        new_rows = [r for r in rows if r["k"] == 1]
        return current, new_rows, [_legacy_point(r, "legacy_outcomes") for r in rows if r["k"] == 2]

    async def market_current(self, event_id: int, market_id: str, bookmaker_slug: str, line: float | None) -> Current:
        """Raises UnknownBookmaker."""
        async with self._pool.acquire() as conn:
            return await _current(conn, (event_id, bookmaker_slug, market_id, line))

    async def event_at(self, event_id: int, at: datetime) -> list[BookmakerMarkets]:
        """Every market of the event at every bookmaker as it stood at `at`; markets not yet known are left out."""
        return (await self._event_at_rows(event_id, at)).books()

    async def event_at_json(self, event_id: int, at: datetime) -> bytes:
        """contract_json.event_at(self.event_at(...)), rendered straight from the new table's rows when the event
        has no legacy history: no Point or MarketState per market, which took the Python time of a read of ~300
        markets from 2.74 to 1.35 ms p50 (issue 14)."""
        rows = await self._event_at_rows(event_id, at)
        if rows.legacy:
            return contract_json.event_at(event_id, at, rows.books())
        markets = [(k, rows.new[k]) for k in sorted(rows.new, key=_market_order)]
        return contract_json.event_at_rows(event_id, at, markets, rows.names)

    async def _event_at_rows(self, event_id: int, at: datetime) -> _EventAtRows:
        async with self._reading() as (conn, on_citus):
            if on_citus:
                # Three statements there, as market_changes: Citus plans each part, not their union.
                new_rows = await conn.fetch(NEW_EVENT_AT, event_id, at)
                legacy_rows = await conn.fetch(LEGACY_EVENT_AT, event_id, at)
                slugs = [r["bookmaker_slug"] for r in new_rows] + [r["slug"] for r in legacy_rows]
                names = await self._names(conn, slugs)
                new = {(r["bookmaker_slug"], r["market_id"], r["line"]): r for r in new_rows}
                legacy = {(r["slug"], r["market_id"], r["line"]): r for r in legacy_rows}
                return _EventAtRows(new, legacy, names, "outcomes", "market_groups")
            new, legacy, names = {}, {}, {}
            for r in await conn.fetch(EVENT_AT, event_id, at):
                (new if r["k"] == 1 else legacy)[(r["slug"], r["market_id"], r["line"])] = r
                if r["bookmaker_name"] is not None:
                    names[r["slug"]] = r["bookmaker_name"]
            return _EventAtRows(new, legacy, names, "legacy_outcomes", "legacy_groups")

    async def _states_at_offsets(
        self,
        conn: asyncpg.Connection,
        on_citus: bool,
        event_ids: list[int],
        market_id: str,
        line: float | None,
        offsets: list[timedelta],
    ) -> dict[tuple[int, str, int], Point]:
        """(event_id, bookmaker_slug, offset index) -> the state at kickoff - offset, where one is known."""
        args = (event_ids, offsets, market_id, line)
        new_rows = await conn.fetch(NEW_AT_OFFSETS_CITUS if on_citus else NEW_AT_OFFSETS, *args)
        legacy_rows = await conn.fetch(LEGACY_AT_OFFSETS, *args)
        states: dict[tuple[int, str, int], Point] = {}
        for r in legacy_rows:
            states[(r["event_id"], r["slug"], r["i"] - 1)] = _legacy_point(r)
        for r in new_rows:
            key = (r["event_id"], r["bookmaker_slug"], r["i"] - 1)
            state = latest(_new_point(r), states.get(key))
            assert state is not None
            states[key] = state
        return states

    async def time_to_kickoff(
        self, event_id: int, market_id: str, line: float | None, offsets: Sequence[timedelta]
    ) -> tuple[datetime | None, list[BookmakerToKickoff]]:
        """The market's state at kickoff - offset per bookmaker that has any; kickoff None: unknown event."""
        offsets = list(offsets)
        async with self._reading() as (conn, on_citus):
            kickoff: datetime | None = await conn.fetchval(EVENT_KICKOFF, event_id)
            if kickoff is None:
                return None, []
            states = await self._states_at_offsets(conn, on_citus, [event_id], market_id, line, offsets)
            names = await self._names(conn, (slug for _, slug, _ in states))
        result = []
        for slug in sorted({slug for _, slug, _ in states}):
            points = []
            for i, offset in enumerate(offsets):
                state = states.get((event_id, slug, i))
                if state is None:
                    points.append(OffsetOdds(offset, kickoff - offset, False, (), False))
                else:
                    points.append(OffsetOdds(offset, kickoff - offset, True, state.outcomes, state.available))
            result.append(BookmakerToKickoff(slug, names.get(slug, slug), tuple(points)))
        return kickoff, result

    async def tournament_margin_to_kickoff(
        self, tournament_id: int, market_id: str, line: float | None, offsets: Sequence[timedelta]
    ) -> list[BookmakerMargins]:
        """Per bookmaker and offset, the margin averaged over the tournament's events priced at that time."""
        offsets = list(dict.fromkeys(offsets))  # a repeated offset would count every event twice
        async with self._reading() as (conn, on_citus):
            event_ids = [r["id"] for r in await conn.fetch(TOURNAMENT_EVENTS, tournament_id)]
            states = await self._states_at_offsets(conn, on_citus, event_ids, market_id, line, offsets)
            names = await self._names(conn, (slug for _, slug, _ in states))
        by_bookmaker: dict[str, list[OffsetOdds]] = defaultdict(list)
        for (_, slug, i), state in states.items():
            # `at` is per event and not needed for an average.
            by_bookmaker[slug].append(OffsetOdds(offsets[i], state.captured_at, True, state.outcomes, state.available))
        return [
            BookmakerMargins(slug, names.get(slug, slug), average_margins(offsets, points))
            for slug, points in sorted(by_bookmaker.items())
        ]
