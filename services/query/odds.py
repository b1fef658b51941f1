"""Outcome odds as the read side sees them, and the bookmaker margin over them."""

from __future__ import annotations

from collections.abc import Iterable

from oddstore import codec

# (name, decimal odds, is_active)
Odds = tuple[str, float, bool]


def decode(outcomes: bytes) -> list[Odds]:
    return [(name, codec.from_milli(milli), active) for name, milli, active in codec.decode(outcomes)]


def margin(outcomes: Iterable[Odds]) -> float | None:
    """(Σ 1/odds − 1) × 100, rounded to 2 places; inactive outcomes count, zero odds do not (UI contract §0)."""
    total = sum(1 / odds for _, odds, _ in outcomes if odds > 0)
    if total == 0:
        return None
    return round((total - 1) * 100, 2)
