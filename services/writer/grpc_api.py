"""WriterService servicer: protobuf to domain and back, errors to status codes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc

from oddstore import codec
from oddstore.convert import event_from_pb, from_timestamp, market_from_pb, to_timestamp
from oddstore.db import transient
from oddstore.v1 import snapshot_pb2, writer_pb2, writer_pb2_grpc
from services.writer import metrics
from services.writer.change_detection import MarketKey
from services.writer.changes import ChangeLog, Closed, Committed, FellBehind, MarketChange
from services.writer.plan import Observed, Result, Status
from services.writer.writer import Writer

logger = logging.getLogger(__name__)

STATUS = {
    Status.ACCEPTED: snapshot_pb2.SNAPSHOT_STATUS_ACCEPTED,
    Status.SUPERSEDED: snapshot_pb2.SNAPSHOT_STATUS_SUPERSEDED,
    Status.REJECTED: snapshot_pb2.SNAPSHOT_STATUS_REJECTED,
}


def result_to_pb(index: int, r: Result) -> snapshot_pb2.SnapshotResult:
    c = r.counts
    return snapshot_pb2.SnapshotResult(
        index=index,
        status=STATUS[r.status],
        reason=r.reason,
        counts=snapshot_pb2.ChangeCounts(
            new=c.new,
            changed=c.changed,
            unchanged=c.unchanged,
            unavailable=c.unavailable,
            returned=c.returned,
        ),
    )


def observed_from_pb(s: snapshot_pb2.Snapshot) -> Observed:
    """Hot path (profiled): a market's wire form is one C call, and an identical market (~95 %) needs
    nothing else; outcomes are encoded, and a market becomes a domain object, only when it differs."""
    markets: dict[MarketKey, bytes] = {}
    by_key: dict[MarketKey, snapshot_pb2.Market] = {}
    error = None
    for i, m in enumerate(s.markets):
        key = (m.market_id, m.line if m.HasField("line") else None)
        if key in markets:
            error = f"markets[{i}]: duplicate market {key[0]!r} line {key[1]}"
            break
        markets[key] = m.SerializeToString(deterministic=True)
        by_key[key] = m
    captured_at = from_timestamp(s.captured_at) if s.HasField("captured_at") else None
    scale = codec.ODDS_SCALE

    def outcomes(key: MarketKey) -> bytes:
        return codec.encode([(o.name, round(o.odds * scale), o.is_active) for o in by_key[key].outcomes])

    return Observed(
        event_from_pb(s.event),
        s.bookmaker,
        s.external_event_id,
        captured_at,
        markets,
        outcomes,
        lambda key: market_from_pb(by_key[key]),
        error,
    )


def committed_to_pb(c: Committed) -> writer_pb2.ChangesResponse:
    if c.memo is None:
        c.memo = writer_pb2.ChangesResponse(
            batch=writer_pb2.CommittedBatch(
                sequence=c.sequence,
                committed_at=to_timestamp(c.committed_at),
                markets=[market_change_to_pb(m) for m in c.markets],
                pairs=[
                    writer_pb2.PairAdvance(event_id=e, bookmaker=slug, captured_at=to_timestamp(at))
                    for e, slug, at in c.pairs
                ],
                states=True,
                events=c.events,
            )
        )
    assert isinstance(c.memo, writer_pb2.ChangesResponse)
    return c.memo


def market_change_to_pb(m: MarketChange) -> writer_pb2.MarketChange:
    return writer_pb2.MarketChange(
        event_id=m.event_id,
        bookmaker=m.bookmaker_slug,
        market_id=m.market_id,
        line=m.line,
        captured_at=to_timestamp(m.captured_at),
        available=m.available,
        outcomes=m.outcomes,
        market_name=m.market_name,
        market_groups=m.market_groups.split("\x1f") if m.market_groups else (),
    )


class WriterServicer(writer_pb2_grpc.WriterServiceServicer):
    def __init__(self, writer: Writer) -> None:
        self._writer = writer

    async def Changes(
        self, request: writer_pb2.ChangesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[writer_pb2.ChangesResponse]:
        log: ChangeLog = self._writer.changes
        position, resumed = log.start(request.epoch, request.sequence)
        yield writer_pb2.ChangesResponse(
            start=writer_pb2.FeedStart(epoch=log.epoch, sequence=position, resumed=resumed)
        )
        try:
            while True:
                for batch in log.after(position):
                    yield committed_to_pb(batch)
                    position = batch.sequence
                await log.wait_after(position)
        except FellBehind as exc:
            # Never an unbounded queue per subscriber: a slow one is ended, and resynchronises.
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"subscriber fell behind: {exc}")
        except Closed:
            return

    async def WriteBatch(
        self, request: writer_pb2.WriteBatchRequest, context: grpc.aio.ServicerContext
    ) -> writer_pb2.WriteBatchResponse:
        snapshots = [observed_from_pb(s) for s in request.snapshots]
        try:
            results = await self._writer.write(snapshots)
        except Exception as exc:
            if transient(exc):
                metrics.ERRORS.labels("database_unavailable").inc()
                logger.warning("batch of %d snapshots not written, database unavailable: %s", len(snapshots), exc)
                await context.abort(grpc.StatusCode.UNAVAILABLE, f"database unavailable, nothing written: {exc}")
            metrics.ERRORS.labels("internal").inc()
            logger.exception("batch of %d snapshots failed", len(snapshots))
            await context.abort(grpc.StatusCode.INTERNAL, "write failed, nothing written; see writer log")
        return writer_pb2.WriteBatchResponse(results=[result_to_pb(i, r) for i, r in enumerate(results)])
