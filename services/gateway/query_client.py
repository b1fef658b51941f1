"""The gateway's adapter of QueryService: a grpc.aio client with a deadline on every call.

gRPC failures leave this module as the domain errors below, which app.py translates to HTTP.
"""

from __future__ import annotations

import asyncio
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


@dataclass(frozen=True)
class Replica:
    address: str
    channel: grpc.aio.Channel
    stub: Any
    health: Any


class QueryClient:
    """Created by bootstrap, opened in the app's lifespan (so the channels belong to the serving event loop).

    `address` may list several query replicas, comma-separated: one channel each (each with its own TLS name).
    Reads take them in turn and move on to the next when one is UNAVAILABLE; streams follow one replica and
    move to the next when it cannot be reached."""

    def __init__(self, address: str, deadline_seconds: float, *, tls_files: tls.TlsFiles = tls.PLAINTEXT) -> None:
        self.address = address
        self.addresses = [a.strip() for a in address.split(",") if a.strip()]
        self._tls = tls_files
        self.deadline = deadline_seconds
        self._replicas: list[Replica] = []
        self._turn = 0  # the replica the next read starts with
        self.followed = 0  # the replica streams go to

    async def open(self) -> None:
        """Idempotent; channels connect lazily, so this succeeds even while the service is down."""
        if not self._replicas:
            for address in self.addresses:
                channel = tls.channel(address, self._tls, client_options())
                stub, health = query_pb2_grpc.QueryServiceStub(channel), health_pb2_grpc.HealthStub(channel)
                self._replicas.append(Replica(address, channel, stub, health))

    async def close(self) -> None:
        replicas, self._replicas = self._replicas, []
        for replica in replicas:
            await replica.channel.close()

    def _in_turn(self) -> list[Replica]:
        """Every replica, starting with the next in turn; those whose connection is failing last."""
        if not self._replicas:
            raise Unavailable("Query client is not open")
        n = len(self._replicas)
        self._turn = (self._turn + 1) % n
        ordered = [self._replicas[(self._turn + i) % n] for i in range(n)]
        failing = grpc.ChannelConnectivity.TRANSIENT_FAILURE
        return sorted(ordered, key=lambda r: r.channel.get_state() == failing)

    async def _call(self, method: str, request: Any) -> Any:
        replicas = self._in_turn()
        # One deadline for the request, whichever replicas it tries: past it the request answers 503, and a
        # database outage (every replica UNAVAILABLE) costs one deadline, not one per replica.
        ends = time.monotonic() + self.deadline
        for i, replica in enumerate(replicas):
            try:
                return await getattr(replica.stub, method)(request, timeout=max(0.0, ends - time.monotonic()))
            except grpc.aio.AioRpcError as error:
                if error.code() == grpc.StatusCode.UNAVAILABLE and i + 1 < len(replicas) and time.monotonic() < ends:
                    # Not reached (down, restarting): reads change nothing, so the next replica answers instead.
                    logger.warning("%s: query replica %s unavailable, asking the next", method, replica.address)
                    continue
                translated = translate(error, "Query service", method, self.deadline)
                if isinstance(translated, Unavailable | QueryFailed):
                    logger.warning("%s failed: %s", method, translated.message)
                raise translated from error
        raise AssertionError("unreachable: the last replica's error is raised")

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
        a query service that is not up yet rather than failing at once (with one replica; with several, a
        replica that cannot be reached fails the call at once and the next call goes to the next replica). The
        call ends when the caller stops."""
        if not self._replicas:
            raise Unavailable("Query client is not open")
        replica = self._replicas[self.followed % len(self._replicas)]
        several = len(self._replicas) > 1
        call = replica.stub.Subscribe(request, wait_for_ready=wait_for_ready and not several)
        received = False
        try:
            async for response in call:
                received = True
                yield response
        except grpc.aio.AioRpcError as error:
            if several and not received and error.code() == grpc.StatusCode.UNAVAILABLE:
                # From the replica that failed, not the counter: streams failing together move on once, not
                # once each (with two replicas, an even number of them would land back on the dead one).
                self.followed = (self._replicas.index(replica) + 1) % len(self._replicas)
                logger.warning("query replica %s unavailable: streams move to %s", replica.address,
                               self._replicas[self.followed].address)  # fmt: skip
            raise translate(error, "Query service", "Subscribe", self.deadline) from error
        finally:
            call.cancel()

    async def health(self) -> Health:
        """The query service's standard grpc.health.v1 status: serving when any replica is; never raises."""
        if not self._replicas:
            return Health(False, 0, "Query client is not open")
        found = await asyncio.gather(*(self._replica_health(r) for r in self._replicas))
        serving = [h for h in found if h.serving]
        if serving or len(found) == 1:
            return (serving or found)[0]
        errors = "; ".join(f"{r.address}: {h.error}" for r, h in zip(self._replicas, found, strict=True))
        return Health(False, max(h.latency_ms for h in found), errors)

    async def _replica_health(self, replica: Replica) -> Health:
        start = time.perf_counter()
        try:
            response = await replica.health.Check(
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
