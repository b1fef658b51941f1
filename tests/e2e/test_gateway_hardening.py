"""The gateway's limits and headers against uvicorn on loopback over fake query and retention services (real gRPC
servers): bodies over the limit (declared or streamed) answered 413, a client past its rate 429 until its clock
moves on, the security headers on every answer, refusals included."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn

from services.gateway.app import create_app
from services.gateway.limits import Limits
from services.gateway.query_client import QueryClient
from services.gateway.retention_client import RetentionClient
from tests.gateway_fakes import FakeRetentionBackend, start_fake_backend, start_fake_retention_backend
from tests.polling import TIMEOUT_SECONDS, eventually

MAX_BODY = 1000
RATE, BURST = 1.0, 5


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Gateway:
    url: str
    clock: Clock
    retention: FakeRetentionBackend

    def received(self, method: str) -> int:
        return sum(name == method for name, _ in self.retention.fake.received)


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    query, retention = await start_fake_backend(), await start_fake_retention_backend()
    clock = Clock()
    app = create_app(
        QueryClient(query.address, TIMEOUT_SECONDS),
        RetentionClient(retention.address, TIMEOUT_SECONDS),
        limits=Limits(MAX_BODY, RATE, BURST),
        limits_clock=clock,
    )
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on"))
    serving = asyncio.create_task(server.serve())
    await eventually(lambda: server.started, "the gateway serving")
    port = server.servers[0].sockets[0].getsockname()[1]
    yield Gateway(f"http://127.0.0.1:{port}", clock, retention)
    server.should_exit = True
    await serving
    await query.server.stop(0)
    await retention.server.stop(0)


def _settings_body(size: int) -> bytes:
    body = b'{"oddsRetentionDays": 30}'
    return body + b" " * (size - len(body))  # JSON allows trailing white space: the same request, longer


async def test_a_body_at_the_limit_is_served_and_one_byte_over_is_refused_with_413(gateway: Gateway) -> None:
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        served = await client.put("/api/settings", content=_settings_body(MAX_BODY), headers=headers)
        assert served.status_code == 200, served.text
        refused = await client.put("/api/settings", content=_settings_body(MAX_BODY + 1), headers=headers)
    assert refused.status_code == 413
    assert refused.json() == {"detail": f"request body over {MAX_BODY} bytes"}
    assert gateway.received("UpdateSettings") == 1


async def test_a_streamed_body_without_a_length_is_refused_past_the_limit_too(gateway: Gateway) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        body = _settings_body(MAX_BODY * 3)
        for start in range(0, len(body), 100):
            yield body[start : start + 100]

    async with httpx.AsyncClient(base_url=gateway.url) as client:
        request = client.build_request("PUT", "/api/settings", content=chunks())
        assert "content-length" not in request.headers  # sent chunked
        refused = await client.send(request)
    assert refused.status_code == 413, refused.text
    assert gateway.received("UpdateSettings") == 0


async def test_a_client_past_its_burst_gets_429_until_its_next_token(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        statuses = [(await client.get("/api/health")).status_code for _ in range(BURST)]
        assert statuses == [200] * BURST
        refused = await client.get("/api/health")
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"
        assert "at most 1 per second per client (bursts of 5)" in refused.json()["detail"]
        gateway.clock.now += 1 / RATE
        assert (await client.get("/api/health")).status_code == 200
        assert (await client.get("/api/health")).status_code == 429


async def test_every_answer_carries_the_security_headers_refusals_included(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        answers = [
            await client.get("/api/health"),
            await client.get("/api/scheduler/status"),  # 404
            await client.put("/api/settings", content=_settings_body(MAX_BODY + 1)),  # 413
        ]
        while (answer := await client.get("/api/health")).status_code != 429:
            pass
        answers.append(answer)
        docs = await client.get("/docs")
    for answer in answers:
        assert answer.headers["x-content-type-options"] == "nosniff", answer.status_code
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert answer.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
        assert "strict-transport-security" not in answer.headers  # plain HTTP: HSTS would mean nothing
    # The docs page may load Swagger UI from its CDN, and nothing else.
    assert "script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net" in docs.headers["content-security-policy"]
