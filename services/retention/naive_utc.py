"""Legacy and cleanup tables keep naive UTC timestamps (the old schema): values cross the repository modules as
aware UTC datetimes and are made naive only where such a column is compared or written."""

from __future__ import annotations

from datetime import UTC, datetime


def naive(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


def aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
