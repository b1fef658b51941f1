"""Validation of scraped snapshots: pure, and every message names the item and the field."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from oddstore.codec import MAX_NAME_BYTES, MAX_ODDS
from oddstore.model import Market, Snapshot

SLUG = re.compile(r"[a-z][a-z0-9_]{1,31}")
MAX_EVENT_ID = 2**31 - 1  # events.id of the schema we inherit is a 4-byte integer


@dataclass(frozen=True, slots=True)
class Limits:
    max_markets: int = 2000
    max_outcomes: int = 64
    max_future: timedelta = timedelta(minutes=5)
    max_age: timedelta = timedelta(days=14)  # the odds retention window
    max_text: int = 200


class Invalid(ValueError):
    pass


def _finite(value: float | None) -> bool:
    return value is None or math.isfinite(value)


def _text(value: str, field: str, limit: int, *, required: bool = False) -> None:
    if required and not value.strip():
        raise Invalid(f"{field}: required")
    if len(value) > limit:
        raise Invalid(f"{field}: longer than {limit} characters")


def validate_market(m: Market, limits: Limits) -> None:
    _text(m.market_id, "market_id", 32, required=True)
    _text(m.market_name, "market_name", limits.max_text)
    if not _finite(m.line):
        raise Invalid(f"line: must be finite, got {m.line}")
    if not (_finite(m.handicap_home) and _finite(m.handicap_away)):
        raise Invalid("handicap_home/handicap_away: must be finite")
    if m.handicap_type is not None:
        _text(m.handicap_type, "handicap_type", 32)
    for g, group in enumerate(m.market_groups):
        _text(group, f"market_groups[{g}]", 32, required=True)
    if len(m.outcomes) > limits.max_outcomes:
        raise Invalid(f"outcomes: {len(m.outcomes)} outcomes, more than {limits.max_outcomes}")
    names: set[str] = set()
    for j, o in enumerate(m.outcomes):
        if not o.name.strip():
            raise Invalid(f"outcomes[{j}].name: required")
        if len(o.name.encode()) > MAX_NAME_BYTES:
            raise Invalid(f"outcomes[{j}].name: longer than {MAX_NAME_BYTES} bytes")
        if o.name in names:
            raise Invalid(f"outcomes[{j}].name: duplicate outcome {o.name!r}")
        names.add(o.name)
        # 0 marks an outcome offered without a price; anything else is a decimal price.
        if not (math.isfinite(o.odds) and (o.odds == 0 or 1.0 <= o.odds <= MAX_ODDS)):
            raise Invalid(f"outcomes[{j}].odds: must be ≥ 1.0 (or 0 for no price), got {o.odds}")


def validate(s: Snapshot, now: datetime, limits: Limits) -> None:
    """Raises Invalid naming the first offending field of the snapshot."""
    if not SLUG.fullmatch(s.bookmaker):
        raise Invalid(f"bookmaker: {s.bookmaker!r} is not a slug (lowercase letters, digits, _)")
    e = s.event
    if not 1 <= e.id <= MAX_EVENT_ID:
        raise Invalid(f"event.id: must be between 1 and {MAX_EVENT_ID}, got {e.id}")
    _text(e.sportradar_id, "event.sportradar_id", 64, required=True)
    if e.kickoff is None:
        raise Invalid("event.kickoff: required")
    for name in ("name", "home_team", "away_team", "tournament", "country", "sport"):
        _text(getattr(e, name), f"event.{name}", limits.max_text)
    _text(s.external_event_id, "external_event_id", 64)
    if s.captured_at is None:
        raise Invalid("captured_at: required")
    if s.captured_at > now + limits.max_future:
        raise Invalid(f"captured_at: {s.captured_at.isoformat()} is more than {limits.max_future} in the future")
    if s.captured_at < now - limits.max_age:
        raise Invalid(f"captured_at: {s.captured_at.isoformat()} is older than the {limits.max_age.days}-day retention")
    if len(s.markets) > limits.max_markets:
        raise Invalid(f"markets: {len(s.markets)} markets, more than {limits.max_markets}")
    keys: set[tuple[str, float | None]] = set()
    for i, m in enumerate(s.markets):
        key = (m.market_id, m.line)
        try:
            validate_market(m, limits)
            if key in keys:
                raise Invalid("duplicate market in this snapshot")
        except Invalid as exc:
            raise Invalid(f"markets[{i}] (market_id {m.market_id!r}, line {m.line}): {exc}") from None
        keys.add(key)
