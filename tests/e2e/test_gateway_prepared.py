"""The reads answered below FastAPI (services/gateway/prepared.py) answer exactly as the FastAPI routes do: the same
status, headers and body for normal, not-found, bad-parameter, unauthorized, rate-limited and failing requests.
Two apps over one fake query service (a real gRPC server), one with the prepared reads and one without, are asked
the same requests in turn."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from fastapi import FastAPI, HTTPException

from oddstore import users
from services.gateway.app import create_app
from services.gateway.dependencies import get_query
from services.gateway.limits import Limits
from services.gateway.query_client import QueryClient
from tests.gateway_fakes import EVENT_ID, FakeQueryService

VIEWER = ("vera", "viewer-secret-1")
E = EVENT_ID
HISTORY = f"/api/events/{E}/markets"

DETAIL_REQUESTS = [
    f"/api/events/{E}",
    "/api/events/1240",
    "/api/events/999",  # unknown: 404
    "/api/events/-9223372036854775808",  # the smallest id: valid, unknown
    "/api/events/9223372036854775808",  # out of range: 422
    "/api/events/abc",
    "/api/events/1234.0",
    "/api/events/0012",
    "/api/events/1_234",
    "/api/events/%201234",
    "/api/events/%00",
    f"/api/events/{E}?unknown=1",
    f"/api/events/{E}?unknown=%00",
    f"/api/events/{E}/",
    "/api/events/tournaments",
    "/api/events/countries",
    "/api/events/alerts/count",
]
HISTORY_REQUESTS = [
    f"{HISTORY}/3743/history?bookmaker_slug=betpawa",
    f"{HISTORY}/5000/history?bookmaker_slug=betpawa&line=2.5",
    f"{HISTORY}/5000/history?line=2.50&bookmaker_slug=betpawa",
    f"{HISTORY}/3774/history?bookmaker_slug=betpawa&line=0",
    f"{HISTORY}/3774/history?bookmaker_slug=betpawa&line=-0.0",
    f"{HISTORY}/5000/history?bookmaker_slug=betpawa&line=2.5e0",
    f"{HISTORY}/5000/history?bookmaker_slug=betpawa&line=abc",
    f"{HISTORY}/5000/history?bookmaker_slug=betpawa&line=nan",
    f"{HISTORY}/5000/history?bookmaker_slug=betpawa&line=inf",
    f"{HISTORY}/5000/history?bookmaker_slug=betpawa&line=",
    f"{HISTORY}/3743/history?bookmaker_slug=nobody",  # unknown bookmaker: 404
    f"{HISTORY}/3743/history",  # bookmaker_slug missing: 422
    f"{HISTORY}/3743/history?bookmaker_slug=betpawa&bookmaker_slug=bet9ja",
    f"{HISTORY}/3743/history?bookmaker_slug=betpawa&unknown=1",
    f"{HISTORY}/3743/history?bookmaker_slug=betpawa&from_time=2026-02-24T00:00:00Z",
    f"{HISTORY}/3743/history?bookmaker_slug=betpawa&from_time=2026-02-24T00:00:00",
    f"{HISTORY}/3743/history?bookmaker_slug=betpawa&from_time=2026-02-24T06:00:00%2B02:00&to_time=2026-02-24T09:00Z",
    f"{HISTORY}/3743/history?bookmaker_slug=betpawa&to_time=0.5",
    f"{HISTORY}/3743/history?bookmaker_slug=betpawa&from_time=yesterday",
    f"{HISTORY}/3743/history?bookmaker_slug=bet%00pawa",
    f"{HISTORY}/37%0043/history?bookmaker_slug=betpawa",
    f"{HISTORY}/nonesuch/history?bookmaker_slug=sportybet",
    "/api/events/999/markets/3743/history?bookmaker_slug=betpawa",  # unknown event: no points
    "/api/events/x/markets/3743/history?bookmaker_slug=betpawa",
]
AT_REQUESTS = [
    f"/api/events/{E}/at?at=2026-02-24T10:00:00Z",
    f"/api/events/{E}/at?at=2026-02-24T10:00:00.123456",
    f"/api/events/{E}/at?at=2026-02-24T12:00:00%2B02:00",
    f"/api/events/{E}/at?at=2020-01-01T00:00Z",  # before anything was stored
    f"/api/events/{E}/at?at=0001-01-01T00:00:00%2B01:00",
    f"/api/events/{E}/at?at=now",
    f"/api/events/{E}/at?at=1700000000",
    f"/api/events/{E}/at",
    f"/api/events/{E}/at?at=2026-02-24T10:00:00Z&at=2026-02-24T11:00:00Z",
    f"/api/events/{E}/at?at=2026-02-24T10:00:00Z&unknown=1",
    "/api/events/999/at?at=2026-02-24T10:00:00Z",  # unknown event: 404
    "/api/events/abc/at?at=2026-02-24T10:00:00Z",
]
REQUESTS = DETAIL_REQUESTS + HISTORY_REQUESTS + AT_REQUESTS


def _basic(name: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}


@pytest.fixture(scope="module")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gateway") / "users.json"
    users.add(path, VIEWER[0], users.Role.viewer, VIEWER[1])
    return path


def _client(app: FastAPI) -> httpx.AsyncClient:
    # httpx's ASGI transport runs no lifespan: the query client is opened by its own fixture instead.
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


def _both(query_client: QueryClient, **kwargs: Any) -> tuple[httpx.AsyncClient, httpx.AsyncClient]:
    """Clients of two apps alike but for the prepared reads: with them, and without (the FastAPI routes)."""
    return (
        _client(create_app(query_client, prepared=True, **kwargs)),
        _client(create_app(query_client, prepared=False, **kwargs)),
    )


def _answer(response: httpx.Response) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    return response.status_code, list(response.headers.raw), response.content


async def _same(
    prepared: httpx.AsyncClient, routes: httpx.AsyncClient, method: str, url: str, headers: dict[str, str] | None = None
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    ours = _answer(await prepared.request(method, url, headers=headers))
    theirs = _answer(await routes.request(method, url, headers=headers))
    assert ours == theirs, f"{method} {url}"
    return ours


async def test_every_prepared_read_answers_as_the_fastapi_route_does(
    query_client: QueryClient, fake: FakeQueryService
) -> None:
    prepared, routes = _both(query_client)
    async with prepared, routes:
        statuses = {url: (await _same(prepared, routes, "GET", url))[0] for url in REQUESTS}
        for method in ("HEAD", "POST", "OPTIONS"):
            await _same(prepared, routes, method, f"/api/events/{E}")
    # The list covers each kind of answer on each route, so the comparison above is not of 404s alone.
    assert statuses[f"/api/events/{E}"] == statuses[f"{HISTORY}/3743/history?bookmaker_slug=betpawa"] == 200
    assert statuses[f"/api/events/{E}/at?at=2026-02-24T10:00:00Z"] == 200
    assert statuses["/api/events/999"] == statuses[f"{HISTORY}/3743/history?bookmaker_slug=nobody"] == 404
    assert statuses["/api/events/999/at?at=2026-02-24T10:00:00Z"] == 404
    assert statuses["/api/events/abc"] == statuses[f"{HISTORY}/3743/history"] == statuses[f"/api/events/{E}/at"] == 422
    assert statuses[f"{HISTORY}/3743/history?bookmaker_slug=bet%00pawa"] == 422
    assert statuses["/api/events/tournaments"] == 200


FAILURES = [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT]


@pytest.mark.parametrize("code", FAILURES)
async def test_a_failing_query_service_gives_the_same_answers_on_both_paths(
    query_client: QueryClient, fake: FakeQueryService, code: grpc.StatusCode
) -> None:
    fake.abort_with = code
    prepared, routes = _both(query_client)
    async with prepared, routes:
        for url in (f"/api/events/{E}", f"{HISTORY}/3743/history?bookmaker_slug=betpawa", AT_REQUESTS[0]):
            status, headers, _ = await _same(prepared, routes, "GET", url)
            assert status == {"UNAVAILABLE": 503, "INTERNAL": 502, "INVALID_ARGUMENT": 422}[code.name]
            assert (b"retry-after", b"1") in headers if status == 503 else True


async def test_authentication_treats_the_prepared_reads_as_the_routes(
    query_client: QueryClient, fake: FakeQueryService, users_file: Path
) -> None:
    prepared, routes = _both(query_client, users=users.load(users_file))
    async with prepared, routes:
        for url in (f"/api/events/{E}", f"{HISTORY}/3743/history?bookmaker_slug=betpawa", AT_REQUESTS[0]):
            assert (await _same(prepared, routes, "GET", url))[0] == 401
            assert (await _same(prepared, routes, "GET", url, _basic(VIEWER[0], "wrong")))[0] == 401
            assert (await _same(prepared, routes, "GET", url, _basic(*VIEWER)))[0] == 200


async def test_rate_limits_treat_the_prepared_reads_as_the_routes(
    query_client: QueryClient, fake: FakeQueryService
) -> None:
    # A clock that never moves: the burst is all a client gets.
    prepared, routes = _both(query_client, limits=Limits(1024, 1.0, 2), limits_clock=lambda: 0.0)
    async with prepared, routes:
        statuses = [(await _same(prepared, routes, "GET", f"/api/events/{E}"))[0] for _ in range(3)]
    assert statuses == [200, 200, 429]


async def test_the_prepared_reads_are_answered_without_the_fastapi_routes(
    query_client: QueryClient, fake: FakeQueryService
) -> None:
    """Otherwise the comparisons above would compare the routes with themselves: with the routes' query client
    replaced by a refusal, the prepared reads still answer, and what they leave to FastAPI meets the refusal."""

    async def refused() -> QueryClient:
        raise HTTPException(418, "the FastAPI route answered")

    prepared, routes = _both(query_client)
    for client in (prepared, routes):
        client._transport.app.dependency_overrides[get_query] = refused  # type: ignore[attr-defined]
    async with prepared, routes:
        for url in (f"/api/events/{E}", f"{HISTORY}/3743/history?bookmaker_slug=betpawa", AT_REQUESTS[0]):
            assert (await prepared.get(url)).status_code == 200
            assert (await routes.get(url)).status_code == 418
        assert (await prepared.get(f"/api/events/{E}?unknown=1")).status_code == 418
