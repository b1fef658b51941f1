"""The query service while its cache loads: every read answers as the database does (never from the part loaded
so far), and a change committed during the load is in the cache the moment it takes over."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest
from prometheus_client import REGISTRY

from oddstore.v1 import query_pb2 as pb
from services.query import repository as repo
from services.query.cache import OddsCache
from services.query.feed import Feed
from services.query.grpc_api import QueryServicer
from services.query.history_repository import HistoryReader
from services.query.writer_feed import Changes, Sink
from services.writer.writer import Writer
from tests.factories import market, new_event_id, now, snapshot, write

HORIZON = timedelta(hours=2)


@pytest.fixture
async def pool(migrated_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(migrated_dsn, min_size=1, max_size=4)
    yield p
    await p.close()


def normalized(body: bytes) -> Any:
    """The contract does not order a bookmaker's detail markets: the cache keeps its load's row order, a read from
    PostgreSQL the order of that read."""
    found = json.loads(body)
    for entry in found.get("markets_by_bookmaker", []) if isinstance(found, dict) else []:
        entry["markets"].sort(key=lambda m: (m["betpawa_market_id"], m["line"] is not None, m["line"] or 0))
    return found


async def answers(servicer: QueryServicer, event_ids: list[int]) -> dict[str, Any]:
    """Every read a client can make of current state, but Subscribe (which waits for the load)."""
    found: dict[str, Any] = {}
    for mode in (pb.AVAILABILITY_BETPAWA, pb.AVAILABILITY_ALERTS):
        for page in (1, 2):
            request = pb.ListEventsRequest(availability=mode, page=page, page_size=100)
            found[f"list {mode} {page}"] = normalized((await servicer.ListEventsJson(request, None)).json)  # type: ignore[arg-type]
    for e in event_ids:
        found[f"event {e}"] = normalized((await servicer.GetEventJson(pb.GetEventRequest(event_id=e), None)).json)  # type: ignore[arg-type]
    found["alerts"] = (await servicer.CountAlerts(pb.CountAlertsRequest(), None)).count  # type: ignore[arg-type]
    found["tournaments"] = list((await servicer.ListTournaments(pb.ListTournamentsRequest(), None)).tournaments)  # type: ignore[arg-type]
    found["countries"] = list((await servicer.ListCountries(pb.ListCountriesRequest(), None)).countries)  # type: ignore[arg-type]
    return found


def servicer(pool: asyncpg.Pool, cache: OddsCache, clock: Callable[[], datetime]) -> QueryServicer:
    return QueryServicer(cache, pool, HistoryReader(pool), lambda: clock() - HORIZON, clock)


async def reference(pool: asyncpg.Pool, event_ids: list[int], clock: Callable[[], datetime]) -> dict[str, Any]:
    """The database's answers: a cache loaded to the end, read as the service reads it."""
    cache = OddsCache()
    await Feed(pool, cache, HORIZON, [], clock=clock).warm_up()
    return await answers(servicer(pool, cache, clock), event_ids)


def loading_gauge() -> float | None:
    return REGISTRY.get_sample_value("oddstore_query_cache_loading")


async def test_reads_during_a_slow_load_answer_as_the_database_and_a_change_during_it_is_kept(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    fixed = now()
    clock = lambda: fixed  # noqa: E731
    writer = Writer(pool)
    quiet, alert = new_event_id(), new_event_id()
    t = fixed - timedelta(minutes=10)
    await write(writer, [
        snapshot(quiet, t, [market(), market("5000", 2.5, (1.9, 1.95), ("Over", "Under"))], country="Spain"),
        snapshot(quiet, t, [market()], bookmaker="sportybet"),
        snapshot(alert, t, [market(), market("4693", None, (1.5, 2.5), ("Yes", "No"))], country="Kenya"),
    ])  # fmt: skip
    await write(writer, [snapshot(alert, t + timedelta(minutes=1), [market()])])  # 4693 unavailable: an alert
    ids = [quiet, alert]

    # The load stops after its first market row until released: the cache then holds every event and part of the
    # markets, the state a read must not be answered from.
    stalled, release = asyncio.Event(), asyncio.Event()
    stream_markets_since = repo.stream_markets_since

    async def slow(conn: asyncpg.Connection, since: datetime) -> AsyncIterator[asyncpg.Record]:
        async for r in stream_markets_since(conn, since):
            yield r
            if not stalled.is_set():
                stalled.set()
                await release.wait()

    monkeypatch.setattr(repo, "stream_markets_since", slow)
    sinks: list[Sink] = []

    async def source(sink: Sink) -> None:
        sinks.append(sink)
        await asyncio.Future()  # a writer's feed that stays open

    cache = OddsCache()
    feed = Feed(pool, cache, HORIZON, [source], clock=clock)
    await feed.start()
    try:
        await asyncio.wait_for(stalled.wait(), 60)
        assert cache.loading and loading_gauge() == 1 and not feed.updates.ready.is_set()
        assert len(cache.events) > 0  # part of the horizon is held

        # A change committed after the load's snapshot, announced by the writer's feed while the load runs.
        later = t + timedelta(minutes=2)
        over_under = market("5000", 2.5, (1.9, 1.95), ("Over", "Under"))
        await write(writer, [snapshot(quiet, later, [market(odds=(1.5, 4.0, 6.0)), over_under])])
        await sinks[0](Changes(later, [(quiet, "betpawa", ("3743", None))], [(quiet, "betpawa", later)]))

        expected = await reference(pool, ids, clock)
        assert expected["alerts"] >= 1 and expected[f"event {quiet}"]["markets_by_bookmaker"][0]["markets"]
        assert await answers(servicer(pool, cache, clock), ids) == expected

        release.set()
        await asyncio.wait_for(feed.loaded, 60)  # type: ignore[arg-type]
        assert not cache.loading and loading_gauge() == 0 and feed.updates.ready.is_set()
        # From the cache now, with the change the feed announced during the load already applied.
        assert await answers(servicer(pool, cache, clock), ids) == expected
        assert cache.books_of(quiet)["betpawa"].markets[("3743", None)].last_updated_at == later
    finally:
        release.set()
        await feed.stop()
