"""The writer against a real PostgreSQL with the real migrations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from oddstore import codec
from oddstore.history_partitions import partition_name
from oddstore.model import Snapshot
from services.writer import repository as writer_repo
from services.writer.plan import Status
from services.writer.writer import Writer
from tests.factories import market, new_event_id, now, snapshot, write


@pytest.fixture
async def pool(migrated_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(migrated_dsn, min_size=1, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture
async def writer(pool: asyncpg.Pool) -> Writer:
    return Writer(pool)


async def history(pool: asyncpg.Pool, event_id: int) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT bookmaker_slug, market_id, line, captured_at, available, outcomes FROM market_odds_history"
        " WHERE event_id = $1 ORDER BY captured_at, market_id, line NULLS FIRST",
        event_id,
    )


async def current(pool: asyncpg.Pool, event_id: int) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT * FROM market_odds_current WHERE event_id = $1 ORDER BY market_id, line NULLS FIRST", event_id
    )


async def test_resending_a_batch_adds_no_history_and_changes_nothing(writer: Writer, pool: asyncpg.Pool) -> None:
    e, t = new_event_id(), now()
    batch = [snapshot(e, t, [market("3743"), market("5000", 2.5, (1.85, 1.95), ("Over", "Under"))])]
    first = await write(writer, batch)
    assert [r.status for r in first] == [Status.ACCEPTED] and first[0].counts.new == 2
    before = (await current(pool, e), await history(pool, e))
    again = await write(writer, batch)
    assert [r.status for r in again] == [Status.SUPERSEDED]
    # A second writer with no memory (a restart) must reach the same verdict from the database.
    assert [r.status for r in await write(Writer(pool), batch)] == [Status.SUPERSEDED]
    assert (await current(pool, e), await history(pool, e)) == before
    assert len(before[1]) == 2


async def test_a_late_older_snapshot_never_overwrites_current(writer: Writer, pool: asyncpg.Pool) -> None:
    e, t = new_event_id(), now()
    newer = snapshot(e, t, [market(odds=(2.0, 3.0, 4.0))])
    older = snapshot(e, t - timedelta(minutes=5), [market(odds=(9.0, 9.0, 9.0))])
    assert [r.status for r in await write(writer, [newer])] == [Status.ACCEPTED]
    assert [r.status for r in await write(writer, [older])] == [Status.SUPERSEDED]
    (row,) = await current(pool, e)
    assert codec.decode(row["outcomes"]) == [("1", 2000, True), ("X", 3000, True), ("2", 4000, True)]
    assert row["last_updated_at"] == t
    assert len(await history(pool, e)) == 1


async def test_snapshots_of_one_pair_in_one_batch_apply_in_captured_order(writer: Writer, pool: asyncpg.Pool) -> None:
    e, t = new_event_id(), now()
    batch = [
        snapshot(e, t + timedelta(minutes=10), [market(odds=(3.0, 3.0, 3.0))]),
        snapshot(e, t, [market(odds=(2.0, 3.0, 4.0))]),
        snapshot(e, t + timedelta(minutes=5), []),
    ]
    results = await write(writer, batch)
    assert [r.status for r in results] == [Status.ACCEPTED] * 3
    rows = await history(pool, e)
    assert [(r["captured_at"] - t, r["available"]) for r in rows] == [
        (timedelta(0), True), (timedelta(minutes=5), False), (timedelta(minutes=10), True)
    ]  # fmt: skip
    (row,) = await current(pool, e)
    assert row["unavailable_at"] is None and row["last_updated_at"] == t + timedelta(minutes=10)


async def test_a_market_that_disappears_and_returns_is_recorded_both_ways(writer: Writer, pool: asyncpg.Pool) -> None:
    e, t = new_event_id(), now()
    ou = market("5000", 2.5, (1.85, 1.95), ("Over", "Under"))
    await write(writer, [snapshot(e, t, [market(), ou])])
    await write(writer, [snapshot(e, t + timedelta(minutes=5), [market()])])
    gone = {(r["market_id"], r["line"]): r for r in await current(pool, e)}[("5000", 2.5)]
    assert gone["unavailable_at"] == t + timedelta(minutes=5)
    assert gone["last_confirmed_at"] == t  # last seen
    assert codec.decode(gone["outcomes"])[0] == ("Over", 1850, True)  # last odds kept
    await write(writer, [snapshot(e, t + timedelta(minutes=10), [market(), ou])])
    back = {(r["market_id"], r["line"]): r for r in await current(pool, e)}[("5000", 2.5)]
    assert back["unavailable_at"] is None
    ou_rows = [(r["captured_at"] - t, r["available"]) for r in await history(pool, e) if r["market_id"] == "5000"]
    assert ou_rows == [(timedelta(0), True), (timedelta(minutes=5), False), (timedelta(minutes=10), True)]


async def test_a_line_less_market_and_line_zero_are_two_rows(writer: Writer, pool: asyncpg.Pool) -> None:
    e, t = new_event_id(), now()
    await write(writer, [snapshot(e, t, [market("3774", None), market("3774", 0.0, odds=(1.9, 1.9, 9.0))])])
    rows = await current(pool, e)
    assert [(r["market_id"], r["line"]) for r in rows] == [("3774", None), ("3774", 0.0)]
    await write(writer, [snapshot(e, t + timedelta(minutes=5), [market("3774", None), market("3774", 0.0)])])
    changed = [(r["line"], r["captured_at"] - t) for r in await history(pool, e)]
    assert changed == [(None, timedelta(0)), (0.0, timedelta(0)), (0.0, timedelta(minutes=5))]


async def test_fifty_thousand_changed_markets_in_one_batch(writer: Writer, pool: asyncpg.Pool) -> None:
    t = now()
    events = [new_event_id() for _ in range(50)]
    markets = [market(str(10_000 + i), None, (1.5, 2.5), ("Yes", "No")) for i in range(1000)]
    results = await write(writer, [snapshot(e, t, markets) for e in events])
    assert all(r.status is Status.ACCEPTED for r in results)
    assert sum(r.counts.new for r in results) == 50_000
    moved = [market(str(10_000 + i), None, (1.6, 2.4), ("Yes", "No")) for i in range(1000)]
    results = await write(writer, [snapshot(e, t + timedelta(minutes=5), moved) for e in events])
    assert sum(r.counts.changed for r in results) == 50_000
    count = await pool.fetchval("SELECT count(*) FROM market_odds_history WHERE event_id = ANY($1::bigint[])", events)
    assert count == 100_000


async def test_a_missing_day_partition_is_created_on_demand(writer: Writer, pool: asyncpg.Pool) -> None:
    day = datetime.now(UTC).date() - timedelta(days=9)
    await pool.execute(f"DROP TABLE IF EXISTS {partition_name(day)}")
    e = new_event_id()
    at = datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=UTC)
    assert [r.status for r in await write(writer, [snapshot(e, at, [market()])])] == [Status.ACCEPTED]
    assert await pool.fetchval("SELECT to_regclass($1) IS NOT NULL", partition_name(day))
    assert len(await history(pool, e)) == 1


async def test_a_snapshot_without_captured_at_is_rejected_and_nothing_written(
    writer: Writer, pool: asyncpg.Pool
) -> None:
    e = new_event_id()
    results = await write(writer, [replace(snapshot(e, now(), [market()]), captured_at=None)])
    assert results[0].status is Status.REJECTED and "captured_at" in results[0].reason
    assert await current(pool, e) == []


async def test_duplicate_markets_reject_the_snapshot_whole(writer: Writer, pool: asyncpg.Pool) -> None:
    e = new_event_id()
    results = await write(writer, [snapshot(e, now(), [market("3743"), market("3743")])])
    assert results[0].status is Status.REJECTED and "markets[1]" in results[0].reason
    assert await current(pool, e) == [] and await history(pool, e) == []


async def test_two_writers_on_one_pair_reload_rather_than_trust_stale_memory(pool: asyncpg.Pool) -> None:
    a, b = Writer(pool), Writer(pool)
    e, t = new_event_id(), now()
    await write(a, [snapshot(e, t, [market(odds=(2.0, 3.0, 4.0))])])
    await write(b, [snapshot(e, t + timedelta(minutes=5), [market(odds=(5.0, 3.0, 4.0))])])
    # a still remembers the first odds; the database says they moved. Back to the first odds is a change.
    results = await write(a, [snapshot(e, t + timedelta(minutes=10), [market(odds=(2.0, 3.0, 4.0))])])
    assert results[0].counts.changed == 1
    assert len(await history(pool, e)) == 3


async def test_event_metadata_is_upserted_and_the_home_bookmaker_wins(writer: Writer, pool: asyncpg.Pool) -> None:
    e, t = new_event_id(), now()
    await write(writer, [snapshot(e, t, [market()], bookmaker="sportybet", tournament="EPL", country="England")])
    await write(writer, [snapshot(e, t, [market()], bookmaker="betpawa", tournament="Premier League")])
    await write(writer, [snapshot(e, t + timedelta(minutes=1), [market()], bookmaker="bet9ja", tournament="X")])
    row = await pool.fetchrow(
        "SELECT t.name AS tournament, t.country, s.name AS sport, e.kickoff FROM events e"
        " JOIN tournaments t ON t.id = e.tournament_id JOIN sports s ON s.id = t.sport_id WHERE e.id = $1",
        e,
    )
    assert (row["tournament"], row["country"], row["sport"]) == ("Premier League", "England", "Football")
    assert row["kickoff"].tzinfo is not None
    links = await pool.fetch(
        "SELECT b.slug, eb.external_event_id FROM event_bookmakers eb JOIN bookmakers b ON b.id = eb.bookmaker_id"
        " WHERE eb.event_id = $1 ORDER BY b.slug",
        e,
    )
    assert [(r["slug"], r["external_event_id"]) for r in links] == [
        ("bet9ja", str(e * 10)), ("betpawa", str(e * 10)), ("sportybet", str(e * 10))
    ]  # fmt: skip


async def test_a_sportradar_id_owned_by_another_event_rejects_the_snapshot(writer: Writer, pool: asyncpg.Pool) -> None:
    first, second, t = new_event_id(), new_event_id(), now()
    await write(writer, [snapshot(first, t, [market()])])
    results = await write(writer, [snapshot(second, t, [market()], sportradar_id=f"sr:match:{first}")])
    assert results[0].status is Status.REJECTED and "sportradar_id" in results[0].reason
    assert await current(pool, second) == []


async def test_changes_are_published_on_the_feed_after_commit(writer: Writer, pool: asyncpg.Pool) -> None:
    e, t = new_event_id(), now()
    before = writer.changes.sequence
    await write(writer, [snapshot(e, t, [market(), market("5000", 2.5, (1.85, 1.95), ("Over", "Under"))])])
    (batch,) = writer.changes.after(before)
    assert batch.sequence == before + 1
    assert sorted((m[2], m[3]) for m in batch.markets) == [("3743", None), ("5000", 2.5)]
    assert {(m[0], m[1], m[4], m[5]) for m in batch.markets} == {(e, "betpawa", t, True)}
    assert list(batch.pairs) == [(e, "betpawa", t)]
    # Published after commit: what it announces is in the database.
    assert len(await current(pool, e)) == 2


async def test_a_batch_that_fails_to_commit_publishes_nothing(
    writer: Writer, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    before, e = writer.changes.sequence, new_event_id()

    async def failing(*_args: object) -> None:
        raise ConnectionResetError("the connection dropped before commit")

    monkeypatch.setattr(writer_repo, "write_metadata", failing)
    with pytest.raises(ConnectionResetError):
        await write(writer, [snapshot(e, now(), [market()])])
    assert writer.changes.sequence == before and await current(pool, e) == []


async def test_warm_up_loads_recent_state_so_unchanged_markets_need_no_reload(pool: asyncpg.Pool) -> None:
    e, t = new_event_id(), now()
    await write(Writer(pool), [snapshot(e, t, [market()])])
    fresh = Writer(pool)
    assert await fresh.warm_up(datetime.now(UTC)) >= 1
    results = await write(fresh, [snapshot(e, t + timedelta(minutes=5), [market()])])
    assert results[0].counts.unchanged == 1 and len(await history(pool, e)) == 1


async def test_after_a_restart_home_metadata_is_written_even_if_a_competitor_sent_the_same(pool: asyncpg.Pool) -> None:
    e, t = new_event_id(), now()
    await write(Writer(pool), [snapshot(e, t, [market()], tournament="Premier League")])
    restarted = Writer(pool)
    await write(restarted, [snapshot(e, t, [market()], bookmaker="sportybet", tournament="EPL")])
    await write(restarted, [snapshot(e, t + timedelta(minutes=5), [market()], tournament="EPL")])
    name = await pool.fetchval(
        "SELECT t.name FROM events e JOIN tournaments t ON t.id = e.tournament_id WHERE e.id = $1", e
    )
    assert name == "EPL"


async def test_a_snapshot_without_changes_still_announces_its_new_confirmation_time(writer: Writer) -> None:
    e, t = new_event_id(), now()
    await write(writer, [snapshot(e, t, [market()])])
    before = writer.changes.sequence
    await write(writer, [snapshot(e, t + timedelta(minutes=5), [market()])])
    (batch,) = writer.changes.after(before)
    assert (list(batch.markets), list(batch.pairs)) == ([], [(e, "betpawa", t + timedelta(minutes=5))])


async def test_odds_that_cannot_be_stored_reject_the_snapshot_and_write_nothing(
    writer: Writer, pool: asyncpg.Pool
) -> None:
    e = new_event_id()
    results = await write(writer, [snapshot(e, now(), [market(odds=(-2.0, 3.0, 3.0))])])
    assert results[0].status is Status.REJECTED and "cannot be stored" in results[0].reason
    assert await current(pool, e) == [] and await history(pool, e) == []


async def test_a_partition_dropped_behind_the_writers_back_is_created_again(writer: Writer, pool: asyncpg.Pool) -> None:
    day = datetime.now(UTC).date() - timedelta(days=11)
    at = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    e = new_event_id()
    await write(writer, [snapshot(e, at, [market()])])
    await pool.execute(f"DROP TABLE {partition_name(day)}")  # as retention would
    results = await write(writer, [snapshot(e, at + timedelta(minutes=5), [market(odds=(9.0, 9.0, 9.0))])])
    assert [r.status for r in results] == [Status.ACCEPTED]
    assert len(await history(pool, e)) == 1  # the first row went with its partition


async def test_snapshots_the_database_refuses_are_rejected_and_the_rest_of_the_batch_is_written(
    writer: Writer, pool: asyncpg.Pool
) -> None:
    # What ingest's validation stops first; the writer must not stall on it if it ever gets through.
    good, bad_market, bad_event = (new_event_id() for _ in range(3))
    t = now()
    batch = [
        snapshot(bad_market, t, [market(name="Total\x00Goals")]),
        snapshot(good, t, [market(), market("5000", 2.5, (1.85, 1.95), ("Over", "Under"))]),
        snapshot(bad_event, t, [market()], name="Home\x00Away"),
    ]
    results = await write(writer, batch)
    assert [r.status for r in results] == [Status.REJECTED, Status.ACCEPTED, Status.REJECTED]
    assert "0x00" in results[0].reason and "0x00" in results[2].reason
    assert len(await current(pool, good)) == 2 and len(await history(pool, good)) == 2
    for e in (bad_market, bad_event):
        assert await current(pool, e) == [] and await history(pool, e) == []
        assert await pool.fetchval("SELECT count(*) FROM latest_snapshots WHERE event_id = $1", e) == 0
    # Nothing of the refused snapshots stayed in memory either: a clean re-send is new, not superseded.
    (fixed,) = await write(writer, [snapshot(bad_market, t, [market(name="Total Goals")])])
    assert fixed.status is Status.ACCEPTED and fixed.counts.new == 1


async def test_a_refused_snapshot_between_two_good_ones_of_its_pair_leaves_them_in_order(
    writer: Writer, pool: asyncpg.Pool
) -> None:
    e, t = new_event_id(), now()
    batch = [
        snapshot(e, t, [market(odds=(2.0, 3.0, 4.0))]),
        snapshot(e, t + timedelta(minutes=5), [market(odds=(2.5, 3.0, 3.0), name="bad\x00")]),
        snapshot(e, t + timedelta(minutes=10), [market(odds=(2.5, 3.0, 3.0))]),
    ]
    results = await write(writer, batch)
    assert [r.status for r in results] == [Status.ACCEPTED, Status.REJECTED, Status.ACCEPTED]
    assert results[2].counts.changed == 1  # judged against the first: the refused one never happened
    assert [r["captured_at"] for r in await history(pool, e)] == [t, t + timedelta(minutes=10)]


async def test_two_writers_creating_events_at_once_both_commit(pool: asyncpg.Pool) -> None:
    """Batches that create events write the shared tables (sports, tournaments, bookmakers); two writers doing that
    at once, for new tournaments of the same names, deadlocked on Citus, where those are reference tables."""
    a, b = Writer(pool), Writer(pool)
    t = now()

    def batch(round_: int, order: int) -> list[Snapshot]:
        leagues = [(f"League {round_}.{i}", f"Country {i % 7}") for i in range(40)][::order]
        return [
            snapshot(new_event_id(), t, [market()], bookmaker=bookmaker, tournament=name, country=country)
            for name, country in leagues
            for bookmaker in ("sportybet", "betpawa", "bet9ja")
        ]

    for round_ in range(6):
        results = await asyncio.gather(write(a, batch(round_, 1)), write(b, batch(round_, -1)))
        assert all(r.status == Status.ACCEPTED for rs in results for r in rs), results
