"""Which writer owns an event: the same event always goes to the same writer."""

from __future__ import annotations


def writer_index(event_id: int, writers: int) -> int:
    # Plain modulo over a fixed, ordered list: every ingest replica agrees without coordination.
    # Changing the list moves events between writers, which is safe because each writer re-checks
    # its state against latest_snapshots, but costs reloads; change it between deploys.
    return event_id % writers
