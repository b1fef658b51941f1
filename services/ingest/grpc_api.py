"""IngestService servicer: validates, routes to writers by event id, answers after commit."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime

import grpc

from oddstore.v1 import ingest_pb2, ingest_pb2_grpc, snapshot_pb2, writer_pb2, writer_pb2_grpc
from services.ingest import metrics
from services.ingest.auth import Authenticator, Caller, Refused
from services.ingest.routing import writer_index
from services.ingest.validation import Invalid, Limits, validate

logger = logging.getLogger(__name__)

RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
STATUS_NAMES = {
    snapshot_pb2.SNAPSHOT_STATUS_ACCEPTED: "accepted",
    snapshot_pb2.SNAPSHOT_STATUS_SUPERSEDED: "superseded",
    snapshot_pb2.SNAPSHOT_STATUS_REJECTED: "rejected",
}


class WriterUnavailable(Exception):
    pass


class WriterClient:
    """One writer: deadline per call, retries with backoff while it is unavailable.

    Not gRPC's retry policy: it caps attempts at 5 (we retry for INGEST_WRITER_RETRY_SECONDS, so ingest
    holds while a writer restarts), and its retries are invisible to our retry metric and log. Not tenacity:
    the metric, the log and the WriterUnavailable translation would all move into callbacks."""

    def __init__(self, address: str, stub: writer_pb2_grpc.WriterServiceStub, timeout: float, retry: float):
        self.address = address
        self._stub = stub
        self._timeout = timeout
        self._retry = retry

    async def write(self, snapshots: Sequence[snapshot_pb2.Snapshot]) -> writer_pb2.WriteBatchResponse:
        deadline = time.monotonic() + self._retry
        delay = 0.1
        request = writer_pb2.WriteBatchRequest(snapshots=snapshots)
        while True:
            try:
                response: writer_pb2.WriteBatchResponse = await self._stub.WriteBatch(
                    request, timeout=self._timeout, wait_for_ready=True
                )
                return response
            except grpc.aio.AioRpcError as exc:
                # Retrying is safe even after a lost reply: a re-sent snapshot is superseded.
                if exc.code() not in RETRYABLE or time.monotonic() + delay > deadline:
                    raise WriterUnavailable(f"writer {self.address}: {exc.code().name}: {exc.details()}") from exc
                metrics.WRITER_RETRIES.labels(self.address, exc.code().name).inc()
                logger.warning("writer %s %s, retrying in %.1fs", self.address, exc.code().name, delay)
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 2.0)


class IngestServicer(ingest_pb2_grpc.IngestServiceServicer):
    def __init__(
        self,
        writers: Sequence[WriterClient],
        limits: Limits,
        max_batch: int,
        max_in_flight: int,
        auth: Authenticator,
    ):
        self._writers = list(writers)
        self._auth = auth
        self._limits = limits
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._in_flight = 0

    async def SubmitSnapshots(
        self, request: ingest_pb2.SubmitSnapshotsRequest, context: grpc.aio.ServicerContext
    ) -> ingest_pb2.SubmitSnapshotsResponse:
        try:
            caller = self._auth.identify(context.invocation_metadata() or (), context.peer())
        except Refused as exc:
            metrics.AUTH_REFUSED.labels(exc.reason).inc()
            logger.warning("refused a call from %s: %s", context.peer(), exc)
            code = grpc.StatusCode.PERMISSION_DENIED if exc.authenticated else grpc.StatusCode.UNAUTHENTICATED
            await context.abort(code, str(exc))
        count = len(request.snapshots)
        if count == 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "snapshots: empty batch")
        if count > self._max_batch:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"snapshots: {count} in one batch, more than {self._max_batch}",
            )
        observations = sum(len(s.markets) for s in request.snapshots)
        if self._in_flight + observations > self._max_in_flight:
            metrics.ERRORS.labels("RESOURCE_EXHAUSTED").inc()
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"ingest overloaded: {self._in_flight} observations in flight"
                f" (limit {self._max_in_flight}); retry later",
            )
        self._in_flight += observations
        metrics.IN_FLIGHT.set(self._in_flight)
        metrics.BATCH_SNAPSHOTS.observe(count)
        metrics.OBSERVATIONS.inc(observations)
        try:
            return await self._submit(request.snapshots, context, caller)
        finally:
            self._in_flight -= observations
            metrics.IN_FLIGHT.set(self._in_flight)

    async def _submit(
        self, snapshots: Sequence[snapshot_pb2.Snapshot], context: grpc.aio.ServicerContext, caller: Caller
    ) -> ingest_pb2.SubmitSnapshotsResponse:
        now = datetime.now(UTC)
        results: list[snapshot_pb2.SnapshotResult | None] = [None] * len(snapshots)
        routed: dict[int, list[int]] = defaultdict(list)
        for i, pb in enumerate(snapshots):
            try:
                if not caller.may_write(pb.bookmaker):
                    raise Invalid(f"bookmaker: token {caller.name!r} may not write {pb.bookmaker!r}")
                validate(pb, now, self._limits)
            except Invalid as exc:
                reason = f"snapshot {i} (event {pb.event.id}, bookmaker {pb.bookmaker!r}): {exc}"
                results[i] = snapshot_pb2.SnapshotResult(
                    index=i, status=snapshot_pb2.SNAPSHOT_STATUS_REJECTED, reason=reason
                )
                continue
            routed[writer_index(pb.event.id, len(self._writers))].append(i)
        calls = [self._writers[w].write([snapshots[i] for i in indices]) for w, indices in sorted(routed.items())]
        try:
            responses = await asyncio.gather(*calls)
        except WriterUnavailable as exc:
            metrics.ERRORS.labels("UNAVAILABLE").inc()
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"not acknowledged, resend the batch: {exc}")
        for (_w, indices), response in zip(sorted(routed.items()), responses, strict=True):
            for local, result in enumerate(response.results):
                i = indices[local]
                result.index = i
                if result.status == snapshot_pb2.SNAPSHOT_STATUS_REJECTED:
                    snap = snapshots[i]
                    result.reason = (
                        f"snapshot {i} (event {snap.event.id}, bookmaker {snap.bookmaker!r}): {result.reason}"
                    )
                results[i] = result
        answered = [r for r in results if r is not None]
        assert len(answered) == len(results), "every snapshot is answered"
        tally: dict[str, int] = defaultdict(int)
        for r in answered:
            status = STATUS_NAMES.get(r.status, "unknown")
            tally[status] += 1
            metrics.SNAPSHOTS.labels(status).inc()
            metrics.CLIENT_SNAPSHOTS.labels(caller.name, status).inc()
            for kind in ("new", "changed", "unavailable", "returned"):
                metrics.CHANGES.labels(kind).inc(getattr(r.counts, kind))
        logger.info("batch from %s: %s", caller.name, ", ".join(f"{n} {status}" for status, n in sorted(tally.items())))
        return ingest_pb2.SubmitSnapshotsResponse(results=answered)
