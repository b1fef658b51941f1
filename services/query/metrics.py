"""Prometheus metrics of the query service (requests are counted by the shared gRPC interceptor)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CACHE_EVENTS = Gauge("oddstore_query_cache_events", "Events held in the current-odds cache")
CACHE_MARKETS = Gauge("oddstore_query_cache_markets", "Current markets held in the cache")
CACHE_LOADING = Gauge(
    "oddstore_query_cache_loading", "1 while the first cache load runs (reads are answered from PostgreSQL)"
)
WARM_UP_SECONDS = Gauge("oddstore_query_warm_up_seconds", "Time the last cache warm-up took")
FEED_LAG_SECONDS = Histogram(
    "oddstore_query_feed_lag_seconds",
    "From a batch's commit (the writer's clock) to the cache applying it",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
FEED_BATCHES = Counter("oddstore_query_feed_batches_total", "Committed writer batches applied from the change feed")
RESYNCS = Counter(
    "oddstore_query_resyncs_total",
    "Resynchronisations from PostgreSQL: a feed that could not resume, or the periodic safety check",
)
FALLBACKS = Counter("oddstore_query_fallbacks_total", "Reads answered from PostgreSQL on a cache miss", ["kind"])
REDIS_HITS = Counter("oddstore_query_redis_hits_total", "History reads answered from Redis at the database's version")
REDIS_MISSES = Counter(
    "oddstore_query_redis_misses_total",
    "History reads Redis could not answer: no entry (absent), one older than the database (stale), one this code"
    " cannot read (unreadable), or not asked while a cleanup run is in progress (cleaning)",
    ["reason"],
)
REDIS_ERRORS = Counter(
    "oddstore_query_redis_errors_total", "Failed Redis operations (the read went to PostgreSQL)", ["operation"]
)
