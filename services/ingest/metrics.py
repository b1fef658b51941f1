"""Prometheus metrics of ingest."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from oddstore.metrics import BATCH_SIZES

BATCH_SNAPSHOTS = Histogram("oddstore_ingest_batch_snapshots", "Snapshots per request", buckets=BATCH_SIZES)
SNAPSHOTS = Counter("oddstore_ingest_snapshots_total", "Snapshots answered", ["status"])
OBSERVATIONS = Counter("oddstore_ingest_observations_total", "Market observations received")
CHANGES = Counter("oddstore_ingest_changes_total", "Market transitions committed", ["kind"])
IN_FLIGHT = Gauge("oddstore_ingest_in_flight_observations", "Observations accepted and not yet answered")
WRITER_RETRIES = Counter("oddstore_ingest_writer_retries_total", "Writer calls retried", ["writer", "code"])
ERRORS = Counter("oddstore_ingest_errors_total", "Requests failed", ["code"])
# By token name (never the token): every accepted batch is attributable to a scraper.
CLIENT_SNAPSHOTS = Counter(
    "oddstore_ingest_client_snapshots_total", "Snapshots answered by caller", ["client", "status"]
)
AUTH_REFUSED = Counter("oddstore_ingest_auth_refused_total", "Calls refused before reading", ["reason"])
