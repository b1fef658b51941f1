"""Pipelined, retrying submission of snapshot batches to IngestService, shared by replay and simulate."""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import grpc

from oddstore import tls
from oddstore.v1 import ingest_pb2, ingest_pb2_grpc, snapshot_pb2

logger = logging.getLogger(__name__)

# Transient by the ingest contract: nothing of the batch was acknowledged, so re-sending it as it is
# is safe (a snapshot that did get committed comes back SUPERSEDED).
RETRYABLE = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
)
FIRST_BACKOFF, MAX_BACKOFF = 0.2, 5.0
KEPT_REJECTIONS = 20
CHANGE_KINDS = ("new", "changed", "unchanged", "unavailable", "returned")


@dataclass(frozen=True, slots=True)
class SubmitOptions:
    target: str = "127.0.0.1:50051"
    timeout: float = 30.0  # deadline of one call
    retry_seconds: float = 300.0  # how long one batch is retried before giving up
    concurrency: int = 2  # batches in flight
    max_message_bytes: int = 64 * 1024 * 1024
    token: str | None = field(default=None, repr=False)  # sent as 'authorization: Bearer …'; never printed
    tls_files: tls.TlsFiles = tls.PLAINTEXT


@dataclass(slots=True)
class Counts:
    """Snapshots by outcome and the change counts the server reported for the accepted ones."""

    accepted: int = 0
    superseded: int = 0
    rejected: int = 0
    unacknowledged: int = 0
    observations: int = 0  # markets of acknowledged snapshots
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    unavailable: int = 0
    returned: int = 0

    def copy(self) -> Counts:
        return dataclasses.replace(self)

    def minus(self, earlier: Counts) -> Counts:
        return Counts(*(getattr(self, f.name) - getattr(earlier, f.name) for f in dataclasses.fields(self)))

    def changes(self) -> str:
        return ", ".join(f"{kind} {getattr(self, kind)}" for kind in CHANGE_KINDS)


class SubmitFailed(Exception):
    """A batch could not be acknowledged within the retry budget, or failed for good."""


@dataclass(slots=True)
class _Batch:
    snapshots: Sequence[snapshot_pb2.Snapshot]
    labels: Sequence[str]
    first: int  # sequence number of its first snapshot: orders rejections
    keys: set[tuple[int, str]]
    task: asyncio.Task[None] | None = None


@dataclass(slots=True)
class _Rejections:
    """The earliest `KEPT_REJECTIONS` rejections by submission order; the rest are only counted."""

    heap: list[tuple[int, str]] = field(default_factory=list)  # (-order, "label: reason")

    def add(self, order: int, text: str) -> None:
        if len(self.heap) < KEPT_REJECTIONS:
            heapq.heappush(self.heap, (-order, text))
        elif -self.heap[0][0] > order:
            heapq.heapreplace(self.heap, (-order, text))

    def earliest(self) -> list[str]:
        return [text for _, text in sorted(self.heap, reverse=True)]


