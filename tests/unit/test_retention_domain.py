"""The retention domain without a database: partition planning, the anchored schedule, alert rules, settings."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oddstore.history_partitions import partition_name
from services.retention.partitions import (
    AttachedPartition,
    closed_days,
    day_start,
    days_ahead,
    expired_days,
    missing_days,
    parse_name,
    required_days,
)
from services.retention.schedule import due_slot, next_run, slot_at_or_before
from services.retention.storage import growth_alert, sample_due, size_alert
from services.retention.stored_settings import InvalidSetting, SettingsUpdate, validated


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def test_required_days_cross_the_year_boundary_from_today() -> None:
    assert required_days(at(2030, 12, 28, 23, 59), 7) == [date(2030, 12, 28) + timedelta(days=i) for i in range(8)]


def test_required_days_are_utc_days_whatever_the_clock_zone() -> None:
    from datetime import timezone

    lagos_evening = datetime(2031, 3, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))  # 23:30 UTC on Feb 28
    assert required_days(lagos_evening, 1) == [date(2031, 2, 28), date(2031, 3, 1)]


def test_a_naive_now_is_refused() -> None:
    with pytest.raises(ValueError):
        required_days(datetime(2031, 1, 1), 7)


def test_missing_days_and_days_ahead_stop_at_a_gap() -> None:
    now = at(2031, 1, 30, 12)
    have = [date(2031, 1, 30), date(2031, 1, 31), date(2031, 2, 2)]
    assert missing_days(now, 3, have) == [date(2031, 2, 1)]
    assert days_ahead(now, have) == 1
    assert days_ahead(now, []) == 0


def test_expired_days_keep_the_day_holding_the_cutoff() -> None:
    days = [date(2031, 1, d) for d in range(1, 11)]
    assert expired_days(days, at(2031, 1, 5, 12)) == [date(2031, 1, d) for d in range(1, 5)]
    assert expired_days(days, at(2031, 1, 5)) == [date(2031, 1, d) for d in range(1, 5)]  # Jan 4 ends at Jan 5 00:00


@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2999, 12, 31)))
def test_partition_names_round_trip_through_validated_dates(day: date) -> None:
    assert parse_name(partition_name(day)) == day


@pytest.mark.parametrize(
    "name",
    [
        "market_odds_history_p20310230",
        "market_odds_history_p2031011",
        "market_odds_history_p20310101x",
        "market_odds_history_p20310101; DROP TABLE events",
        "odds_snapshots_default",
        "market_odds_history_p+2031011",
    ],
)
def test_other_names_are_never_taken_for_a_partition_of_ours(name: str) -> None:
    assert parse_name(name) is None


@pytest.mark.parametrize(
    ("now", "hours", "slot", "following"),
    [
        (at(2031, 5, 10, 5, 59), 6, at(2031, 5, 10, 0), at(2031, 5, 10, 6)),
        (at(2031, 5, 10, 6, 0), 6, at(2031, 5, 10, 6), at(2031, 5, 10, 12)),
        (at(2031, 5, 10, 23, 0), 6, at(2031, 5, 10, 18), at(2031, 5, 11, 0)),
        (at(2031, 5, 10, 23, 0), 5, at(2031, 5, 10, 20), at(2031, 5, 11, 0)),  # restarts at midnight
        (at(2031, 5, 10, 13, 0), 24, at(2031, 5, 10), at(2031, 5, 11)),
        (at(2031, 5, 10, 13, 0), 168, at(2031, 5, 5), at(2031, 5, 12)),  # Mondays
    ],
)
def test_slots_are_anchored_at_utc_midnight(now: datetime, hours: int, slot: datetime, following: datetime) -> None:
    assert slot_at_or_before(now, hours) == slot
    assert next_run(now, hours) == following


@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
    st.integers(1, 168),
)
def test_the_slot_is_never_after_now_and_the_next_run_is_after_it(now: datetime, hours: int) -> None:
    slot = slot_at_or_before(now, hours)
    assert slot <= now < next_run(now, hours) <= slot + timedelta(hours=hours)
    assert slot.minute == slot.second == slot.microsecond == 0


def test_a_run_is_due_once_per_slot() -> None:
    now = at(2031, 5, 10, 6, 30)
    assert due_slot(now, 6, None) == at(2031, 5, 10, 6)
    assert due_slot(now, 6, at(2031, 5, 10, 5, 59)) == at(2031, 5, 10, 6)
    assert due_slot(now, 6, at(2031, 5, 10, 6, 0, 1)) is None


def test_growth_and_size_alert_rules() -> None:
    assert growth_alert(None, 10, 20) is None
    assert growth_alert(100, 120, 20) is None  # exactly 20 % is not over
    alert = growth_alert(2_690_000_000, 3_318_000_000, 20)
    assert alert is not None and alert.alert_type == "growth_warning" and alert.growth_percent == 23.35
    assert alert.message == "Database grew 23.3% since last sample (2.51 GB → 3.09 GB)"
    assert size_alert(100, 100, False) is None
    assert size_alert(101, 100, True) is None
    critical = size_alert(101, 100, False)
    assert critical is not None and critical.alert_type == "size_critical" and critical.growth_percent == 0


def test_samples_are_due_once_per_utc_day() -> None:
    assert sample_due(at(2031, 1, 1), None)
    assert not sample_due(at(2031, 1, 1, 23, 59), at(2031, 1, 1, 0, 1))
    assert sample_due(at(2031, 1, 2, 0, 0), at(2031, 1, 1, 23, 59))


def test_settings_validation_names_the_field_and_filters_platforms() -> None:
    with pytest.raises(InvalidSetting, match="cleanup_frequency_hours: must be between 1 and 168, got 0"):
        validated(SettingsUpdate(cleanup_frequency_hours=0))
    assert validated(SettingsUpdate(bet9ja_delay_ms=0)).bet9ja_delay_ms == 0
    cleaned = validated(SettingsUpdate(enabled_platforms=("betpawa", "x", "betpawa", "sportybet")))
    assert cleaned.enabled_platforms == ("betpawa", "sportybet")
    assert validated(SettingsUpdate()).enabled_platforms is None


def heap(day: date, *, columnar: bool = False, pending: bool = False) -> AttachedPartition:
    return AttachedPartition(partition_name(day), day, 0, pending, columnar)


def test_closed_days_are_yesterday_and_before_once_the_grace_has_passed() -> None:
    attached = [heap(date(2031, 1, d)) for d in range(1, 8)]
    grace = timedelta(hours=1)
    assert closed_days(attached, at(2031, 1, 7, 0, 59), 1, grace) == [date(2031, 1, d) for d in range(1, 6)]
    assert closed_days(attached, at(2031, 1, 7, 1), 1, grace) == [date(2031, 1, d) for d in range(1, 7)]
    assert closed_days(attached, at(2031, 1, 7, 1), 3, grace) == [date(2031, 1, d) for d in range(1, 5)]
    assert closed_days(attached, at(2031, 1, 7, 1), 0, grace) == []


def test_closed_days_skip_columnar_detaching_and_foreign_partitions() -> None:
    attached = [
        heap(date(2031, 1, 3)),
        heap(date(2031, 1, 1), columnar=True),
        heap(date(2031, 1, 2), pending=True),
        AttachedPartition("market_odds_history_legacy", None, 0, False),
        heap(date(2031, 1, 4)),
    ]
    assert closed_days(attached, at(2031, 1, 9), 1, timedelta()) == [date(2031, 1, 3), date(2031, 1, 4)]


@given(st.dates(date(2020, 1, 1), date(2040, 1, 1)), st.integers(0, 30), st.integers(0, 1440))
def test_a_closed_day_never_includes_today(today: date, after_days: int, grace_minutes: int) -> None:
    attached = [heap(today + timedelta(days=k)) for k in range(-40, 3)]
    now = day_start(today) + timedelta(hours=23, minutes=59)
    days = closed_days(attached, now, after_days, timedelta(minutes=grace_minutes))
    assert all(d <= today - timedelta(days=after_days) for d in days) and today not in days
