"""The write path end to end: real ingest and writer gRPC servers on loopback over real PostgreSQL."""

from __future__ import annotations

import io
import json
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oddstore.convert import snapshot_to_pb
from oddstore.model import Snapshot
from oddstore.v1 import ingest_pb2, ingest_pb2_grpc, snapshot_pb2
from services.ingest import bootstrap as ingest_bootstrap
from services.ingest.config import IngestSettings
from services.writer import bootstrap as writer_bootstrap
from services.writer.config import WriterSettings
from tests.factories import market, new_event_id, now, snapshot
from tests.proxy import Proxy

ACCEPTED = snapshot_pb2.SNAPSHOT_STATUS_ACCEPTED
REJECTED = snapshot_pb2.SNAPSHOT_STATUS_REJECTED
SUPERSEDED = snapshot_pb2.SNAPSHOT_STATUS_SUPERSEDED


class Stack:
    def __init__(self, ingest: ingest_bootstrap.IngestApp, writer: writer_bootstrap.WriterApp, proxy: Proxy):
        self.ingest = ingest
        self.writer = writer
        self.proxy = proxy
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{ingest.server.port}")
        self.stub = ingest_pb2_grpc.IngestServiceStub(self.channel)

    async def submit(self, snapshots: list[snapshot_pb2.Snapshot]) -> ingest_pb2.SubmitSnapshotsResponse:
        response: ingest_pb2.SubmitSnapshotsResponse = await self.stub.SubmitSnapshots(
            ingest_pb2.SubmitSnapshotsRequest(snapshots=snapshots), timeout=30
        )
        return response


@pytest.fixture
async def stack(migrated_dsn: str) -> AsyncIterator[Stack]:
    # The writer reaches PostgreSQL through a proxy the test can cut.
    url = urlsplit(migrated_dsn)
    proxy = Proxy(url.hostname or "127.0.0.1", url.port or 5432)
    await proxy.start()
    proxied = urlunsplit(url._replace(netloc=f"{url.username}@127.0.0.1:{proxy.port}"))
    writer = await writer_bootstrap.start(WriterSettings(database_url=proxied, listen="127.0.0.1:0"))
    ingest = await ingest_bootstrap.start(
        IngestSettings(listen="127.0.0.1:0", writers=f"127.0.0.1:{writer.server.port}", writer_retry_seconds=1.0)
    )
    s = Stack(ingest, writer, proxy)
    yield s
    await s.channel.close()
    await ingest.stop(1)
    await writer.stop(1)
    await proxy.cut()


async def test_both_servers_report_serving_on_the_standard_health_service(stack: Stack) -> None:
    for port in (stack.ingest.server.port, stack.writer.server.port):
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_replayed_jsonl_lands_in_the_database(stack: Stack, migrated_dsn: str, tmp_path: Path) -> None:
    from oddstore_cli.jsonl import parse_line

    e, t = new_event_id(), now() - timedelta(minutes=15)
    lines = []
    for k in range(3):
        at = (t + timedelta(minutes=5 * k)).isoformat().replace("+00:00", "Z")
        lines.append(json.dumps({
            "event": {"id": e, "sportradar_id": f"sr:match:{e}", "name": "Arsenal - Chelsea",
                      "home_team": "Arsenal", "away_team": "Chelsea", "kickoff": "2030-02-28T15:00:00Z",
                      "tournament": "Premier League", "country": "England", "sport": "Football"},
            "bookmaker": "betpawa", "external_event_id": "31415", "captured_at": at,
            "markets": [{"market_id": "5000", "market_name": "Over/Under - Full Time", "line": 2.5,
                         "handicap_type": None, "handicap_home": None, "handicap_away": None,
                         "market_groups": ["goals"],
                         "outcomes": [{"name": "Over", "odds": 1.85 + (k == 2) * 0.1, "is_active": True},
                                      {"name": "Under", "odds": 1.95, "is_active": True}]}],
        }))  # fmt: skip
    response = await stack.submit([parse_line(line) for line in lines])
    assert [r.status for r in response.results] == [ACCEPTED] * 3
    assert [r.counts.new for r in response.results] == [1, 0, 0]
    assert [r.counts.changed for r in response.results] == [0, 0, 1]
    conn = await asyncpg.connect(migrated_dsn)
    try:
        rows = await conn.fetch("SELECT captured_at FROM market_odds_history WHERE event_id = $1", e)
        assert sorted(r[0] for r in rows) == [t, t + timedelta(minutes=10)]
        assert await conn.fetchval("SELECT count(*) FROM market_odds_current WHERE event_id = $1", e) == 1
    finally:
        await conn.close()


