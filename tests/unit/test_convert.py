"""oddstore.convert's timestamps: the one conversion every service, the gateway and the CLI use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from oddstore.convert import from_timestamp, to_timestamp

# Fixed offsets up to a day either way, seconds and microseconds included (Python allows them).
offsets = st.builds(timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23)))
# A day inside datetime's range at both ends, so that the instant in UTC is representable too.
aware = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=offsets)


def test_a_naive_datetime_is_rejected_rather_than_guessed() -> None:
    with pytest.raises(ValueError, match="no time zone: 2026-02-24T10:00:00"):
        to_timestamp(datetime(2026, 2, 24, 10))


@given(aware)
def test_an_aware_datetime_becomes_the_same_instant_in_utc(value: datetime) -> None:
    ts = to_timestamp(value)
    assert from_timestamp(ts) == value
    reference = Timestamp()
    reference.FromDatetime(value.astimezone(UTC))
    assert (ts.seconds, ts.nanos) == (reference.seconds, reference.nanos)


def test_an_instant_before_1970_keeps_its_fraction_positive() -> None:
    ts = to_timestamp(datetime(1969, 12, 31, 23, 59, 59, 250000, tzinfo=UTC))
    assert (ts.seconds, ts.nanos) == (-1, 250_000_000)


def test_the_ends_of_datetimes_range_convert_without_overflow() -> None:
    assert to_timestamp(datetime.min.replace(tzinfo=UTC)).ToDatetime() == datetime.min
    assert to_timestamp(datetime.max.replace(tzinfo=UTC)).ToDatetime() == datetime.max
