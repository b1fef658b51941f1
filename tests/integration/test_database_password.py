"""DATABASE_PASSWORD_FILE against a server that checks passwords: a service's pool and the migrations (oddstore.migrate
and plain `alembic`) log in with the file's password and a DATABASE_URL that carries none.

The shared test server (TEST_DATABASE_URL) trusts 127.0.0.1, where any password, or none, would pass: these tests
start a server of their own (the embedded one, in a temporary directory) that asks every role but `postgres` for
its scram-sha-256 password.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from bench.databases import execute
from oddstore import db
from services.writer.config import WriterSettings
from tests.conftest import REPO_ROOT, dsn_for_database

HBA = """\
local all all trust
host all postgres 127.0.0.1/32 trust
host all all 127.0.0.1/32 scram-sha-256
"""


@pytest.fixture(scope="module")
def checking_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The superuser's DSN (trusted) of a server that wants a password from every other role."""
    from oddstore.embedded_pg import EmbeddedPostgres

    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data")
    dsn = server.start()
    try:
        (server.data_dir / "pg_hba.conf").write_text(HBA)
        asyncio.run(execute(dsn, "SELECT pg_reload_conf()"))
        yield dsn
    finally:
        server.stop()


@pytest.fixture
def role(checking_server: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A login role with a password (characters a URL would have to escape), its own database, and the password
    in a file as deploy/secrets.sh writes it (a trailing newline); dropped afterwards."""
    name = f"pw_{uuid.uuid4().hex[:12]}"
    password = f"p@ss:w/rd%{uuid.uuid4().hex}"
    # Superuser, so that the migrations' statements (extensions, partitions) need no grants: the point is the login.
    asyncio.run(
        execute(
            checking_server,
            f"CREATE ROLE {name} LOGIN SUPERUSER PASSWORD '{password}'",
            f"CREATE DATABASE {name} OWNER {name}",
        )
    )
    path = tmp_path / "database.password"
    path.write_text(password + "\n")
    try:
        yield name, path
    finally:
        asyncio.run(execute(checking_server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"DROP ROLE {name}"))


def _url(checking_server: str, name: str) -> str:
    """The role's URL on the checking server: no password in it."""
    return dsn_for_database(checking_server, name).replace("postgres@", f"{name}@", 1)


async def test_a_service_pool_logs_in_with_the_password_file_and_a_url_without_a_password(
    checking_server: str, role: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    name, path = role
    monkeypatch.setenv("DATABASE_URL", _url(checking_server, name))
    monkeypatch.setenv("DATABASE_PASSWORD_FILE", str(path))
    settings = WriterSettings()

    pool = await db.create_pool(settings.database_url, password=settings.database_password, wait_seconds=5)
    try:
        assert await pool.fetchval("SELECT current_user") == name
    finally:
        await pool.close()

    # The server does check: the URL alone, or another password, is refused.
    with pytest.raises(asyncpg.InvalidPasswordError):
        await db.connect(settings.database_url)
    with pytest.raises(asyncpg.InvalidPasswordError):
        await db.connect(settings.database_url, password="not-it")


def _migrate(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=REPO_ROOT, env=env)


def test_the_migrations_log_in_with_the_password_file_both_as_oddstore_migrate_and_as_plain_alembic(
    checking_server: str, role: tuple[str, Path]
) -> None:
    name, path = role
    url = _url(checking_server, name)
    env = {k: v for k, v in os.environ.items() if k not in ("PGPASSWORD", "PGPASSFILE")}
    env.update(DATABASE_URL=url, DATABASE_PASSWORD_FILE=str(path))

    done = _migrate(sys.executable, "-m", "oddstore.migrate", "upgrade", env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    # migrations/env.py on its own (no programmatic caller): DATABASE_PASSWORD_FILE read there.
    alembic = Path(sys.executable).with_name("alembic")
    current = _migrate(str(alembic), "current", env=env)
    assert current.returncode == 0 and "(head)" in current.stdout, current.stderr[-3000:]
    password = path.read_text().strip()
    assert password not in done.stdout + done.stderr + current.stdout + current.stderr

    without = _migrate(str(alembic), "current", env={**env, "DATABASE_PASSWORD_FILE": ""})
    assert without.returncode != 0 and "password authentication failed" in without.stderr, without.stderr[-3000:]
