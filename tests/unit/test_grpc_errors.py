"""The translation of domain and database errors to gRPC status codes: the read servicers' shared one, the writer's."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

import asyncpg
import grpc
import pytest

from oddstore.grpc_errors import StatusMapping
from oddstore.v1 import writer_pb2
from services.writer.grpc_api import WriterServicer
from services.writer.writer import Writer


class Missing(LookupError):
    pass


class MissingAlert(Missing):
    pass


class FakeContext:
    """Records the status a call was aborted with and raises as grpc.aio's abort does."""

    def __init__(self) -> None:
        self.status: tuple[grpc.StatusCode, str] | None = None

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.status = (code, details)
        raise grpc.aio.AbortError()


MAPPING = StatusMapping(
    "demo",
    (
        (ValueError, grpc.StatusCode.INVALID_ARGUMENT),
        (MissingAlert, grpc.StatusCode.FAILED_PRECONDITION),
        (Missing, grpc.StatusCode.NOT_FOUND),
    ),
)


async def status_of(work: Callable[[], Awaitable[Any]]) -> tuple[grpc.StatusCode, str] | None:
    context = FakeContext()
    with pytest.raises(grpc.aio.AbortError):
        await MAPPING.answer(cast(grpc.aio.ServicerContext, context), "GetThing", work)
    return context.status


def failing(exc: BaseException) -> Callable[[], Awaitable[None]]:
    async def work() -> None:
        raise exc

    return work


async def test_a_successful_call_returns_its_value_and_is_not_aborted() -> None:
    context = FakeContext()

    async def work() -> int:
        return 42

    assert await MAPPING.answer(cast(grpc.aio.ServicerContext, context), "GetThing", work) == 42
    assert context.status is None


async def test_domain_errors_answer_their_code_with_their_message_the_first_listed_match_winning() -> None:
    assert await status_of(failing(ValueError("limit: must be between 1 and 100, got 0"))) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "limit: must be between 1 and 100, got 0",
    )
    assert await status_of(failing(Missing("event 7 not found"))) == (grpc.StatusCode.NOT_FOUND, "event 7 not found")
    assert await status_of(failing(MissingAlert("alert 3 not found"))) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "alert 3 not found",
    )


async def test_an_unreachable_database_answers_unavailable() -> None:
    code, message = await status_of(failing(asyncpg.exceptions.CannotConnectNowError("starting up"))) or (None, "")
    assert code is grpc.StatusCode.UNAVAILABLE and message == "database unavailable: starting up"
    code, _ = await status_of(failing(ConnectionRefusedError("refused"))) or (None, "")
    assert code is grpc.StatusCode.UNAVAILABLE


async def test_anything_else_answers_internal_naming_the_method_and_service_and_logs_the_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert await status_of(failing(RuntimeError("secret detail"))) == (
        grpc.StatusCode.INTERNAL,
        "GetThing failed; see the demo service log",
    )
    assert [r.exc_info is not None and "GetThing failed" in r.getMessage() for r in caplog.records] == [True]


async def test_an_abort_from_inside_the_call_keeps_its_own_status() -> None:
    context = FakeContext()

    async def work() -> None:
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many")

    with pytest.raises(grpc.aio.AbortError):
        await MAPPING.answer(cast(grpc.aio.ServicerContext, context), "GetThing", work)
    assert context.status == (grpc.StatusCode.RESOURCE_EXHAUSTED, "too many")


async def test_a_message_quoting_a_huge_input_is_cut_to_fit_the_status_header() -> None:
    async def work() -> None:
        raise Missing(f"market {'x' * 20_000!r} not found")

    status = await status_of(work)
    assert status is not None and status[0] == grpc.StatusCode.NOT_FOUND
    assert len(status[1]) == 1000 and status[1].startswith("market 'xxx") and status[1].endswith("…")


CITUS_WORKER_DOWN = [
    asyncpg.exceptions.InternalServerError("failure on connection marked as essential: 127.0.0.1:9701"),
    asyncpg.exceptions.InternalServerError("failed to prepare transaction 'citus_0_51_7_2' on host 127.0.0.1:9701"),
    asyncpg.exceptions.InternalServerError("could not connect to any active placements"),
    asyncpg.exceptions.PostgresIOError("failed to COPY to shard 102010 on 127.0.0.1:9701"),
    asyncpg.exceptions.ConnectionFailureError("connection to the remote node postgres@127.0.0.1:9701 failed"),
]


@pytest.mark.parametrize("exc", CITUS_WORKER_DOWN, ids=lambda e: str(e)[:40])
async def test_a_citus_worker_out_of_reach_answers_unavailable(exc: Exception) -> None:
    code, message = await status_of(failing(exc)) or (None, "")
    assert code is grpc.StatusCode.UNAVAILABLE and message == f"database unavailable: {exc}"


async def test_other_internal_errors_of_the_database_answer_internal() -> None:
    internal = asyncpg.exceptions.InternalServerError("no partition of relation found for row")
    assert await status_of(failing(internal)) == (grpc.StatusCode.INTERNAL, "GetThing failed; see the demo service log")


class FailingWriter:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    async def write(self, snapshots: object) -> list[object]:
        raise self.exc


@pytest.mark.parametrize(
    ("exc", "code"),
    [(CITUS_WORKER_DOWN[0], grpc.StatusCode.UNAVAILABLE), (RuntimeError("bug"), grpc.StatusCode.INTERNAL)],
    ids=["citus worker down", "a bug"],
)
async def test_the_writer_answers_a_citus_worker_out_of_reach_as_unavailable_and_a_bug_as_internal(
    exc: Exception, code: grpc.StatusCode
) -> None:
    servicer = WriterServicer(cast(Writer, FailingWriter(exc)))
    context = FakeContext()
    with pytest.raises(grpc.aio.AbortError):
        await servicer.WriteBatch(writer_pb2.WriteBatchRequest(), cast(grpc.aio.ServicerContext, context))
    assert context.status is not None and context.status[0] is code
