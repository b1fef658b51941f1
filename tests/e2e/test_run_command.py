"""`oddstore run` as a user runs it: a real process starting PostgreSQL, the services and the feed."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from oddstore.embedded_pg import EmbeddedPostgres
from tests.conftest import REPO_ROOT

RUN = [sys.executable, "-m", "oddstore_cli.main", "run", "--events", "20", "--interval", "1", "--cycles", "2"]
HISTORY = re.compile(r"history ([\d,]+) rows")


def run_command(data_dir: Path, database_url: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    return subprocess.run(
        [*RUN, "--data-dir", str(data_dir)],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
        check=False,
    )


def row_counts(dsn: str) -> tuple[int, int]:
    async def count() -> tuple[int, int]:
        conn = await asyncpg.connect(dsn)
        try:
            current = await conn.fetchval("SELECT count(*) FROM market_odds_current")
            history = await conn.fetchval("SELECT count(*) FROM market_odds_history")
            return int(current), int(history)
        finally:
            await conn.close()

    return asyncio.run(count())


def check_output(result: subprocess.CompletedProcess[str], data_dir: Path) -> int:
    """Asserts a clean run of two cycles and returns the history rows of the final status."""
    assert result.returncode == 0, result.stdout
    assert re.search(r"^ingest 127\.0\.0\.1:\d+", result.stdout, re.MULTILINE), result.stdout
    assert "cycles 2 |" in result.stdout, result.stdout
    assert "rejected 0, not acknowledged 0" in result.stdout, result.stdout
    reported = [int(n.replace(",", "")) for n in HISTORY.findall(result.stdout)]
    assert reported and reported[-1] > 0, result.stdout
    # SIGTERM, not a kill: both services drained and said so in their own logs.
    assert "writer stopped" in (data_dir / "logs" / "writer.log").read_text()
    assert "ingest stopped" in (data_dir / "logs" / "ingest.log").read_text()
    return reported[-1]


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Not under pytest's tmp_path: every pytest session that starts on the machine resets its root to 0700,
    # and the embedded server runs as an unprivileged user that must traverse the path to its data.
    path = Path(tempfile.mkdtemp(prefix="oddstore-run-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_run_with_database_url_feeds_the_database_and_stops_cleanly(fresh_database: str, data_dir: Path) -> None:
    result = run_command(data_dir, fresh_database)

    history_reported = check_output(result, data_dir)
    assert fresh_database.rpartition("/")[2] in result.stdout
    current, history = row_counts(fresh_database)
    assert current > 0
    assert history == history_reported
    assert not (data_dir / "pg").exists(), "no embedded server when DATABASE_URL is set"


def test_run_without_database_url_uses_an_embedded_server_in_the_data_dir(data_dir: Path) -> None:
    result = run_command(data_dir, None)

    history_reported = check_output(result, data_dir)
    assert "starting embedded PostgreSQL" in result.stdout
    server = EmbeddedPostgres(data_dir / "pg")
    assert not server.is_running(), "the server the command started is stopped at exit"
    server.start()
    try:
        current, history = row_counts(server.ensure_database("oddstore"))
    finally:
        server.stop()
    assert current > 0
    assert history == history_reported
