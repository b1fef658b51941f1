"""The gateway's pure parts, without a service behind it: health rules, UTC formatting, conversions of the
retention service's answers, settings, and the refused websocket."""

from __future__ import annotations

from collections.abc import MutableMapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from oddstore.v1 import retention_pb2
from services.gateway import convert
from services.gateway.app import create_app
from services.gateway.config import GatewaySettings
from services.gateway.models import format_utc
from services.gateway.query_api import overall_status
from services.gateway.query_client import QueryClient


def test_the_overall_status_follows_the_old_rules() -> None:
    assert overall_status(True, [True, True, True]) == "healthy"
    assert overall_status(True, [True, False, True]) == "degraded"
    assert overall_status(True, [False, False, False]) == "unhealthy"
    assert overall_status(False, [True, True, True]) == "unhealthy"


async def test_the_websocket_handshake_is_refused_with_404() -> None:
    app = create_app(QueryClient("127.0.0.1:1", 0.5))
    scope = {
        "type": "websocket", "asgi": {"version": "3.0"}, "scheme": "ws", "path": "/api/ws", "raw_path": b"/api/ws",
        "root_path": "", "query_string": b"", "headers": [], "subprotocols": [], "server": ("testserver", 80),
        "extensions": {"websocket.http.response": {}},
    }  # fmt: skip
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    assert sent[0]["type"] == "websocket.http.response.start" and sent[0]["status"] == 404


def test_timestamps_are_formatted_in_utc_with_a_z() -> None:
    assert format_utc(datetime(2026, 2, 24, 15, 30, tzinfo=UTC)) == "2026-02-24T15:30:00Z"
    assert format_utc(datetime(2026, 2, 24, 17, 30, 0, 5, tzinfo=timezone(timedelta(hours=2)))) == (
        "2026-02-24T15:30:00.000005Z"
    )
    assert format_utc(datetime(2026, 2, 24, 15, 30)) == "2026-02-24T15:30:00Z"


def test_the_scrape_runs_the_service_counts_are_passed_through() -> None:
    # A taken-over database keeps the old system's scrape runs: the UI shows and cleans them (issue 10).
    stats = retention_pb2.DataStats(
        scrape_runs=retention_pb2.TableStats(count=5), scrape_batches=retention_pb2.TableStats(count=2)
    )
    assert (convert.data_stats(stats).scrape_runs.count, convert.data_stats(stats).scrape_batches.count) == (5, 2)
    counts = retention_pb2.CleanupCounts(scrape_runs=5, scrape_batches=6)
    preview = convert.cleanup_preview(counts)
    assert (preview.scrape_runs_count, preview.scrape_batches_count) == (5, 6)
    result = convert.cleanup_result(counts)
    assert (result.scrape_runs_deleted, result.scrape_batches_deleted) == (5, 6)


def test_the_retention_address_defaults_to_50054_and_is_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert GatewaySettings().retention_address == "127.0.0.1:50054"
    monkeypatch.setenv("GATEWAY_RETENTION_ADDRESS", "10.0.0.5:6000")
    monkeypatch.setenv("GATEWAY_CLEANUP_DEADLINE_SECONDS", "120")
    settings = GatewaySettings()
    assert settings.retention_address == "10.0.0.5:6000" and settings.cleanup_deadline_seconds == 120


def test_cutoffs_are_sent_as_utc_timestamps_and_come_back_with_a_z() -> None:
    counts = retention_pb2.CleanupCounts()
    counts.odds_cutoff.FromDatetime(datetime(2026, 2, 10, 10, 0, tzinfo=UTC))
    dumped = convert.cleanup_preview(counts).model_dump(mode="json", by_alias=True)
    assert dumped["oddsCutoffDate"] == "2026-02-10T10:00:00Z"
