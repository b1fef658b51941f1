"""The writer's service layer: plans each batch against the last known state (plan.py) and commits
it in one transaction, isolating snapshots the database refuses."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta

import asyncpg

from oddstore import citus
from oddstore.db import CONTENT_ERRORS
from oddstore.history_partitions import ensure_partition
from services.writer import metrics
from services.writer import repository as repo
from services.writer.change_detection import Known
from services.writer.changes import ChangeLog
from services.writer.plan import (
    EventRow,
    Observed,
    Pair,
    PairState,
    Result,
    Status,
    feed_changes,
    plan,
    plan_metadata,
)

logger = logging.getLogger(__name__)

# The change feed is published by the writer itself, after commit, over gRPC (WriterService.Changes,
# changes.py), not by PostgreSQL NOTIFY: on Citus a NOTIFY in a transaction that writes to several
# shards makes its two-phase commit fail ("cannot PREPARE a transaction that has executed NOTIFY").
# The price is the window between commit and publish: a writer that dies there never announces the
# batch. Subscribers cover it by resynchronising from the database when they cannot resume (a new
# epoch is a new process) and on a periodic safety check (QUERY_RESYNC_SECONDS, the stated bound).
REASON_CHARS = 300  # asyncpg quotes a refused argument whole: a column of a large batch


class Writer:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        home_bookmaker: str = "betpawa",
        warm_days: float = 3,
        changes: ChangeLog | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._pool = pool
        self.changes = changes if changes is not None else ChangeLog()
        self._clock = clock
        self._home = home_bookmaker
        self._warm_days = warm_days
        # Last known state per (event, bookmaker): unchanged markets cost no database work. The
        # database stays the judge: each batch compares these times with latest_snapshots under a
        # row lock and reloads any pair that another writer (or a lost commit) moved.
        self._pairs: dict[Pair, PairState] = {}
        self._events: dict[int, EventRow] = {}  # metadata last written from the home bookmaker
        self._created: set[int] = set()  # events known to exist (created from a competitor's snapshot)
        self._links: dict[Pair, str] = {}
        self._partitions: set[date] = set()
        self._citus: bool | None = None  # whether the database is Citus; asked on the first batch
        # Batches are applied one at a time: the in-memory state must advance in commit order.
        self._lock = asyncio.Lock()

    @property
    def tracked_markets(self) -> int:
        return sum(len(s.markets) for s in self._pairs.values())

    async def warm_up(self, now: datetime) -> int:
        """Loads the state of pairs written to in the last `warm_days`; older ones load on demand."""
        since = now - timedelta(days=self._warm_days)
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            pairs = {(r[0], r[1]): PairState(r[2], {}) for r in await conn.fetch(repo.WARM_PAIRS, since)}
            async for r in conn.cursor(repo.WARM_MARKETS, since, prefetch=10_000):
                pairs[(r[0], r[1])].markets[(r[2], r[3])] = Known(r[4], r[5])
        self._pairs.update(pairs)
        return self.tracked_markets

    async def write(self, snapshots: Sequence[Observed]) -> list[Result]:
        results: dict[int, Result] = {}
        pending: list[int] = []
        for i, s in enumerate(snapshots):
            if s.error is None and (s.captured_at is None or s.captured_at.tzinfo is None):
                s.error = "captured_at: missing or without time zone"
            if s.error is not None:
                results[i] = Result(Status.REJECTED, reason=s.error)
            else:
                pending.append(i)
        if pending:
            # Each pair's snapshots in capture order (the order they apply in), pairs in one global
            # order so that halves of a split batch keep it too.
            pending.sort(key=lambda i: (snapshots[i].pair, snapshots[i].at))
            metrics.QUEUE_DEPTH.inc()
            try:
                async with self._lock:
                    await self._commit_isolating(snapshots, pending, results)
            finally:
                metrics.QUEUE_DEPTH.dec()
        return [results.get(i, Result(Status.REJECTED, reason="not processed")) for i in range(len(snapshots))]

    async def _commit_isolating(
        self, snapshots: Sequence[Observed], order: list[int], results: dict[int, Result]
    ) -> None:
        """Commits the snapshots `order` names. When the database refuses the batch for what a
        snapshot contains (CONTENT_ERRORS: retrying cannot help), the batch is split in halves, each
        committed on its own, down to the refused snapshots, which are rejected with the database's
        reason: one bad snapshot never holds back the rest. A poisoned batch of n costs about
        2·log2(n) extra transactions; ingest's validation makes that the rare last line."""
        try:
            results.update(await self._commit_retrying(snapshots, order))
        except CONTENT_ERRORS as exc:
            if len(order) > 1:
                middle = len(order) // 2
                await self._commit_isolating(snapshots, order[:middle], results)
                await self._commit_isolating(snapshots, order[middle:], results)
                return
            s = snapshots[order[0]]
            reason = f"the database refused this snapshot: {type(exc).__name__}: {exc}"
            if len(reason) > REASON_CHARS:
                reason = reason[: REASON_CHARS - 1] + "…"
            metrics.ERRORS.labels("refused_snapshot").inc()
            logger.warning("snapshot of event %d at %s rejected: %s", s.event.id, s.bookmaker, reason)
            results[order[0]] = Result(Status.REJECTED, reason=reason)

    async def _commit_retrying(self, snapshots: Sequence[Observed], order: list[int]) -> dict[int, Result]:
        try:
            return await self._commit(snapshots, order)
        except (asyncpg.exceptions.CheckViolationError, asyncpg.exceptions.InternalServerError) as exc:
            # Citus reports the worker's "no partition of relation ... found for row" (a check violation on
            # one server) as an internal error: told apart by its message there.
            if isinstance(exc, asyncpg.exceptions.InternalServerError) and "no partition of relation" not in str(exc):
                raise
            # No partition for a row: one this process created may have been dropped by retention
            # since. Forget what is known and commit once more (nothing of the failed attempt was
            # committed); a second violation is the content's.
            self._partitions.clear()
            return await self._commit(snapshots, order)

    async def _commit(self, snapshots: Sequence[Observed], order: list[int]) -> dict[int, Result]:
        started = time.perf_counter()
        for day in sorted({snapshots[i].at.date() for i in order} - self._partitions):
            await ensure_partition(self._pool, day)
            self._partitions.add(day)

        pairs = sorted({snapshots[i].pair for i in order})
        if self._citus is None:
            self._citus = await citus.installed(self._pool)
        # Metadata is planned below from the applied snapshots, a subset of these: if these need none, neither
        # do they. So on Citus only the batches that may write metadata (new or changed events) give up the
        # parallel multi-shard execution; steady scraping of known events keeps it.
        sequential = (
            self._citus
            and not plan_metadata(
                [snapshots[i] for i in order], self._home, self._events, self._created, self._links
            ).empty
        )
        async with self._pool.acquire() as conn, conn.transaction():
            if sequential:
                await conn.execute(repo.SEQUENTIAL_SHARDS)
                await conn.execute(citus.METADATA_TURN)  # only batches with new or changed events
            claimed = await repo.claim_pairs(conn, pairs)
            stored = await self._stored_states(conn, pairs, claimed)
            rejected = await self._check_events(conn, [snapshots[i] for i in order])
            batch = plan(snapshots, order, stored, rejected)
            metadata = plan_metadata(
                [snapshots[i] for i in batch.applied], self._home, self._events, self._created, self._links
            )
            await repo.write_rows(conn, batch)
            await repo.write_metadata(conn, metadata)

        # Committed: only now does the in-memory state move, and the feed hear of it (under the
        # batch lock, so in commit order, and before the caller is acknowledged).
        if batch.advanced:
            self.changes.publish(self._clock(), *feed_changes(batch, metadata))
        self._pairs.update(batch.states)
        self._events.update(metadata.home)
        self._created.update(metadata.created)
        self._links.update(metadata.links)
        metrics.record_batch(len(order), batch.counts(), len(batch.history), time.perf_counter() - started)
        return batch.results

    async def _stored_states(
        self, conn: asyncpg.Connection, pairs: list[Pair], claimed: dict[Pair, datetime | None]
    ) -> dict[Pair, PairState]:
        """The state of each pair as committed: from memory where its time matches latest_snapshots,
        else reloaded (another writer or a lost commit moved it)."""
        states: dict[Pair, PairState] = {}
        stale: list[Pair] = []
        for pair in pairs:
            known = self._pairs.get(pair)
            if known is not None and known.captured_at == claimed[pair]:
                states[pair] = known
            else:
                stale.append(pair)
                states[pair] = PairState(claimed[pair], {})
        if stale:
            for r in await repo.load_pairs(conn, stale):
                states[(r[0], r[1])].markets[(r[2], r[3])] = Known(r[4], r[5])
            metrics.PAIRS_LOADED.inc(len(stale))
        return states

    async def _check_events(self, conn: asyncpg.Connection, snapshots: Sequence[Observed]) -> dict[int, str]:
        """Snapshots whose sportradar id already belongs to another event are rejected whole."""
        claims: dict[str, int] = {}
        rejected: dict[int, str] = {}
        for s in snapshots:
            e = s.event
            known = self._events.get(e.id)
            if not e.sportradar_id or (known is not None and known.sportradar_id == e.sportradar_id):
                continue
            first = claims.setdefault(e.sportradar_id, e.id)
            if first != e.id:
                rejected[e.id] = f"event.sportradar_id: {e.sportradar_id!r} also sent for event {first}"
        if not claims:
            return rejected
        for owner, sportradar_id in await conn.fetch(repo.FIND_SPORTRADAR_OWNERS, list(claims)):
            event_id = claims[sportradar_id]
            if owner != event_id:
                rejected[event_id] = (
                    f"event.sportradar_id: {sportradar_id!r} already belongs to event {owner}, not {event_id}"
                )
        return rejected
