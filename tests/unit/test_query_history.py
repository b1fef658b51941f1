"""The pure rules of history reads: merging, collapsing, confirmation, state at an instant, margins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from oddstore import codec
from services.query.history import (
    DEFAULT_OFFSETS,
    OffsetMargin,
    OffsetOdds,
    Point,
    average_margins,
    between,
    collapse,
    latest,
    merge,
    state_at,
)
from services.query.odds import Odds, decode, margin

T0 = datetime(2026, 2, 23, 8, 0, tzinfo=UTC)
A: tuple[Odds, ...] = (("1", 2.1, True), ("X", 3.4, True), ("2", 3.5, True))
B: tuple[Odds, ...] = (("1", 2.2, True), ("X", 3.3, True), ("2", 3.4, True))


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def p(minutes: int, outcomes: tuple[Odds, ...] = A, available: bool = True, confirmed: bool = False) -> Point:
    return Point(at(minutes), outcomes, available, None if available else at(minutes), confirmed)


def test_margin_follows_the_contract_formula() -> None:
    # 1/2.1 + 1/3.4 + 1/3.5 = 1.05602...
    assert margin(A) == 5.6
    assert margin([("Over", 1.9, True), ("Under", 1.95, True)]) == 3.91


def test_margin_counts_inactive_outcomes_and_skips_zero_odds() -> None:
    assert margin([("1", 2.0, False), ("2", 2.0, True)]) == 0.0
    assert margin([("1", 2.0, True), ("2", 2.0, True), ("X", 0.0, True)]) == 0.0


def test_margin_is_none_without_outcomes_or_priced_outcomes() -> None:
    assert margin([]) is None
    assert margin([("1", 0.0, True)]) is None


def test_decode_gives_decimal_odds_from_the_stored_encoding() -> None:
    data = codec.encode([("Over", 1850, True), ("Under", 1950, False)])
    assert decode(data) == (("Over", 1.85, True), ("Under", 1.95, False))


@given(st.lists(st.tuples(st.text(max_size=8), st.integers(0, 2**31 - 1), st.booleans()), max_size=5))
def test_decoding_in_one_pass_gives_what_decoding_then_scaling_gives(outcomes: list[tuple[str, int, bool]]) -> None:
    data = codec.encode([(name[:60], milli, active) for name, milli, active in outcomes])
    assert decode(data) == tuple((n, codec.from_milli(m), a) for n, m, a in codec.decode(data))


def test_a_point_exposes_its_margin() -> None:
    assert p(0).margin == 5.6


def test_the_same_point_in_both_sources_appears_once() -> None:
    assert merge([p(0), p(10, B)], [p(0)], None) == [p(0), p(10, B)]


def test_points_at_the_same_time_with_different_odds_are_both_kept() -> None:
    merged = merge([p(5, B)], [p(5, A)], None)
    assert [(x.captured_at, x.outcomes) for x in merged] == [(at(5), A), (at(5), B)]


def test_the_same_odds_in_another_order_are_the_same_point() -> None:
    assert merge([p(0)], [p(0, tuple(reversed(A)))], None) == [p(0)]


def test_consecutive_identical_legacy_points_collapse_into_the_first() -> None:
    legacy = [p(0), p(5), p(10, B), p(15, B), p(20), p(25, A, available=False), p(30, A, available=False)]
    assert collapse(legacy) == [p(0), p(10, B), p(20), p(25, A, available=False)]
    assert merge([], legacy, None) == collapse(legacy)


def test_a_legacy_point_equal_to_the_previous_new_point_is_kept_when_times_differ() -> None:
    # Only the same point (time and odds) merges across sources.
    assert merge([p(0)], [p(5)], None) == [p(0), p(5)]


def test_merged_points_are_sorted_by_time() -> None:
    merged = merge([p(20, B), p(40)], [p(0), p(30, B)], None)
    assert [x.captured_at for x in merged] == [at(0), at(20), at(30), at(40)]


def test_a_confirmation_later_than_the_last_point_is_appended() -> None:
    confirmation = p(60, B, confirmed=True)
    assert merge([p(0), p(10, B)], [], confirmation)[-1] == confirmation


def test_a_confirmation_not_later_than_the_last_point_is_not_appended() -> None:
    assert merge([p(0), p(10, B)], [], p(10, B, confirmed=True)) == [p(0), p(10, B)]
    assert merge([p(0), p(10, B)], [], p(5, B, confirmed=True)) == [p(0), p(10, B)]


def test_a_confirmation_alone_is_the_history_when_there_are_no_points() -> None:
    confirmation = p(60, B, available=False, confirmed=True)
    assert merge([], [], confirmation) == [confirmation]


def test_no_points_and_no_current_state_is_an_empty_history() -> None:
    assert merge([], [], None) == []


def test_time_bounds_are_inclusive() -> None:
    points = [p(0), p(10, B), p(20)]
    assert between(points, at(10), at(20)) == [p(10, B), p(20)]
    assert between(points, None, at(10)) == [p(0), p(10, B)]
    assert between(points, None, None) == points


def test_state_at_is_the_last_point_at_or_before_the_instant() -> None:
    points = [p(0), p(10, B), p(20, B, available=False)]
    assert state_at(points, at(-1)) is None
    assert state_at(points, at(0)) == p(0)
    assert state_at(points, at(15)) == p(10, B)
    assert state_at(points, at(99)) == p(20, B, available=False)


def test_latest_prefers_the_later_state_and_the_new_table_on_a_tie() -> None:
    assert latest(p(0), p(5, B)) == p(5, B)
    assert latest(p(5), p(0, B)) == p(5)
    assert latest(p(5, A), p(5, B)) == p(5, A)
    assert latest(None, p(5, B)) == p(5, B)
    assert latest(None, None) is None


def offset_odds(
    offset: timedelta, outcomes: tuple[Odds, ...], has_data: bool = True, available: bool = True
) -> OffsetOdds:
    return OffsetOdds(offset, T0 - offset, has_data, outcomes, available)


def test_average_margins_average_only_priced_states_per_offset() -> None:
    day, hour = timedelta(days=1), timedelta(hours=1)
    points = [
        offset_odds(day, A),
        offset_odds(day, B),
        offset_odds(day, (), has_data=False),
        offset_odds(day, A, available=False),
        offset_odds(hour, (("1", 0.0, True),)),  # no margin
    ]
    expected_day = round((margin(A) or 0) / 2 + (margin(B) or 0) / 2, 2)
    assert average_margins([day, hour, timedelta(0)], points) == (
        OffsetMargin(day, expected_day, 2),
        OffsetMargin(hour, None, 0),
        OffsetMargin(timedelta(0), None, 0),
    )


def test_default_offsets_run_from_a_week_to_kickoff() -> None:
    assert DEFAULT_OFFSETS == (
        timedelta(days=7),
        timedelta(days=3),
        timedelta(hours=24),
        timedelta(hours=6),
        timedelta(hours=1),
        timedelta(0),
    )
