"""A write batch as a plan (pure): snapshots and the last known state in, the typed rows to write out.

The rows are NamedTuples whose field order is the parameter order of the statement that writes them
(repository.py): they go to unnest() and COPY as they are, with no per-row conversion on the hot path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import NamedTuple

from oddstore import codec
from oddstore.model import Event, Market
from services.writer.change_detection import Counts, Kind, Known, MarketKey, detect
from services.writer.changes import MarketChange, PairAdvance

Pair = tuple[int, str]  # (event_id, bookmaker_slug)


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

    @property
    def pair(self) -> Pair:
        return (self.event.id, self.bookmaker)

    @property
    def at(self) -> datetime:
        """captured_at of a snapshot that passed the writer's checks (present, time-zone aware)."""
        assert self.captured_at is not None
        return self.captured_at


class CurrentRow(NamedTuple):
    """A present market (new, changed, returned): repository.UPSERT_CURRENT $1..$11."""

    event_id: int
    bookmaker_slug: str
    market_id: str
    line: float | None
    market_name: str
    handicap_type: str | None
    handicap_home: float | None
    handicap_away: float | None
    market_groups: str  # joined by U+001F (see UPSERT_CURRENT)
    outcomes: bytes
    captured_at: datetime


class UnavailableRow(NamedTuple):
    """A market missing from its snapshot: repository.MARK_UNAVAILABLE $1..$6."""

    event_id: int
    bookmaker_slug: str
    market_id: str
    line: float | None
    captured_at: datetime
    last_seen: datetime | None


class HistoryRow(NamedTuple):
    """One transition: the columns of repository.HISTORY_COLUMNS, in the COPY's order."""

    event_id: int
    captured_at: datetime
    line: float | None
    available: bool
    bookmaker_slug: str
    market_id: str
    outcomes: bytes


class EventRow(NamedTuple):
    """Event metadata: repository.UPSERT_EVENTS / INSERT_EVENTS $1..$9."""

    id: int
    sportradar_id: str | None
    sport: str
    tournament: str
    country: str
    name: str
    home_team: str
    away_team: str
    kickoff: datetime | None


@dataclass(slots=True)
class Plan:
    """What one batch writes, and what the writer knows once it has committed."""

    results: dict[int, Result] = field(default_factory=dict)
    states: dict[Pair, PairState] = field(default_factory=dict)
    current: dict[tuple[Pair, MarketKey], CurrentRow] = field(default_factory=dict)
    unavailable: dict[tuple[Pair, MarketKey], UnavailableRow] = field(default_factory=dict)
    history: list[HistoryRow] = field(default_factory=list)
    advanced: dict[Pair, datetime] = field(default_factory=dict)
    applied: list[int] = field(default_factory=list)

    def counts(self) -> Counts:
        total = Counts()
        for i in self.applied:
            total.add(self.results[i].counts)
        return total


@dataclass(frozen=True, slots=True)
class MetadataPlan:
    home: dict[int, EventRow]  # events whose home-bookmaker metadata changed: authoritative
    created: dict[int, EventRow]  # events only competitors sent so far: created if missing
    links: dict[Pair, str]  # (event, bookmaker) → the bookmaker's own event id, where it changed

    @property
    def empty(self) -> bool:
        return not (self.home or self.created or self.links)


def plan(
    snapshots: Sequence[Observed],
    order: Sequence[int],
    states: Mapping[Pair, PairState],
    rejected_events: Mapping[int, str],
) -> Plan:
    """Classifies the snapshots `order` names (each pair's in capture order) against the stored
    `states`: a snapshot at or before its pair's stored time is superseded, the others become rows."""
    p = Plan(states=dict(states))
    for i in order:
        s = snapshots[i]
        at = s.at
        event_id, slug = pair = s.pair
        state = p.states[pair]
        if event_id in rejected_events:
            p.results[i] = Result(Status.REJECTED, reason=rejected_events[event_id])
            continue
        if state.captured_at is not None and at <= state.captured_at:
            p.results[i] = Result(Status.SUPERSEDED)
            continue
        try:
            markets, transitions, counts = detect(state.markets, s.markets, s.outcomes)
        except codec.ENCODE_ERRORS as exc:  # ingest validates odds; this is the last line
            p.results[i] = Result(Status.REJECTED, reason=f"outcomes cannot be stored: {exc}")
            continue
        for t in transitions:
            key = (pair, t.key)
            market_id, line = t.key
            if t.kind is Kind.UNAVAILABLE:
                p.unavailable[key] = UnavailableRow(event_id, slug, market_id, line, at, state.captured_at)
            else:
                m = s.details(t.key)
                p.current[key] = CurrentRow(
                    event_id, slug, market_id, line, m.market_name, m.handicap_type, m.handicap_home,
                    m.handicap_away, "\x1f".join(m.market_groups), t.outcomes, at,
                )  # fmt: skip
                p.unavailable.pop(key, None)
            p.history.append(
                HistoryRow(event_id, at, line, t.kind is not Kind.UNAVAILABLE, slug, market_id, t.outcomes)
            )
        p.states[pair] = PairState(at, markets)
        p.advanced[pair] = at
        p.results[i] = Result(Status.ACCEPTED, counts)
        p.applied.append(i)
    return p


def plan_metadata(
    applied: Iterable[Observed],
    home_bookmaker: str,
    events: Mapping[int, EventRow],
    created: set[int],
    links: Mapping[Pair, str],
) -> MetadataPlan:
    """The metadata that differs from what was last written (`events` from the home bookmaker,
    `created` from competitors, `links`): steady scraping of known events writes none."""
    home: dict[int, EventRow] = {}
    other: dict[int, EventRow] = {}
    changed_links: dict[Pair, str] = {}
    for s in applied:
        row = event_row(s.event)
        if s.bookmaker == home_bookmaker:
            if events.get(s.event.id) != row:
                home[s.event.id] = row
        elif s.event.id not in events and s.event.id not in created:
            other.setdefault(s.event.id, row)
        if links.get(s.pair) != s.external_event_id:
            changed_links[s.pair] = s.external_event_id
    for event_id in home:
        other.pop(event_id, None)
    return MetadataPlan(home, other, changed_links)


def event_row(e: Event) -> EventRow:
    return EventRow(
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


def feed_changes(p: Plan, metadata: MetadataPlan) -> tuple[list[MarketChange], list[PairAdvance], list[int]]:
    """What a batch publishes to the change feed: every market whose state it changed, as committed (its last
    transition in the batch), every pair whose snapshot time moved (a snapshot without changes still moves
    its pair's confirmation time), and the events whose metadata or links it wrote."""
    last: dict[tuple[Pair, MarketKey], HistoryRow] = {}
    for r in p.history:  # in capture order per pair: the last transition of a market is what was committed
        last[((r.event_id, r.bookmaker_slug), (r.market_id, r.line))] = r
    markets: list[MarketChange] = []
    for key, r in last.items():
        change = MarketChange(r.event_id, r.bookmaker_slug, r.market_id, r.line, r.captured_at, r.available)
        if r.available:
            c = p.current[key]
            change = change._replace(outcomes=c.outcomes, market_name=c.market_name, market_groups=c.market_groups)
        markets.append(change)
    events = {*metadata.home, *metadata.created, *(event_id for event_id, _slug in metadata.links)}
    return markets, [(event_id, slug, at) for (event_id, slug), at in p.advanced.items()], sorted(events)
