"""Who may use the gateway: HTTP Basic over the users file. Viewers read (GET, the WebSocket, streams); admins also
change (cleanup, settings, alerts). An ASGI middleware, so every route (present and future, HTTP and WebSocket) is
covered without each declaring it; the browser asks for the password once and resends it on every same-origin
request and on the WebSocket handshake, so the UI works unchanged."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
from collections.abc import Callable, Mapping

from starlette.types import ASGIApp, Receive, Scope, Send

from oddstore.users import Role, User

logger = logging.getLogger(__name__)

# Health probes (the container HEALTHCHECK, load balancers) carry no credentials, and the answer tells nothing secret.
PUBLIC_PATHS = frozenset({"/api/health"})
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ADMIN_PATHS = frozenset({"/api/audit"})  # reads that are an admin's business: who did what
CHALLENGE = b'Basic realm="oddstore", charset="UTF-8"'
REMEMBERED = 1024


def required_role(kind: str, method: str, path: str) -> Role | None:
    """None: open to anyone."""
    if path in PUBLIC_PATHS:
        return None
    if path in ADMIN_PATHS:
        return Role.admin
    if kind == "websocket" or method in READ_METHODS:
        return Role.viewer
    return Role.admin


def basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    name, colon, password = decoded.partition(":")
    return (name, password) if colon else None


class Verifier:
    """Checks Basic credentials. argon2 costs ~50 ms of CPU by design, and the UI sends the header with every
    request: a header that passed is remembered (by its SHA-256, in memory only) so the hash runs once per user and
    password. `users` is asked on every request (entry_files.Watched reads the file again when it changes): when it
    answers other users, all that was remembered is forgotten, so a removed user or changed password is refused."""

    def __init__(self, users: Mapping[str, User] | Callable[[], Mapping[str, User]]) -> None:
        self._source: Callable[[], Mapping[str, User]] = users if callable(users) else (lambda: users)
        self._users = self._source()
        self._passed: dict[bytes, User] = {}

    async def user(self, header: str | None) -> User | None:
        users = self._source()
        if users is not self._users:
            self._users, self._passed = users, {}
        passed = self._passed  # a password checked against users since replaced is remembered in no current table
        if not header:
            return None
        key = hashlib.sha256(header.encode()).digest()
        known = passed.get(key)
        if known is not None:
            return known
        credentials = basic_credentials(header)
        if credentials is None:
            return None
        user = users.get(credentials[0])
        # In a thread: a verification must not stall every other request of the event loop.
        if user is None or not await asyncio.to_thread(user.verify, credentials[1]):
            return None
        if len(passed) >= REMEMBERED:
            passed.clear()
        passed[key] = user
        return user


def user_name(scope: Scope) -> str:
    """Who made this request: the authenticated user, or "anonymous" without authentication."""
    state = scope.get("state") or {}
    return str(state.get("user", "anonymous"))


class BasicAuth:
    """401 with a challenge without valid credentials, 403 for a viewer's change; a refused WebSocket handshake is
    closed before it is accepted (the server answers the upgrade with 403)."""

    def __init__(self, app: ASGIApp, verifier: Verifier) -> None:
        self.app = app
        self.verifier = verifier

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        role = required_role(scope["type"], scope.get("method", "GET"), scope["path"])
        if role is None:
            await self.app(scope, receive, send)
            return
        header = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), None)
        user = await self.verifier.user(header)
        client = (scope.get("client") or ("?", 0))[0]
        if user is not None:
            scope.setdefault("state", {})["user"] = user.name  # for the audit log, refused or not
        if user is None or user.role < role:
            status = 401 if user is None else 403
            who = "no valid credentials" if user is None else f"{user.name} ({user.role.name})"
            logger.warning("refused %s %s from %s: %s", scope.get("method", "WS"), scope["path"], client, who)
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            detail = "authentication required" if user is None else f"the {role.name} role is required"
            await _answer(send, status, detail, challenge=user is None)
            return
        await self.app(scope, receive, send)


async def _answer(send: Send, status: int, detail: str, *, challenge: bool) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if challenge:
        headers.append((b"www-authenticate", CHALLENGE))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
