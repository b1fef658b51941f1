"""The benchmark workload: simulator cycles generated once, before any timing, and shared by every contender."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from oddstore.v1 import ingest_pb2, snapshot_pb2
from oddstore_cli.simulator import Simulator

logger = logging.getLogger(__name__)

CYCLE_INTERVAL = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class Cycle:
    """One scrape cycle, kept as serialized SubmitSnapshotsRequest batches: ~30 MB instead of ~100 MB of
    protobuf objects per cycle, and bytes the end-to-end contender can send without re-serializing."""

    number: int  # 1-based
    captured_at: datetime
    batches: tuple[bytes, ...]
    snapshots: int
    observations: int  # markets present in the cycle's snapshots

    def snapshot_batches(self) -> Iterator[list[snapshot_pb2.Snapshot]]:
        for raw in self.batches:
            yield list(ingest_pb2.SubmitSnapshotsRequest.FromString(raw).snapshots)

    @property
    def payload_bytes(self) -> int:
        return sum(len(b) for b in self.batches)


@dataclass(frozen=True, slots=True)
class Workload:
    cycles: tuple[Cycle, ...]
    events: dict[int, snapshot_pb2.Event]  # every event any cycle mentions, for the baseline's FK rows


def generate(*, events: int, cycles: int, change_rate: float, seed: int, batch_size: int, start: datetime) -> Workload:
    simulator = Simulator(events, seed=seed, change_rate=change_rate)
    made: list[Cycle] = []
    seen: dict[int, snapshot_pb2.Event] = {}
    for k in range(cycles):
        began = time.perf_counter()
        at = start + k * CYCLE_INTERVAL
        snapshots = simulator.cycle(at)
        observations = 0
        for s in snapshots:
            observations += len(s.markets)
            if s.event.id not in seen:
                event = snapshot_pb2.Event()
                event.CopyFrom(s.event)
                seen[s.event.id] = event
        batches = tuple(
            ingest_pb2.SubmitSnapshotsRequest(snapshots=snapshots[i : i + batch_size]).SerializeToString()
            for i in range(0, len(snapshots), batch_size)
        )
        cycle = Cycle(k + 1, at, batches, len(snapshots), observations)
        made.append(cycle)
        logger.info(
            "generated cycle %d/%d: %d snapshots, %d observations, %.1f MB in %.1fs",
            k + 1,
            cycles,
            cycle.snapshots,
            observations,
            cycle.payload_bytes / 1e6,
            time.perf_counter() - began,
        )
    return Workload(tuple(made), seen)
