"""The pure decisions behind running on Citus: partition DDL, and when a writer batch may need sequential shards."""

from __future__ import annotations

from datetime import UTC, date, datetime
from itertools import combinations

from oddstore.convert import snapshot_to_pb
from oddstore.history_partitions import partition_ddl
from services.writer.grpc_api import observed_from_pb
from services.writer.plan import event_row, plan_metadata
from tests.factories import market, snapshot


def test_on_citus_a_day_partition_is_one_partition_of_statement_with_the_same_bounds_and_the_same_index() -> None:
    plain = partition_ddl(date(2026, 3, 1))
    on_citus = partition_ddl(date(2026, 3, 1), citus=True)
    bounds = "FOR VALUES FROM ('2026-03-01T00:00:00+00:00') TO ('2026-03-02T00:00:00+00:00')"
    index = "CREATE INDEX market_odds_history_p20260301_market_idx ON market_odds_history_p20260301"
    assert on_citus[0] == f"CREATE TABLE market_odds_history_p20260301 PARTITION OF market_odds_history {bounds}"
    assert on_citus[1].startswith(index) and plain[1].startswith(index)
    assert [s.split()[0] for s in plain] == ["CREATE", "CREATE", "ALTER"] and plain[2].endswith(bounds)


def test_a_subset_of_a_batch_needs_metadata_only_if_the_whole_batch_does() -> None:
    """The writer picks sequential shard execution from the whole batch before it knows which snapshots apply:
    correct only if no applied subset can need metadata when the whole batch does not."""
    at = datetime(2026, 3, 1, 12, tzinfo=UTC)
    batch = [
        observed_from_pb(snapshot_to_pb(s))
        for s in (
            snapshot(1, at, [market()]),  # home, known unchanged
            snapshot(2, at, [market()], name="Renamed"),  # home, changed
            snapshot(1, at, [market()], bookmaker="sportybet"),  # competitor of a known event, known link
            snapshot(3, at, [market()], bookmaker="sportybet"),  # competitor of an unknown event
        )
    ]
    known = {1: event_row(batch[0].event), 2: event_row(observed_from_pb(snapshot_to_pb(snapshot(2, at, []))).event)}
    links = {(1, "betpawa"): "10", (1, "sportybet"): "10", (2, "betpawa"): "20", (3, "sportybet"): "30"}

    def needs(indices: tuple[int, ...]) -> bool:
        return not plan_metadata([batch[i] for i in indices], "betpawa", known, set(), links).empty

    steady = {0, 2}
    for size in range(len(batch) + 1):
        for subset in combinations(range(len(batch)), size):
            assert needs(subset) == (not set(subset) <= steady)
            if needs(subset):
                assert needs(tuple(range(len(batch))))
