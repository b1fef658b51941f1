"""The replica's live changes for client streams (QueryService.Subscribe): every change the cache applies,
numbered in this process's epoch and kept in a bounded buffer that streams read from and resume in, and what one
stream selects from them (its filters, the latest state per market). No I/O."""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice

from services.query.cache import CurrentMarket, MarketKey, OddsCache, Pair


@dataclass(frozen=True, slots=True)
class OddsChanged:
    event_id: int
    bookmaker: str
    captured_at: datetime
    snapshots: int  # conflated into this one; 0 when found by a resync


@dataclass(slots=True)
class MarketDelta:
    """A market's new state as the cache holds it (the same CurrentMarket object: no copy). `memo` keeps the
    servicer's protobuf of it, built once for every stream that sends it."""

    event_id: int
    bookmaker: str
    key: MarketKey
    market: CurrentMarket
    memo: object = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Applied:
    """What one application to the cache changed (a feed batch set, or a resync)."""

    sequence: int
    markets: Sequence[MarketDelta]
    pairs: Sequence[OddsChanged]
    removed: Sequence[int] = ()  # events that left the cache, before `markets`

    @property
    def size(self) -> int:
        return len(self.markets) + len(self.pairs) + len(self.removed)


class FellBehind(Exception):
    """The stream's next change has left the buffer: it reads too slowly to follow."""


class Closed(Exception):
    """The service is stopping: live streams end (they would otherwise hold its drain to the end of the grace)."""


class Updates:
    """Holds the newest applications, up to `capacity` changes (markets + pairs) in all, so memory is bounded
    whatever the streams do; the newest is always kept, however large. A resume token is (epoch, sequence): the
    epoch is per process, so a token of another replica or of this one before a restart is not resumed (and
    the stream starts with a fresh image instead)."""

    def __init__(self, capacity: int = 200_000, epoch: str | None = None) -> None:
        self.epoch = epoch or uuid.uuid4().hex[:16]
        self.capacity = capacity
        self.sequence = 0
        self.subscribers = 0  # open streams (metrics, tests)
        self.ready = asyncio.Event()  # set once the cache is warm: an image before would show part of it
        self._applied: deque[Applied] = deque()
        self._size = 0
        self._published = asyncio.Event()  # replaced on each publish: waiters hold the one they saw
        self._closed = False

    def token(self, sequence: int) -> str:
        return f"{self.epoch}.{sequence}"

    def resume(self, token: str) -> int | None:
        """The position a token names, when every change after it is still buffered; None otherwise."""
        epoch, _, number = token.partition(".")
        if epoch != self.epoch or not number.isdigit():
            return None
        sequence = int(number)
        oldest = self._applied[0].sequence if self._applied else self.sequence + 1
        return sequence if oldest - 1 <= sequence <= self.sequence else None

    def publish(self, markets: Sequence[MarketDelta], pairs: Sequence[OddsChanged], removed: Sequence[int] = ()) -> int:
        """Called right after the cache applied them (or dropped the `removed` events), with no await in between:
        an image read from the cache at any moment is exactly the state at `self.sequence`."""
        if not markets and not pairs and not removed:
            return self.sequence
        self.sequence += 1
        applied = Applied(self.sequence, markets, pairs, removed)
        self._applied.append(applied)
        self._size += applied.size
        while self._size > self.capacity and len(self._applied) > 1:
            self._size -= self._applied.popleft().size
        self._published.set()
        self._published = asyncio.Event()
        return self.sequence

    def after(self, sequence: int) -> list[Applied]:
        """The buffered applications after `sequence`; FellBehind when some of them have left the buffer."""
        if sequence >= self.sequence:
            return []
        oldest = self._applied[0].sequence
        if sequence + 1 < oldest:
            raise FellBehind(
                f"the stream fell more than {self.capacity} changes behind this replica's live changes "
                "(QUERY_STREAM_BUFFER): it reads too slowly; resume with its last token for a fresh image"
            )
        return list(islice(self._applied, sequence + 1 - oldest, None))

    async def wait_after(self, sequence: int) -> None:
        """Returns once something after `sequence` is published; Closed once closed."""
        while not self._closed and self.sequence <= sequence:
            await self._published.wait()
        if self._closed:
            raise Closed("the query service is stopping")

    def close(self) -> None:
        self._closed = True
        self._published.set()


@dataclass(frozen=True, slots=True)
class Selection:
    """One stream's filters; an empty set matches everything."""

    event_ids: frozenset[int] = frozenset()
    bookmakers: frozenset[str] = frozenset()
    market_ids: frozenset[str] = frozenset()

    def pair(self, event_id: int, bookmaker: str) -> bool:
        return (not self.event_ids or event_id in self.event_ids) and (
            not self.bookmakers or bookmaker in self.bookmakers
        )

    def market(self, d: MarketDelta) -> bool:
        return self.pair(d.event_id, d.bookmaker) and (not self.market_ids or d.key[0] in self.market_ids)

    def image(self, cache: OddsCache) -> list[MarketDelta]:
        """The current state of every matching market. Synchronous on purpose: it is the state at the buffer's
        newest sequence only if no change is applied while it is read."""
        found: list[MarketDelta] = []
        events = self.event_ids or cache.books.keys()
        for event_id in events:
            for slug, book in cache.books_of(event_id).items():
                if not self.bookmakers or slug in self.bookmakers:
                    found += (
                        MarketDelta(event_id, slug, key, m)
                        for key, m in book.markets.items()
                        if not self.market_ids or key[0] in self.market_ids
                    )
        return found

    def conflate(
        self, applied: Iterable[Applied], summaries_only: bool = False
    ) -> tuple[list[MarketDelta], list[OddsChanged], list[int]]:
        """What matches, the latest state per market and one summary per (event, bookmaker): a stream that is
        behind gets each key once, however often it changed. With a market filter, a summary only for a pair
        with a selected market among the states. Last, the selected events that left the cache: a state or summary
        of one of them gathered before it left is dropped, one after (it came back) kept; `summaries_only` keeps the
        summaries (its client holds no states, and the change did happen: a browser showing the event refetches)."""
        markets: dict[tuple[int, str, MarketKey], MarketDelta] = {}
        pairs: dict[Pair, OddsChanged] = {}
        removed: set[int] = set()
        for a in applied:
            if a.removed:
                gone = {e for e in a.removed if not self.event_ids or e in self.event_ids}
                removed |= gone
                markets = {k: d for k, d in markets.items() if k[0] not in gone}
                if not summaries_only:
                    pairs = {k: c for k, c in pairs.items() if k[0] not in gone}
            for d in a.markets:
                if self.market(d):
                    markets[(d.event_id, d.bookmaker, d.key)] = d
            for c in a.pairs:
                if not self.pair(c.event_id, c.bookmaker):
                    continue
                held = pairs.get((c.event_id, c.bookmaker))
                if held is not None:
                    c = OddsChanged(
                        c.event_id, c.bookmaker, max(c.captured_at, held.captured_at), c.snapshots + held.snapshots
                    )
                pairs[(c.event_id, c.bookmaker)] = c
        if self.market_ids:
            selected = {(e, slug) for e, slug, _ in markets}
            return list(markets.values()), [c for key, c in pairs.items() if key in selected], sorted(removed)
        return list(markets.values()), list(pairs.values()), sorted(removed)
