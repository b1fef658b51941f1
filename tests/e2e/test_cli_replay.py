"""`oddstore replay` against a fake IngestService on a real loopback gRPC server."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest

from oddstore.v1 import ingest_pb2, ingest_pb2_grpc, snapshot_pb2
from oddstore_cli.jsonl import snapshot_to_json
from oddstore_cli.replay import replay
from oddstore_cli.simulate import live
from oddstore_cli.simulator import Simulator
from oddstore_cli.submit import SubmitOptions

BOOKMAKERS = {"betpawa", "sportybet", "bet9ja"}


class FakeIngest(ingest_pb2_grpc.IngestServiceServicer):
    """Accepts new snapshots, supersedes repeats and older ones, rejects unknown bookmakers.

    `failures` status codes are answered, one per call, before any real answer. `slow_first` delays
    the first successful answer, so that a later batch could overtake it.
    """

    def __init__(self, failures: list[grpc.StatusCode] | None = None, slow_first: float = 0.0) -> None:
        self.failures = list(failures or [])
        self.slow_first = slow_first
        self.calls = 0
        self.answered = 0
        self.stored: dict[tuple[int, str], int] = {}  # captured_at in nanoseconds
        self.markets: dict[tuple[int, str], set[tuple[str, float | None]]] = {}

    async def SubmitSnapshots(
        self, request: ingest_pb2.SubmitSnapshotsRequest, context: grpc.aio.ServicerContext
    ) -> ingest_pb2.SubmitSnapshotsResponse:
        self.calls += 1
        if self.failures:
            await context.abort(self.failures.pop(0), "writer unreachable")
        if all(s.bookmaker == "everything-wrong" for s in request.snapshots):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no valid snapshot: bookmaker unknown")
        self.answered += 1
        if self.answered == 1 and self.slow_first:
            await asyncio.sleep(self.slow_first)
        results = []
        for i, s in enumerate(request.snapshots):
            key = (s.event.id, s.bookmaker)
            if s.bookmaker not in BOOKMAKERS:
                results.append(
                    snapshot_pb2.SnapshotResult(
                        index=i,
                        status=snapshot_pb2.SNAPSHOT_STATUS_REJECTED,
                        reason=f"bookmaker: unknown slug {s.bookmaker!r}",
                    )
                )
                continue
            if key in self.stored and self.stored[key] >= s.captured_at.ToNanoseconds():
                results.append(snapshot_pb2.SnapshotResult(index=i, status=snapshot_pb2.SNAPSHOT_STATUS_SUPERSEDED))
                continue
            markets = {(m.market_id, m.line if m.HasField("line") else None) for m in s.markets}
            before = self.markets.get(key, set())
            self.stored[key], self.markets[key] = s.captured_at.ToNanoseconds(), markets
            counts = snapshot_pb2.ChangeCounts(
                new=len(markets - before), unchanged=len(markets & before), unavailable=len(before - markets)
            )
            results.append(
                snapshot_pb2.SnapshotResult(index=i, status=snapshot_pb2.SNAPSHOT_STATUS_ACCEPTED, counts=counts)
            )
        return ingest_pb2.SubmitSnapshotsResponse(results=results)


@pytest.fixture
async def serve() -> AsyncIterator[Any]:
    servers: list[grpc.aio.Server] = []

    async def start(fake: FakeIngest) -> str:
        server = grpc.aio.server()
        ingest_pb2_grpc.add_IngestServiceServicer_to_server(fake, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield start
    for server in servers:
        await server.stop(None)


def snapshot_line(event_id: int, bookmaker: str = "betpawa", minute: int = 0, markets: int = 2) -> str:
    captured = datetime(2026, 2, 24, 10, tzinfo=UTC) + timedelta(minutes=minute)
    return json.dumps(
        {
            "event": {"id": event_id, "kickoff": "2026-02-28T15:00:00Z"},
            "bookmaker": bookmaker,
            "captured_at": captured.isoformat(),
            "markets": [
                {"market_id": "5000", "line": n + 0.5, "outcomes": [{"name": "Over", "odds": 1.9}]}
                for n in range(markets)
            ],
        }
    )


def write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "snapshots.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


async def run(path: Path, target: str, **options: Any) -> tuple[int, str, str]:
    replay_options = {k: options.pop(k) for k in ("batch_size", "retry_clock", "retry_sleep") if k in options}
    replay_options.setdefault("batch_size", 2)
    out, err = io.StringIO(), io.StringIO()
    code = await replay(str(path), SubmitOptions(target=target, **options), out=out, err=err, **replay_options)
    return code, out.getvalue(), err.getvalue()


async def test_results_are_tallied_and_malformed_lines_are_reported_by_line_number(serve: Any, tmp_path: Path) -> None:
    fake = FakeIngest(failures=[grpc.StatusCode.UNAVAILABLE])
    path = write(
        tmp_path,
        [
            snapshot_line(1),  # line 1
            snapshot_line(2, markets=3),
            '{"event": {"id": 3}, "bookmaker": "betpawa", "captured_at": "2026-02-24T10:00:00Z", '
            '"markets": [{"market_id": "1", "outcomes": [{"name": "1", "odds": "2.1"}]}]}',  # line 3
            "",  # blank: skipped
            snapshot_line(4, bookmaker="unknownbet"),  # line 5
            "not json",  # line 6
            snapshot_line(1),  # line 7: a re-send
            snapshot_line(1, minute=5, markets=3),  # line 8: one market more
            snapshot_line(2, minute=-5),  # line 9: older than stored
        ],
    )
    code, out, err = await run(path, await serve(fake))
    assert code == 1
    assert fake.calls == 4  # three batches of two, the first one twice (UNAVAILABLE once)
    assert "accepted:     3" in out
    assert "superseded:   2" in out
    assert "rejected:     1\n  line 5: bookmaker: unknown slug 'unknownbet'\n" in out
    assert "malformed:    2\n  line 3: markets[0].outcomes[0].odds: expected a number\n  line 6: invalid JSON" in out
    assert "changes:      new 6, changed 0, unchanged 2, unavailable 0, returned 0" in out
    assert "line 3: malformed: markets[0].outcomes[0].odds: expected a number" in err
    assert "lines read:   9" in out


async def test_a_clean_file_exits_zero(serve: Any, tmp_path: Path) -> None:
    path = write(tmp_path, [snapshot_line(n) for n in range(1, 6)])
    code, out, _ = await run(path, await serve(FakeIngest()), concurrency=3)
    assert code == 0
    assert "accepted:     5" in out and "rejected:     0" in out


async def test_a_batch_the_server_refuses_as_a_whole_is_rejected_line_by_line(serve: Any, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        [
            snapshot_line(1),
            snapshot_line(2, bookmaker="everything-wrong"),
            snapshot_line(3, bookmaker="everything-wrong"),
        ],
    )
    code, out, _ = await run(path, await serve(FakeIngest()), batch_size=1)
    assert code == 1
    assert "accepted:     1" in out
    assert "rejected:     2\n  line 2: no valid snapshot: bookmaker unknown\n  line 3: no valid snapshot" in out


async def test_only_the_first_twenty_rejections_are_listed(serve: Any, tmp_path: Path) -> None:
    path = write(tmp_path, [snapshot_line(n, bookmaker="nobet") for n in range(1, 31)])
    code, out, _ = await run(path, await serve(FakeIngest()), batch_size=7, concurrency=3)
    assert code == 1
    assert "rejected:     30\n  line 1: " in out
    assert "  line 20: " in out and "  line 21: " not in out
    assert "  ... and 10 more" in out


class SteppedTime:
    """The retries' clock, moved only by their back-off sleeps: how long a call takes on a busy machine cannot
    use up the retry budget."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_an_ingest_that_stays_unavailable_stops_the_replay_with_exit_two(serve: Any, tmp_path: Path) -> None:
    fake, time = FakeIngest(failures=[grpc.StatusCode.UNAVAILABLE] * 1000), SteppedTime()
    path = write(tmp_path, [snapshot_line(n) for n in range(1, 11)])
    code, out, err = await run(
        path, await serve(fake), retry_seconds=4.5, concurrency=1, retry_clock=time.clock, retry_sleep=time.sleep
    )
    assert code == 2
    assert "accepted:     0" in out
    assert "not acknowledged: 2" in out
    assert "after line 4: 4 lines not acknowledged; 6 more lines were not read" in err
    # Back-off 0.2, 0.4, 0.8, 1.6 s with ±20 % jitter: at most 3.6 s, within the 4.5 s budget; the next wait (3.2 s,
    # at least 2.56 after at least 2.4 s) is not, whatever the jitter.
    assert len(time.slept) == 4 and sum(time.slept) <= 4.5
    assert fake.calls == 5


