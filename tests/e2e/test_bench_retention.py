"""`make bench-retention` as a program, at a tiny size: it runs all three operations against a real server, checks
what it removed, and prints its table. The figures at this size mean nothing; that the program works does."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

TINY = ["--rows-per-day", "3000", "--min-window", "0.5", "--warm-up", "0.3", "--snapshots", "5", "--events", "20"]


def test_the_retention_benchmark_runs_and_reports_every_operation(pg_server_dsn: str, on_citus: bool) -> None:
    if on_citus:
        pytest.skip(
            "NOT RUN ON CITUS: bench-retention compares against the old system's ctid-batched DELETE, which Citus "
            "cannot plan on a distributed table; it is a plain-PostgreSQL benchmark (bench databases on a Citus "
            "coordinator are distributed since bench-citus-write)"
        )
    done = subprocess.run(
        [sys.executable, "-m", "bench.retention", *TINY, "--database-url", pg_server_dsn],
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    out = done.stdout
    assert "| rows removed | 3,000 | 3,000 in 3 DELETEs | 3,000 in 3 DELETEs |" in out
    assert "Check (partition drop): market_odds_history_p" in out and "no longer exists" in out
    assert "Check (old system's batched delete): 3,000 rows deleted, old_market_odds_history_" in out
    assert "Check (ctid batched delete): 3,000 rows deleted, market_odds_history_p" in out
    assert "| failed writes, whole run (one writer throughout) | 0 of " in out
    assert "FAILED" not in out and "failed before finishing" not in out