async def test_invalid_snapshots_are_rejected_by_name_and_never_partly_written(stack: Stack, migrated_dsn: str) -> None:
    good, bad, t = new_event_id(), new_event_id(), now()
    bad_market = market("5000", 2.5, (1.85, 0.5), ("Over", "Under"))
    response = await stack.submit(
        [
            snapshot_to_pb(snapshot(good, t, [market()])),
            snapshot_to_pb(snapshot(bad, t, [market(), bad_market])),
        ]
    )
    assert [r.status for r in response.results] == [ACCEPTED, REJECTED]
    assert "markets[1] (market_id '5000', line 2.5): outcomes[1].odds" in response.results[1].reason
    conn = await asyncpg.connect(migrated_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM market_odds_current WHERE event_id = $1", bad) == 0
    finally:
        await conn.close()


async def test_a_wholly_bad_batch_answers_each_snapshot_with_its_own_reason(stack: Stack) -> None:
    t = now()
    response = await stack.submit(
        [
            snapshot_to_pb(snapshot(new_event_id(), t, [market()], bookmaker="Bet Pawa!")),
            snapshot_to_pb(snapshot(new_event_id(), t, [market(odds=(0.5, 3.0, 3.0))])),
        ]
    )
    assert [r.status for r in response.results] == [REJECTED, REJECTED]
    first, second = (r.reason for r in response.results)
    assert first.startswith("snapshot 0 ") and "bookmaker: 'Bet Pawa!'" in first and "odds" not in first
    assert second.startswith("snapshot 1 ") and "outcomes[0].odds" in second and "bookmaker:" not in second


async def test_unstorable_text_rejects_its_snapshot_by_field_and_the_good_one_is_written(
    stack: Stack, migrated_dsn: str
) -> None:
    # The batch of the issue: one good snapshot, NUL in the event and market names, NUL in an outcome name.
    good, bad_names, bad_outcome, t = new_event_id(), new_event_id(), new_event_id(), now()
    response = await stack.submit(
        [
            snapshot_to_pb(snapshot(good, t, [market()])),
            snapshot_to_pb(snapshot(bad_names, t, [market(name="Total\x00")], name="Arsenal\x00 - Chelsea")),
            snapshot_to_pb(snapshot(bad_outcome, t, [market(names=("1", "X\x00", "2"))])),
        ]
    )
    assert [r.status for r in response.results] == [ACCEPTED, REJECTED, REJECTED]
    assert "event.name: contains a NUL character (U+0000) at position 7" in response.results[1].reason
    assert "markets[0] (market_id '3743', line None): outcomes[1].name: contains a NUL" in response.results[2].reason
    conn = await asyncpg.connect(migrated_dsn)
    try:
        rows = await conn.fetch("SELECT DISTINCT event_id FROM market_odds_current WHERE event_id = ANY($1)",
                                [good, bad_names, bad_outcome])  # fmt: skip
        assert [r[0] for r in rows] == [good]
    finally:
        await conn.close()


async def test_replay_shows_each_rejected_line_with_only_its_own_reason(stack: Stack, tmp_path: Path) -> None:
    from oddstore_cli.replay import replay
    from oddstore_cli.submit import SubmitOptions

    t = now().isoformat().replace("+00:00", "Z")

    def line(event_id: int, bookmaker: str, odds: float) -> str:
        return json.dumps({
            "event": {"id": event_id, "sportradar_id": f"sr:match:{event_id}", "name": "A - B", "home_team": "A",
                      "away_team": "B", "kickoff": "2030-02-28T15:00:00Z"},
            "bookmaker": bookmaker, "captured_at": t,
            "markets": [{"market_id": "1", "outcomes": [{"name": "1", "odds": odds}, {"name": "2", "odds": 2.0}]}],
        })  # fmt: skip

    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join([line(new_event_id(), "Bet Pawa!", 2.0), line(new_event_id(), "betpawa", 0.5)]))
    out, err = io.StringIO(), io.StringIO()
    target = f"127.0.0.1:{stack.ingest.server.port}"
    assert await replay(str(path), SubmitOptions(target=target), batch_size=10, out=out, err=err) == 1
    shown = [x.strip() for x in out.getvalue().splitlines() if x.strip().startswith("line ")]
    assert len(shown) == 2, out.getvalue()
    assert shown[0].startswith("line 1: ") and "bookmaker" in shown[0] and "odds" not in shown[0]
    assert shown[1].startswith("line 2: ") and "outcomes[0].odds" in shown[1] and "bookmaker:" not in shown[1]