async def test_a_non_retryable_error_is_not_retried(serve: Any, tmp_path: Path) -> None:
    fake = FakeIngest(failures=[grpc.StatusCode.INTERNAL])
    path = write(tmp_path, [snapshot_line(1)])
    code, _, err = await run(path, await serve(fake))
    assert code == 2
    assert fake.calls == 1
    assert "INTERNAL" in err


async def test_pipelined_batches_never_let_a_newer_snapshot_overtake_an_older_one(serve: Any, tmp_path: Path) -> None:
    simulator = Simulator(2, seed=1)
    start = datetime(2026, 2, 24, 10, tzinfo=UTC)
    lines = [
        json.dumps(snapshot_to_json(s)) for n in range(3) for s in simulator.cycle(start + timedelta(minutes=5 * n))
    ]
    fake = FakeIngest(slow_first=0.3)
    code, out, _ = await run(write(tmp_path, lines), await serve(fake), batch_size=4, concurrency=3)
    assert code == 0
    assert "accepted:     18" in out and "superseded:   0" in out


async def test_simulate_live_submits_every_cycle_and_reports_it(serve: Any) -> None:
    fake = FakeIngest(failures=[grpc.StatusCode.RESOURCE_EXHAUSTED])
    options = SubmitOptions(target=await serve(fake))
    out = io.StringIO()
    code = await live(Simulator(3, seed=1), options, batch_size=4, cycles=2, interval=0.05, out=out)
    assert code == 0
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("cycle 1 ") and "9 snapshots" in lines[0] and "accepted 9," in lines[0]
    assert lines[1].startswith("cycle 2 ") and "accepted 9," in lines[1]
    assert lines[2].startswith("total: 2 cycles; accepted 18, superseded 0, rejected 0, not acknowledged 0")
