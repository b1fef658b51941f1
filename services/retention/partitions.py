"""Partition planning for market_odds_history: which daily partitions must exist and which have expired."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from oddstore.history_partitions import partition_name

# The only shape of name this service will ever drop: anything else attached to the table was not made
# from a validated date here, so it is left alone.
_NAME = re.compile(r"market_odds_history_p(\d{8})")


@dataclass(frozen=True, slots=True)
class PartitionDay:
    day: date

    @property
    def name(self) -> str:
        return partition_name(self.day)

    @property
    def start(self) -> datetime:
        return day_start(self.day)

    @property
    def end(self) -> datetime:
        return day_start(self.day + timedelta(days=1))


@dataclass(frozen=True, slots=True)
class AttachedPartition:
    name: str
    day: date | None  # None: not a name this service makes; never dropped
    size_bytes: int
    detach_pending: bool
    columnar: bool = False


def day_start(day: date) -> datetime:
    """UTC midnight of a day: the partition boundaries."""
    return datetime.combine(day, time(), UTC)


def parse_name(name: str) -> date | None:
    """The day of a partition named by partition_name(), or None for any other name (or an invalid date)."""
    match = _NAME.fullmatch(name)
    if match is None:
        return None
    try:
        day = datetime.strptime(match.group(1), "%Y%m%d").date()
    except ValueError:
        return None
    # Round trip: rejects spellings strptime tolerates but partition_name would never produce.
    return day if partition_name(day) == name else None


def utc_today(now: datetime) -> date:
    if now.tzinfo is None:
        raise ValueError(f"now has no time zone: {now.isoformat()}")
    return now.astimezone(UTC).date()


def required_days(now: datetime, horizon_days: int) -> list[date]:
    """Today and the `horizon_days` days after it, in UTC: the partitions that must exist."""
    today = utc_today(now)
    return [today + timedelta(days=i) for i in range(horizon_days + 1)]


def missing_days(now: datetime, horizon_days: int, existing: Iterable[date]) -> list[date]:
    have = set(existing)
    return [d for d in required_days(now, horizon_days) if d not in have]


def days_ahead(now: datetime, existing: Iterable[date]) -> int:
    """Consecutive whole days after today that have a partition (a gap ends the horizon: writes there fail
    over to the writer's on-demand creation)."""
    have = set(existing)
    day, ahead = utc_today(now) + timedelta(days=1), 0
    while day in have:
        ahead += 1
        day += timedelta(days=1)
    return ahead


def odds_cutoff(now: datetime, retention_days: int) -> datetime:
    return now.astimezone(UTC) - timedelta(days=retention_days)


def expired_days(existing: Iterable[date], cutoff: datetime) -> list[date]:
    """Partitions whose whole range is older than the cutoff, oldest first. The day holding the cutoff is
    kept: history is dropped only by whole partitions, never row by row."""
    return sorted(d for d in set(existing) if day_start(d + timedelta(days=1)) <= cutoff)


def closed_days(attached: Iterable[AttachedPartition], now: datetime, after_days: int, grace: timedelta) -> list[date]:
    """The heap days to move to columnar storage, oldest first: day d is closed `grace` after the midnight that
    begins day d + after_days (after_days 1: yesterday and before, once today is `grace` old; 0: never). The grace
    lets snapshots captured just before midnight land while the day is still heap; any later ones are still
    accepted by the columnar day (it takes inserts), so closing never loses a write."""
    if after_days <= 0:
        return []
    return sorted(
        p.day
        for p in attached
        if p.day is not None
        and not p.columnar
        and not p.detach_pending
        and day_start(p.day + timedelta(days=after_days)) + grace <= now
    )
