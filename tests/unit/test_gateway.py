"""The gateway's pure parts, without a service behind it: health rules, UTC formatting, conversions of the
retention service's answers, settings, and the WebSocket's topics and conflation."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from oddstore.convert import to_timestamp
from oddstore.v1 import query_pb2, retention_pb2
from services.gateway import convert
from services.gateway.config import GatewaySettings
from services.gateway.live import CLOSE_TOO_SLOW, LiveOdds, Socket, parse_topics
from services.gateway.models import format_utc
from services.gateway.query_api import overall_status
from services.gateway.query_client import QueryClient
from tests.feeds import ManualTimer


def test_the_overall_status_follows_the_old_rules() -> None:
    assert overall_status(True, [True, True, True]) == "healthy"
    assert overall_status(True, [True, False, True]) == "degraded"
    assert overall_status(True, [False, False, False]) == "unhealthy"
    assert overall_status(False, [True, True, True]) == "unhealthy"


def test_websocket_topics_ignore_unknown_names_and_default_to_every_known_topic() -> None:
    assert parse_topics("odds_updates") == {"odds_updates"}
    assert parse_topics("odds_updates, nonsense,scrape_progress") == {"odds_updates", "scrape_progress"}
    assert parse_topics("nonsense") == parse_topics(None) == parse_topics("") == {"odds_updates", "scrape_progress"}


def changed(event_id: int, bookmaker: str, minute: int, snapshots: int = 1) -> query_pb2.OddsChanged:
    return query_pb2.OddsChanged(
        event_id=event_id, bookmaker=bookmaker, captured_at=to_timestamp(AT + timedelta(minutes=minute)),
        snapshots=snapshots,
    )  # fmt: skip


AT = datetime(2026, 2, 24, 10, tzinfo=UTC)


def live_odds(timer: ManualTimer, **kwargs: Any) -> LiveOdds:
    return LiveOdds(QueryClient("127.0.0.1:1", 0.5), window_seconds=1.0, clock=lambda: AT, timer=timer, **kwargs)


def sent(socket: Socket) -> list[dict[str, Any]]:
    return [json.loads(socket.frames.get_nowait()) for _ in range(socket.frames.qsize())]


def test_an_events_first_change_goes_out_at_once_with_both_payload_shapes_to_subscribed_sockets_only() -> None:
    timer = ManualTimer()
    live = live_odds(timer)
    odds, progress = live.connect({"odds_updates"}), live.connect({"scrape_progress"})
    # Changes that arrive together go out together, one message per event.
    live.record([changed(7, "betpawa", 1), changed(8, "bet9ja", 1)])
    live.record([changed(7, "sportybet", 2, snapshots=2), changed(7, "betpawa", 0)])
    assert live.next_due() == timer.now
    assert live.flush() == 2 and progress.frames.empty()
    messages = sent(odds)
    assert messages[0] == {
        "type": "odds_update",
        "timestamp": "2026-02-24T10:00:00Z",
        "data": {
            "event_ids": [7], "source": "sportybet", "snapshot_count": 4, "event_id": 7, "bookmaker": "sportybet",
            "snapshot_time": "2026-02-24T10:02:00Z",
        },
    }  # fmt: skip
    assert messages[1]["data"]["event_id"] == 8
    assert live.flush() == 0 and live.next_due() is None  # nothing new: nothing sent


def test_later_changes_of_an_event_within_its_window_are_merged_and_sent_when_the_window_ends() -> None:
    timer = ManualTimer()
    live = live_odds(timer)
    socket = live.connect({"odds_updates"})
    live.record([changed(7, "betpawa", 1)])
    assert live.flush() == 1
    timer.now += 0.3
    live.record([changed(7, "bet9ja", 2)])
    live.record([changed(8, "betpawa", 1)])  # another event, quiet: at once
    assert live.flush() == 1 and [m["data"]["event_id"] for m in sent(socket)] == [7, 8]
    timer.now += 0.5
    live.record([changed(7, "sportybet", 3, snapshots=2)])
    assert live.flush() == 0 and live.next_due() == 1001.0  # one window after event 7's message
    timer.now = 1000.999
    assert live.flush() == 0
    timer.now = 1001.0
    assert live.flush() == 1
    (merged,) = sent(socket)
    assert merged["data"] | {"snapshot_time": None} == {
        "event_ids": [7], "source": "sportybet", "snapshot_count": 3, "event_id": 7, "bookmaker": "sportybet",
        "snapshot_time": None,
    }  # fmt: skip
    # Sent at 1001.0: a change at 1001.5 waits for 1002.0; one after a quiet window goes at once.
    timer.now = 1001.5
    live.record([changed(7, "betpawa", 4)])
    assert live.flush() == 0 and live.next_due() == 1002.0
    timer.now = 1002.0
    assert live.flush() == 1
    timer.now = 1003.0
    live.record([changed(7, "betpawa", 5)])
    assert live.flush() == 1


def test_at_most_one_message_per_event_per_window_however_often_it_changes() -> None:
    timer = ManualTimer()
    live = live_odds(timer)
    socket = live.connect({"odds_updates"})
    sends: dict[int, list[float]] = {7: [], 8: []}
    for step in range(1000):  # 10 s of changes every 10 ms to both events
        timer.now = 1000.0 + step / 100
        live.record([changed(7, "betpawa", 1), changed(8, "bet9ja", 1)])
        live.flush()
        for m in sent(socket):
            sends[m["data"]["event_id"]].append(timer.now)
    for times in sends.values():
        assert len(times) == 10 and all(b - a >= 1.0 for a, b in itertools.pairwise(times))


def test_the_memory_of_sent_events_is_forgotten_after_a_quiet_window() -> None:
    timer = ManualTimer()
    live = live_odds(timer)
    for e in range(100):
        live.record([changed(e, "betpawa", 1)])
    live.flush()
    assert len(live._sent) == 100
    timer.now += 1.0
    live.record([changed(1000, "betpawa", 1)])
    live.flush()
    assert list(live._sent) == [1000] and not live.pending


def test_a_socket_that_does_not_drain_its_messages_is_ended_as_too_slow() -> None:
    live = live_odds(ManualTimer(), max_frames=2)
    socket = live.connect({"odds_updates"})
    live.record([changed(e, "betpawa", 0) for e in (1, 2)])
    live.flush()
    assert not socket.ended.is_set()
    live.record([changed(3, "betpawa", 0)])
    live.flush()
    assert socket.ended.is_set() and socket.close[0] == CLOSE_TOO_SLOW and socket.frames.qsize() == 2


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


def test_the_query_address_may_list_several_replicas_and_must_name_one() -> None:
    settings = GatewaySettings(query_address="10.0.0.1:50053, query-2:50053")
    assert QueryClient(settings.query_address, 1.0).addresses == ["10.0.0.1:50053", "query-2:50053"]
    with pytest.raises(ValueError, match="GATEWAY_QUERY_ADDRESS names no query service"):
        GatewaySettings(query_address=" , ")
