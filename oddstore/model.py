"""Snapshot types shared by the services once protobuf is converted at their edge (no I/O here)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple


class Outcome(NamedTuple):
    name: str
    odds: float
    is_active: bool


# Not frozen: about 430,000 markets are built per scrape cycle, and a frozen dataclass costs ~3x
# more to construct (8 us against 2.7 us per market, profiled). Nothing mutates them.
@dataclass(slots=True)
class Market:
    market_id: str
    market_name: str
    line: float | None
    handicap_type: str | None
    handicap_home: float | None
    handicap_away: float | None
    market_groups: tuple[str, ...]
    outcomes: tuple[Outcome, ...]


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    sportradar_id: str
    name: str
    home_team: str
    away_team: str
    kickoff: datetime | None
    tournament: str
    country: str
    sport: str


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One bookmaker's complete market list for one event at `captured_at` (the scrape time)."""

    event: Event
    bookmaker: str
    external_event_id: str
    captured_at: datetime | None
    markets: tuple[Market, ...]
