"""Measurements of the retention benchmark: writer latency windows, percentiles with bootstrap intervals, WAL."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from bench.retention_writer import Call


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def bootstrap_ci(values: Sequence[float], q: float, seed: int, resamples: int = 2000) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of the q-th percentile: how far a window's p99 moves by chance alone."""
    rng = random.Random(seed)
    n = len(values)
    estimates = sorted(percentile(sorted(rng.choices(values, k=n)), q) for _ in range(resamples))
    return percentile(estimates, 0.025), percentile(estimates, 0.975)


@dataclass(frozen=True, slots=True)
class Window:
    """The concurrent writer's calls that started within [start, end) (perf_counter seconds)."""

    name: str
    start: float
    end: float
    calls: tuple[Call, ...]
    wal_bytes: int  # server-wide WAL between start and end

    @classmethod
    def of(cls, name: str, start: float, end: float, calls: Sequence[Call], wal_bytes: int) -> Window:
        return cls(name, start, end, tuple(c for c in calls if start <= c.start < end), wal_bytes)

    @property
    def seconds(self) -> float:
        return self.end - self.start

    @property
    def latencies(self) -> list[float]:
        return sorted(c.latency for c in self.calls)

    @property
    def failed(self) -> int:
        return sum(not c.ok for c in self.calls)

    def p(self, q: float) -> float | None:
        values = self.latencies
        return percentile(values, q) if values else None

    def p99_ci(self, seed: int) -> tuple[float, float] | None:
        values = self.latencies
        return bootstrap_ci(values, 0.99, seed) if len(values) >= 2 else None

    @property
    def wal_rate(self) -> float:
        return self.wal_bytes / self.seconds if self.seconds > 0 else 0.0


def overlapping(calls: Sequence[Call], start: float, end: float) -> list[Call]:
    """Calls in flight at any moment of [start, end]."""
    return [c for c in calls if c.start < end and c.end > start]


async def wal_lsn(conn: asyncpg.Connection) -> int:
    """The current WAL position as a byte offset (asyncpg passes pg_lsn as an integer)."""
    return int(await conn.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint"))
