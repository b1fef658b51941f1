"""Contract tests of the gateway (UI contract §0, §a, §b, §f and the new reads) against a fake query service.

The fake is a real grpc.aio server on loopback; the app runs in-process behind httpx's ASGI transport.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import grpc
import httpx
import pytest

from oddstore.v1 import query_pb2
from services.gateway.app import OUT_OF_SCOPE, create_app
from services.gateway.query_client import QueryClient
from tests.gateway_fakes import (
    COMPETITOR_EVENT_ID,
    EVENT_ID,
    EVENT_NO_COUNTRY_ID,
    TOURNAMENT_ID,
    FakeBackend,
    FakeQueryService,
    margin,
)
from tests.polling import TIMEOUT_SECONDS

EVENT_KEYS = {
    "id", "sportradar_id", "name", "home_team", "away_team", "kickoff", "tournament_id", "tournament_name",
    "tournament_country", "sport_name", "bookmakers", "created_at",
}  # fmt: skip
BOOKMAKER_KEYS = {
    "bookmaker_slug", "bookmaker_name", "external_event_id", "event_url", "has_odds", "inline_odds", "snapshot_time",
}  # fmt: skip
INLINE_KEYS = {"market_id", "market_name", "line", "outcomes", "margin", "available", "unavailable_since"}
DETAIL_MARKET_KEYS = {
    "betpawa_market_id", "betpawa_market_name", "line", "outcomes", "margin", "market_groups", "available",
    "unavailable_since",
}  # fmt: skip
Params = list[tuple[str, str | int | float | bool | None]]
HISTORY_KEYS = {"event_id", "bookmaker_slug", "bookmaker_name", "market_id", "market_name", "line", "history"}
MARGIN_POINT_KEYS = {"captured_at", "margin", "available", "unavailable_at", "confirmed"}


@pytest.fixture
async def api(query_client: QueryClient, fake: FakeQueryService) -> AsyncIterator[httpx.AsyncClient]:
    # httpx's ASGI transport runs no lifespan: the query client is opened by its own fixture instead.
    app = create_app(query_client)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        yield client


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def by_slug(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {b["bookmaker_slug"]: b for b in items}


def market(markets: list[dict[str, Any]], market_id: str, key: str = "market_id") -> dict[str, Any]:
    (found,) = [m for m in markets if m[key] == market_id]
    return found


# §1 GET /api/events


async def test_the_events_list_emits_every_field_with_explicit_nulls_and_z_timestamps(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/events")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"events", "total", "page", "page_size"}
    assert (body["total"], body["page"], body["page_size"]) == (2, 1, 50)
    event = body["events"][0]
    assert set(event) == EVENT_KEYS
    assert event["id"] == EVENT_ID and isinstance(event["tournament_id"], int)
    assert event["kickoff"] == "2026-03-01T15:00:00Z"
    assert event["created_at"] == "2026-02-20T08:01:02.123456Z"
    assert event["tournament_country"] == "England"
    books = by_slug(event["bookmakers"])
    assert [b["bookmaker_slug"] for b in event["bookmakers"]] == ["betpawa", "sportybet", "bet9ja"]
    for b in event["bookmakers"]:
        assert set(b) == BOOKMAKER_KEYS
        assert b["event_url"] is None
    assert books["sportybet"] == {
        "bookmaker_slug": "sportybet",
        "bookmaker_name": "SportyBet",
        "external_event_id": "sr:match:5678",
        "event_url": None,
        "has_odds": False,
        "inline_odds": [],
        "snapshot_time": None,
    }
    betpawa = books["betpawa"]
    assert betpawa["has_odds"] is True and betpawa["snapshot_time"] == "2026-02-24T10:05:00Z"
    assert {m["market_id"] for m in betpawa["inline_odds"]} == {"3743", "5000", "3795"}
    one_x_two = market(betpawa["inline_odds"], "3743")
    assert set(one_x_two) == INLINE_KEYS
    assert one_x_two["line"] is None and "line" in one_x_two
    assert one_x_two["outcomes"] == [{"name": "1", "odds": 2.1}, {"name": "X", "odds": 3.4}, {"name": "2", "odds": 3.5}]
    assert one_x_two["margin"] == margin([2.1, 3.4, 3.5]) == 5.6 and isinstance(one_x_two["margin"], float)
    assert one_x_two["available"] is True and one_x_two["unavailable_since"] is None
    over_under = market(betpawa["inline_odds"], "5000")
    assert over_under["line"] == 2.5
    assert over_under["available"] is False and over_under["unavailable_since"] == "2026-02-24T09:50:00Z"
    assert all(isinstance(o["odds"], float) for m in betpawa["inline_odds"] for o in m["outcomes"])


async def test_the_events_list_sends_the_contract_defaults_to_the_query_service(
    api: httpx.AsyncClient, fake: FakeQueryService
) -> None:
    assert (await api.get("/api/events")).status_code == 200
    (request,) = fake.requests("ListEvents")
    assert request.availability == query_pb2.AVAILABILITY_BETPAWA
    assert (request.min_bookmakers, request.page, request.page_size) == (1, 1, 50)
    assert request.include_started is False and request.search == ""
    assert list(request.tournament_ids) == [] and list(request.countries) == []
    assert not request.HasField("kickoff_from") and not request.HasField("kickoff_to")
    assert not request.HasField("sport_id")


async def test_repeated_and_typed_query_parameters_reach_the_query_service(
    api: httpx.AsyncClient, fake: FakeQueryService
) -> None:
    params: Params = [
        ("availability", "alerts"),
        ("tournament_ids", "1"),
        ("tournament_ids", "2"),
        ("countries", "England"),
        ("countries", "Spain"),
        ("sport_id", "1"),
        ("kickoff_from", "2026-02-24T23:00:00.000Z"),
        ("kickoff_to", "2026-02-26T23:00:00+02:00"),
        ("include_started", "true"),
        ("min_bookmakers", "3"),
        ("search", "arsenal"),
        ("page", "2"),
        ("page_size", "100"),
    ]
    response = await api.get("/api/events", params=params)
    assert response.status_code == 200
    assert (response.json()["page"], response.json()["page_size"]) == (2, 100)
    (request,) = fake.requests("ListEvents")
    assert request.availability == query_pb2.AVAILABILITY_ALERTS
    assert list(request.tournament_ids) == [1, 2]
    assert list(request.countries) == ["England", "Spain"]
    assert request.sport_id == 1
    assert request.kickoff_from.ToDatetime(tzinfo=UTC) == datetime(2026, 2, 24, 23, tzinfo=UTC)
    # The offset is dropped and the wall time read as UTC, as the old backend did (contract §1).
    assert request.kickoff_to.ToDatetime(tzinfo=UTC) == datetime(2026, 2, 26, 23, tzinfo=UTC)
    assert request.include_started is True
    assert (request.min_bookmakers, request.search, request.page, request.page_size) == (3, "arsenal", 2, 100)


async def test_the_deprecated_tournament_id_is_used_only_without_tournament_ids(
    api: httpx.AsyncClient, fake: FakeQueryService
) -> None:
    await api.get("/api/events", params={"tournament_id": 5})
    await api.get("/api/events", params=[("tournament_id", "5"), ("tournament_ids", "7")])
    first, second = fake.requests("ListEvents")
    assert list(first.tournament_ids) == [5]
    assert list(second.tournament_ids) == [7]


@pytest.mark.parametrize(
    "params",
    [
        {"page_size": 0},
        {"page_size": 101},
        {"min_bookmakers": 0},
        {"min_bookmakers": 4},
        {"availability": "foo"},
        {"page": 0},
        {"kickoff_from": "yesterday"},
        {"tournament_ids": "x"},
    ],
)
async def test_out_of_range_event_list_parameters_answer_422_without_calling_the_service(
    api: httpx.AsyncClient, fake: FakeQueryService, params: dict[str, Any]
) -> None:
    response = await api.get("/api/events", params=params)
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], list)
    assert fake.requests("ListEvents") == []


async def test_the_boundaries_of_the_ranges_are_accepted(api: httpx.AsyncClient) -> None:
    for params in ({"page_size": 1}, {"page_size": 100}, {"min_bookmakers": 1}, {"min_bookmakers": 3}):
        assert (await api.get("/api/events", params=params)).status_code == 200, params


async def test_competitor_events_have_negative_ids_and_a_null_country(
    api: httpx.AsyncClient, fake: FakeQueryService
) -> None:
    body = (await api.get("/api/events", params={"availability": "competitor"})).json()
    (event,) = body["events"]
    assert event["id"] == COMPETITOR_EVENT_ID < 0
    assert "tournament_country" in event and event["tournament_country"] is None
    assert fake.requests("ListEvents")[0].availability == query_pb2.AVAILABILITY_COMPETITOR


# §2 GET /api/events/{event_id}


async def test_the_event_detail_has_every_market_field_with_line_null_distinct_from_zero(
    api: httpx.AsyncClient,
) -> None:
    response = await api.get(f"/api/events/{EVENT_ID}")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == EVENT_KEYS | {"markets_by_bookmaker"}
    # The old backend always sent null here (a defect the contract asks to fix); the shape is kept.
    assert body["tournament_country"] == "England"
    assert body["kickoff"] == "2026-03-01T15:00:00Z"
    entries = body["markets_by_bookmaker"]
    assert [e["bookmaker_slug"] for e in entries] == ["betpawa", "sportybet", "bet9ja"]
    for entry in entries:
        assert set(entry) == {"bookmaker_slug", "bookmaker_name", "snapshot_time", "markets"}
    sporty = by_slug(entries)["sportybet"]
    assert sporty["markets"] == [] and sporty["snapshot_time"] is None
    markets = by_slug(entries)["betpawa"]["markets"]
    for m in markets:
        assert set(m) == DETAIL_MARKET_KEYS
        assert isinstance(m["betpawa_market_id"], str)
    assert market(markets, "3743", "betpawa_market_id")["line"] is None
    handicap = market(markets, "3774", "betpawa_market_id")
    assert handicap["line"] == 0.0 and isinstance(handicap["line"], float)
    assert handicap["outcomes"] == [
        {"name": "1", "odds": 1.85, "is_active": True},
        {"name": "2", "odds": 1.95, "is_active": False},
    ]
    assert market(markets, "3795", "betpawa_market_id")["market_groups"] is None
    over_under = market(markets, "5000", "betpawa_market_id")
    assert over_under["market_groups"] == ["popular", "goals"]
    assert over_under["available"] is False and over_under["unavailable_since"] == "2026-02-24T09:50:00Z"
    assert over_under["margin"] == margin([1.9, 1.95]) == 3.91


async def test_an_event_without_a_tournament_country_sends_null(api: httpx.AsyncClient) -> None:
    body = (await api.get(f"/api/events/{EVENT_NO_COUNTRY_ID}")).json()
    assert "tournament_country" in body and body["tournament_country"] is None


@pytest.mark.parametrize("event_id", [999, -901, 0])
async def test_an_unknown_event_answers_404_event_not_found(api: httpx.AsyncClient, event_id: int) -> None:
    response = await api.get(f"/api/events/{event_id}")
    assert response.status_code == 404
    assert response.json() == {"detail": "Event not found"}


async def test_a_non_integer_event_id_answers_422(api: httpx.AsyncClient, fake: FakeQueryService) -> None:
    assert (await api.get("/api/events/abc")).status_code == 422
    assert fake.requests("GetEvent") == []


# §3, §4, §5


async def test_the_alerts_count_is_an_object_with_an_integer(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/events/alerts/count")
    assert response.status_code == 200 and response.json() == {"count": 1}


async def test_fixed_event_paths_are_not_read_as_event_ids(api: httpx.AsyncClient, fake: FakeQueryService) -> None:
    for path in ("/api/events/alerts/count", "/api/events/tournaments", "/api/events/countries"):
        assert (await api.get(path)).status_code == 200, path
    assert fake.requests("GetEvent") == []


async def test_tournaments_are_a_bare_array_with_a_nullable_country(
    api: httpx.AsyncClient, fake: FakeQueryService
) -> None:
    betpawa = (await api.get("/api/events/tournaments")).json()
    assert betpawa == [
        {"id": 18, "name": "La Liga", "country": "Spain"},
        {"id": TOURNAMENT_ID, "name": "Premier League", "country": "England"},
    ]
    competitor = (await api.get("/api/events/tournaments", params={"availability": "competitor"})).json()
    assert competitor == [{"id": 40, "name": "NPFL", "country": None}]
    sent = [r.availability for r in fake.requests("ListTournaments")]
    assert sent == [query_pb2.AVAILABILITY_BETPAWA, query_pb2.AVAILABILITY_COMPETITOR]


async def test_countries_are_a_bare_array_of_strings(api: httpx.AsyncClient, fake: FakeQueryService) -> None:
    assert (await api.get("/api/events/countries")).json() == ["England", "Spain"]
    assert (await api.get("/api/events/countries", params={"availability": "competitor"})).json() == ["Nigeria"]
    assert fake.requests("ListCountries")[1].availability == query_pb2.AVAILABILITY_COMPETITOR


@pytest.mark.parametrize("path", ["/api/events/tournaments", "/api/events/countries"])
@pytest.mark.parametrize("availability", ["alerts", "foo"])
async def test_tournaments_and_countries_reject_other_availabilities_with_422(
    api: httpx.AsyncClient, path: str, availability: str
) -> None:
    assert (await api.get(path, params={"availability": availability})).status_code == 422


# §6, §7 history


async def test_odds_history_has_the_contract_shape_and_a_trailing_confirmed_point(
    api: httpx.AsyncClient, fake: FakeQueryService
) -> None:
    response = await api.get(f"/api/events/{EVENT_ID}/markets/3743/history", params={"bookmaker_slug": "betpawa"})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == HISTORY_KEYS
    assert (body["event_id"], body["bookmaker_slug"], body["bookmaker_name"]) == (EVENT_ID, "betpawa", "BetPawa")
    assert body["market_id"] == body["market_name"] == "3743"
    assert "line" in body and body["line"] is None
    points = body["history"]
    assert [p["captured_at"] for p in points] == [
        "2026-02-24T04:05:00Z",
        "2026-02-24T06:05:00Z",
        "2026-02-24T10:05:00Z",
    ]
    assert [p["confirmed"] for p in points] == [False, False, True]
    for p in points:
        assert set(p) == MARGIN_POINT_KEYS | {"outcomes"}
        assert p["available"] is True and p["unavailable_at"] is None
        assert all(set(o) == {"name", "odds"} and isinstance(o["odds"], float) for o in p["outcomes"])
    (request,) = fake.requests("GetMarketHistory")
    assert not request.HasField("line")  # omitted: only the line-less market is meant
    assert not request.HasField("from_time") and not request.HasField("to_time")


async def test_a_history_with_a_line_echoes_it_and_shows_unavailability(
    api: httpx.AsyncClient, fake: FakeQueryService
) -> None:
    params = {"bookmaker_slug": "betpawa", "line": "2.5"}
    body = (await api.get(f"/api/events/{EVENT_ID}/markets/5000/history", params=params)).json()
    assert body["line"] == 2.5
    gone = [p for p in body["history"] if not p["available"]]
    assert gone[0]["unavailable_at"] == "2026-02-24T09:50:00Z"
    assert body["history"][-1]["confirmed"] is True and body["history"][-1]["available"] is False
    assert fake.requests("GetMarketHistory")[0].line == 2.5


async def test_margin_history_is_the_same_points_without_outcomes(api: httpx.AsyncClient) -> None:
    path = f"/api/events/{EVENT_ID}/markets/3743"
    odds = (await api.get(f"{path}/history", params={"bookmaker_slug": "bet9ja"})).json()
    margins = (await api.get(f"{path}/margin-history", params={"bookmaker_slug": "bet9ja"})).json()
    assert set(margins) == HISTORY_KEYS
    assert all(set(p) == MARGIN_POINT_KEYS for p in margins["history"])
    assert margins["history"] == [{k: v for k, v in p.items() if k != "outcomes"} for p in odds["history"]]
    assert all(isinstance(p["margin"], float) for p in margins["history"])


@pytest.mark.parametrize("kind", ["history", "margin-history"])
async def test_history_without_bookmaker_slug_answers_422(api: httpx.AsyncClient, kind: str) -> None:
    assert (await api.get(f"/api/events/{EVENT_ID}/markets/3743/{kind}")).status_code == 422


@pytest.mark.parametrize("kind", ["history", "margin-history"])
async def test_history_with_an_unknown_bookmaker_answers_404_naming_it(api: httpx.AsyncClient, kind: str) -> None:
    response = await api.get(f"/api/events/{EVENT_ID}/markets/3743/{kind}", params={"bookmaker_slug": "x"})
    assert response.status_code == 404
    assert response.json() == {"detail": "Bookmaker not found: x"}


@pytest.mark.parametrize("kind", ["history", "margin-history"])
async def test_history_of_a_negative_event_id_is_200_with_what_is_stored(api: httpx.AsyncClient, kind: str) -> None:
    params: dict[str, str | float] = {"bookmaker_slug": "sportybet", "line": 2.5}
    response = await api.get(f"/api/events/{COMPETITOR_EVENT_ID}/markets/5000/{kind}", params=params)
    assert response.status_code == 200
    body = response.json()
    assert body["history"] == [] and body["line"] is None and body["event_id"] == COMPETITOR_EVENT_ID


async def test_history_time_bounds_reach_the_service_in_utc(api: httpx.AsyncClient, fake: FakeQueryService) -> None:
    params = {"bookmaker_slug": "betpawa", "from_time": "2026-02-24T00:00:00Z", "to_time": "2026-02-24T12:00:00+02:00"}
    assert (await api.get(f"/api/events/{EVENT_ID}/markets/3743/history", params=params)).status_code == 200
    (request,) = fake.requests("GetMarketHistory")
    assert request.from_time.ToDatetime(tzinfo=UTC) == datetime(2026, 2, 24, tzinfo=UTC)
    assert request.to_time.ToDatetime(tzinfo=UTC) == datetime(2026, 2, 24, 10, tzinfo=UTC)


# New: point in time, time to kickoff


async def test_an_event_at_an_instant_has_the_detail_markets_shape(
    api: httpx.AsyncClient, fake: FakeQueryService
) -> None:
    response = await api.get(f"/api/events/{EVENT_ID}/at", params={"at": "2026-02-24T12:00:00+02:00"})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"event_id", "at", "markets_by_bookmaker"}
    assert body["at"] == "2026-02-24T10:00:00Z"
    markets = by_slug(body["markets_by_bookmaker"])["betpawa"]["markets"]
    assert all(set(m) == DETAIL_MARKET_KEYS for m in markets)
    assert market(markets, "3743", "betpawa_market_id")["line"] is None
    assert fake.requests("GetEventAt")[0].at.ToDatetime(tzinfo=UTC) == datetime(2026, 2, 24, 10, tzinfo=UTC)


async def test_an_instant_without_an_offset_is_read_as_utc(api: httpx.AsyncClient, fake: FakeQueryService) -> None:
    response = await api.get(f"/api/events/{EVENT_ID}/at", params={"at": "2026-02-24T10:00:00"})
    assert response.status_code == 200
    assert fake.requests("GetEventAt")[0].at.ToDatetime(tzinfo=UTC) == datetime(2026, 2, 24, 10, tzinfo=UTC)


async def test_an_instant_is_required_and_an_unknown_event_is_404(api: httpx.AsyncClient) -> None:
    assert (await api.get(f"/api/events/{EVENT_ID}/at")).status_code == 422
    response = await api.get("/api/events/999/at", params={"at": "2026-02-24T10:00:00Z"})
    assert response.status_code == 404 and response.json() == {"detail": "Event not found"}


async def test_time_to_kickoff_sends_repeated_offsets_in_seconds_and_answers_in_hours(
    api: httpx.AsyncClient, fake: FakeQueryService
) -> None:
    params: Params = [
        ("offsets_hours", "168"),
        ("offsets_hours", "24"),
        ("offsets_hours", "0.5"),
        ("offsets_hours", "0"),
    ]
    response = await api.get(f"/api/events/{EVENT_ID}/markets/3743/time-to-kickoff", params=params)
    assert response.status_code == 200
    (request,) = fake.requests("GetTimeToKickoff")
    assert list(request.offsets_seconds) == [604800, 86400, 1800, 0]
    assert not request.HasField("line")
    body = response.json()
    assert set(body) == {"event_id", "kickoff", "market_id", "line", "bookmakers"}
    assert body["kickoff"] == "2026-03-01T15:00:00Z" and body["line"] is None and body["market_id"] == "3743"
    betpawa = by_slug(body["bookmakers"])["betpawa"]
    assert [p["offset_hours"] for p in betpawa["points"]] == [168.0, 24.0, 0.5, 0.0]
    week = betpawa["points"][0]
    assert week == {
        "offset_hours": 168.0,
        "at": "2026-02-22T15:00:00Z",
        "has_data": False,
        "outcomes": [],
        "margin": None,
        "available": False,
    }
    assert betpawa["points"][1]["has_data"] is True and betpawa["points"][1]["margin"] == 5.6
    assert by_slug(body["bookmakers"])["sportybet"]["points"][1]["has_data"] is False


async def test_time_to_kickoff_defaults_offsets_and_passes_the_line(
    api: httpx.AsyncClient, fake: FakeQueryService
) -> None:
    response = await api.get(f"/api/events/{EVENT_ID}/markets/5000/time-to-kickoff", params={"line": 2.5})
    assert response.status_code == 200 and response.json()["line"] == 2.5
    (request,) = fake.requests("GetTimeToKickoff")
    assert list(request.offsets_seconds) == [] and request.line == 2.5
    assert len(by_slug(response.json()["bookmakers"])["betpawa"]["points"]) == 6


@pytest.mark.parametrize(
    "params", [{"offsets_hours": -1}, {"offsets_hours": "soon"}, {"line": "nan"}, {"offsets_hours": 9000}]
)
async def test_time_to_kickoff_rejects_bad_offsets_and_lines_with_422(
    api: httpx.AsyncClient, params: dict[str, Any]
) -> None:
    assert (await api.get(f"/api/events/{EVENT_ID}/markets/3743/time-to-kickoff", params=params)).status_code == 422


async def test_time_to_kickoff_of_an_unknown_event_is_404(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/events/999/markets/3743/time-to-kickoff")
    assert response.status_code == 404 and response.json() == {"detail": "Event not found"}


async def test_tournament_margin_to_kickoff_keeps_null_averages(api: httpx.AsyncClient, fake: FakeQueryService) -> None:
    params: Params = [("offsets_hours", "72"), ("offsets_hours", "168")]
    response = await api.get(f"/api/tournaments/{TOURNAMENT_ID}/markets/3743/margin-to-kickoff", params=params)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"tournament_id", "market_id", "line", "bookmakers"}
    assert body["line"] is None
    assert [b["bookmaker_slug"] for b in body["bookmakers"]] == ["betpawa", "sportybet", "bet9ja"]
    assert body["bookmakers"][0]["points"] == [
        {"offset_hours": 72.0, "average_margin": 7.5, "events": 12},
        {"offset_hours": 168.0, "average_margin": None, "events": 0},
    ]
    assert list(fake.requests("GetTournamentMarginToKickoff")[0].offsets_seconds) == [259200, 604800]


async def test_tournament_margin_to_kickoff_of_an_unknown_tournament_is_404(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/tournaments/5/markets/3743/margin-to-kickoff")
    assert response.status_code == 404 and response.json() == {"detail": "Tournament not found"}


# §18 health


async def test_health_reports_connected_when_the_query_service_is_serving(api: httpx.AsyncClient) -> None:
    body = (await api.get("/api/health")).json()
    assert set(body) == {"status", "database", "platforms"}
    assert body["status"] == "healthy" and body["database"] == "connected"
    assert [p["platform"] for p in body["platforms"]] == ["sportybet", "betpawa", "bet9ja"]
    for p in body["platforms"]:
        assert set(p) == {"platform", "status", "response_time_ms", "error"}
        assert p["status"] == "healthy" and p["error"] is None and isinstance(p["response_time_ms"], int)


async def test_health_reports_disconnected_while_the_query_service_is_not_serving(
    api: httpx.AsyncClient, backend: FakeBackend
) -> None:
    await backend.server.set_serving(False)
    try:
        response = await api.get("/api/health")
    finally:
        await backend.server.set_serving(True)
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["database"]) == ("unhealthy", "disconnected")
    assert all(p["status"] == "unhealthy" and "NOT_SERVING" in p["error"] for p in body["platforms"])


async def test_health_reports_disconnected_when_the_query_service_is_down() -> None:
    client = QueryClient("127.0.0.1:1", deadline_seconds=0.5)
    await client.open()
    try:
        transport = httpx.ASGITransport(app=create_app(client))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as api:
            response = await api.get("/api/health")
            events = await api.get("/api/events")
    finally:
        await client.close()
    assert response.status_code == 200 and response.json()["database"] == "disconnected"
    assert events.status_code == 503


# Error mapping

EVERY_ENDPOINT = [
    "/api/events",
    f"/api/events/{EVENT_ID}",
    "/api/events/alerts/count",
    "/api/events/tournaments",
    "/api/events/countries",
    f"/api/events/{EVENT_ID}/markets/3743/history?bookmaker_slug=betpawa",
    f"/api/events/{EVENT_ID}/markets/3743/margin-history?bookmaker_slug=betpawa",
    f"/api/events/{EVENT_ID}/at?at=2026-02-24T10:00:00Z",
    f"/api/events/{EVENT_ID}/markets/3743/time-to-kickoff",
    f"/api/tournaments/{TOURNAMENT_ID}/markets/3743/margin-to-kickoff",
]


@pytest.mark.parametrize("path", EVERY_ENDPOINT)
async def test_an_unavailable_query_service_answers_503_with_a_clear_detail(
    api: httpx.AsyncClient, fake: FakeQueryService, path: str
) -> None:
    fake.abort_with = grpc.StatusCode.UNAVAILABLE
    response = await api.get(path)
    assert response.status_code == 503
    assert response.json()["detail"].startswith("Query service unavailable (UNAVAILABLE)")


@pytest.mark.parametrize("path", EVERY_ENDPOINT)
async def test_invalid_argument_from_the_query_service_answers_422_in_fastapi_shape(
    api: httpx.AsyncClient, fake: FakeQueryService, path: str
) -> None:
    fake.abort_with = grpc.StatusCode.INVALID_ARGUMENT
    response = await api.get(path)
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["type"] == "value_error" and "INVALID_ARGUMENT" in error["msg"]


async def test_a_slow_query_service_answers_503_at_the_deadline(backend: FakeBackend, fake: FakeQueryService) -> None:
    client = QueryClient(backend.address, deadline_seconds=0.2)
    await client.open()
    fake.held = asyncio.Event()  # never answers: only the deadline can end the request
    try:
        transport = httpx.ASGITransport(app=create_app(client))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as api:
            response = await asyncio.wait_for(api.get(f"/api/events/{EVENT_ID}"), TIMEOUT_SECONDS)
    finally:
        await client.close()
    assert response.status_code == 503
    assert response.json() == {"detail": "Query service did not answer GetEventJson within 0.2 s"}


async def test_other_service_failures_answer_502(api: httpx.AsyncClient, fake: FakeQueryService) -> None:
    fake.abort_with = grpc.StatusCode.INTERNAL
    response = await api.get("/api/events")
    assert response.status_code == 502 and "INTERNAL" in response.json()["detail"]


# §0 rules across endpoints


@pytest.mark.parametrize(("method", "path"), OUT_OF_SCOPE)
async def test_out_of_scope_calls_of_the_ui_shell_answer_404_without_calling_the_query_service(
    api: httpx.AsyncClient, fake: FakeQueryService, method: str, path: str
) -> None:
    response = await api.request(method, path, params={"limit": 1, "offset": 0})
    assert response.status_code == 404
    assert fake.received == []


async def test_no_timestamp_anywhere_has_a_plus_zero_offset(api: httpx.AsyncClient) -> None:
    for path in [*EVERY_ENDPOINT, "/api/events?availability=competitor", "/api/health"]:
        for text in strings((await api.get(path)).json()):
            assert "+00:00" not in text, (path, text)


async def test_paths_have_no_trailing_slash_and_openapi_is_served_at_docs(api: httpx.AsyncClient) -> None:
    assert (await api.get("/docs")).status_code == 200
    paths = set((await api.get("/openapi.json")).json()["paths"])
    assert paths == {
        "/api/events",
        "/api/events/alerts/count",
        "/api/events/tournaments",
        "/api/events/countries",
        "/api/events/{event_id}",
        "/api/events/{event_id}/markets/{market_id}/history",
        "/api/events/{event_id}/markets/{market_id}/margin-history",
        "/api/events/{event_id}/at",
        "/api/events/{event_id}/markets/{market_id}/time-to-kickoff",
        "/api/tournaments/{tournament_id}/markets/{market_id}/margin-to-kickoff",
        "/api/health",
        "/api/stream",
    }


async def test_instants_beyond_the_representable_range_are_clamped_not_rejected(
    api: httpx.AsyncClient, fake: FakeQueryService
) -> None:
    response = await api.get("/api/events/999/at", params={"at": "0001-01-01T00:01:00+01:01"})
    assert response.status_code == 404
    assert fake.requests("GetEventAt")[0].at.ToDatetime() == datetime.min
