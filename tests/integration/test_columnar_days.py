"""Closed history days in columnar storage (issue 12), on plain PostgreSQL with citus_columnar and on Citus: the
same answers as heap, a conversion that is idempotent and all-or-nothing, late writes kept, expired days dropped."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from oddstore import codec, migrate
from oddstore.history_partitions import ensure_partition, index_name, partition_name
from services.query.history_repository import NEW_HISTORY, POOL_SETTINGS, HistoryReader
from services.retention import partition_repository as partition_repo
from services.retention.config import RetentionSettings
from services.retention.retention import Retention
from services.writer.plan import Status
from services.writer.repository import HISTORY_COLUMNS
from services.writer.writer import Writer
from tests.factories import market, new_event_id, snapshot, write
from tests.polling import eventually

NOW = datetime.now(UTC).replace(microsecond=0)
TODAY = NOW.date()


@pytest.fixture
def dsn(make_database: Callable[[], str]) -> str:
    """A database per test: these tests rewrite and drop history partitions."""
    url = make_database()
    migrate.upgrade(url)
    return url


@pytest.fixture
async def pool(dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4, server_settings=POOL_SETTINGS)  # as query's
    try:
        if not await partition_repo.columnar_available(pool):
            pytest.skip("SKIPPED LOUDLY: no columnar access method (citus_columnar) on this server: columnar untested")
        yield pool
    finally:
        await pool.close()


def retention(pool: asyncpg.Pool, now: datetime = NOW) -> Retention:
    settings = RetentionSettings(lock_timeout=0.5, columnar_after_days=1, columnar_grace_minutes=0)  # type: ignore[call-arg]
    return Retention(pool, settings, lambda: now)


def at(days_ago: int, hour: int) -> datetime:
    return datetime.combine(TODAY - timedelta(days=days_ago), datetime.min.time(), UTC) + timedelta(hours=hour)


async def write_days(pool: asyncpg.Pool) -> tuple[int, int]:
    """Two events written over the last four days and today: changes, a disappearance and a return, two lines."""
    e1, e2 = new_event_id(), new_event_id()
    kickoff = at(-2, 18)
    writer = Writer(pool)
    totals = market("5000", 2.5, (1.9, 1.95), ("Over", "Under"))
    steps = [
        (e1, at(4, 9), [market(odds=(2.1, 3.4, 3.5)), totals]),
        (e2, at(4, 10), [market(odds=(1.5, 4.0, 6.0))]),
        (e1, at(3, 9), [market(odds=(2.2, 3.3, 3.4)), totals]),
        (e1, at(2, 9), [totals]),  # 3743 gone
        (e2, at(2, 23), [market(odds=(1.6, 3.9, 5.5))]),
        (e1, at(1, 9), [market(odds=(2.0, 3.5, 3.6)), market("5000", 3.5, (2.4, 1.55), ("Over", "Under"))]),
        (e1, at(1, 10), [market(odds=(2.0, 3.5, 3.6)), market("5000", 3.5, (2.4, 1.55), ("Over", "Under"))]),
        (e1, at(0, 0), [market(odds=(2.05, 3.45, 3.55))]),
        (e2, at(0, 0), [market(odds=(1.6, 3.9, 5.5))]),
    ]
    for event_id, captured_at, markets in steps:
        result = await write(writer, [snapshot(event_id, captured_at, markets, kickoff=kickoff)])
        assert [r.status for r in result] == [Status.ACCEPTED]
    return e1, e2


async def answers(pool: asyncpg.Pool, events: tuple[int, ...]) -> list[Any]:
    """Every kind of history read over the days: histories, points in time, time to kickoff."""
    reader = HistoryReader(pool)
    out: list[Any] = []
    for e in events:
        for market_id, line in (("3743", None), ("5000", 2.5), ("5000", 3.5)):
            out.append(await reader.market_history(e, market_id, "betpawa", line, None, None))
            out.append(await reader.market_history(e, market_id, "betpawa", line, at(3, 0), at(1, 9)))
            out.append(await reader.time_to_kickoff(e, market_id, line, [timedelta(days=d) for d in range(7)]))
        for days_ago, hour in ((4, 9), (3, 12), (2, 9), (1, 9), (0, 0), (0, 12)):
            out.append(await reader.event_at(e, at(days_ago, hour)))
    return out


async def access_methods(pool: asyncpg.Pool) -> dict[date, str]:
    return {p.day: ("columnar" if p.columnar else "heap") for p in await partition_repo.list_partitions(pool) if p.day}


async def history_rows(pool: asyncpg.Pool) -> list[tuple[Any, ...]]:
    rows = await pool.fetch("SELECT * FROM market_odds_history ORDER BY event_id, captured_at, market_id, line")
    return [tuple(r) for r in rows]


async def test_reads_over_columnar_days_give_the_same_answers_as_over_heap(pool: asyncpg.Pool) -> None:
    events = await write_days(pool)
    before, rows_before = await answers(pool, events), await history_rows(pool)

    converted = await retention(pool).convert_closed_days()

    assert converted == [TODAY - timedelta(days=d) for d in (4, 3, 2, 1)]
    methods = await access_methods(pool)
    assert {methods[d] for d in converted} == {"columnar"} and methods[TODAY] == "heap"
    # Every day has its index: the closed days' rebuilt on the columnar table.
    indexes = [await pool.fetchval("SELECT to_regclass($1)::text", index_name(d)) for d in [*converted, TODAY]]
    assert indexes == [index_name(d) for d in [*converted, TODAY]]
    assert await history_rows(pool) == rows_before
    assert await answers(pool, events) == before


async def test_conversion_is_idempotent_one_day_at_a_time_oldest_first(pool: asyncpg.Pool) -> None:
    await write_days(pool)
    rows_before = await history_rows(pool)
    service = retention(pool)

    assert await service.convert_closed_days(limit=1) == [TODAY - timedelta(days=4)]
    assert await service.convert_closed_days(limit=1) == [TODAY - timedelta(days=3)]
    assert await service.convert_closed_days() == [TODAY - timedelta(days=d) for d in (2, 1)]
    assert await service.convert_closed_days() == []
    # Called directly on a day already converted: nothing to do, nothing changed.
    async with pool.acquire() as conn:
        assert not await partition_repo.convert_to_columnar(conn, TODAY - timedelta(days=1), 0.5)
    assert await history_rows(pool) == rows_before
    sizes = {p.day: p.size_bytes for p in await partition_repo.list_partitions(pool)}
    assert all(sizes[TODAY - timedelta(days=d)] > 0 for d in range(5))

    async def storage_page_counts_the_columnar_day() -> bool:
        report = await service.storage_sizes()
        (history,) = [t for t in report.tables if t.table_name == "market_odds_history"]
        day = {p.table_name: p for p in history.partitions}[partition_name(TODAY - timedelta(days=1))]
        # Rows are the statistics' live count, which a busy server reports late: present, not exact.
        return day.size_bytes > 0 and day.row_count > 0

    await eventually(storage_page_counts_the_columnar_day, "the storage page's size and rows of a columnar day")


class FailingAt:
    """A connection that fails one statement: the conversion interrupted between its steps."""

    def __init__(self, conn: asyncpg.Connection, statement_start: str) -> None:
        self._conn, self._start = conn, statement_start

    def transaction(self) -> Any:
        return self._conn.transaction()

    async def fetchval(self, query: str, *args: object) -> Any:
        return await self._conn.fetchval(query, *args)

    async def execute(self, query: str, *args: object) -> str:
        if query.startswith(self._start):
            raise ConnectionError(f"interrupted before {query}")
        return await self._conn.execute(query, *args)


@pytest.mark.parametrize("step", ["CLUSTER", "DROP INDEX", "ALTER TABLE", "ANALYZE"])
async def test_a_conversion_interrupted_at_any_step_leaves_the_day_whole_and_a_rerun_finishes_it(
    pool: asyncpg.Pool, step: str
) -> None:
    await write_days(pool)
    rows_before = await history_rows(pool)
    day = TODAY - timedelta(days=2)

    async with pool.acquire() as conn:
        with pytest.raises(ConnectionError):
            await partition_repo.convert_to_columnar(FailingAt(conn, step), day, 0.5)  # type: ignore[arg-type]

    assert (await access_methods(pool))[day] == "heap"
    assert await pool.fetchval("SELECT to_regclass($1) IS NOT NULL", index_name(day))
    assert await history_rows(pool) == rows_before
    assert day in await retention(pool).convert_closed_days()
    assert (await access_methods(pool))[day] == "columnar"
    assert await history_rows(pool) == rows_before


async def test_a_busy_day_is_left_heap_for_the_next_check(pool: asyncpg.Pool) -> None:
    await write_days(pool)
    day = TODAY - timedelta(days=4)
    async with pool.acquire() as reader, reader.transaction():
        await reader.execute(f"LOCK TABLE {partition_name(day)} IN ACCESS SHARE MODE")
        assert await retention(pool).convert_closed_days(limit=1) == []
    assert (await access_methods(pool))[day] == "heap"
    assert await retention(pool).convert_closed_days(limit=1) == [day]


async def test_a_late_write_for_a_columnar_day_is_stored_and_read(pool: asyncpg.Pool) -> None:
    await write_days(pool)
    await retention(pool).convert_closed_days()
    late = new_event_id()
    captured = at(2, 15)

    result = await write(Writer(pool), [snapshot(late, captured, [market(odds=(3.0, 3.1, 2.5))], kickoff=at(-1, 18))])

    assert [r.status for r in result] == [Status.ACCEPTED]
    assert (await access_methods(pool))[captured.date()] == "columnar"
    history = await HistoryReader(pool).market_history(late, "3743", "betpawa", None, None, None)
    assert [p.captured_at for p in history.points] == [captured]
    assert await pool.fetchval(f"SELECT count(*) FROM {partition_name(captured.date())} WHERE event_id = $1", late) == 1


async def test_cleanup_drops_expired_columnar_days_whole(pool: asyncpg.Pool) -> None:
    await write_days(pool)
    await retention(pool).convert_closed_days()
    rows_per_day = {
        TODAY - timedelta(days=d): await pool.fetchval(
            f"SELECT count(*) FROM {partition_name(TODAY - timedelta(days=d))}"
        )
        for d in range(5)
    }

    result = await retention(pool).run_cleanup("manual", 2, 30)

    # The cutoff is two days before now: the days 4 and 3 ago end before it.
    assert result.counts.history_partitions == 2
    assert (
        result.counts.market_odds_history
        == rows_per_day[TODAY - timedelta(days=4)] + rows_per_day[TODAY - timedelta(days=3)]
    )
    methods = await access_methods(pool)
    assert TODAY - timedelta(days=4) not in methods and TODAY - timedelta(days=3) not in methods
    assert methods[TODAY - timedelta(days=2)] == "columnar"
    assert await pool.fetchval("SELECT count(*) FROM market_odds_history") == sum(
        n for d, n in rows_per_day.items() if d >= TODAY - timedelta(days=2)
    )


async def test_a_history_read_over_a_columnar_day_goes_by_the_days_index(pool: asyncpg.Pool) -> None:
    """The day keeps its index through the rewrite, and the reader's settings make the planner take it: columnar's
    custom scan, which it otherwise prefers, loads the chunk metadata of the whole day (shard, on Citus)."""
    day = TODAY - timedelta(days=1)
    await ensure_partition(pool, day)
    outcomes = codec.encode([("1", 2100, True), ("X", 3400, True), ("2", 3500, True)])
    rows = [
        (5_000 + n % 300, at(1, 0) + timedelta(seconds=n), None, True, "betpawa", "3743", outcomes)
        for n in range(24_000)
    ]
    await pool.copy_records_to_table("market_odds_history", records=rows, columns=HISTORY_COLUMNS)
    assert await retention(pool).convert_closed_days() == [day]
    assert await pool.fetchval("SELECT to_regclass($1)", index_name(day)) is not None

    async with HistoryReader(pool)._reading() as (conn, _):
        explain = "EXPLAIN (ANALYZE) " + NEW_HISTORY
        plan = "\n".join(r[0] for r in await conn.fetch(explain, 5100, "betpawa", "3743", None))
        points = await conn.fetch(NEW_HISTORY, 5100, "betpawa", "3743", None)
    assert f"Index Scan using {index_name(day)}" in plan and "ColumnarScan" not in plan, plan
    assert [p["captured_at"] for p in points] == [at(1, 0) + timedelta(seconds=n) for n in range(100, 24_000, 300)]
