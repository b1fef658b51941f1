"""JSON Lines parsing of snapshots: structure, types and time zones."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from oddstore_cli.jsonl import ParseError, parse_line, parse_snapshot, snapshot_to_json
from oddstore_cli.simulator import Simulator

LINE: dict[str, Any] = {
    "event": {
        "id": 1234,
        "sportradar_id": "sr:match:5678",
        "name": "Arsenal - Chelsea",
        "home_team": "Arsenal",
        "away_team": "Chelsea",
        "kickoff": "2026-02-28T15:00:00Z",
        "tournament": "Premier League",
        "country": "England",
        "sport": "Football",
    },
    "bookmaker": "betpawa",
    "external_event_id": "31415",
    "captured_at": "2026-02-24T10:05:00Z",
    "markets": [
        {
            "market_id": "5000",
            "market_name": "Over/Under - Full Time",
            "line": 2.5,
            "handicap_type": None,
            "handicap_home": None,
            "handicap_away": None,
            "market_groups": ["goals"],
            "outcomes": [
                {"name": "Over", "odds": 1.85, "is_active": True},
                {"name": "Under", "odds": 1.95, "is_active": True},
            ],
        }
    ],
}


def line(**changes: Any) -> dict[str, Any]:
    value = copy.deepcopy(LINE)
    value.update(changes)
    return value


def market(**changes: Any) -> dict[str, Any]:
    value: dict[str, Any] = copy.deepcopy(LINE["markets"][0])
    value.update(changes)
    return value


def test_a_valid_line_parses_and_converts_back_to_the_same_json() -> None:
    snapshot = parse_line(json.dumps(LINE))
    assert snapshot.event.id == 1234
    assert snapshot.captured_at.ToDatetime(tzinfo=UTC) == datetime(2026, 2, 24, 10, 5, tzinfo=UTC)
    assert snapshot.markets[0].line == 2.5
    assert not snapshot.markets[0].HasField("handicap_type")
    assert [(o.name, o.odds, o.is_active) for o in snapshot.markets[0].outcomes] == [
        ("Over", 1.85, True),
        ("Under", 1.95, True),
    ]
    assert snapshot_to_json(snapshot) == LINE
    assert parse_snapshot(snapshot_to_json(snapshot)) == snapshot


def test_simulated_snapshots_survive_a_json_round_trip() -> None:
    for snapshot in Simulator(2, seed=1).cycle(datetime(2026, 2, 24, 10, tzinfo=UTC)):
        assert parse_line(json.dumps(snapshot_to_json(snapshot))) == snapshot


def test_a_null_line_is_unset_while_a_zero_line_is_set() -> None:
    absent = parse_snapshot(line(markets=[market(line=None)])).markets[0]
    missing_key = {k: v for k, v in market().items() if k != "line"}
    omitted = parse_snapshot(line(markets=[missing_key])).markets[0]
    zero = parse_snapshot(line(markets=[market(line=0)])).markets[0]
    assert not absent.HasField("line")
    assert not omitted.HasField("line")
    assert zero.HasField("line") and zero.line == 0.0
    assert snapshot_to_json(parse_snapshot(line(markets=[market(line=0)])))["markets"][0]["line"] == 0.0
    assert snapshot_to_json(parse_snapshot(line(markets=[market(line=None)])))["markets"][0]["line"] is None


def test_handicap_fields_are_set_only_when_present() -> None:
    parsed = parse_snapshot(
        line(markets=[market(handicap_type="asian", handicap_home=0.0, handicap_away=-0.0)])
    ).markets[0]
    assert parsed.HasField("handicap_type") and parsed.handicap_type == "asian"
    assert parsed.HasField("handicap_home") and parsed.HasField("handicap_away")


def test_is_active_defaults_to_true() -> None:
    outcomes = [{"name": "Over", "odds": 1.85}, {"name": "Under", "odds": 1.95, "is_active": False}]
    parsed = parse_snapshot(line(markets=[market(outcomes=outcomes)])).markets[0]
    assert [o.is_active for o in parsed.outcomes] == [True, False]


def test_offsets_are_converted_to_utc() -> None:
    parsed = parse_snapshot(line(captured_at="2026-02-24T11:05:00.250+01:00"))
    assert parsed.captured_at.ToDatetime(tzinfo=UTC) == datetime(2026, 2, 24, 10, 5, 0, 250000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            line(captured_at="2026-02-24T10:05:00"),
            "captured_at: timestamp has no time zone: '2026-02-24T10:05:00'",
        ),
        (
            line(event={**LINE["event"], "kickoff": "2026-02-28 15:00:00"}),
            "event.kickoff: timestamp has no time zone",
        ),
        (line(captured_at="yesterday"), "captured_at: not an RFC 3339 timestamp"),
        (line(captured_at=1771927500), "captured_at: expected an RFC 3339 timestamp string"),
    ],
)
def test_timestamps_without_a_zone_or_in_another_format_are_rejected(value: Any, message: str) -> None:
    with pytest.raises(ParseError, match="^" + message.replace("(", r"\(")):
        parse_snapshot(value)


def _outcomes(second_odds: Any) -> list[dict[str, Any]]:
    return [{"name": "Over", "odds": 1.85}, {"name": "Under", "odds": second_odds}]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            line(markets=[market()] * 3 + [market(outcomes=_outcomes("1.95"))]),
            "markets[3].outcomes[1].odds: expected a number",
        ),
        (line(markets=[market(outcomes=_outcomes(True))]), "markets[0].outcomes[1].odds: expected a number"),
        (line(markets=[market(outcomes=_outcomes(None))]), "markets[0].outcomes[1].odds: missing"),
        (line(event={k: v for k, v in LINE["event"].items() if k != "id"}), "event.id: missing"),
        (line(event={**LINE["event"], "id": "1234"}), "event.id: expected an integer"),
        (line(event={**LINE["event"], "id": 12.5}), "event.id: expected an integer"),
        (line(event=[1234]), "event: expected an object"),
        (line(markets={"market_id": "5000"}), "markets: expected a list"),
        (line(markets=["5000"]), "markets[0]: expected an object"),
        (line(markets=[market(market_id=5000)]), "markets[0].market_id: expected a string"),
        (line(markets=[market(line="2.5")]), "markets[0].line: expected a number"),
        (
            line(markets=[market(market_groups=["goals", 3])]),
            "markets[0].market_groups[1]: expected a string",
        ),
        (line(markets=[{**market(), "lines": 2.5}]), "markets[0]: unknown field 'lines'"),
        (line(bookmaker=None), "bookmaker: missing"),
        (
            line(markets=[market(outcomes=[{"name": "Over", "odds": 1.5, "is_active": "yes"}])]),
            "markets[0].outcomes[0].is_active: expected true or false",
        ),
    ],
)
def test_wrong_types_name_the_field_path(value: Any, message: str) -> None:
    with pytest.raises(ParseError) as raised:
        parse_snapshot(value)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2]", "expected a JSON object"),
        ('{"event": ', "invalid JSON"),
        (b"\xff\xfe{}", "not valid UTF-8"),
        ('{"event": {"id": 1}, "odds": NaN}', "unknown field 'odds'"),
    ],
)
def test_lines_that_are_not_json_objects_are_rejected(text: str | bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_line(text)


def test_non_finite_numbers_are_rejected() -> None:
    with pytest.raises(ParseError, match=r"^markets\[0\]\.outcomes\[0\]\.odds: expected a finite number"):
        parse_line(json.dumps(line(markets=[market(outcomes=[{"name": "Over", "odds": float("inf")}])])))


@pytest.mark.parametrize(
    ("replaced", "by", "message"),
    [
        (
            '"Arsenal - Chelsea"',
            r'"Arsenal\ud800"',
            r"^event\.name: contains a lone surrogate \(U\+D800\) at position 7$",
        ),
        (
            '"Arsenal - Chelsea"',
            r'"Arsenal\u0000"',
            r"^event\.name: contains a NUL character \(U\+0000\) at position 7$",
        ),
        ('["goals"]', r'["\udfff"]', r"^markets\[0\]\.market_groups\[0\]: contains a lone surrogate"),
        ('"Over"', r'"Over\u0000"', r"^markets\[0\]\.outcomes\[0\]\.name: contains a NUL character"),
    ],
)
def test_text_that_no_database_can_store_names_its_field(replaced: str, by: str, message: str) -> None:
    # JSON escapes that json.dumps never writes for these characters, so the line is edited as text.
    with pytest.raises(ParseError, match=message):
        parse_line(json.dumps(LINE).replace(replaced, by, 1))
