"""The writer's change log: what each batch committed, numbered in commit order within this process's
epoch, kept in a bounded buffer that subscribers (query replicas) resume from. No I/O."""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import NamedTuple


class MarketChange(NamedTuple):
    """A market's newest state in a batch. Of an available market the whole row market_odds_current holds
    (last_confirmed_at = captured_at); an unavailable one keeps what it had, which only the database knows."""

    event_id: int
    bookmaker_slug: str
    market_id: str
    line: float | None
    captured_at: datetime  # last_updated_at
    available: bool
    outcomes: bytes = b""  # available only, as the rest
    market_name: str = ""
    market_groups: str = ""  # joined by U+001F, as written; empty: none


PairAdvance = tuple[int, str, datetime]  # (event_id, bookmaker_slug, captured_at)


class FellBehind(Exception):
    """The subscriber's next batch has left the buffer: it must resynchronise."""


class Closed(Exception):
    """The log is closed (the writer is stopping): subscribers end their streams."""


@dataclass(slots=True)
class Committed:
    """One committed batch. `memo` keeps the servicer's protobuf of it, built once for every query replica that
    follows the feed (as updates.MarketDelta's for client streams)."""

    sequence: int
    committed_at: datetime
    markets: Sequence[MarketChange]
    pairs: Sequence[PairAdvance]
    events: Sequence[int] = ()  # whose metadata or bookmaker links the batch wrote
    memo: object = field(default=None, compare=False, repr=False)

    @property
    def size(self) -> int:
        return len(self.markets) + len(self.pairs)


class ChangeLog:
    """Holds the newest batches, up to `capacity` changes (markets + pairs) in all, so its memory is
    bounded whatever the subscribers do; a subscriber further behind is told so and resynchronises.
    The newest batch is always kept, however large."""

    def __init__(self, capacity: int = 100_000, epoch: str | None = None) -> None:
        # Random, not a start time: two processes started in the same instant still differ.
        self.epoch = epoch or uuid.uuid4().hex
        self.capacity = capacity
        self.sequence = 0  # of the newest batch
        self._batches: deque[Committed] = deque()
        self._size = 0
        self._published = asyncio.Event()  # replaced on each publish: waiters hold the one they saw
        self._closed = False

    def publish(
        self,
        committed_at: datetime,
        markets: Sequence[MarketChange],
        pairs: Sequence[PairAdvance],
        events: Sequence[int] = (),
    ) -> int:
        """Appends one committed batch; called in commit order, after commit. Returns its sequence."""
        self.sequence += 1
        batch = Committed(self.sequence, committed_at, markets, pairs, events)
        self._batches.append(batch)
        self._size += batch.size
        while self._size > self.capacity and len(self._batches) > 1:
            self._size -= self._batches.popleft().size
        self._published.set()
        self._published = asyncio.Event()
        return self.sequence

    def start(self, epoch: str, sequence: int) -> tuple[int, bool]:
        """Where a subscriber holding (epoch, sequence) starts: (position, resumed). Resumed when every
        batch after its position is still buffered; otherwise it starts from the newest batch."""
        oldest = self._batches[0].sequence if self._batches else self.sequence + 1
        if epoch == self.epoch and oldest - 1 <= sequence <= self.sequence:
            return sequence, True
        return self.sequence, False

    def after(self, sequence: int) -> list[Committed]:
        """The buffered batches after `sequence`; FellBehind when some of them have left the buffer."""
        if sequence >= self.sequence:
            return []
        oldest = self._batches[0].sequence
        if sequence + 1 < oldest:
            raise FellBehind(f"batch {sequence + 1} has left the buffer (oldest {oldest}, capacity {self.capacity})")
        return list(islice(self._batches, sequence + 1 - oldest, None))

    async def wait_after(self, sequence: int) -> None:
        """Returns once a batch after `sequence` is published; Closed once the log is closed."""
        while not self._closed and self.sequence <= sequence:
            await self._published.wait()
        if self._closed:
            raise Closed("the writer is stopping")

    def close(self) -> None:
        self._closed = True
        self._published.set()
