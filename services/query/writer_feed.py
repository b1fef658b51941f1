"""Follows one writer's change feed (WriterService.Changes): protobuf to the feed's domain, resuming by
(epoch, sequence) after a dropped stream and asking for a resync when the writer cannot resume."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import grpc

from oddstore import tls
from oddstore.convert import from_timestamp
from oddstore.grpc_server import client_options, keepalive_options
from oddstore.v1 import writer_pb2, writer_pb2_grpc
from services.query.cache import MarketKey, MarketRow

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Changes:
    """What one writer batch committed: the markets that changed, and every (event, bookmaker) whose
    latest snapshot moved, with its time."""

    committed_at: datetime
    markets: list[tuple[int, str, MarketKey]]
    pairs: list[tuple[int, str, datetime]]
    # The markets' committed states as rows of market_odds_current (OddsCache.load_rows), in `markets` order; None
    # where only the database knows it (an unavailable market keeps what it had); no list from a writer that sends
    # keys only.
    states: list[MarketRow | None] | None = None
    events: Sequence[int] = ()  # whose metadata or links the batch wrote (with `states`; without, all are read)


class Resync:
    """Queued when a feed cannot resume: what it may have missed is only in the database."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"Resync({self.reason!r})"


FeedItem = Changes | Resync
Sink = Callable[[FeedItem], Awaitable[None]]


def changes_from_pb(b: writer_pb2.CommittedBatch) -> Changes:
    markets = [(m.event_id, m.bookmaker, (m.market_id, m.line if m.HasField("line") else None)) for m in b.markets]
    pairs = [(p.event_id, p.bookmaker, from_timestamp(p.captured_at)) for p in b.pairs]
    at = from_timestamp(b.committed_at)
    if not b.states:
        return Changes(at, markets, pairs)
    states = [state_from_pb(key, m) for key, m in zip(markets, b.markets, strict=True)]
    return Changes(at, markets, pairs, states, list(b.events))


def state_from_pb(key: tuple[int, str, MarketKey], m: writer_pb2.MarketChange) -> MarketRow | None:
    """The row as market_odds_current holds it after the batch (groups: NULL when there are none); `key` is the
    market's, as changes_from_pb read it."""
    if not m.available:
        return None
    at = from_timestamp(m.captured_at)
    event_id, slug, (market_id, line) = key
    return (
        event_id,
        slug,
        market_id,
        line,
        m.market_name,
        list(m.market_groups) or None,
        m.outcomes,
        at,
        at,
        None,
    )


class WriterFeed:
    """One writer's feed, followed for as long as `run` runs. The position is the last batch handed to
    the sink (the sink queues it for the cache: a batch queued is a batch the cache will see)."""

    def __init__(
        self,
        address: str,
        *,
        tls_files: tls.TlsFiles = tls.PLAINTEXT,
        max_delay: float = 2.0,
        keepalive_seconds: float = 10.0,
    ) -> None:
        self.address = address
        self._tls = tls_files
        self._keepalive = keepalive_seconds
        self.epoch = ""
        self.sequence = 0
        self._max_delay = max_delay
        self.connected = asyncio.Event()  # set while a stream is open (tests wait on it)

    async def run(self, sink: Sink) -> None:
        delay = 0.05
        # gRPC's own reconnect back-off grows to 2 minutes: a writer that was replaced would go unfollowed
        # (and its changes seen only by the safety check) for that long.
        backoff = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 2000)]
        # A hung writer connection would otherwise look like a quiet writer for as long as TCP lets it.
        options = [*client_options(), *backoff, *keepalive_options(self._keepalive)]
        async with tls.channel(self.address, self._tls, options) as channel:
            stub = writer_pb2_grpc.WriterServiceStub(channel)
            while True:
                try:
                    call = stub.Changes(
                        writer_pb2.ChangesRequest(epoch=self.epoch, sequence=self.sequence), wait_for_ready=True
                    )
                    async for response in call:
                        if response.HasField("start"):
                            delay = await self._started(response.start, sink)
                        else:
                            await sink(changes_from_pb(response.batch))
                            self.sequence = response.batch.sequence
                    logger.info("change feed of writer %s ended; reconnecting", self.address)
                except grpc.aio.AioRpcError as exc:
                    logger.warning("change feed of writer %s lost (%s): %s", self.address, exc.code(), exc.details())
                finally:
                    self.connected.clear()
                # A writer that is being replaced: retry soon, but do not spin on one that keeps failing.
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_delay)

    async def _started(self, start: writer_pb2.FeedStart, sink: Sink) -> float:
        if not start.resumed:
            # Queued before any batch of the new stream: the resync reads the database after the
            # stream began, so whatever was committed before it is in what the resync reads.
            await sink(Resync(f"writer {self.address}: cannot resume {self.epoch or 'a first'} #{self.sequence}"))
        self.epoch, self.sequence = start.epoch, start.sequence
        self.connected.set()
        return 0.05
