"""Ingest validation: every rule, and messages that name the item and field."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import timedelta

import pytest

from oddstore.convert import snapshot_to_pb
from oddstore.model import Outcome, Snapshot
from services.ingest.routing import writer_index
from services.ingest.validation import Invalid, Limits, validate
from tests.factories import event, market, now, snapshot

LIMITS = Limits()


def check(s: Snapshot) -> str:
    with pytest.raises(Invalid) as failure:
        validate(snapshot_to_pb(s), now(), LIMITS)
    return str(failure.value)


def ok(s: Snapshot) -> None:
    validate(snapshot_to_pb(s), now(), LIMITS)


def test_a_well_formed_snapshot_passes() -> None:
    ok(snapshot(1, now(), [market(), market("5000", 2.5, (1.85, 1.95), ("Over", "Under"))]))


@pytest.mark.parametrize("slug", ["BetPawa", "bet pawa", "", "b", "9ja", "bet-9ja"])
def test_a_bookmaker_that_is_not_a_slug_is_rejected(slug: str) -> None:
    assert check(snapshot(1, now(), [market()], bookmaker=slug)).startswith("bookmaker:")


@pytest.mark.parametrize("event_id", [0, -5, 2**31])
def test_event_ids_must_be_positive_and_fit_the_events_table(event_id: int) -> None:
    s = replace(snapshot(1, now(), [market()]), event=event(event_id))
    assert check(s).startswith("event.id:")


@pytest.mark.parametrize("odds", [0.99, -1.0, math.inf, math.nan, 2_000_000.0])
def test_odds_must_be_finite_prices_of_at_least_one(odds: float) -> None:
    message = check(snapshot(1, now(), [market(), market("5000", 2.5, (1.85, odds), ("Over", "Under"))]))
    assert message.startswith("markets[1] (market_id '5000', line 2.5): outcomes[1].odds:")


def test_zero_odds_mark_an_outcome_without_a_price() -> None:
    ok(snapshot(1, now(), [market(odds=(0.0, 3.4, 3.5))]))


def test_empty_market_ids_and_outcome_names_are_rejected() -> None:
    assert "market_id: required" in check(snapshot(1, now(), [market("")]))
    bad = replace(market(), outcomes=(Outcome(" ", 2.0, True),))
    assert "outcomes[0].name: required" in check(snapshot(1, now(), [bad]))


def test_duplicate_markets_and_outcomes_inside_one_snapshot_are_rejected() -> None:
    assert "markets[1]" in check(snapshot(1, now(), [market("5000", 2.5), market("5000", 2.5)]))
    dup = replace(market(), outcomes=(Outcome("1", 2.0, True), Outcome("1", 3.0, True)))
    assert "outcomes[1].name: duplicate" in check(snapshot(1, now(), [dup]))


def test_the_same_market_without_a_line_and_at_line_zero_are_not_duplicates() -> None:
    ok(snapshot(1, now(), [market("3774", None), market("3774", 0.0)]))


def test_captured_at_may_not_be_far_in_the_future_nor_past_retention() -> None:
    assert check(snapshot(1, now() + timedelta(minutes=6), [market()])).startswith("captured_at:")
    ok(snapshot(1, now() + timedelta(minutes=4), [market()]))
    assert "retention" in check(snapshot(1, now() - timedelta(days=15), [market()]))
    assert check(replace(snapshot(1, now(), [market()]), captured_at=None)) == "captured_at: required"


def test_non_finite_lines_and_too_many_markets_are_rejected() -> None:
    assert "line: must be finite" in check(snapshot(1, now(), [market("5000", math.nan)]))
    many = [market(str(i)) for i in range(LIMITS.max_markets + 1)]
    assert check(snapshot(1, now(), many)).startswith("markets: 2001 markets")


def test_the_same_event_always_routes_to_the_same_writer() -> None:
    assert {writer_index(1234, 3) for _ in range(5)} == {writer_index(1234, 3)}
    assert sorted({writer_index(e, 3) for e in range(300)}) == [0, 1, 2]