class Submitter:
    """Sends batches with SubmitSnapshots, `concurrency` at a time, and tallies the per-snapshot results.

    Use as `async with Submitter(options) as s: await s.submit(batch, labels) ...; await s.drain()`.
    `submit` returns once the batch is in flight and raises `SubmitFailed` when an earlier batch was
    given up on. Two batches sharing an (event, bookmaker) are never in flight together, so a newer
    snapshot cannot overtake an older one and make it SUPERSEDED. Not for concurrent `submit` callers.
    """

    def __init__(
        self,
        options: SubmitOptions,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """`clock` and `sleep` time the retries (tests step them instead of waiting out the back-off)."""
        self.options = options
        self._clock = clock
        self._sleep = sleep
        self.counts = Counts()
        self.failure: str | None = None
        self._rejections = _Rejections()
        self._rng = rng or random.Random()
        self._slots = asyncio.Semaphore(options.concurrency)
        self._in_flight: list[_Batch] = []
        self._sequence = 0
        self._channel: grpc.aio.Channel | None = None
        self._stub: ingest_pb2_grpc.IngestServiceStub | None = None
        self._metadata = (("authorization", f"Bearer {options.token}"),) if options.token else None

    async def __aenter__(self) -> Self:
        limit = self.options.max_message_bytes
        self._channel = tls.channel(
            self.options.target,
            self.options.tls_files,
            [("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit)],
        )
        self._stub = ingest_pb2_grpc.IngestServiceStub(self._channel)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for batch in self._in_flight:
            if batch.task is not None:
                batch.task.cancel()
        if self._channel is not None:
            await self._channel.close()

    @property
    def rejections(self) -> list[str]:
        """The earliest rejections as "label: reason"; `counts.rejected` says how many there were."""
        return self._rejections.earliest()

    async def submit(self, snapshots: Sequence[snapshot_pb2.Snapshot], labels: Sequence[str]) -> None:
        """Puts one batch in flight; `labels` name its snapshots in reports (e.g. "line 17")."""
        if len(snapshots) != len(labels):
            raise ValueError("one label per snapshot")
        if self.failure is not None:
            raise SubmitFailed(self.failure)
        keys = {(s.event.id, s.bookmaker) for s in snapshots}
        waits = [b.task for b in self._in_flight if b.task is not None and not keys.isdisjoint(b.keys)]
        if waits:
            await asyncio.wait(waits)
        await self._slots.acquire()
        if self.failure is not None:
            self._slots.release()
            raise SubmitFailed(self.failure)
        batch = _Batch(snapshots, labels, self._sequence, keys)
        self._sequence += len(snapshots)
        batch.task = asyncio.create_task(self._run(batch))
        self._in_flight.append(batch)

    async def drain(self) -> None:
        """Waits until every batch in flight is acknowledged or given up on."""
        tasks = [b.task for b in self._in_flight if b.task is not None]
        if tasks:
            await asyncio.wait(tasks)

    async def _run(self, batch: _Batch) -> None:
        try:
            await self._send(batch)
        except Exception as exc:  # a bug must not leave the batch silently unaccounted for
            logger.exception("submitting a batch failed")
            self._give_up(batch, f"{type(exc).__name__}: {exc}")
        finally:
            self._in_flight.remove(batch)
            self._slots.release()

    async def _send(self, batch: _Batch) -> None:
        assert self._stub is not None, "use Submitter as an async context manager"
        request = ingest_pb2.SubmitSnapshotsRequest(snapshots=batch.snapshots)
        started = self._clock()
        backoff = FIRST_BACKOFF
        # Hand-written, not tenacity: three outcomes per failure (reject the batch, give up, retry) each
        # with its own accounting, which a retry library would split across callbacks.
        while True:
            try:
                response = await self._stub.SubmitSnapshots(
                    request, timeout=self.options.timeout, metadata=self._metadata
                )
            except grpc.aio.AioRpcError as exc:
                code, details = exc.code(), exc.details() or ""
                if code == grpc.StatusCode.INVALID_ARGUMENT:
                    # The server found no valid snapshot in the batch: all of it is rejected.
                    for i, label in enumerate(batch.labels):
                        self._reject(batch.first + i, label, details)
                    return
                # Jitter keeps clients that failed together from retrying in lockstep.
                wait = min(MAX_BACKOFF, backoff) * self._rng.uniform(0.8, 1.2)
                elapsed = self._clock() - started
                if code not in RETRYABLE:
                    self._give_up(batch, f"{code.name}: {details}")
                    return
                if elapsed + wait > self.options.retry_seconds:
                    self._give_up(batch, f"{code.name} for {elapsed:.1f} s, retry budget exhausted: {details}")
                    return
                logger.warning("ingest answered %s (%s); retrying in %.2f s", code.name, details, wait)
                await self._sleep(wait)
                backoff = min(MAX_BACKOFF, backoff * 2)
                continue
            self._record(batch, response)
            return

    def _record(self, batch: _Batch, response: ingest_pb2.SubmitSnapshotsResponse) -> None:
        counts = self.counts
        results = {r.index: r for r in response.results}
        for i, (snapshot, label) in enumerate(zip(batch.snapshots, batch.labels, strict=True)):
            result = results.get(i)
            status = result.status if result is not None else snapshot_pb2.SNAPSHOT_STATUS_UNSPECIFIED
            if result is None or status == snapshot_pb2.SNAPSHOT_STATUS_UNSPECIFIED:
                logger.error("%s: no result from ingest", label)
                counts.unacknowledged += 1
                continue
            counts.observations += len(snapshot.markets)
            if status == snapshot_pb2.SNAPSHOT_STATUS_ACCEPTED:
                counts.accepted += 1
                c = result.counts
                counts.new += c.new
                counts.changed += c.changed
                counts.unchanged += c.unchanged
                counts.unavailable += c.unavailable
                counts.returned += c.returned
            elif status == snapshot_pb2.SNAPSHOT_STATUS_SUPERSEDED:
                counts.superseded += 1
            else:
                self._reject(batch.first + i, label, result.reason)

    def _reject(self, order: int, label: str, reason: str) -> None:
        self.counts.rejected += 1
        self._rejections.add(order, f"{label}: {reason}")

    def _give_up(self, batch: _Batch, reason: str) -> None:
        logger.error("gave up on a batch of %d snapshots (%s): %s", len(batch.snapshots), batch.labels[0], reason)
        self.counts.unacknowledged += len(batch.snapshots)
        if self.failure is None:
            self.failure = reason
