"""The writer's protobuf edge builds the same observations as the domain path."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from oddstore import codec
from oddstore.convert import snapshot_to_pb
from services.writer.grpc_api import observed_from_pb
from tests.factories import market, snapshot


def test_duplicate_keys_reject_the_snapshot_and_unstorable_odds_fail_when_encoded() -> None:
    at = datetime(2026, 2, 24, 10, tzinfo=UTC)
    assert "markets[1]: duplicate" in (
        observed_from_pb(snapshot_to_pb(snapshot(1, at, [market(), market()]))).error or ""
    )
    bad = observed_from_pb(snapshot_to_pb(snapshot(1, at, [market(odds=(-2.0, 3.0, 3.0))])))
    with pytest.raises(codec.ENCODE_ERRORS):  # found when needed; the writer then rejects the snapshot
        bad.outcomes(("3743", None))
    line_zero = snapshot_to_pb(snapshot(1, at, [market("3774", None), market("3774", 0.0)]))
    assert set(observed_from_pb(line_zero).markets) == {("3774", None), ("3774", 0.0)}
