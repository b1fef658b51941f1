"""Hostile parameters through the whole read path: the gateway over the real query and retention services on
real PostgreSQL. No input is answered with a 5xx; text PostgreSQL cannot hold is a 422 naming the parameter."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import quote

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.gateway.app import create_app
from services.gateway.query_client import QueryClient
from services.gateway.retention_client import RetentionClient
from services.writer.writer import Writer
from tests.factories import market, new_event_id, now, snapshot, write
from tests.gateway_stack import gateway_over_services

HOSTILE = st.one_of(
    st.text(st.characters(codec="utf-8"), max_size=40),
    st.sampled_from(["\x00", "3743\x00", "\x01\x7f", "x" * 4_000, "🏟⚽️", "مباراة\u202e", "-1", "1e400", "NaN"]),
)


@dataclass(frozen=True, slots=True)
class Route:
    path: str
    path_params: tuple[str, ...]
    query_params: tuple[str, ...]


def get_routes() -> list[Route]:
    """Every GET operation of the gateway's own OpenAPI document (the out-of-scope 404s are not in it)."""
    app = create_app(QueryClient("127.0.0.1:1", 1.0), RetentionClient("127.0.0.1:1", 1.0))
    routes = []
    for path, operations in app.openapi()["paths"].items():
        streamed = "text/event-stream" in operations.get("get", {}).get("responses", {}).get("200", {}).get(
            "content", {}
        )
        if "get" in operations and not streamed:  # a live stream never ends: /api/stream has its own tests
            params = operations["get"].get("parameters", [])
            names = {where: tuple(p["name"] for p in params if p["in"] == where) for where in ("path", "query")}
            routes.append(Route(path, names["path"], names["query"]))
    return routes


ROUTES = get_routes()
TEXT_PATH_PARAMS = {"market_id"}  # every other path parameter is an integer id


@dataclass(slots=True)
class Stack:
    api: httpx.AsyncClient
    event_id: int

    def url(self, route: Route, **overrides: str) -> str:
        values = {name: overrides.get(name, str(self.event_id) if name != "market_id" else "3743")
                  for name in route.path_params}  # fmt: skip
        return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], route.path)


@pytest.fixture
async def stack(migrated_dsn: str) -> AsyncIterator[Stack]:
    pool = await asyncpg.create_pool(migrated_dsn, min_size=1, max_size=2)
    e = new_event_id()
    await write(Writer(pool), [snapshot(e, now(), [market()])])
    await pool.close()
    async with gateway_over_services(migrated_dsn) as api:
        yield Stack(api, e)


def named(response: httpx.Response, where: str, name: str) -> bool:
    return response.status_code == 422 and any(
        d["loc"] == [where, name] and "NUL character" in d["msg"] for d in response.json()["detail"]
    )


async def test_a_nul_in_the_market_id_of_a_history_request_is_422_naming_it(stack: Stack) -> None:
    response = await stack.api.get(
        f"/api/events/{stack.event_id}/markets/%00/history", params={"bookmaker_slug": "betpawa"}
    )
    assert named(response, "path", "market_id"), response.text


@pytest.mark.parametrize(
    ("route", "param"),
    [(r, p) for r in ROUTES for p in r.query_params],
    ids=[f"{r.path}?{p}" for r in ROUTES for p in r.query_params],
)
async def test_a_nul_in_any_query_parameter_is_422_naming_it(stack: Stack, route: Route, param: str) -> None:
    response = await stack.api.get(stack.url(route), params={param: "a\x00"})
    assert response.status_code == 422, response.text
    # Our rule names it, or FastAPI's own validation of a typed parameter already did.
    assert any(d["loc"][-1] == param for d in response.json()["detail"]), response.text


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
async def test_no_hostile_parameter_gets_a_server_error(stack: Stack, data: st.DataObject) -> None:
    route = data.draw(st.sampled_from(ROUTES))
    overrides = {n: quote(data.draw(HOSTILE), safe="") for n in route.path_params if n in TEXT_PATH_PARAMS}
    params = {p: data.draw(HOSTILE) for p in route.query_params if data.draw(st.booleans())}
    response = await stack.api.get(stack.url(route, **overrides), params=params)
    assert response.status_code < 500, (route.path, overrides, params, response.text)
