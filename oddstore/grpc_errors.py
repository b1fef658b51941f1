"""Domain and database errors to gRPC status codes: the one translation the read servicers share."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import grpc

from oddstore.db import transient

logger = logging.getLogger(__name__)

T = TypeVar("T")

ErrorCodes = Sequence[tuple[type[Exception], grpc.StatusCode]]
# Status details travel in a header that gRPC caps at 16 KiB: a message that quotes a huge input (a
# 20,000-character market id) would turn a NOT_FOUND into RESOURCE_EXHAUSTED on the client.
MAX_DETAILS = 1000


def details(message: str) -> str:
    return message if len(message) <= MAX_DETAILS else message[: MAX_DETAILS - 1] + "…"


@dataclass(frozen=True, slots=True)
class StatusMapping:
    """A service's domain errors and their status codes, checked first; then UNAVAILABLE when the database is
    not reachable right now (worth retrying), else INTERNAL (the traceback goes to the log, not to the caller)."""

    service: str  # named in INTERNAL messages: where to look for the traceback
    codes: ErrorCodes  # first match wins: list a subclass before its base

    async def answer(self, context: grpc.aio.ServicerContext, method: str, work: Callable[[], Awaitable[T]]) -> T:
        """Runs one call, aborting it with the status code its error maps to."""
        try:
            return await work()
        except grpc.aio.AbortError:
            raise  # the call was already answered with a status
        except Exception as exc:
            code = next((code for kind, code in self.codes if isinstance(exc, kind)), None)
            if code is not None:
                await context.abort(code, details(str(exc)))
            if transient(exc):
                logger.warning("%s: database unavailable: %s", method, exc)
                await context.abort(grpc.StatusCode.UNAVAILABLE, details(f"database unavailable: {exc}"))
            logger.exception("%s failed", method)
            await context.abort(grpc.StatusCode.INTERNAL, f"{method} failed; see the {self.service} service log")
        raise AssertionError("context.abort raises")
