"""Market-level change detection: pure functions over the last stored state of one event at one
bookmaker and the markets of its next snapshot."""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
    # The market exactly as last observed (its wire form): an identical observation is unchanged
    # without decoding its outcomes, which is what 95 % of observations are. Empty: not known.
    wire: bytes = b""


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
    previous: Mapping[MarketKey, Known],
    observed: Mapping[MarketKey, bytes],
    outcomes_of: Callable[[MarketKey], bytes] | None = None,
) -> tuple[dict[MarketKey, Known], list[Transition], Counts]:
    """Classifies every observed market against `previous` (a snapshot is the complete market
    list, so a known available market missing from `observed` became unavailable).

    `observed` maps each market to its wire form; `outcomes_of` gives its encoded outcomes, asked
    only when the wire form differs from the last observation (by default the wire form is the
    encoding). Returns the state after the snapshot, the transitions to store (one history row
    each) and the counts. Outcome order is ignored: a reordered but otherwise equal market is
    unchanged and keeps its stored order.
    """
    encoded = observed.__getitem__ if outcomes_of is None else outcomes_of
    state = dict(previous)
    transitions: list[Transition] = []
    counts = Counts()
    for key, wire in observed.items():
        known = previous.get(key)
        if known is not None and known.available and known.wire == wire:
            counts.unchanged += 1
            continue
        outcomes = encoded(key)
        if known is None:
            kind = Kind.NEW
            counts.new += 1
        elif not known.available:
            kind = Kind.RETURNED
            counts.returned += 1
        elif same_outcomes(known.outcomes, outcomes):
            counts.unchanged += 1
            state[key] = Known(known.outcomes, True, wire)  # same odds, new wire form: remember it
            continue
        else:
            kind = Kind.CHANGED
            counts.changed += 1
        state[key] = Known(outcomes, True, wire)
        transitions.append(Transition(key, kind, outcomes))
    for key, known in previous.items():
        if known.available and key not in observed:
            state[key] = Known(known.outcomes, False, known.wire)
            transitions.append(Transition(key, Kind.UNAVAILABLE, known.outcomes))
            counts.unavailable += 1
    return state, transitions, counts
