"""A grpc.aio client of RetentionService with a deadline on every call, in the manner of query_client.py.

gRPC failures leave this module as the gateway's domain errors (query_client.py's, plus Conflict), which
app.py translates to HTTP.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc

from oddstore import tls
from oddstore.grpc_server import client_options
from oddstore.v1 import retention_pb2, retention_pb2_grpc
from services.gateway.query_client import QueryFailed, Unavailable, translate

logger = logging.getLogger(__name__)

RETENTION_SERVICE_NAME = retention_pb2.DESCRIPTOR.services_by_name["RetentionService"].full_name


class RetentionClient:
    """Created by bootstrap, opened in the app's lifespan (so the channel belongs to the serving event loop).

    `deadline` bounds the quick reads; `stats_deadline` the calls that count table rows (data statistics,
    preview); `cleanup_deadline` a manual run, which the HTTP request waits for (contract §14).
    """

    def __init__(
        self,
        address: str,
        deadline_seconds: float,
        *,
        stats_deadline_seconds: float | None = None,
        cleanup_deadline_seconds: float | None = None,
        tls_files: tls.TlsFiles = tls.PLAINTEXT,
    ) -> None:
        self.address = address
        self._tls = tls_files
        self.deadline = deadline_seconds
        self.stats_deadline = stats_deadline_seconds if stats_deadline_seconds is not None else deadline_seconds
        self.cleanup_deadline = cleanup_deadline_seconds if cleanup_deadline_seconds is not None else deadline_seconds
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = None

    async def open(self) -> None:
        """Idempotent; channels connect lazily, so this succeeds even while the service is down."""
        if self._channel is None:
            self._channel = tls.channel(self.address, self._tls, client_options())
            self._stub = retention_pb2_grpc.RetentionServiceStub(self._channel)

    async def close(self) -> None:
        if self._channel is not None:
            channel, self._channel = self._channel, None
            self._stub = None
            await channel.close()

    async def _call(self, method: str, request: Any, deadline: float | None = None) -> Any:
        if self._stub is None:
            raise Unavailable("Retention client is not open")
        timeout = self.deadline if deadline is None else deadline
        try:
            return await getattr(self._stub, method)(request, timeout=timeout)
        except grpc.aio.AioRpcError as error:
            translated = translate(error, "Retention service", method, timeout)
            if isinstance(translated, Unavailable | QueryFailed):
                logger.warning("%s failed: %s", method, translated.message)
            raise translated from error

    async def get_settings(self) -> retention_pb2.Settings:
        response: retention_pb2.Settings = await self._call("GetSettings", retention_pb2.GetSettingsRequest())
        return response

    async def update_settings(self, request: retention_pb2.UpdateSettingsRequest) -> retention_pb2.Settings:
        response: retention_pb2.Settings = await self._call("UpdateSettings", request)
        return response

    async def get_data_stats(self) -> retention_pb2.DataStats:
        request = retention_pb2.GetDataStatsRequest()
        response: retention_pb2.DataStats = await self._call("GetDataStats", request, self.stats_deadline)
        return response

    async def preview_cleanup(self, request: retention_pb2.CleanupRequest) -> retention_pb2.CleanupCounts:
        response: retention_pb2.CleanupCounts = await self._call("PreviewCleanup", request, self.stats_deadline)
        return response

    async def run_cleanup(self, request: retention_pb2.CleanupRequest) -> retention_pb2.CleanupCounts:
        response: retention_pb2.CleanupCounts = await self._call("RunCleanup", request, self.cleanup_deadline)
        return response

    async def list_cleanup_runs(self, limit: int) -> retention_pb2.CleanupRuns:
        request = retention_pb2.ListCleanupRunsRequest(limit=limit)
        response: retention_pb2.CleanupRuns = await self._call("ListCleanupRuns", request)
        return response

    async def get_storage_sizes(self) -> retention_pb2.StorageSizes:
        request = retention_pb2.GetStorageSizesRequest()
        response: retention_pb2.StorageSizes = await self._call("GetStorageSizes", request)
        return response

    async def list_storage_samples(self, limit: int) -> retention_pb2.StorageSamples:
        request = retention_pb2.ListStorageSamplesRequest(limit=limit)
        response: retention_pb2.StorageSamples = await self._call("ListStorageSamples", request)
        return response

    async def list_storage_alerts(self) -> list[retention_pb2.StorageAlert]:
        request = retention_pb2.ListStorageAlertsRequest()
        response: retention_pb2.StorageAlerts = await self._call("ListStorageAlerts", request)
        return list(response.alerts)

    async def resolve_storage_alert(self, alert_id: int) -> retention_pb2.StorageAlert:
        request = retention_pb2.ResolveStorageAlertRequest(alert_id=alert_id)
        response: retention_pb2.StorageAlert = await self._call("ResolveStorageAlert", request)
        return response

    async def record_audit(self, entry: retention_pb2.AuditEntry) -> retention_pb2.AuditEntry:
        response: retention_pb2.AuditEntry = await self._call("RecordAudit", entry)
        return response

    async def list_audit(self, limit: int) -> list[retention_pb2.AuditEntry]:
        response: retention_pb2.AuditEntries = await self._call(
            "ListAudit", retention_pb2.ListAuditRequest(limit=limit)
        )
        return list(response.entries)
