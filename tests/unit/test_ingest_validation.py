"""Ingest validation: every rule, and messages that name the item and field."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
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


def test_captured_at_in_messages_is_utc_whatever_the_machine_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    at = (now() - timedelta(days=15)).replace(hour=10, minute=5, second=0)
    monkeypatch.setenv("TZ", "Africa/Lagos")  # UTC+1: a local rendering would say 11:05
    time.tzset()
    try:
        message = check(snapshot(1, at, [market()]))
    finally:
        monkeypatch.undo()
        time.tzset()
    assert f"captured_at: {at.strftime('%Y-%m-%d')}T10:05:00Z is older" in message


TEXT_FIELDS: list[tuple[str, Callable[[str], Snapshot]]] = [
    ("event.name", lambda v: snapshot(1, now(), [market()], name=v)),
    ("event.home_team", lambda v: snapshot(1, now(), [market()], home_team=v)),
    ("event.away_team", lambda v: snapshot(1, now(), [market()], away_team=v)),
    ("event.tournament", lambda v: snapshot(1, now(), [market()], tournament=v)),
    ("event.country", lambda v: snapshot(1, now(), [market()], country=v)),
    ("event.sport", lambda v: snapshot(1, now(), [market()], sport=v)),
    ("event.sportradar_id", lambda v: snapshot(1, now(), [market()], sportradar_id=v)),
    ("external_event_id", lambda v: replace(snapshot(1, now(), [market()]), external_event_id=v)),
    ("markets[0] (market_id 'x", lambda v: snapshot(1, now(), [market("x" + v)])),
    ("markets[0] (market_id '3743', line None): market_name", lambda v: snapshot(1, now(), [market(name=v)])),
    (
        "markets[0] (market_id '3743', line None): handicap_type",
        lambda v: snapshot(1, now(), [replace(market(), handicap_type=v)]),
    ),
    (
        "markets[0] (market_id '3743', line None): market_groups[0]",
        lambda v: snapshot(1, now(), [replace(market(), market_groups=(v,))]),
    ),
    (
        "markets[0] (market_id '3743', line None): outcomes[1].name",
        lambda v: snapshot(1, now(), [market(names=("1", v, "2"))]),
    ),
]


@pytest.mark.parametrize(("field", "build"), TEXT_FIELDS, ids=[f for f, _ in TEXT_FIELDS])
def test_a_nul_in_any_text_field_rejects_the_snapshot_naming_that_field(
    field: str, build: Callable[[str], Snapshot]
) -> None:
    message = check(build("ok\x00"))
    assert message.startswith(field) and "contains a NUL character (U+0000)" in message


def test_country_and_sport_follow_the_inherited_columns_of_100_characters() -> None:
    ok(snapshot(1, now(), [market()], country="x" * 100, tournament="t" * 200))
    assert check(snapshot(1, now(), [market()], country="x" * 101)).startswith("event.country: longer than 100")
    assert check(snapshot(1, now(), [market()], sport="x" * 101)).startswith("event.sport: longer than 100")
