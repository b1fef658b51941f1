"""Contract tests of the gateway's storage, cleanup and settings endpoints (UI contract §c, §d, §e) against a fake
retention service.

The fakes are real grpc.aio servers on loopback; the app runs in-process behind httpx's ASGI transport.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import httpx
import pytest

from oddstore.v1 import retention_pb2
from services.gateway.app import create_app
from services.gateway.query_client import QueryClient, Unavailable
from services.gateway.retention_api import ALERT_NOT_FOUND, CLEANUP_RUNNING
from services.gateway.retention_client import RetentionClient
from tests.gateway_fakes import (
    RUN_ID,
    FakeBackend,
    FakeRetentionBackend,
    FakeRetentionService,
    start_fake_backend,
    start_fake_retention_backend,
)
from tests.polling import TIMEOUT_SECONDS, eventually

TABLE_STATS_KEYS = {"count", "oldest", "newest"}
DATA_STATS_KEYS = {
    "oddsSnapshots", "competitorOddsSnapshots", "events", "competitorEvents", "tournaments", "competitorTournaments",
    "scrapeRuns", "scrapeBatches", "eventsByPlatform", "competitorEventsBySource",
    "marketOddsHistory",  # not in the old contract: the history table the old statistics ignored
}  # fmt: skip
PREVIEW_KEYS = {
    "oddsCutoffDate", "matchCutoffDate", "oddsSnapshotsCount", "competitorOddsSnapshotsCount",
    "marketOddsHistoryCount", "scrapeRunsCount", "scrapeBatchesCount", "eventsCount", "competitorEventsCount",
    "tournamentsCount", "competitorTournamentsCount",
}  # fmt: skip
EIGHT_DELETED = {
    "oddsDeleted", "competitorOddsDeleted", "scrapeRunsDeleted", "scrapeBatchesDeleted", "eventsDeleted",
    "competitorEventsDeleted", "tournamentsDeleted", "competitorTournamentsDeleted",
}  # fmt: skip
RESULT_KEYS = EIGHT_DELETED | {"marketOddsHistoryDeleted", "oldestOddsDate", "oldestMatchDate", "durationSeconds"}
RUN_KEYS = EIGHT_DELETED | {
    "id", "startedAt", "completedAt", "trigger", "oddsRetentionDays", "matchRetentionDays", "oldestOddsDate",
    "oldestMatchDate", "status", "errorMessage", "durationSeconds",
}  # fmt: skip
ALERT_KEYS = {
    "id", "createdAt", "alertType", "message", "currentBytes", "previousBytes", "growthPercent", "resolvedAt",
}  # fmt: skip
SETTINGS_DEFAULTS = {
    "scrapeIntervalMinutes": 5,
    "enabledPlatforms": ["sportybet", "betpawa", "bet9ja"],
    "oddsRetentionDays": 14,
    "matchRetentionDays": 14,
    "cleanupFrequencyHours": 24,
    "betpawaConcurrency": 50,
    "sportybetConcurrency": 50,
    "bet9jaConcurrency": 15,
    "bet9jaDelayMs": 25,
    "batchSize": 50,
    "maxConcurrentEvents": 10,
    "updatedAt": None,
}
# camelCase field, snake_case proto field, lowest and highest accepted value (contract §17).
SETTINGS_RANGES = [
    ("scrapeIntervalMinutes", "scrape_interval_minutes", 1, 60),
    ("oddsRetentionDays", "odds_retention_days", 1, 365),
    ("matchRetentionDays", "match_retention_days", 1, 365),
    ("cleanupFrequencyHours", "cleanup_frequency_hours", 1, 168),
    ("betpawaConcurrency", "betpawa_concurrency", 1, 100),
    ("sportybetConcurrency", "sportybet_concurrency", 1, 100),
    ("bet9jaConcurrency", "bet9ja_concurrency", 1, 50),
    ("bet9jaDelayMs", "bet9ja_delay_ms", 0, 100),
    ("batchSize", "batch_size", 10, 200),
    ("maxConcurrentEvents", "max_concurrent_events", 1, 50),
]
# (method, path, json body) of the ten operations of contract §8–§17.
EVERY_OPERATION: list[tuple[str, str, Any]] = [
    ("GET", "/api/storage/sizes", None),
    ("GET", "/api/storage/history", None),
    ("GET", "/api/storage/alerts", None),
    ("POST", "/api/storage/alerts/3/resolve", None),
    ("GET", "/api/cleanup/stats", None),
    ("GET", "/api/cleanup/preview", None),
    ("POST", "/api/cleanup/execute", {"oddsRetentionDays": 14, "matchRetentionDays": 14}),
    ("GET", "/api/cleanup/history", None),
    ("GET", "/api/settings", None),
    ("PUT", "/api/settings", {"oddsRetentionDays": 30}),
]
RETENTION_PATHS = {
    "/api/storage/sizes",
    "/api/storage/history",
    "/api/storage/alerts",
    "/api/storage/alerts/{alert_id}/resolve",
    "/api/cleanup/stats",
    "/api/cleanup/preview",
    "/api/cleanup/execute",
    "/api/cleanup/history",
    "/api/settings",
}


@pytest.fixture(scope="module")
async def query_backend() -> AsyncIterator[FakeBackend]:
    backend = await start_fake_backend()
    yield backend
    await backend.server.stop(0)


@pytest.fixture(scope="module")
async def retention_backend() -> AsyncIterator[FakeRetentionBackend]:
    backend = await start_fake_retention_backend()
    yield backend
    await backend.server.stop(0)


@pytest.fixture(scope="module")
async def query_client(query_backend: FakeBackend) -> AsyncIterator[QueryClient]:
    client = QueryClient(query_backend.address, deadline_seconds=TIMEOUT_SECONDS)
    await client.open()
    yield client
    await client.close()


@pytest.fixture(scope="module")
async def retention_client(retention_backend: FakeRetentionBackend) -> AsyncIterator[RetentionClient]:
    client = RetentionClient(retention_backend.address, deadline_seconds=TIMEOUT_SECONDS)
    await client.open()
    yield client
    await client.close()


@pytest.fixture
def fake(retention_backend: FakeRetentionBackend) -> Iterator[FakeRetentionService]:
    retention_backend.fake.reset()
    yield retention_backend.fake
    retention_backend.fake.reset()


@pytest.fixture
async def api(
    query_client: QueryClient, retention_client: RetentionClient, fake: FakeRetentionService
) -> AsyncIterator[httpx.AsyncClient]:
    # httpx's ASGI transport runs no lifespan: the clients are opened by their own fixtures instead.
    app = create_app(query_client, retention_client)
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


def set_fields(message: Any) -> set[str]:
    return {f.name for f, _ in message.ListFields()}


# §8 GET /api/storage/sizes


async def test_storage_sizes_are_camel_case_tables_with_a_z_measurement_time(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/storage/sizes")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"tables", "totalBytes", "totalHuman", "measuredAt"}
    assert body["tables"][0] == {
        "tableName": "market_odds_history",
        "sizeBytes": 2147483648,
        "sizeHuman": "2048 MB",
        "rowCount": 15000000,
    }  # partitions are rolled up under their parent; the contract has no per-partition entries
    assert [t["tableName"] for t in body["tables"]] == ["market_odds_history", "market_odds_current", "events"]
    assert body["tables"][1]["rowCount"] == 0
    assert (body["totalBytes"], body["totalHuman"]) == (3221225472, "3072 MB")
    assert body["measuredAt"] == "2026-02-24T10:00:00.123456Z"


# §9 GET /api/storage/history


async def test_storage_history_defaults_to_30_samples_newest_first(
    api: httpx.AsyncClient, fake: FakeRetentionService
) -> None:
    response = await api.get("/api/storage/history")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"samples", "total"}
    assert body["total"] == 42 and len(body["samples"]) == 30
    assert fake.requests("ListStorageSamples")[0].limit == 30
    first = body["samples"][0]
    assert first == {
        "id": 42,
        "sampledAt": "2026-02-24T03:00:00.512345Z",
        "totalBytes": 3221225472,
        "tableSizes": {"events": 1048576, "market_odds_history": 2147483648},
    }
    assert body["samples"][1]["sampledAt"] == "2026-02-23T03:00:00.512345Z"


@pytest.mark.parametrize("limit", [1, 100])
async def test_storage_history_accepts_the_limit_bounds(
    api: httpx.AsyncClient, fake: FakeRetentionService, limit: int
) -> None:
    response = await api.get("/api/storage/history", params={"limit": limit})
    assert response.status_code == 200
    assert len(response.json()["samples"]) == min(limit, 42)
    assert fake.requests("ListStorageSamples")[0].limit == limit


@pytest.mark.parametrize("path", ["/api/storage/history", "/api/cleanup/history"])
@pytest.mark.parametrize("limit", ["0", "101", "-1", "ten", "1.5"])
async def test_history_limits_outside_1_to_100_answer_422_without_calling_the_service(
    api: httpx.AsyncClient, fake: FakeRetentionService, path: str, limit: str
) -> None:
    response = await api.get(path, params={"limit": limit})
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], list)
    assert fake.received == []


# §10, §11 alerts


async def test_storage_alerts_are_the_unresolved_ones_with_a_count(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/storage/alerts")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"alerts", "count"}
    assert body["count"] == len(body["alerts"]) == 2
    growth, critical = body["alerts"]
    assert growth == {
        "id": 3,
        "createdAt": "2026-02-24T03:00:01Z",
        "alertType": "growth_warning",
        "message": "Database grew 23.4% since last sample (2.50 GB → 3.09 GB)",
        "currentBytes": 3318000000,
        "previousBytes": 2690000000,
        "growthPercent": 23.4,
        "resolvedAt": None,
    }
    assert set(critical) == ALERT_KEYS
    assert critical["alertType"] == "size_critical" and critical["growthPercent"] == 0.0
    assert isinstance(critical["growthPercent"], float)


async def test_resolving_an_alert_answers_the_alert_with_its_resolution_time(
    api: httpx.AsyncClient, fake: FakeRetentionService
) -> None:
    # The UI sends Content-Type: application/json with an empty body.
    response = await api.post("/api/storage/alerts/3/resolve", headers={"Content-Type": "application/json"})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == ALERT_KEYS
    assert body["id"] == 3 and body["resolvedAt"] == "2026-02-24T10:00:00.123456Z"
    assert fake.requests("ResolveStorageAlert")[0].alert_id == 3


async def test_resolving_an_unknown_alert_answers_404_alert_not_found(api: httpx.AsyncClient) -> None:
    response = await api.post("/api/storage/alerts/999/resolve")
    assert response.status_code == 404
    assert response.json() == {"detail": "Alert not found"} == {"detail": ALERT_NOT_FOUND}


async def test_a_non_integer_alert_id_answers_422(api: httpx.AsyncClient, fake: FakeRetentionService) -> None:
    assert (await api.post("/api/storage/alerts/abc/resolve")).status_code == 422
    assert fake.received == []


# §12 GET /api/cleanup/stats


async def test_data_stats_have_every_key_with_table_stats_and_explicit_nulls(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/cleanup/stats")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == DATA_STATS_KEYS
    for key in DATA_STATS_KEYS - {"eventsByPlatform", "competitorEventsBySource"}:
        assert set(body[key]) == TABLE_STATS_KEYS, key
    assert body["oddsSnapshots"] == {
        "count": 120000,
        "oldest": "2026-02-10T00:00:00Z",
        "newest": "2026-02-24T10:00:00Z",
    }
    assert body["competitorOddsSnapshots"] == {"count": 90000, "oldest": None, "newest": None}
    assert body["events"]["newest"] == "2026-03-10T19:00:00Z"
    assert body["tournaments"] == {"count": 300, "oldest": None, "newest": None}
    assert body["competitorTournaments"] == {"count": 600, "oldest": None, "newest": None}
    # The old system's scrape runs of a taken-over database, passed through as the service counts them.
    assert body["scrapeRuns"] == {"count": 4000, "oldest": "2026-02-10T00:00:00Z", "newest": "2026-02-24T10:00:00Z"}
    assert body["scrapeBatches"] == {"count": 0, "oldest": None, "newest": None}
    assert body["marketOddsHistory"] == {
        "count": 15000000,
        "oldest": "2026-02-10T00:00:01Z",
        "newest": "2026-02-24T09:59:58.000005Z",
    }


async def test_events_by_platform_are_labelled_by_slug(api: httpx.AsyncClient) -> None:
    body = (await api.get("/api/cleanup/stats")).json()
    # The old label was "bookmaker_<id>"; the slug is stable across databases and the UI only shows it.
    assert body["eventsByPlatform"] == [
        {"platform": "betpawa", "count": 5000},
        {"platform": "sportybet", "count": 4200},
    ]
    assert body["competitorEventsBySource"] == [{"platform": "sportybet", "count": 4100}]


# §13 GET /api/cleanup/preview


async def test_the_preview_without_parameters_uses_the_stored_settings(
    api: httpx.AsyncClient, fake: FakeRetentionService
) -> None:
    response = await api.get("/api/cleanup/preview")
    assert response.status_code == 200
    (request,) = fake.requests("PreviewCleanup")
    assert set_fields(request) == set()  # unset: the service applies the stored settings
    body = response.json()
    assert body == {
        "oddsCutoffDate": "2026-02-10T10:00:00.123456Z",  # now − 14 days (the stored setting)
        "matchCutoffDate": "2026-02-10T10:00:00.123456Z",
        "oddsSnapshotsCount": 1000,
        "competitorOddsSnapshotsCount": 800,
        "marketOddsHistoryCount": 50000,
        "scrapeRunsCount": 400,
        "scrapeBatchesCount": 0,
        "eventsCount": 120,
        "competitorEventsCount": 200,
        "tournamentsCount": 5,
        "competitorTournamentsCount": 9,
    }
    assert set(body) == PREVIEW_KEYS
    assert fake.requests("RunCleanup") == []  # a dry run


async def test_the_preview_passes_both_retentions(api: httpx.AsyncClient, fake: FakeRetentionService) -> None:
    response = await api.get("/api/cleanup/preview", params={"odds_days": 7, "match_days": 30})
    assert response.status_code == 200
    (request,) = fake.requests("PreviewCleanup")
    assert (request.odds_retention_days, request.match_retention_days) == (7, 30)
    body = response.json()
    assert body["oddsCutoffDate"] == "2026-02-17T10:00:00.123456Z"
    assert body["matchCutoffDate"] == "2026-01-25T10:00:00.123456Z"


async def test_the_preview_passes_one_retention_and_leaves_the_other_to_the_settings(
    api: httpx.AsyncClient, fake: FakeRetentionService
) -> None:
    assert (await api.get("/api/cleanup/preview", params={"match_days": 365})).status_code == 200
    (request,) = fake.requests("PreviewCleanup")
    assert set_fields(request) == {"match_retention_days"} and request.match_retention_days == 365


@pytest.mark.parametrize(
    "params",
    [{"odds_days": 0}, {"odds_days": 366}, {"match_days": 0}, {"match_days": 366}, {"odds_days": "x"}],
)
async def test_preview_retentions_outside_1_to_365_answer_422_without_calling_the_service(
    api: httpx.AsyncClient, fake: FakeRetentionService, params: dict[str, Any]
) -> None:
    response = await api.get("/api/cleanup/preview", params=params)
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], list)
    assert fake.received == []


# §14 POST /api/cleanup/execute


async def test_execute_with_the_ui_body_answers_the_cleanup_result(
    api: httpx.AsyncClient, fake: FakeRetentionService
) -> None:
    response = await api.post("/api/cleanup/execute", json={"oddsRetentionDays": 7, "matchRetentionDays": 30})
    assert response.status_code == 200
    (request,) = fake.requests("RunCleanup")
    assert (request.odds_retention_days, request.match_retention_days) == (7, 30)
    body = response.json()
    assert body == {
        "oddsDeleted": 1000,
        "competitorOddsDeleted": 800,
        "marketOddsHistoryDeleted": 50000,
        "scrapeRunsDeleted": 400,
        "scrapeBatchesDeleted": 0,
        "eventsDeleted": 120,
        "competitorEventsDeleted": 200,
        "tournamentsDeleted": 5,
        "competitorTournamentsDeleted": 9,
        "oldestOddsDate": "2026-01-20T00:00:00Z",
        "oldestMatchDate": "2026-01-21T18:00:00Z",
        "durationSeconds": 12.35,
    }
    assert set(body) == RESULT_KEYS


async def test_execute_accepts_snake_case_and_partial_bodies(
    api: httpx.AsyncClient, fake: FakeRetentionService
) -> None:
    assert (await api.post("/api/cleanup/execute", json={"odds_retention_days": 21})).status_code == 200
    assert (await api.post("/api/cleanup/execute", json={"matchRetentionDays": 60})).status_code == 200
    snake, camel = fake.requests("RunCleanup")
    assert set_fields(snake) == {"odds_retention_days"} and snake.odds_retention_days == 21
    assert set_fields(camel) == {"match_retention_days"} and camel.match_retention_days == 60


@pytest.mark.parametrize(
    "content", [b"", b"null", b"{}", b'{"oddsRetentionDays": null, "matchRetentionDays": null}', b'{"other": 1}']
)
async def test_execute_without_retentions_leaves_them_to_the_settings(
    api: httpx.AsyncClient, fake: FakeRetentionService, content: bytes
) -> None:
    response = await api.post("/api/cleanup/execute", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    (request,) = fake.requests("RunCleanup")
    assert set_fields(request) == set()


@pytest.mark.parametrize("days", [0, -5, 366, 100000])
async def test_execute_has_no_range_check_of_its_own_and_the_services_refusal_is_422(
    api: httpx.AsyncClient, fake: FakeRetentionService, days: int
) -> None:
    response = await api.post("/api/cleanup/execute", json={"oddsRetentionDays": days})
    assert fake.requests("RunCleanup")[0].odds_retention_days == days  # the gateway passed it on
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["type"] == "value_error" and "odds_retention_days" in error["msg"]


@pytest.mark.parametrize("body", [{"oddsRetentionDays": 2**31}, {"matchRetentionDays": "soon"}, [1, 2]])
async def test_execute_values_that_are_not_32_bit_integers_answer_422_without_calling_the_service(
    api: httpx.AsyncClient, fake: FakeRetentionService, body: Any
) -> None:
    response = await api.post("/api/cleanup/execute", json=body)
    assert response.status_code == 422
    assert fake.received == []


async def test_execute_with_a_body_that_is_not_json_answers_422_or_400_as_fastapi_does(api: httpx.AsyncClient) -> None:
    headers = {"Content-Type": "application/json"}
    malformed = await api.post("/api/cleanup/execute", content=b"{", headers=headers)
    assert malformed.status_code == 422 and malformed.json()["detail"][0]["type"] == "json_invalid"
    undecodable = await api.post("/api/cleanup/execute", content=b"\xff\xfe{", headers=headers)
    assert undecodable.status_code == 400
    assert undecodable.json() == {"detail": "There was an error parsing the body"}


async def test_execute_while_a_cleanup_is_running_answers_409_with_a_clear_detail(
    api: httpx.AsyncClient, fake: FakeRetentionService
) -> None:
    fake.cleanup_running = True
    response = await api.post("/api/cleanup/execute", json={"oddsRetentionDays": 14, "matchRetentionDays": 14})
    assert response.status_code == 409
    assert response.json() == {"detail": CLEANUP_RUNNING}
    assert "already running" in CLEANUP_RUNNING


async def test_a_manual_run_has_its_own_long_deadline(retention_backend: FakeRetentionBackend) -> None:
    fake = retention_backend.fake
    client = RetentionClient(
        retention_backend.address, 0.2, stats_deadline_seconds=0.3, cleanup_deadline_seconds=TIMEOUT_SECONDS
    )
    await client.open()
    fake.held = asyncio.Event()
    try:
        # The run is held until the two shorter deadlines, started after it, have expired: it must outlive both.
        run = asyncio.create_task(client.run_cleanup(retention_pb2.CleanupRequest()))
        await eventually(lambda: bool(fake.requests("RunCleanup")), "the run reaching the service")
        with pytest.raises(Unavailable, match=r"did not answer PreviewCleanup within 0\.3 s"):
            await client.preview_cleanup(retention_pb2.CleanupRequest())
        with pytest.raises(Unavailable, match=r"did not answer GetSettings within 0\.2 s"):
            await client.get_settings()
        fake.held.set()
        counts = await run
        assert counts.run_id == RUN_ID
    finally:
        fake.reset()
        await client.close()


# §15 GET /api/cleanup/history


async def test_cleanup_history_has_the_run_shape_with_explicit_nulls(
    api: httpx.AsyncClient, fake: FakeRetentionService
) -> None:
    response = await api.get("/api/cleanup/history")
    assert response.status_code == 200
    assert fake.requests("ListCleanupRuns")[0].limit == 10
    body = response.json()
    assert set(body) == {"runs", "total"} and body["total"] == 31
    running, completed, failed = body["runs"]
    for run in body["runs"]:
        assert set(run) == RUN_KEYS  # the eight *Deleted counts, without marketOddsHistoryDeleted
    assert running == {
        "id": 9,
        "startedAt": "2026-02-24T09:30:00Z",
        "completedAt": None,
        "trigger": "manual",
        "oddsRetentionDays": 7,
        "matchRetentionDays": 30,
        **dict.fromkeys(EIGHT_DELETED, 0),
        "oldestOddsDate": None,
        "oldestMatchDate": None,
        "status": "running",
        "errorMessage": None,
        "durationSeconds": None,
    }
    assert completed["startedAt"] == "2026-02-24T02:00:00.500000Z"
    assert completed["completedAt"] == "2026-02-24T02:00:13Z"
    assert (completed["trigger"], completed["status"], completed["durationSeconds"]) == (
        "scheduled",
        "completed",
        12.35,
    )
    assert (completed["oddsDeleted"], completed["tournamentsDeleted"], completed["scrapeRunsDeleted"]) == (1000, 5, 400)
    assert completed["oldestOddsDate"] == "2026-01-20T00:00:00Z"
    assert failed["status"] == "failed" and failed["errorMessage"] == "canceling statement due to lock timeout"
    assert failed["durationSeconds"] == 1.0 and isinstance(failed["durationSeconds"], float)


async def test_cleanup_history_passes_the_limit(api: httpx.AsyncClient, fake: FakeRetentionService) -> None:
    for limit in (1, 20, 100):
        response = await api.get("/api/cleanup/history", params={"limit": limit})
        assert response.status_code == 200 and len(response.json()["runs"]) == min(limit, 3)
    assert [r.limit for r in fake.requests("ListCleanupRuns")] == [1, 20, 100]


# §16, §17 settings


async def test_settings_have_every_field_and_a_null_update_time(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/settings")
    assert response.status_code == 200
    assert response.json() == SETTINGS_DEFAULTS


async def test_a_partial_update_sends_only_that_field_and_answers_the_full_settings(
    api: httpx.AsyncClient, fake: FakeRetentionService
) -> None:
    response = await api.put("/api/settings", json={"oddsRetentionDays": 30})
    assert response.status_code == 200
    (request,) = fake.requests("UpdateSettings")
    assert set_fields(request) == {"odds_retention_days"} and request.odds_retention_days == 30
    assert response.json() == {**SETTINGS_DEFAULTS, "oddsRetentionDays": 30, "updatedAt": "2026-02-24T09:00:00.123456Z"}
    assert (await api.get("/api/settings")).json()["oddsRetentionDays"] == 30


@pytest.mark.parametrize(("camel", "snake", "low", "high"), SETTINGS_RANGES)
async def test_every_settings_field_is_accepted_in_camel_and_snake_case_at_its_bounds(
    api: httpx.AsyncClient, fake: FakeRetentionService, camel: str, snake: str, low: int, high: int
) -> None:
    assert (await api.put("/api/settings", json={camel: low})).status_code == 200
    assert (await api.put("/api/settings", json={snake: high})).status_code == 200
    first, second = fake.requests("UpdateSettings")
    assert set_fields(first) == {snake} and getattr(first, snake) == low
    assert set_fields(second) == {snake} and getattr(second, snake) == high
    assert (await api.get("/api/settings")).json()[camel] == high


@pytest.mark.parametrize(("camel", "snake", "low", "high"), SETTINGS_RANGES)
async def test_settings_out_of_range_answer_422_without_calling_the_service(
    api: httpx.AsyncClient, fake: FakeRetentionService, camel: str, snake: str, low: int, high: int
) -> None:
    for body in ({camel: low - 1}, {camel: high + 1}, {snake: low - 1}, {snake: high + 1}):
        response = await api.put("/api/settings", json=body)
        assert response.status_code == 422, body
        assert isinstance(response.json()["detail"], list)
    assert fake.received == []


async def test_null_and_unknown_fields_are_not_applied(api: httpx.AsyncClient, fake: FakeRetentionService) -> None:
    body = {"oddsRetentionDays": None, "enabledPlatforms": None, "somethingElse": 3, "cleanupFrequencyHours": 48}
    response = await api.put("/api/settings", json=body)
    assert response.status_code == 200
    (request,) = fake.requests("UpdateSettings")
    assert set_fields(request) == {"cleanup_frequency_hours"}
    assert request.set_enabled_platforms is False
    assert response.json()["oddsRetentionDays"] == 14 and response.json()["cleanupFrequencyHours"] == 48


async def test_unknown_platforms_are_dropped_and_an_empty_list_is_applied(
    api: httpx.AsyncClient, fake: FakeRetentionService
) -> None:
    response = await api.put("/api/settings", json={"enabledPlatforms": ["betpawa", "pinnacle", "bet9ja", "betpawa"]})
    assert response.status_code == 200 and response.json()["enabledPlatforms"] == ["betpawa", "bet9ja"]
    response = await api.put("/api/settings", json={"enabled_platforms": []})
    assert response.status_code == 200 and response.json()["enabledPlatforms"] == []
    first, second = fake.requests("UpdateSettings")
    assert first.set_enabled_platforms and list(first.enabled_platforms) == ["betpawa", "bet9ja"]
    assert second.set_enabled_platforms and list(second.enabled_platforms) == []


@pytest.mark.parametrize("content", [b"", b"null", b"[]", b'{"enabledPlatforms": "betpawa"}'])
async def test_a_settings_body_that_is_not_an_object_answers_422(
    api: httpx.AsyncClient, fake: FakeRetentionService, content: bytes
) -> None:
    response = await api.put("/api/settings", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert fake.received == []


# Error mapping


@pytest.mark.parametrize(("method", "path", "body"), EVERY_OPERATION)
async def test_an_unavailable_retention_service_answers_503_with_a_clear_detail(
    api: httpx.AsyncClient, fake: FakeRetentionService, method: str, path: str, body: Any
) -> None:
    fake.abort_with = grpc.StatusCode.UNAVAILABLE
    response = await api.request(method, path, json=body)
    assert response.status_code == 503
    assert response.json()["detail"].startswith("Retention service unavailable (UNAVAILABLE)")
    assert response.headers["Retry-After"] == "1"


@pytest.mark.parametrize(("method", "path", "body"), EVERY_OPERATION)
async def test_other_retention_service_failures_answer_502(
    api: httpx.AsyncClient, fake: FakeRetentionService, method: str, path: str, body: Any
) -> None:
    fake.abort_with = grpc.StatusCode.INTERNAL
    response = await api.request(method, path, json=body)
    assert response.status_code == 502 and "INTERNAL" in response.json()["detail"]


@pytest.mark.parametrize(("method", "path", "body"), EVERY_OPERATION)
async def test_invalid_argument_from_the_retention_service_answers_422_in_fastapi_shape(
    api: httpx.AsyncClient, fake: FakeRetentionService, method: str, path: str, body: Any
) -> None:
    fake.abort_with = grpc.StatusCode.INVALID_ARGUMENT
    response = await api.request(method, path, json=body)
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["type"] == "value_error" and "INVALID_ARGUMENT" in error["msg"]


async def test_a_slow_retention_service_answers_503_at_the_deadline(
    query_client: QueryClient, retention_backend: FakeRetentionBackend, fake: FakeRetentionService
) -> None:
    client = RetentionClient(retention_backend.address, deadline_seconds=0.2)
    await client.open()
    fake.held = asyncio.Event()  # never answers: only the deadline can end the request
    try:
        transport = httpx.ASGITransport(app=create_app(query_client, client))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as api:
            response = await asyncio.wait_for(api.get("/api/settings"), TIMEOUT_SECONDS)
    finally:
        await client.close()
    assert response.status_code == 503
    assert response.json() == {"detail": "Retention service did not answer GetSettings within 0.2 s"}


async def test_a_retention_service_that_is_down_answers_503_and_health_still_follows_the_query_service(
    query_client: QueryClient,
) -> None:
    client = RetentionClient("127.0.0.1:1", deadline_seconds=0.5)
    await client.open()
    try:
        transport = httpx.ASGITransport(app=create_app(query_client, client))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as api:
            settings = await api.get("/api/settings")
            health = await api.get("/api/health")
    finally:
        await client.close()
    assert settings.status_code == 503
    assert health.status_code == 200 and health.json()["database"] == "connected"


async def test_the_lifespan_opens_and_closes_the_retention_client(
    query_backend: FakeBackend, retention_backend: FakeRetentionBackend
) -> None:
    retention = RetentionClient(retention_backend.address, deadline_seconds=TIMEOUT_SECONDS)
    app = create_app(QueryClient(query_backend.address, deadline_seconds=TIMEOUT_SECONDS), retention)
    async with app.router.lifespan_context(app):
        assert (await retention.get_settings()).odds_retention_days == 14
    with pytest.raises(Unavailable, match="not open"):
        await retention.get_settings()


# §0 rules across the endpoints, OpenAPI and configuration


async def test_no_timestamp_anywhere_has_a_plus_zero_offset(api: httpx.AsyncClient) -> None:
    for method, path, body in EVERY_OPERATION:
        for text in strings((await api.request(method, path, json=body)).json()):
            assert "+00:00" not in text, (path, text)


async def test_the_openapi_document_has_the_ten_operations_and_documents_the_quirks(api: httpx.AsyncClient) -> None:
    document = (await api.get("/openapi.json")).json()
    paths = document["paths"]
    assert RETENTION_PATHS <= set(paths)
    operations = {(m.upper(), p) for p in RETENTION_PATHS for m in paths[p]}
    assert len(operations) == 10  # contract §8–§17
    assert set(paths["/api/settings"]) == {"get", "put"}
    assert "409" in paths["/api/cleanup/execute"]["post"]["responses"]
    assert "404" in paths["/api/storage/alerts/{alert_id}/resolve"]["post"]["responses"]
    preview = paths["/api/cleanup/preview"]["get"]
    assert {p["name"] for p in preview["parameters"]} == {"odds_days", "match_days"}
    assert "scrape runs" in preview["description"]
    schemas = document["components"]["schemas"]
    assert "taken over" in schemas["DataStatsResponse"]["properties"]["scrapeRuns"]["description"]
    assert "bet9jaDelayMs" in schemas["SettingsResponse"]["properties"]


async def test_without_a_retention_client_only_the_query_routes_are_mounted(query_client: QueryClient) -> None:
    paths = set(create_app(query_client).openapi()["paths"])
    assert not paths & RETENTION_PATHS and "/api/events" in paths
