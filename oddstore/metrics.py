"""Prometheus metrics: the ones every gRPC server shares, and the exporter start-up."""

from __future__ import annotations

import logging

from prometheus_client import Counter, Histogram, start_http_server

logger = logging.getLogger(__name__)

GRPC_REQUESTS = Counter("oddstore_grpc_requests_total", "gRPC calls handled", ["method", "code"])
GRPC_LATENCY = Histogram(
    "oddstore_grpc_latency_seconds",
    "gRPC call latency",
    ["method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
BATCH_SIZES = (1, 5, 10, 50, 100, 500, 1000, 5000, 10_000, 50_000, 100_000)


def serve(port: int) -> None:
    """Starts the /metrics endpoint; port 0 disables it."""
    if port:
        start_http_server(port)
        logger.info("metrics on :%d/metrics", port)
