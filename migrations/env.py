"""Alembic environment: online migrations over SQLAlchemy's async engine (asyncpg)."""

import asyncio
import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from oddstore import db

config = context.config

# Programmatic callers (oddstore.migrate, tests) configure logging themselves.
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    """A URL set on the config wins over DATABASE_URL; both may be postgresql+asyncpg://. Returned as asyncpg's
    postgresql:// URL."""
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("DATABASE_URL") or db.DEFAULT_DATABASE_URL
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url.removeprefix(prefix)
    raise RuntimeError(f"DATABASE_URL must be a postgresql:// URL, got {url.split('://')[0]}://…")


def database_password() -> str | None:
    """Given by a programmatic caller (oddstore.migrate, which read DATABASE_PASSWORD_FILE), else, under `alembic`
    itself, DATABASE_PASSWORD_FILE's; None: the URL's own, if any."""
    if "database_password" in config.attributes:
        password: str | None = config.attributes["database_password"]
        return password
    return db.password_from_environment()


def do_run_migrations(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=None, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    url, password = database_url(), database_password()
    # asyncpg reads the whole URL itself, TLS parameters included (sslmode, sslrootcert): SQLAlchemy would pass
    # the URL's query on as keyword arguments, which asyncpg.connect does not take.
    engine = create_async_engine(
        "postgresql+asyncpg://", async_creator=lambda: db.connect(url, password=password), poolclass=NullPool
    )
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported; run against a database")
asyncio.run(run_async_migrations())
