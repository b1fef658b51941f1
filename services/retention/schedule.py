"""The cleanup schedule: run times at a fixed cadence anchored at UTC midnight, never at process start."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

# Cadences longer than a day count from a fixed Monday midnight, so 168 h means every Monday 00:00 UTC and
# 48 h every other day at midnight, whatever day the process started.
LONG_CADENCE_ANCHOR = datetime(1970, 1, 5, tzinfo=UTC)


def slot_at_or_before(now: datetime, frequency_hours: int) -> datetime:
    """The latest scheduled time at or before `now`.

    Up to 24 h the cadence restarts at every UTC midnight (6 h → 00:00, 06:00, 12:00, 18:00; 5 h → 00:00 …
    20:00 then 00:00 again), so midnight is always a run time; longer cadences count from LONG_CADENCE_ANCHOR.
    """
    if frequency_hours < 1:
        raise ValueError(f"frequency_hours must be at least 1, got {frequency_hours}")
    now = now.astimezone(UTC)
    step = timedelta(hours=frequency_hours)
    if frequency_hours <= 24:
        midnight = datetime.combine(now.date(), time(), UTC)
        return midnight + step * ((now - midnight) // step)
    return LONG_CADENCE_ANCHOR + step * ((now - LONG_CADENCE_ANCHOR) // step)


def next_run(now: datetime, frequency_hours: int) -> datetime:
    """The first scheduled time strictly after `now`."""
    slot = slot_at_or_before(now, frequency_hours)
    following = slot + timedelta(hours=frequency_hours)
    if frequency_hours <= 24:
        tomorrow = datetime.combine(slot.date() + timedelta(days=1), time(), UTC)
        return min(following, tomorrow)
    return following


def due_slot(now: datetime, frequency_hours: int, last_scheduled_start: datetime | None) -> datetime | None:
    """The scheduled time a run is owed for, if no scheduled run has started since it (a missed slot is caught
    up once, not once per missed slot)."""
    slot = slot_at_or_before(now, frequency_hours)
    if last_scheduled_start is not None and last_scheduled_start >= slot:
        return None
    return slot
