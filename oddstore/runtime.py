"""Process-wide tuning shared by the services."""

from __future__ import annotations

import gc


def tune_gc() -> None:
    """Raises the cyclic collector's first threshold. The services allocate hundreds of thousands of
    short-lived, acyclic objects per scrape cycle (freed by reference counting); with the default
    threshold of 700 the collector re-scans the long-lived state over and over, which measured as
    more than half of the time spent converting a batch (6.4 against 3.2 us per market at 1,300
    events; 3.3 with the collector off), and gave the gateway a 43 ms p99 on a 200-point history
    (6.7 ms with it). Few cycles are made, so collecting rarely costs little."""
    gc.set_threshold(200_000, 50, 1000)


def freeze_long_lived() -> None:
    """Moves what exists now (e.g. a warmed cache) out of the collector's sight for good."""
    gc.collect()
    gc.freeze()
