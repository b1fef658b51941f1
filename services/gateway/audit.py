"""The audit log: every change attempted through the gateway (any method but GET, HEAD, OPTIONS) is recorded after
it is answered, with who (the Basic user, or "anonymous"), what (method and path), when and the HTTP status, in the
retention service's audit_log table; GET /api/audit (admins) lists it."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from oddstore.convert import to_timestamp
from oddstore.v1 import retention_pb2
from services.gateway.auth import READ_METHODS, user_name
from services.gateway.dependencies import RetentionDep
from services.gateway.models import format_utc
from services.gateway.retention_client import RetentionClient

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api")


class AuditItem(BaseModel):
    id: int
    at: str
    actor: str
    action: str
    status: int
    client: str


class AuditResponse(BaseModel):
    entries: list[AuditItem]


@router.get("/audit", response_model=AuditResponse, tags=["audit"])
async def audit_log(retention: RetentionDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> AuditResponse:
    """The latest changes attempted through the gateway, newest first (admins only)."""
    entries = await retention.list_audit(limit)
    return AuditResponse(
        entries=[
            AuditItem(
                id=e.id,
                at=format_utc(e.at.ToDatetime()),
                actor=e.actor,
                action=e.action,
                status=e.status,
                client=e.client,
            )
            for e in entries
        ]
    )


class AuditLog:
    """Outside the authentication middleware, so refused attempts (401, 403) are recorded too."""

    def __init__(self, app: ASGIApp, retention: RetentionClient) -> None:
        self.app = app
        self.retention = retention

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in READ_METHODS:
            await self.app(scope, receive, send)
            return
        status = 500  # what the client gets if the app fails before answering

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            await self._record(scope, status)

    async def _record(self, scope: Scope, status: int) -> None:
        entry = retention_pb2.AuditEntry(
            at=to_timestamp(datetime.now(UTC)),
            actor=user_name(scope),
            action=f"{scope['method']} {scope['path']}",
            status=status,
            client=(scope.get("client") or ("", 0))[0],
        )
        logger.info("audit: %s %s -> %d", entry.actor, entry.action, status)
        try:
            await self.retention.record_audit(entry)
        except Exception:
            # The change itself is done (or refused); the log line above keeps the record.
            logger.exception("could not store the audit record of %s %s", entry.actor, entry.action)
