"""Which client certificates may call a gRPC service under mutual TLS: names from the environment, checked per call.

The CA decides who is one of ours; this decides which of ours may call which service (the gateway may read the query
service, not write to the writer). A name matches a certificate's common name or one of its DNS names, as
`oddstore certs NAME` issues them.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any

import grpc

logger = logging.getLogger(__name__)

ANY = "*"
# Every certificate `oddstore certs` makes carries these (for a container's own health probe): allowing one would
# allow every certificate of the CA, which `*` says plainly.
SHARED_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
# The health service answers probes (the container's own, with its own certificate; `oddstore run`) and says nothing.
OPEN_PREFIX = "/grpc.health.v1.Health/"
_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?")


def parse(value: str | Iterable[str] | None) -> frozenset[str] | None:
    """ "ingest, query" → those names; "*" (or None) → None, any certificate of the CA. Raises ValueError."""
    if value is None:
        return None
    names = [n.strip() for n in (value.split(",") if isinstance(value, str) else value) if n.strip()]
    if names == [ANY]:
        return None
    if not names:
        raise ValueError("no client name: list the certificates' names, or * for any certificate of the CA")
    for name in names:
        if name == ANY:
            raise ValueError("* allows any certificate of the CA: give it alone")
        if not _NAME.fullmatch(name):
            raise ValueError(f"{name!r}: expected a certificate's name, e.g. ingest")
        if name in SHARED_NAMES:
            raise ValueError(f"{name!r} is in every certificate `oddstore certs` makes: use * to allow any")
    return frozenset(names)


def names(auth_context: Mapping[str, Iterable[bytes]]) -> list[str]:
    """The client certificate's common name, then its DNS names; empty without a client certificate."""
    found = [*auth_context.get("x509_common_name", ()), *auth_context.get("peer_dns", ())]
    return list(dict.fromkeys(v.decode(errors="replace") for v in found if v))


def allowed(auth_context: Mapping[str, Iterable[bytes]], clients: frozenset[str]) -> bool:
    return not clients.isdisjoint(names(auth_context))


Behaviour = Callable[[Any, grpc.aio.ServicerContext], Any]


class Authorize(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Answers PERMISSION_DENIED, naming the caller, to a client certificate not in `clients`, before the servicer.
    Only under mutual TLS: without a CA there is no client certificate to check."""

    def __init__(self, clients: frozenset[str], variable: str) -> None:
        self.clients = clients
        self.variable = variable  # named in the log, where an operator widens the list

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        method = details.method
        if handler is None or method.startswith(OPEN_PREFIX):
            return handler

        async def check(context: grpc.aio.ServicerContext) -> None:
            auth = context.auth_context()
            if allowed(auth, self.clients):
                return
            subject = b"".join(auth.get("x509_subject", ())).decode(errors="replace")
            caller = (names(auth) or [subject or "(no certificate)"])[0]
            logger.warning(
                "refused %s to client certificate %r: not in %s (%s)",
                method,
                caller,
                self.variable,
                ", ".join(sorted(self.clients)),
            )
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED, f"client certificate {caller!r} may not call {method}"
            )

        return _guarded(handler, check)


def _guarded(
    handler: grpc.RpcMethodHandler, check: Callable[[grpc.aio.ServicerContext], Awaitable[None]]
) -> grpc.RpcMethodHandler:
    """The same handler, `check` first. Request-streaming or not, a behaviour takes (request(s), context)."""

    def single(inner: Behaviour) -> Behaviour:
        async def behaviour(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await check(context)
            return await inner(request, context)

        return behaviour

    def streaming(inner: Behaviour) -> Behaviour:
        async def behaviour(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            await check(context)
            responses = inner(request, context)
            if inspect.isawaitable(responses):  # a servicer that writes with context.write
                await responses
                return
            async for response in responses:
                yield response

        return behaviour

    codec = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(single(handler.unary_unary), **codec)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(single(handler.stream_unary), **codec)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(streaming(handler.unary_stream), **codec)
    return grpc.stream_stream_rpc_method_handler(streaming(handler.stream_stream), **codec)
