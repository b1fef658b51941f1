"""Prometheus metrics of the writer."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from oddstore.metrics import BATCH_SIZES
from services.writer.change_detection import Counts

BATCH_SNAPSHOTS = Histogram("oddstore_writer_batch_snapshots", "Snapshots per write batch", buckets=BATCH_SIZES)
BATCH_SECONDS = Histogram(
    "oddstore_writer_batch_seconds",
    "Time to apply and commit one batch",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
OBSERVATIONS = Counter("oddstore_writer_observations_total", "Market observations classified")
CHANGES = Counter("oddstore_writer_changes_total", "Market transitions stored", ["kind"])
HISTORY_ROWS = Counter("oddstore_writer_history_rows_total", "History rows appended")
ERRORS = Counter("oddstore_writer_errors_total", "Failed write batches", ["reason"])
QUEUE_DEPTH = Gauge("oddstore_writer_queue_depth", "Batches waiting for or holding the write lock")
TRACKED_MARKETS = Gauge("oddstore_writer_tracked_markets", "Markets whose last state is held in memory")
PAIRS_LOADED = Counter("oddstore_writer_pairs_loaded_total", "Event/bookmaker states (re)loaded from the database")


def record_batch(snapshots: int, counts: Counts, history_rows: int, seconds: float) -> None:
    BATCH_SNAPSHOTS.observe(snapshots)
    BATCH_SECONDS.observe(seconds)
    OBSERVATIONS.inc(counts.new + counts.changed + counts.unchanged + counts.returned)
    for kind in ("new", "changed", "unavailable", "returned"):
        CHANGES.labels(kind).inc(getattr(counts, kind))
    HISTORY_ROWS.inc(history_rows)
