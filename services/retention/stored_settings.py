"""The settings row the UI edits: its fields, their valid ranges and how an update applies."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import datetime

from oddstore.platforms import PLATFORMS

# Inclusive ranges of the integer fields, as the UI contract (§e) states them.
RANGES: dict[str, tuple[int, int]] = {
    "scrape_interval_minutes": (1, 60),
    "odds_retention_days": (1, 365),
    "match_retention_days": (1, 365),
    "cleanup_frequency_hours": (1, 168),
    "betpawa_concurrency": (1, 100),
    "sportybet_concurrency": (1, 100),
    "bet9ja_concurrency": (1, 50),
    "bet9ja_delay_ms": (0, 100),
    "batch_size": (10, 200),
    "max_concurrent_events": (1, 50),
}

RETENTION_RANGE = RANGES["odds_retention_days"]


class InvalidSetting(ValueError):
    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field_name = field_name


@dataclass(frozen=True, slots=True)
class StoredSettings:
    scrape_interval_minutes: int
    enabled_platforms: tuple[str, ...]
    odds_retention_days: int
    match_retention_days: int
    cleanup_frequency_hours: int
    betpawa_concurrency: int
    sportybet_concurrency: int
    bet9ja_concurrency: int
    bet9ja_delay_ms: int
    batch_size: int
    max_concurrent_events: int
    updated_at: datetime | None


@dataclass(frozen=True, slots=True)
class SettingsUpdate:
    """Fields left None are not changed; enabled_platforms None means "not sent"."""

    scrape_interval_minutes: int | None = None
    enabled_platforms: tuple[str, ...] | None = None
    odds_retention_days: int | None = None
    match_retention_days: int | None = None
    cleanup_frequency_hours: int | None = None
    betpawa_concurrency: int | None = None
    sportybet_concurrency: int | None = None
    bet9ja_concurrency: int | None = None
    bet9ja_delay_ms: int | None = None
    batch_size: int | None = None
    max_concurrent_events: int | None = None


def check_range(field_name: str, value: int) -> int:
    low, high = RANGES[field_name]
    if not low <= value <= high:
        raise InvalidSetting(field_name, f"must be between {low} and {high}, got {value}")
    return value


def known_platforms(slugs: tuple[str, ...]) -> tuple[str, ...]:
    """Unknown slugs are dropped silently, as the old system did; duplicates too. An empty list is allowed
    (the UI itself keeps one platform on)."""
    seen: list[str] = []
    for slug in slugs:
        if slug in PLATFORMS and slug not in seen:
            seen.append(slug)
    return tuple(seen)


def validated(update: SettingsUpdate) -> SettingsUpdate:
    """The update with ranges checked (InvalidSetting names the first bad field) and platforms filtered."""
    for f in fields(update):
        if f.name in RANGES:
            value = getattr(update, f.name)
            if value is not None:
                check_range(f.name, value)
    if update.enabled_platforms is None:
        return update
    return replace(update, enabled_platforms=known_platforms(update.enabled_platforms))
