"""The retention benchmark's concurrent writer: the real Writer fed small snapshot batches on a fixed cadence,
every call timed, every failure counted."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg

from oddstore.convert import snapshot_to_pb
from oddstore.model import Event, Market, Outcome, Snapshot
from services.writer.grpc_api import observed_from_pb
from services.writer.plan import Status
from services.writer.writer import Writer

logger = logging.getLogger(__name__)

BOOKMAKER = "betpawa"  # the home bookmaker: its event metadata is authoritative
MARKET_IDS = ("3743", "3795", "4693", "5000", "1086", "2201", "4300", "5301", "6100", "7001")
LINES: tuple[float | None, ...] = (None, 0.5, 1.5)  # 10 market ids x 3 lines = 30 markets per snapshot


@dataclass(slots=True)
class Call:
    """One Writer.write call: when it started and ended (perf_counter seconds) and whether all was accepted."""

    start: float
    end: float
    ok: bool

    @property
    def latency(self) -> float:
        return self.end - self.start


@dataclass(slots=True)
class _Book:
    """One event's markets at the home bookmaker: odds in thousandths, moved by a random walk."""

    event: Event
    odds: dict[tuple[str, float | None], list[int]]


def _event(event_id: int, kickoff: datetime) -> Event:
    return Event(
        id=event_id,
        sportradar_id=f"sr:match:{event_id}",
        name=f"Home {event_id} - Away {event_id}",
        home_team=f"Home {event_id}",
        away_team=f"Away {event_id}",
        kickoff=kickoff,
        tournament="Premier League",
        country="England",
        sport="Football",
    )


def _market(key: tuple[str, float | None], milli: list[int]) -> Market:
    market_id, line = key
    return Market(
        market_id=market_id,
        market_name=f"Market {market_id}",
        line=line,
        handicap_type=None,
        handicap_home=None,
        handicap_away=None,
        market_groups=("popular",),
        outcomes=tuple(Outcome(name, m / 1000, True) for name, m in zip(("1", "X", "2"), milli, strict=True)),
    )


@dataclass(slots=True)
class Feed:
    """Snapshot batches of `per_batch` events taken in turn from `events` events, `markets` per snapshot,
    each market's odds moving with probability `change_rate` per snapshot."""

    events: int
    per_batch: int
    change_rate: float
    seed: int
    first_event_id: int = 9_000_000
    _books: list[_Book] = field(default_factory=list)
    _next: int = 0
    _rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        kickoff = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
        keys = [(m, line) for m in MARKET_IDS for line in LINES]
        self._books = [
            _Book(
                _event(self.first_event_id + i, kickoff),
                {k: [self._rng.randrange(1_100, 9_000, 10) for _ in range(3)] for k in keys},
            )
            for i in range(self.events)
        ]

    @property
    def markets_per_snapshot(self) -> int:
        return len(MARKET_IDS) * len(LINES)

    def batch(self, captured_at: datetime) -> list[Snapshot]:
        out: list[Snapshot] = []
        for _ in range(self.per_batch):
            book = self._books[self._next]
            self._next = (self._next + 1) % len(self._books)
            for milli in book.odds.values():
                if self._rng.random() < self.change_rate:
                    i = self._rng.randrange(3)
                    milli[i] = max(1_010, milli[i] + self._rng.choice((-20, -10, 10, 20)))
            markets = tuple(_market(k, v) for k, v in book.odds.items())
            out.append(Snapshot(book.event, BOOKMAKER, str(book.event.id * 10), captured_at, markets))
        return out


@dataclass(slots=True)
class ConcurrentWriter:
    """Calls Writer.write every `interval` seconds (immediately when a call overran) until stopped."""

    pool: asyncpg.Pool
    feed: Feed
    interval: float
    calls: list[Call] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    history_rows: int = 0  # history rows the accepted snapshots produced (new + changed + unavailable + returned)
    late: int = 0  # calls that started later than their slot because the previous one overran
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(Writer(self.pool)), name="concurrent-writer")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def check(self) -> None:
        """Raises if the writer loop itself died (a failed call is counted, not raised)."""
        if self._task is not None and self._task.done() and not self._task.cancelled():
            exc = self._task.exception()
            if exc is not None:
                raise RuntimeError("the concurrent writer stopped") from exc

    async def _run(self, writer: Writer) -> None:
        slot = time.perf_counter()
        while not self._stop.is_set():
            # captured_at strictly increases per event, so no snapshot is ever superseded.
            # As the writer's gRPC edge receives them: protobuf, observed on arrival.
            snapshots = [snapshot_to_pb(s) for s in self.feed.batch(datetime.now(UTC))]
            start = time.perf_counter()
            ok = True
            try:
                results = await writer.write([observed_from_pb(s) for s in snapshots])
            except Exception as exc:
                ok = False
                self.failures.append(f"{type(exc).__name__}: {exc}")
                logger.error("concurrent write failed: %s: %s", type(exc).__name__, exc)
            else:
                for r in results:
                    if r.status is not Status.ACCEPTED:
                        ok = False
                        self.failures.append(f"{r.status.value}: {r.reason}")
                        logger.error("concurrent write not accepted: %s %s", r.status.value, r.reason)
                    else:
                        c = r.counts
                        self.history_rows += c.new + c.changed + c.unavailable + c.returned
            end = time.perf_counter()
            self.calls.append(Call(start, end, ok))
            slot += self.interval
            if end > slot:
                self.late += 1
                slot = end
            else:
                try:
                    await asyncio.wait_for(self._stop.wait(), slot - end)
                except TimeoutError:
                    pass
