"""The gateway's adapter of QueryService: a grpc.aio client with a deadline on every call.

gRPC failures leave this module as the domain errors below, which app.py translates to HTTP.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from oddstore import tls
from oddstore.grpc_server import client_options
from oddstore.v1 import query_pb2, query_pb2_grpc

logger = logging.getLogger(__name__)

QUERY_SERVICE_NAME = query_pb2.DESCRIPTOR.services_by_name["QueryService"].full_name


class QueryError(Exception):
    """A call to a backend service failed; `message` is what the service (or the transport) said.

    The subclasses are the gateway's domain errors for every backend (retention_client.py raises them too).
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(QueryError):
    pass


class InvalidArgument(QueryError):
    pass


class Unavailable(QueryError):
    """Transient: the service is down, overloaded or did not answer within the deadline."""


class QueryFailed(QueryError):
    """Any other status: a fault on the service side."""


class Conflict(QueryError):
    """ABORTED: the request conflicts with work in progress (a cleanup run is already running)."""


_TRANSIENT = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.CANCELLED,
}


def translate(error: grpc.aio.AioRpcError, service: str, method: str, deadline: float) -> QueryError:
    """A backend's gRPC status as the gateway's domain error; `service` names the backend in messages."""
    code = error.code()
    details = error.details() or ""
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(details or "Not found")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgument(details or "Invalid argument")
    if code == grpc.StatusCode.ABORTED:
        return Conflict(details or "Conflict")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return Unavailable(f"{service} did not answer {method} within {deadline:g} s")
    if code in _TRANSIENT:
        return Unavailable(f"{service} unavailable ({code.name}): {details}".rstrip(": "))
    return QueryFailed(f"{service} failed {method} ({code.name}): {details}".rstrip(": "))


@dataclass(frozen=True)
class Health:
    serving: bool
    latency_ms: int
    error: str | None


class QueryClient:
    """Created by bootstrap, opened in the app's lifespan (so the channel belongs to the serving event loop)."""

    def __init__(self, address: str, deadline_seconds: float, *, tls_files: tls.TlsFiles = tls.PLAINTEXT) -> None:
        self.address = address
        self._tls = tls_files
        self.deadline = deadline_seconds
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = None
        self._health: Any = None

    async def open(self) -> None:
        """Idempotent; channels connect lazily, so this succeeds even while the service is down."""
        if self._channel is None:
            self._channel = tls.channel(self.address, self._tls, client_options())
            self._stub = query_pb2_grpc.QueryServiceStub(self._channel)
            self._health = health_pb2_grpc.HealthStub(self._channel)

    async def close(self) -> None:
        if self._channel is not None:
            channel, self._channel = self._channel, None
            await channel.close()

    async def _call(self, method: str, request: Any) -> Any:
        if self._stub is None:
            raise Unavailable("Query client is not open")
        try:
            return await getattr(self._stub, method)(request, timeout=self.deadline)
        except grpc.aio.AioRpcError as error:
            translated = translate(error, "Query service", method, self.deadline)
            if isinstance(translated, Unavailable | QueryFailed):
                logger.warning("%s failed: %s", method, translated.message)
            raise translated from error

    async def list_events(self, request: query_pb2.ListEventsRequest) -> query_pb2.ListEventsResponse:
        response: query_pb2.ListEventsResponse = await self._call("ListEvents", request)
        return response

    async def get_event(self, event_id: int) -> query_pb2.EventDetail:
        response: query_pb2.EventDetail = await self._call("GetEvent", query_pb2.GetEventRequest(event_id=event_id))
        return response

    async def json_body(self, method: str, request: Any) -> bytes:
        """A UI-contract body the query service rendered (its *Json methods), to be sent as it is."""
        response: query_pb2.JsonBody = await self._call(method, request)
        return response.json

    async def count_alerts(self) -> int:
        response: query_pb2.CountAlertsResponse = await self._call("CountAlerts", query_pb2.CountAlertsRequest())
        return response.count

    async def list_tournaments(self, availability: query_pb2.Availability.ValueType) -> list[query_pb2.Tournament]:
        request = query_pb2.ListTournamentsRequest(availability=availability)
        response: query_pb2.ListTournamentsResponse = await self._call("ListTournaments", request)
        return list(response.tournaments)

    async def list_countries(self, availability: query_pb2.Availability.ValueType) -> list[str]:
        request = query_pb2.ListCountriesRequest(availability=availability)
        response: query_pb2.ListCountriesResponse = await self._call("ListCountries", request)
        return list(response.countries)

    async def get_market_history(self, request: query_pb2.GetMarketHistoryRequest) -> query_pb2.MarketHistory:
        response: query_pb2.MarketHistory = await self._call("GetMarketHistory", request)
        return response

    async def get_event_at(self, request: query_pb2.GetEventAtRequest) -> query_pb2.EventAt:
        response: query_pb2.EventAt = await self._call("GetEventAt", request)
        return response

    async def get_time_to_kickoff(self, request: query_pb2.GetTimeToKickoffRequest) -> query_pb2.TimeToKickoff:
        response: query_pb2.TimeToKickoff = await self._call("GetTimeToKickoff", request)
        return response

    async def get_tournament_margin_to_kickoff(
        self, request: query_pb2.GetTournamentMarginToKickoffRequest
    ) -> query_pb2.TournamentMarginToKickoff:
        response: query_pb2.TournamentMarginToKickoff = await self._call("GetTournamentMarginToKickoff", request)
        return response

    async def subscribe(
        self, request: query_pb2.SubscribeRequest, *, wait_for_ready: bool = True
    ) -> AsyncGenerator[query_pb2.SubscribeResponse, None]:
        """The live stream, without a deadline: it lasts as long as the caller reads it. By default waits for
        a query service that is not up yet rather than failing at once. The call ends when the caller stops."""
        if self._stub is None:
            raise Unavailable("Query client is not open")
        call = self._stub.Subscribe(request, wait_for_ready=wait_for_ready)
        try:
            async for response in call:
                yield response
        except grpc.aio.AioRpcError as error:
            raise translate(error, "Query service", "Subscribe", self.deadline) from error
        finally:
            call.cancel()

    async def health(self) -> Health:
        """The query service's standard grpc.health.v1 status; never raises."""
        if self._health is None:
            return Health(False, 0, "Query client is not open")
        start = time.perf_counter()
        try:
            response = await self._health.Check(
                health_pb2.HealthCheckRequest(service=QUERY_SERVICE_NAME), timeout=self.deadline
            )
        except grpc.aio.AioRpcError as error:
            elapsed = round((time.perf_counter() - start) * 1000)
            return Health(False, elapsed, f"{error.code().name}: {error.details() or ''}".rstrip(": "))
        elapsed = round((time.perf_counter() - start) * 1000)
        if response.status != health_pb2.HealthCheckResponse.SERVING:
            status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
            return Health(False, elapsed, f"query service {status}")
        return Health(True, elapsed, None)