async def test_database_down_answers_unavailable_and_nothing_is_lost_once_it_is_back(
    stack: Stack, migrated_dsn: str
) -> None:
    e, t = new_event_id(), now()
    batch = [snapshot_to_pb(snapshot(e, t + timedelta(minutes=k), [market(odds=(2.0 + k, 3.0, 4.0))]))
             for k in range(3)]  # fmt: skip
    await stack.proxy.cut()
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await stack.submit(batch)
    assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
    await stack.proxy.restore()
    # The client re-sends what was not acknowledged; the pool reconnects by itself.
    response = await stack.submit(batch)
    assert [r.status for r in response.results] == [ACCEPTED] * 3
    conn = await asyncpg.connect(migrated_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM market_odds_history WHERE event_id = $1", e) == 3
    finally:
        await conn.close()


@pytest.mark.skipif(os.environ.get("ODDSTORE_SKIP_SLOW") == "1", reason="ODDSTORE_SKIP_SLOW=1")
async def test_a_resent_batch_is_superseded_end_to_end(stack: Stack) -> None:
    batch = [snapshot_to_pb(snapshot(new_event_id(), now(), [market()]))]
    assert [r.status for r in (await stack.submit(batch)).results] == [ACCEPTED]
    assert [r.status for r in (await stack.submit(batch)).results] == [SUPERSEDED]


# Any text a client can put in a protobuf string (lone surrogates cannot be: the CLI rejects them
# by field, tests/unit/test_cli_jsonl.py), weighted towards what has broken databases before.
HOSTILE_TEXT = st.one_of(
    st.text(st.characters(codec="utf-8"), max_size=80),
    st.sampled_from(
        ["\x00", "ok\x00", "\x01\x1f\x7f", "a" * 5000, "🏟⚽️👍🏿", "مباراة\u202eABC", "\ufeff\ufffe\uffff", " "]
    ),
    st.text(st.sampled_from(["\x00", "\t", "é", "€", "𝔘", "\u200f"]), min_size=1, max_size=20),
)
TEXT_FIELDS: dict[str, Callable[[int, str], Snapshot]] = {
    "event.name": lambda e, v: snapshot(e, now(), [market()], name=v),
    "event.home_team": lambda e, v: snapshot(e, now(), [market()], home_team=v),
    "event.away_team": lambda e, v: snapshot(e, now(), [market()], away_team=v),
    "event.tournament": lambda e, v: snapshot(e, now(), [market()], tournament=v),
    "event.country": lambda e, v: snapshot(e, now(), [market()], country=v),
    "event.sport": lambda e, v: snapshot(e, now(), [market()], sport=v),
    "event.sportradar_id": lambda e, v: snapshot(e, now(), [market()], sportradar_id=v),
    "bookmaker": lambda e, v: snapshot(e, now(), [market()], bookmaker=v),
    "external_event_id": lambda e, v: replace(snapshot(e, now(), [market()]), external_event_id=v),
    "market_id": lambda e, v: snapshot(e, now(), [market(v)]),
    "market_name": lambda e, v: snapshot(e, now(), [market(name=v)]),
    "handicap_type": lambda e, v: snapshot(e, now(), [replace(market(), handicap_type=v)]),
    "market_groups": lambda e, v: snapshot(e, now(), [replace(market(), market_groups=(v, "main"))]),
    "outcome name": lambda e, v: snapshot(e, now(), [market(names=("1", v, "2"))]),
}


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(fuzzed=st.lists(st.tuples(st.sampled_from(sorted(TEXT_FIELDS)), HOSTILE_TEXT), min_size=1, max_size=3))
async def test_any_text_in_any_field_ends_accepted_or_rejected_and_never_holds_back_a_valid_snapshot(
    stack: Stack, migrated_dsn: str, fuzzed: list[tuple[str, str]]
) -> None:
    good = [new_event_id() for _ in range(2)]
    batch = [snapshot_to_pb(snapshot(good[0], now(), [market()]))]
    batch += [snapshot_to_pb(TEXT_FIELDS[field](new_event_id(), value)) for field, value in fuzzed]
    batch.append(snapshot_to_pb(snapshot(good[1], now(), [market()])))
    response = await stack.submit(batch)  # an error status here (INTERNAL, UNAVAILABLE) fails the test
    statuses = [r.status for r in response.results]
    assert statuses[0] == statuses[-1] == ACCEPTED
    assert set(statuses) <= {ACCEPTED, REJECTED}
    conn = await asyncpg.connect(migrated_dsn)
    try:
        stored = await conn.fetch("SELECT event_id FROM latest_snapshots WHERE event_id = ANY($1)", good)
        assert sorted(r[0] for r in stored) == sorted(good)
    finally:
        await conn.close()
