"""Prometheus metrics of the retention service."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HORIZON_DAYS = Gauge("oddstore_retention_partition_horizon_days", "Whole days after today with a history partition")
PARTITIONS_CREATED = Counter("oddstore_retention_partitions_created_total", "History partitions created ahead")
PARTITIONS_DROPPED = Counter("oddstore_retention_partitions_dropped_total", "Expired history partitions dropped")
PARTITIONS_CONVERTED = Counter(
    "oddstore_retention_partitions_columnar_total", "Closed history partitions converted to columnar storage"
)
ROWS_DELETED = Counter("oddstore_retention_rows_deleted_total", "Rows removed by cleanup runs", ["table"])
RUNS = Counter("oddstore_retention_runs_total", "Cleanup runs", ["trigger", "status"])
RUN_SECONDS = Histogram(
    "oddstore_retention_run_seconds",
    "Duration of a cleanup run",
    buckets=(0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600),
)
DATABASE_BYTES = Gauge("oddstore_retention_database_bytes", "Database size at the last check")
TICK_ERRORS = Counter("oddstore_retention_tick_errors_total", "Failed steps of the periodic tick", ["step"])
