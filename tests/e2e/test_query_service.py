"""The query service end to end: a real QueryService gRPC server on loopback over data written by the writer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from oddstore.convert import to_timestamp
from oddstore.v1 import query_pb2 as pb
from oddstore.v1 import query_pb2_grpc
from services.query import bootstrap
from services.query.config import QuerySettings
from services.writer.writer import Writer
from tests.factories import market, new_event_id, now, snapshot, write
from tests.feeds import ServedWriter
from tests.polling import eventually
from tests.proxy import Proxy


class Service:
    def __init__(self, app: bootstrap.QueryApp, proxy: Proxy) -> None:
        self.app = app
        self.proxy = proxy
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{app.server.port}")
        self.stub = query_pb2_grpc.QueryServiceStub(self.channel)
        self.database_cut = False

    async def cut_database(self) -> None:
        await self.proxy.cut()
        self.database_cut = True


@pytest.fixture
async def served(migrated_dsn: str) -> AsyncIterator[ServedWriter]:
    pool = await asyncpg.create_pool(migrated_dsn, min_size=1, max_size=2)
    served = await ServedWriter.start(pool)
    yield served
    await served.stop()
    await pool.close()


@pytest.fixture
def writer(served: ServedWriter) -> Writer:
    return served.writer


@pytest.fixture
async def service(migrated_dsn: str, served: ServedWriter) -> AsyncIterator[Service]:
    # The service reaches PostgreSQL through a proxy the test can cut.
    url = urlsplit(migrated_dsn)
    proxy = Proxy(url.hostname or "127.0.0.1", url.port or 5432)
    await proxy.start()
    proxied = urlunsplit(url._replace(netloc=f"{url.username}@127.0.0.1:{proxy.port}"))
    app = await bootstrap.start(
        QuerySettings(database_url=proxied, listen="127.0.0.1:0", database_wait_seconds=5, writers=served.address)
    )
    s = Service(app, proxy)
    yield s
    await s.channel.close()
    await app.stop(1)
    if not s.database_cut:
        await proxy.cut()


async def visible(service: Service, event_id: int) -> None:
    await eventually(lambda: event_id in service.app.cache.events, f"event {event_id} in the cache")


async def test_health_reports_serving_once_warm(service: Service) -> None:
    reply = await health_pb2_grpc.HealthStub(service.channel).Check(health_pb2.HealthCheckRequest(service=""))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_list_events_and_event_detail_over_written_data(service: Service, writer: Writer) -> None:
    e, t = new_event_id(), now() - timedelta(minutes=10)
    kickoff = now() + timedelta(days=400)  # later than any other test's events: first in its window
    await write(writer, [
        snapshot(e, t, [market(), market("5000", 2.5, (1.9, 1.95), ("Over", "Under")),
                        market("9000", None, (5.0,), ("Kane",), name="Anytime Goalscorer")], kickoff=kickoff),
        snapshot(e, t, [market(odds=(2.0, 3.5, 3.6))], bookmaker="sportybet", kickoff=kickoff),
    ])  # fmt: skip
    await visible(service, e)

    listed = await service.stub.ListEvents(
        pb.ListEventsRequest(kickoff_from=to_timestamp(kickoff), kickoff_to=to_timestamp(kickoff), min_bookmakers=2)
    )
    assert listed.total == 1
    event = listed.events[0]
    assert (event.id, event.tournament_country, event.sport_name) == (e, "England", "Football")
    betpawa = {b.bookmaker_slug: b for b in event.bookmakers}["betpawa"]
    assert betpawa.has_odds and betpawa.snapshot_time.ToDatetime().timestamp() > 0
    assert sorted((m.market_id, m.line if m.HasField("line") else None) for m in betpawa.inline_odds) == [
        ("3743", None), ("5000", 2.5),
    ]  # fmt: skip
    one_x_two = next(m for m in betpawa.inline_odds if m.market_id == "3743")
    assert [(o.name, o.odds) for o in one_x_two.outcomes] == [("1", 2.1), ("X", 3.4), ("2", 3.5)]
    assert one_x_two.margin == 5.6 and one_x_two.available and not one_x_two.HasField("unavailable_since")

    detail = await service.stub.GetEvent(pb.GetEventRequest(event_id=e))
    assert detail.event.tournament_country == "England"
    by_slug = {b.bookmaker_slug: b for b in detail.markets_by_bookmaker}
    assert sorted(m.market_id for m in by_slug["betpawa"].markets) == ["3743", "5000"]  # no scorer market
    assert [m.market_groups for m in by_slug["sportybet"].markets] == [["popular"]]


async def test_an_event_past_the_horizon_is_answered_from_postgresql(service: Service, writer: Writer) -> None:
    e, marker, kickoff = new_event_id(), new_event_id(), now() - timedelta(hours=5)
    await write(writer, [snapshot(e, kickoff - timedelta(hours=1), [market()], kickoff=kickoff)])
    # The change feed is ordered: once a later write is cached, the feed has dealt with this one too.
    await write(writer, [snapshot(marker, now() - timedelta(minutes=5), [market()])])
    await visible(service, marker)
    assert e not in service.app.cache.events

    detail = await service.stub.GetEvent(pb.GetEventRequest(event_id=e))
    assert [len(b.markets) for b in detail.markets_by_bookmaker] == [1]
    listed = await service.stub.ListEvents(
        pb.ListEventsRequest(include_started=True, kickoff_from=to_timestamp(kickoff), kickoff_to=to_timestamp(kickoff))
    )
    assert [ev.id for ev in listed.events] == [e]
    assert listed.events[0].bookmakers[0].has_odds and len(listed.events[0].bookmakers[0].inline_odds) == 1


async def test_market_history_has_the_changes_and_the_confirmation(service: Service, writer: Writer) -> None:
    e, t = new_event_id(), now() - timedelta(minutes=30)
    await write(writer, [snapshot(e, t, [market(odds=(2.0, 3.0, 4.0))])])
    await write(writer, [snapshot(e, t + timedelta(minutes=10), [market(odds=(2.5, 3.0, 3.0))])])
    await write(writer, [snapshot(e, t + timedelta(minutes=20), [market(odds=(2.5, 3.0, 3.0))])])

    h = await service.stub.GetMarketHistory(
        pb.GetMarketHistoryRequest(event_id=e, market_id="3743", bookmaker_slug="betpawa")
    )
    assert h.bookmaker_name == "BetPawa"
    assert [(p.captured_at.ToDatetime().timestamp(), p.confirmed) for p in h.points] == [
        (t.timestamp(), False), ((t + timedelta(minutes=10)).timestamp(), False),
        ((t + timedelta(minutes=20)).timestamp(), True),
    ]  # fmt: skip
    assert [o.odds for o in h.points[1].outcomes] == [2.5, 3.0, 3.0]


async def test_errors_map_to_status_codes(service: Service) -> None:
    stub = service.stub
    for request in (pb.ListEventsRequest(page_size=101), pb.ListEventsRequest(min_bookmakers=4)):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ListEvents(request)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetEvent(pb.GetEventRequest(event_id=-5))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetMarketHistory(pb.GetMarketHistoryRequest(event_id=1, market_id="3743", bookmaker_slug="nope"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND

    # Text no query can use is the caller's fault, named by field, whatever the method.
    for call, request, field in (
        (
            stub.GetMarketHistory,
            pb.GetMarketHistoryRequest(event_id=1, market_id="37\x0043", bookmaker_slug="b"),
            "market_id",
        ),
        (stub.ListEvents, pb.ListEventsRequest(search="Arsenal\x00"), "search"),
        (stub.ListEvents, pb.ListEventsRequest(countries=["England", "\x00"]), "countries"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(request)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (err.value.details() or "").startswith(f"{field}: contains a NUL character")

    # PostgreSQL unreachable: a cache miss cannot be answered, and says so; cached reads still work.
    # Answering the alert count without the database needs the cache complete (while it loads, reads go there).
    await asyncio.wait_for(service.app.loaded(), 60)
    await service.cut_database()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetEvent(pb.GetEventRequest(event_id=new_event_id()), timeout=30)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert (await stub.CountAlerts(pb.CountAlertsRequest())).count >= 0
