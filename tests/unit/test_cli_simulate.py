"""The snapshot simulator: deterministic, realistic in shape, and changing at the configured rate."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from oddstore.v1 import snapshot_pb2
from oddstore_cli.jsonl import parse_line
from oddstore_cli.main import main
from oddstore_cli.simulator import Simulator

T0 = datetime(2026, 2, 24, 10, 0, tzinfo=UTC)
STEP = timedelta(minutes=5)

MarketKey = tuple[int, str, str, float | None]


def keyed(snapshots: list[snapshot_pb2.Snapshot]) -> dict[MarketKey, tuple[tuple[str, float, bool], ...]]:
    return {
        (s.event.id, s.bookmaker, m.market_id, m.line if m.HasField("line") else None): tuple(
            (o.name, o.odds, o.is_active) for o in m.outcomes
        )
        for s in snapshots
        for m in s.markets
    }


def run(simulator: Simulator, cycles: int) -> list[list[snapshot_pb2.Snapshot]]:
    return [simulator.cycle(T0 + n * STEP) for n in range(cycles)]


def test_the_same_seed_gives_the_same_snapshots_and_another_seed_does_not() -> None:
    first = run(Simulator(20, seed=7, start=T0), 3)
    again = run(Simulator(20, seed=7, start=T0), 3)
    other = run(Simulator(20, seed=8, start=T0), 3)
    assert first == again
    assert first != other


def test_every_event_has_all_three_bookmakers_with_about_167_100_67_markets() -> None:
    simulator = Simulator(50, seed=1)
    assert simulator.markets_per_bookmaker == {"betpawa": 167, "sportybet": 100, "bet9ja": 67}
    snapshots = simulator.cycle(T0)
    assert len(snapshots) == 150
    per_bookmaker: dict[str, list[int]] = {}
    for s in snapshots:
        per_bookmaker.setdefault(s.bookmaker, []).append(len(s.markets))
        assert s.captured_at.ToDatetime(tzinfo=UTC) == T0
        assert s.event.kickoff.ToDatetime(tzinfo=UTC) > T0
    for bookmaker, expected in {"betpawa": 167, "sportybet": 100, "bet9ja": 67}.items():
        counts = per_bookmaker[bookmaker]
        assert len(counts) == 50
        assert all(expected * 0.9 <= n <= expected for n in counts), (bookmaker, counts)


def test_the_well_known_markets_have_their_outcomes() -> None:
    snapshot = Simulator(1, seed=2).cycle(T0)[0]
    outcomes = {m.market_id: [o.name for o in m.outcomes] for m in snapshot.markets}
    assert outcomes["3743"] == ["1", "X", "2"]
    assert outcomes["5000"] == ["Over", "Under"]
    assert outcomes["3795"] == ["Yes", "No"]
    assert outcomes["4693"] == ["1X", "X2", "12"]
    assert outcomes["3774"] == ["1", "2"]
    lines = sorted(m.line for m in snapshot.markets if m.market_id == "5000")
    assert lines == [0.5, 1.5, 2.5, 3.5, 4.5, 5.5]


def test_competitors_carry_handicap_fields_and_betpawa_does_not() -> None:
    for snapshot in Simulator(1, seed=2).cycle(T0):
        handicaps = [m for m in snapshot.markets if m.market_id == "3774"]
        assert handicaps
        for m in handicaps:
            if snapshot.bookmaker == "betpawa":
                assert not m.HasField("handicap_type")
            else:
                assert m.handicap_type == "asian"
                assert m.handicap_home == m.line and m.handicap_away == -m.line


def test_about_five_percent_of_markets_change_odds_per_cycle() -> None:
    before, after = (keyed(c) for c in run(Simulator(100, seed=3), 2))
    both = before.keys() & after.keys()
    odds = {k: ([o[1] for o in before[k]], [o[1] for o in after[k]]) for k in both}
    changed = sum(1 for old, new in odds.values() if old != new)
    assert 0.04 <= changed / len(both) <= 0.06


def test_the_change_rate_is_configurable() -> None:
    before, after = (keyed(c) for c in run(Simulator(100, seed=3, change_rate=0.2), 2))
    both = before.keys() & after.keys()
    changed = sum(1 for k in both if [o[1] for o in before[k]] != [o[1] for o in after[k]])
    assert 0.18 <= changed / len(both) <= 0.22


def test_all_odds_are_at_least_1_01_with_a_3_to_8_percent_margin_on_single_outcome_markets() -> None:
    margins = []
    for cycle in run(Simulator(40, seed=4), 4):
        for s in cycle:
            for m in s.markets:
                assert all(o.odds >= 1.01 for o in m.outcomes)
                if m.market_id in ("3743", "5000", "3795"):
                    margins.append(sum(1 / o.odds for o in m.outcomes) - 1)
    margins.sort()
    median = margins[len(margins) // 2]
    assert 0.03 <= median <= 0.08


def test_no_snapshot_repeats_a_market_id_and_line() -> None:
    for s in Simulator(30, seed=5).cycle(T0):
        keys = Counter((m.market_id, m.line if m.HasField("line") else None) for m in s.markets)
        assert max(keys.values()) == 1


def test_markets_that_disappear_come_back_within_three_cycles() -> None:
    cycles = [set(keyed(c)) for c in run(Simulator(60, seed=6), 9)]
    everything = cycles[0]
    gone_in_cycle_two = everything - cycles[1]
    assert gone_in_cycle_two, "some markets should disappear"
    assert len(gone_in_cycle_two) / len(everything) < 0.02
    assert gone_in_cycle_two <= cycles[4] | cycles[5]
    for later in cycles[1:]:
        assert later <= everything


def test_suspensions_happen_but_never_at_bet9ja() -> None:
    suspended: Counter[str] = Counter()
    for cycle in run(Simulator(40, seed=7), 5):
        for s in cycle:
            suspended[s.bookmaker] += sum(1 for m in s.markets if not all(o.is_active for o in m.outcomes))
    assert suspended["betpawa"] > 0 and suspended["sportybet"] > 0
    assert suspended["bet9ja"] == 0


def test_events_replace_those_that_kicked_off() -> None:
    simulator = Simulator(30, seed=8, days=1)
    first = simulator.cycle(T0)
    later = simulator.cycle(T0 + timedelta(hours=12))
    assert all(s.event.kickoff.ToDatetime(tzinfo=UTC) > T0 + timedelta(hours=12) for s in later)
    assert {s.event.id for s in later} != {s.event.id for s in first}
    assert len(later) == len(first)


def test_captured_at_must_be_aware_and_increasing() -> None:
    simulator = Simulator(1, seed=9)
    with pytest.raises(ValueError, match="timezone"):
        simulator.cycle(datetime(2026, 2, 24, 10))
    simulator.cycle(T0)
    with pytest.raises(ValueError, match="not after"):
        simulator.cycle(T0)


def test_the_command_writes_json_lines_of_simulated_time(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    argv = ["simulate", "--events", "2", "--cycles", "2", "--start", "2026-02-24T11:00:00+01:00", "--output"]
    assert main([*argv, str(path)]) == 0
    snapshots = [parse_line(text) for text in path.read_text().splitlines()]
    assert len(snapshots) == 12
    stamps = sorted({s.captured_at.ToDatetime(tzinfo=UTC) for s in snapshots})
    assert stamps == [T0, T0 + timedelta(seconds=300)]
