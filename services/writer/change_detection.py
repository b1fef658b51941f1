"""Market-level change detection: pure functions over the last stored state of one event at one
bookmaker and the markets of its next snapshot."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from oddstore.codec import same_outcomes

# (market_id, line) inside one (event, bookmaker); line None is a market without a line, never 0.
MarketKey = tuple[str, float | None]


@dataclass(frozen=True, slots=True)
class Known:
    """The last stored version of a market."""

    outcomes: bytes  # codec encoding, in the order it was stored
    available: bool


class Kind(Enum):
    NEW = "new"
    CHANGED = "changed"
    UNAVAILABLE = "unavailable"  # present before, missing from this snapshot
    RETURNED = "returned"  # unavailable before, present again


@dataclass(frozen=True, slots=True)
class Transition:
    key: MarketKey
    kind: Kind
    outcomes: bytes  # after the transition; for UNAVAILABLE the last known outcomes


@dataclass(slots=True)
class Counts:
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    unavailable: int = 0
    returned: int = 0

    def add(self, other: Counts) -> None:
        self.new += other.new
        self.changed += other.changed
        self.unchanged += other.unchanged
        self.unavailable += other.unavailable
        self.returned += other.returned


def detect(
    previous: Mapping[MarketKey, Known], observed: Mapping[MarketKey, bytes]
) -> tuple[dict[MarketKey, Known], list[Transition], Counts]:
    """Classifies every observed market against `previous` (a snapshot is the complete market
    list, so a known available market missing from `observed` became unavailable).

    Returns the state after the snapshot, the transitions to store (one history row each) and the
    counts. Outcome order is ignored: a reordered but otherwise equal market is unchanged and keeps
    its stored order.
    """
    state = dict(previous)
    transitions: list[Transition] = []
    counts = Counts()
    for key, outcomes in observed.items():
        known = previous.get(key)
        if known is None:
            kind = Kind.NEW
            counts.new += 1
        elif not known.available:
            kind = Kind.RETURNED
            counts.returned += 1
        elif same_outcomes(known.outcomes, outcomes):
            counts.unchanged += 1
            continue
        else:
            kind = Kind.CHANGED
            counts.changed += 1
        state[key] = Known(outcomes, True)
        transitions.append(Transition(key, kind, outcomes))
    for key, known in previous.items():
        if known.available and key not in observed:
            state[key] = Known(known.outcomes, False)
            transitions.append(Transition(key, Kind.UNAVAILABLE, known.outcomes))
            counts.unavailable += 1
    return state, transitions, counts
