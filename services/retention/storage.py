"""Storage monitoring rules: when to sample, and which alerts a new sample or size raises."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

GROWTH_WARNING = "growth_warning"
SIZE_CRITICAL = "size_critical"
SAMPLES_KEPT = 90


@dataclass(frozen=True, slots=True)
class TableSize:
    table_name: str
    size_bytes: int
    size_human: str
    row_count: int
    partitions: tuple[TableSize, ...] = ()


@dataclass(frozen=True, slots=True)
class NewAlert:
    alert_type: str
    message: str
    current_bytes: int
    previous_bytes: int | None
    growth_percent: float


@dataclass(frozen=True, slots=True)
class Sample:
    id: int
    sampled_at: datetime
    total_bytes: int
    table_sizes: dict[str, int]


@dataclass(frozen=True, slots=True)
class Alert:
    id: int
    created_at: datetime
    alert_type: str
    message: str
    current_bytes: int
    previous_bytes: int
    growth_percent: float
    resolved_at: datetime | None


def gigabytes(n: int) -> str:
    return f"{n / 1024**3:.2f} GB"


def sample_due(now: datetime, last_sampled_at: datetime | None) -> bool:
    """One sample per UTC day."""
    return last_sampled_at is None or last_sampled_at.astimezone(UTC).date() < now.astimezone(UTC).date()


def growth_alert(previous_bytes: int | None, current_bytes: int, warning_percent: float) -> NewAlert | None:
    """A warning when the database grew more than `warning_percent` since the previous sample."""
    if not previous_bytes or previous_bytes <= 0:
        return None
    growth = (current_bytes - previous_bytes) / previous_bytes * 100
    if growth <= warning_percent:
        return None
    return NewAlert(
        GROWTH_WARNING,
        f"Database grew {growth:.1f}% since last sample ({gigabytes(previous_bytes)} → {gigabytes(current_bytes)})",
        current_bytes,
        previous_bytes,
        round(growth, 2),
    )


def size_alert(current_bytes: int, critical_bytes: int, critical_open: bool) -> NewAlert | None:
    """A critical alert when the database exceeds `critical_bytes`; at most one stays open."""
    if critical_open or current_bytes <= critical_bytes:
        return None
    return NewAlert(
        SIZE_CRITICAL,
        f"Database size {gigabytes(current_bytes)} exceeds the critical threshold of {gigabytes(critical_bytes)}",
        current_bytes,
        None,
        0.0,
    )
