"""What each contender measured, in plain dataclasses the report is built from."""

from __future__ import annotations

import logging
import statistics
import sys
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class CycleResult:
    number: int
    seconds: float
    observations: int
    rows: int  # rows written by the cycle, by the contender's own definition
    detail: str = ""  # how `rows` breaks down

    @property
    def rate(self) -> float:
        return self.observations / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Storage:
    """Space taken by the rows a contender keeps per change (or per observation)."""

    rows: int
    total_bytes: int  # pg_total_relation_size: heap, indexes, TOAST, free-space and visibility maps
    heap_bytes: int  # pg_relation_size: main fork only
    index_bytes: int  # pg_indexes_size

    @property
    def per_row(self) -> float:
        return self.total_bytes / self.rows if self.rows else 0.0

    @property
    def heap_per_row(self) -> float:
        return self.heap_bytes / self.rows if self.rows else 0.0

    @property
    def index_per_row(self) -> float:
        return self.index_bytes / self.rows if self.rows else 0.0

    def minus(self, earlier: Storage) -> Storage:
        return Storage(
            self.rows - earlier.rows,
            self.total_bytes - earlier.total_bytes,
            self.heap_bytes - earlier.heap_bytes,
            self.index_bytes - earlier.index_bytes,
        )


@dataclass(slots=True)
class ContenderResult:
    name: str
    cycles: list[CycleResult] = field(default_factory=list)
    planned_cycles: int = 0

    @property
    def first(self) -> CycleResult | None:
        return self.cycles[0] if self.cycles else None

    @property
    def sustained(self) -> list[CycleResult]:
        return self.cycles[1:]

    def sustained_rate(self) -> float | None:
        rates = [c.rate for c in self.sustained]
        return statistics.median(rates) if rates else None

    def sustained_rows(self) -> float | None:
        rows = [c.rows for c in self.sustained]
        return statistics.median(rows) if rows else None


def configure_logging() -> None:
    """Progress on stderr (the table goes to stdout); the libraries' per-request and per-revision lines muted."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("alembic", "httpx", "picows"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
