"""The fake query service the gateway's contract tests run against (tests/gateway_fakes.py), one per test module;
a module that needs another backend defines these fixtures itself."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from services.gateway.query_client import QueryClient
from tests.gateway_fakes import FakeBackend, FakeQueryService, start_fake_backend
from tests.polling import TIMEOUT_SECONDS


@pytest.fixture(scope="module")
async def backend() -> AsyncIterator[FakeBackend]:
    backend = await start_fake_backend()
    yield backend
    await backend.server.stop(0)


@pytest.fixture(scope="module")
async def query_client(backend: FakeBackend) -> AsyncIterator[QueryClient]:
    client = QueryClient(backend.address, deadline_seconds=TIMEOUT_SECONDS)
    await client.open()
    yield client
    await client.close()


@pytest.fixture
def fake(backend: FakeBackend) -> Iterator[FakeQueryService]:
    backend.fake.reset()
    yield backend.fake
    backend.fake.reset()
