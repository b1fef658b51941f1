"""gRPC server lifecycle shared by the services: health, reflection, metrics, graceful stop."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from oddstore import callers, metrics, tls
from oddstore.text import unstorable

logger = logging.getLogger(__name__)


def unstorable_field(message: Message, prefix: str = "") -> str | None:
    """ "field: reason" for the first string of `message`, nested messages included, that PostgreSQL
    text cannot hold (oddstore.text), else None."""
    for fd, value in message.ListFields():
        values = value if fd.is_repeated else [value]
        name = prefix + fd.name
        for v in values:
            if fd.type == FieldDescriptor.TYPE_STRING:
                problem = unstorable(v)
                if problem is not None:
                    return f"{name}: {problem}"
            elif fd.type == FieldDescriptor.TYPE_MESSAGE and isinstance(v, Message):
                problem = unstorable_field(v, name + ".")
                if problem is not None:
                    return problem
    return None


Behaviour = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


class _UnaryWrapper(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Wraps every unary method's behaviour with `wrap`; streams pass as they are."""

    def wrap(self, method: str, inner: Behaviour) -> Behaviour:
        raise NotImplementedError

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        return grpc.unary_unary_rpc_method_handler(
            self.wrap(details.method, handler.unary_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


class _UnaryInterceptor(_UnaryWrapper):
    """Counts every unary call by method and status code, and times it."""

    def wrap(self, method: str, inner: Behaviour) -> Behaviour:
        async def timed(request: Any, context: grpc.aio.ServicerContext) -> Any:
            start = time.perf_counter()
            code = "OK"
            try:
                return await inner(request, context)
            except asyncio.CancelledError:
                code = "CANCELLED"
                raise
            except BaseException:
                code = context.code().name if context.code() is not None else "UNKNOWN"
                raise
            finally:
                metrics.GRPC_REQUESTS.labels(method, code).inc()
                metrics.GRPC_LATENCY.labels(method).observe(time.perf_counter() - start)

        return timed


class _TextCheck(_UnaryWrapper):
    """A unary request with a string no query could use (a NUL makes PostgreSQL fail the statement) is answered
    INVALID_ARGUMENT naming the field before the servicer: the caller's fault, never an INTERNAL of ours."""

    def wrap(self, method: str, inner: Behaviour) -> Behaviour:
        async def checked(request: Any, context: grpc.aio.ServicerContext) -> Any:
            problem = unstorable_field(request)
            if problem is not None:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
            return await inner(request, context)

        return checked


def health_status(serving: bool) -> int:
    return int(health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING)


class Server:
    """A grpc.aio server with the standard health service and reflection registered."""

    def __init__(self, server: grpc.aio.Server, port: int, health_servicer: Any, names: list[str]) -> None:
        self.grpc = server
        self.port = port
        self.health = health_servicer
        self.names = names

    async def start(self) -> None:
        await self.grpc.start()

    async def set_serving(self, serving: bool) -> None:
        for name in [*self.names, ""]:
            await self.health.set(name, health_status(serving))

    async def stop(self, grace: float) -> None:
        """Reports NOT_SERVING, lets in-flight calls finish for up to `grace` seconds, then stops."""
        await self.set_serving(False)
        await self.grpc.stop(grace)


UNREQUESTED_SECONDS = 600


def create_server(
    address: str,
    register: Callable[[grpc.aio.Server], None],
    service_names: Iterable[str],
    *,
    max_message_bytes: int = 64 * 1024 * 1024,
    check_text: bool = False,
    tls_files: tls.TlsFiles = tls.PLAINTEXT,
    allowed_clients: frozenset[str] | None = None,
    allowed_clients_variable: str = "allowed clients",
) -> Server:
    """Binds `address` (use port 0 in tests) and returns the server with its bound port. With
    `check_text`, requests carrying text PostgreSQL cannot store are refused before the servicer
    (not for the write path, which rejects per snapshot). `tls_files`: TLS, and mutual TLS with a CA; under
    mutual TLS, `allowed_clients` are the only client certificates served (oddstore.callers; None: any of the CA),
    configured by the environment variable named `allowed_clients_variable`."""
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        # Clients of long streams (the query's writer feeds) ping to detect a hung connection (keepalive_options);
        # the default policy (one ping per 5 minutes without data, then GOAWAY) would cut them for it.
        ("grpc.http2.min_ping_interval_without_data_ms", 100),
        ("grpc.http2.max_ping_strikes", 0),
        ("grpc.keepalive_permit_without_calls", 1),
        # gRPC cancels a call the application has not picked up within 30 s, and grpc.aio picks up one call per turn
        # of the event loop: while long work runs between awaits (100 Subscribe images of 100 events each, tens of ms
        # per message each), a turn took seconds, and the last of 100 streams opened at once ended CANCELLED without
        # a message (bench/feed.py, 2026-11-27). A call waits for its turn as long as the loop is busy instead.
        ("grpc.server_max_unrequested_time_in_server", UNREQUESTED_SECONDS),
    ]
    # In this order, the first outermost: every call counted; a caller refused before its request is looked at.
    interceptors: list[grpc.aio.ServerInterceptor] = [_UnaryInterceptor()]
    if tls_files.ca is not None and allowed_clients is not None:
        interceptors.append(callers.Authorize(allowed_clients, allowed_clients_variable))
        logger.info("mutual TLS: served to client certificates named %s", ", ".join(sorted(allowed_clients)))
    if check_text:
        interceptors.append(_TextCheck())
    server = grpc.aio.server(interceptors=interceptors, options=options)
    register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = list(service_names)
    reflection.enable_server_reflection(
        [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], server
    )
    port = tls.add_port(server, address, tls_files)
    if port == 0:
        raise OSError(f"could not bind gRPC server to {address}")
    return Server(server, port, health_servicer, names)


async def wait_for_signal() -> None:
    """Returns on SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    logger.info("stop requested")


def keepalive_options(seconds: float) -> list[tuple[str, Any]]:
    """A ping after `seconds` without traffic, and the connection closed when it is not answered within as long:
    a peer that hangs (a frozen host, a silently dropped route) is noticed, where TCP alone may wait for hours."""
    ms = max(1, round(seconds * 1000))
    return [
        ("grpc.keepalive_time_ms", ms),
        ("grpc.keepalive_timeout_ms", ms),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.http2.ping_timeout_ms", ms),  # measured: without it, gRPC 1.85 waits for an ack far longer
    ]


def client_options(max_message_bytes: int = 64 * 1024 * 1024) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]
