"""schemathesis over the gateway's OpenAPI, against the fake query and retention services: no 5xx, responses
match the schema.

The fakes run on their own event loop in a thread (real grpc.aio servers on loopback); schemathesis drives
the ASGI app in-process on its shared event-loop thread and runs the app's lifespan there, which opens the
clients' channels on that loop. The schema is read at collection time from an app that is never served
(create_app opens nothing), and the cases are sent to the app wired to the fakes. Every operation is
covered: events, history, health, and storage, cleanup and settings.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation.case import Case
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.gateway.app import create_app
from services.gateway.query_client import QueryClient
from services.gateway.retention_client import RetentionClient
from tests.gateway_fakes import fake_backends_in_thread
from tests.polling import TIMEOUT_SECONDS

# schemathesis.pytest.from_fixture (the lazy loader) does not work with this pytest (it sets a private node
# attribute that pytest 9 no longer has), hence the schema from the app's own OpenAPI document.
schema = schemathesis.openapi.from_dict(
    create_app(QueryClient("127.0.0.1:1", 1.0), RetentionClient("127.0.0.1:1", 1.0)).openapi()
)


@pytest.fixture(scope="module")
def gateway() -> Iterator[FastAPI]:
    with fake_backends_in_thread() as (query, retention):
        yield create_app(
            QueryClient(query.address, deadline_seconds=TIMEOUT_SECONDS),
            RetentionClient(retention.address, deadline_seconds=TIMEOUT_SECONDS),
        )


@schema.parametrize()
# 25 per operation keeps the run under ~10 s; GATEWAY_FUZZ_EXAMPLES=500 for a deeper run by hand.
# Derandomized so that CI is reproducible (GATEWAY_FUZZ_RANDOM=1 explores new inputs by hand).
@settings(
    max_examples=int(os.environ.get("GATEWAY_FUZZ_EXAMPLES", "25")),
    derandomize=os.environ.get("GATEWAY_FUZZ_RANDOM") != "1",
    deadline=None,  # a busy machine may take seconds over one example; the fakes' answers are what is checked
    suppress_health_check=list(HealthCheck),
)
def test_the_gateway_never_fails_and_conforms_to_its_own_schema(case: Case[Any], gateway: FastAPI) -> None:
    # What the issue asks: no 5xx and responses that match the schema. schemathesis's negative-data
    # checks are left out: they misread repeated string query parameters (countries=false is a string).
    checks = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]
    case.call_and_validate(app=gateway, base_url="http://testserver", checks=checks)
