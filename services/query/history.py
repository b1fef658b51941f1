"""History of markets over time: merging new and legacy points, state at an instant, margins towards kickoff."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from services.query.odds import Odds, margin

DEFAULT_OFFSETS: tuple[timedelta, ...] = (
    timedelta(days=7),
    timedelta(days=3),
    timedelta(hours=24),
    timedelta(hours=6),
    timedelta(hours=1),
    timedelta(0),
)


class Point(NamedTuple):
    """One change of a market. A NamedTuple, not a frozen dataclass: a history read builds one per row (~200 for a
    14-day market), and the dataclass's __init__ (object.__setattr__ per field) measured ~20x the tuple's."""

    captured_at: datetime  # aware UTC
    outcomes: tuple[Odds, ...]
    available: bool
    unavailable_at: datetime | None
    confirmed: bool = False

    @property
    def margin(self) -> float | None:
        return margin(self.outcomes)


@dataclass(frozen=True, slots=True)
class MarketHistory:
    event_id: int
    bookmaker_slug: str
    bookmaker_name: str
    market_id: str
    line: float | None
    points: tuple[Point, ...]


class MarketState(NamedTuple):
    """A NamedTuple as Point: a point-in-time read builds one per market of the event (~3,000)."""

    market_id: str
    market_name: str
    line: float | None
    outcomes: tuple[Odds, ...]
    available: bool
    unavailable_since: datetime | None
    market_groups: tuple[str, ...] | None

    @property
    def margin(self) -> float | None:
        return margin(self.outcomes)


@dataclass(frozen=True, slots=True)
class BookmakerMarkets:
    bookmaker_slug: str
    bookmaker_name: str
    snapshot_time: datetime | None  # the newest observation shown, at or before the requested instant
    markets: tuple[MarketState, ...]


@dataclass(frozen=True, slots=True)
class OffsetOdds:
    offset: timedelta
    at: datetime  # kickoff - offset
    has_data: bool  # false: the market was not yet known at that time
    outcomes: tuple[Odds, ...]
    available: bool

    @property
    def margin(self) -> float | None:
        return margin(self.outcomes)


@dataclass(frozen=True, slots=True)
class BookmakerToKickoff:
    bookmaker_slug: str
    bookmaker_name: str
    points: tuple[OffsetOdds, ...]


@dataclass(frozen=True, slots=True)
class OffsetMargin:
    offset: timedelta
    average_margin: float | None  # None: no event had a price at that offset
    events: int  # events averaged


@dataclass(frozen=True, slots=True)
class BookmakerMargins:
    bookmaker_slug: str
    bookmaker_name: str
    points: tuple[OffsetMargin, ...]


def _odds_key(point: Point) -> tuple[tuple[Odds, ...], bool]:
    # Bookmakers reorder outcomes without changing odds, so order does not make a point different.
    return tuple(sorted(point.outcomes)), point.available


def collapse(points: Iterable[Point]) -> list[Point]:
    """Keep only changes: of consecutive points with the same odds and availability, the first one."""
    out: list[Point] = []
    for point in sorted(points, key=lambda p: p.captured_at):
        if out and _odds_key(out[-1]) == _odds_key(point):
            continue
        out.append(point)
    return out


def merge(new_points: Iterable[Point], legacy_points: Iterable[Point], confirmation: Point | None) -> list[Point]:
    """One timeline sorted by captured_at.

    Legacy history is snapshot-level, so it is collapsed to its changes first. A legacy point is dropped
    only when the new table holds the same point (same time and same odds); a different price at the same
    time is kept, never merged on time alone. The confirmation point is appended when it is later than the
    last point, or when there are no points.
    """
    new = sorted(new_points, key=lambda p: p.captured_at)
    collapsed = collapse(legacy_points)
    if not collapsed:
        # No legacy history (every market written since the takeover): nothing to compare, which was most of the
        # cost of a read (outcomes sorted per point for `seen`).
        return with_confirmation(new, confirmation)
    seen = {(p.captured_at, _odds_key(p)) for p in new}
    legacy = [p for p in collapsed if (p.captured_at, _odds_key(p)) not in seen]
    # Stable sort: at an equal time a legacy point goes before a new one (the older source first).
    return with_confirmation(sorted(legacy + new, key=lambda p: p.captured_at), confirmation)


def with_confirmation(points: list[Point], confirmation: Point | None) -> list[Point]:
    """`points` (merged, sorted) followed by the confirmation when it is later than the last point or there is none."""
    if confirmation is not None and (not points or confirmation.captured_at > points[-1].captured_at):
        return [*points, confirmation]
    return points


def confirmation_point(
    outcomes: tuple[Odds, ...],
    unavailable_at: datetime | None,
    last_confirmed_at: datetime,
    snapshot_at: datetime | None,
) -> Point:
    """The contract's trailing "confirmed" point from a market's current state: a market still available is
    confirmed by every later snapshot of its event and bookmaker (`snapshot_at`, from latest_snapshots)."""
    confirmed_at = last_confirmed_at
    if unavailable_at is None and snapshot_at is not None and snapshot_at > confirmed_at:
        confirmed_at = snapshot_at
    return Point(confirmed_at, outcomes, unavailable_at is None, unavailable_at, confirmed=True)


def between(points: Iterable[Point], from_time: datetime | None, to_time: datetime | None) -> list[Point]:
    """The points inside [from_time, to_time]; a missing bound does not limit."""
    return [
        p
        for p in points
        if (from_time is None or p.captured_at >= from_time) and (to_time is None or p.captured_at <= to_time)
    ]


def state_at(points: Sequence[Point], at: datetime) -> Point | None:
    """The last point at or before `at` (points sorted by captured_at); None when the state was not known yet."""
    state: Point | None = None
    for point in points:
        if point.captured_at > at:
            break
        state = point
    return state


def latest(new: Point | None, legacy: Point | None) -> Point | None:
    """The later of two states of one market; at an equal time the new table wins (it is the newer source)."""
    if new is None or legacy is None:
        return new or legacy
    return legacy if legacy.captured_at > new.captured_at else new


def average_margins(offsets: Sequence[timedelta], points: Iterable[OffsetOdds]) -> tuple[OffsetMargin, ...]:
    """Per offset, the mean margin (2 places) over the points priced at that time: known, available, with a margin.

    `points` are one bookmaker's states across events, any number per offset.
    """
    margins: dict[timedelta, list[float]] = {offset: [] for offset in offsets}
    for point in points:
        value = point.margin
        if point.has_data and point.available and value is not None and point.offset in margins:
            margins[point.offset].append(value)
    return tuple(
        OffsetMargin(offset, round(sum(values) / len(values), 2) if values else None, len(values))
        for offset, values in margins.items()
    )
