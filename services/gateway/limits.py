"""What one client may ask of the gateway: requests per second (429) and request body size (413), as an ASGI
middleware in front of authentication, so a flood or an oversized body costs neither a password hash nor a call
to a backend; and the security headers of every answer."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Clients remembered at most; beyond, the buckets that have refilled (the same as forgotten) are dropped first.
MAX_CLIENTS = 10_000


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int
    rate_per_second: float  # 0: no rate limit
    burst: int


class RateLimiter:
    """A token bucket per client: `burst` requests at once, then `rate` per second. Pure: time is `clock`."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self._clock = rate, burst, clock
        self._buckets: dict[str, tuple[float, float]] = {}  # client → (tokens, when counted)

    def acquire(self, client: str) -> float:
        """0 when the request may go ahead (it takes a token), else the seconds until the client's next token."""
        now = self._clock()
        tokens, counted = self._buckets.get(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - counted) * self.rate)
        if tokens >= 1:
            self._remember(client, tokens - 1, now)
            return 0.0
        self._remember(client, tokens, now)
        return (1 - tokens) / self.rate

    def _remember(self, client: str, tokens: float, now: float) -> None:
        if client not in self._buckets and len(self._buckets) >= MAX_CLIENTS:
            full = [c for c, (t, at) in self._buckets.items() if t + (now - at) * self.rate >= self.burst]
            for c in full:
                del self._buckets[c]
            if len(self._buckets) >= MAX_CLIENTS:
                # That many clients at once, none idle: forgetting them all errs on their side, never on memory.
                self._buckets.clear()
        self._buckets[client] = (tokens, now)


class RequestLimits:
    """429 with Retry-After past a client's rate, 413 for a body over the limit (declared or streamed). The body is
    read here, up to the limit, and handed on: a chunked body has no length to check in advance."""

    def __init__(self, app: ASGIApp, limits: Limits, clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.limits = limits
        self.limiter = RateLimiter(limits.rate_per_second, limits.burst, clock) if limits.rate_per_second else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.limiter is not None:
            wait = self.limiter.acquire((scope.get("client") or ("?", 0))[0])
            if wait > 0:
                detail = (
                    f"too many requests: at most {self.limits.rate_per_second:g} per second per client"
                    f" (bursts of {self.limits.burst}); retry after {math.ceil(wait)} s"
                )
                await _answer(send, 429, detail, [(b"retry-after", str(math.ceil(wait)).encode())])
                return
        too_large = f"request body over {self.limits.max_body_bytes} bytes"
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > self.limits.max_body_bytes:
            await _answer(send, 413, too_large)
            return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.limits.max_body_bytes:
                await _answer(send, 413, too_large)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


# For the JSON API: nothing it answers is a page to frame, sniff, or load anything into.
API_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
)
# FastAPI's /docs and /redoc pages load their scripts and styles from jsDelivr and run one inline script.
DOCS_PATHS = frozenset({"/docs", "/redoc", "/docs/oauth2-redirect"})
DOCS_POLICY = (
    b"default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; style-src 'self' "
    b"https://cdn.jsdelivr.net https://fonts.googleapis.com; font-src https://fonts.gstatic.com; img-src 'self' "
    b"data: https://fastapi.tiangolo.com https://cdn.redoc.ly; connect-src 'self'; worker-src blob:; "
    b"frame-ancestors 'none'"
)
HSTS = (b"strict-transport-security", b"max-age=31536000")


class SecurityHeaders:
    """Adds the headers to every HTTP answer, refusals included; HSTS only when served over HTTPS."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = list(API_HEADERS)
        if scope["path"] in DOCS_PATHS:
            extra[-1] = (b"content-security-policy", DOCS_POLICY)
        if scope.get("scheme") == "https":
            extra.append(HSTS)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in extra if h[0] not in names)]
            await send(message)

        await self.app(scope, receive, with_headers)


async def _answer(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    start = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": start})
    await send({"type": "http.response.body", "body": body})
