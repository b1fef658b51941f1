"""The one asyncpg pool of a process, opened at start-up with a bounded wait for the database."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import asyncpg

logger = logging.getLogger(__name__)

# Errors that mean "the database is not reachable right now" rather than "the request is wrong".
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.ConnectionFailureError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    # SQLSTATE 58030: on Citus, a COPY whose connection to a worker failed ("failed to COPY to shard … on
    # host:port"); on one server, the disk failing a read or write. Neither is the request's fault.
    asyncpg.exceptions.PostgresIOError,
)

# Citus reports some failures of its connections to a worker as an internal error (XX000), with no SQLSTATE
# of their own, e.g. a worker stopped in the middle of a transaction: "failure on connection marked as
# essential: 127.0.0.1:9701". Told apart by Citus 13's messages (remote_transaction.c, multi_copy.c).
CITUS_NODE_FAILURES = (
    "failure on connection marked as essential",
    "failed to prepare transaction",
    "could not connect to any active placements",
)


def transient(exc: BaseException) -> bool:
    """Whether `exc` means "the database is not reachable right now": worth retrying, the request is fine."""
    if isinstance(exc, TRANSIENT_ERRORS):
        return True
    return isinstance(exc, asyncpg.exceptions.InternalServerError) and str(exc).startswith(CITUS_NODE_FAILURES)


# Errors that belong to the data a statement was given, so sending the same data again can never
# succeed: SQLSTATE class 22 (data exception: a NUL in text, a value out of range), 23 (integrity
# constraint violation), 54 (program limit exceeded: an index row too large), and a string that
# cannot be encoded as UTF-8 at all (a lone surrogate; asyncpg raises it client-side in COPY).
CONTENT_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.DataError,
    asyncpg.exceptions.IntegrityConstraintViolationError,
    asyncpg.exceptions.ProgramLimitExceededError,
    UnicodeEncodeError,
)


DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/oddstore"

# The password as a file (a compose secret) rather than in DATABASE_URL, where `docker inspect` and every process
# listing of the container's environment would show it.
PASSWORD_FILE_VARIABLE = "DATABASE_PASSWORD_FILE"


class DatabasePasswordError(Exception):
    """The password file cannot be used. Not a ValueError on purpose: pydantic would wrap that in a
    ValidationError whose text repeats the settings' inputs, DATABASE_URL (maybe with a password) included."""


def read_password(path: str | os.PathLike[str]) -> str:
    """The password in `path`, without trailing line breaks, as the PostgreSQL image's entrypoint reads
    POSTGRES_PASSWORD_FILE (`$(cat file)`), so the server and its clients agree on the same file. Errors name the
    variable and the file, never the content."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        message = f"{PASSWORD_FILE_VARIABLE}={path}: cannot read the password file: {reason}"
        raise DatabasePasswordError(message) from None
    password = text.rstrip("\n")
    if not password:
        raise DatabasePasswordError(f"{PASSWORD_FILE_VARIABLE}={path}: the password file is empty")
    return password


def password_from_environment(environ: Mapping[str, str] | None = None) -> str | None:
    """The password of DATABASE_PASSWORD_FILE when it is set, else None (DATABASE_URL, PGPASSWORD or ~/.pgpass then
    decide, as libpq's rules that asyncpg follows)."""
    path = (os.environ if environ is None else environ).get(PASSWORD_FILE_VARIABLE)
    return read_password(path) if path else None


async def connect(dsn: str, *, password: str | None = None, **kwargs: Any) -> asyncpg.Connection:
    """One connection. `password`, when given, wins over one in the URL; the URL itself may then carry none."""
    return await asyncpg.connect(dsn, password=password, **kwargs)


async def _session_kept(_: asyncpg.Connection) -> None:
    """The pool's reset when the session is kept: asyncpg has already rolled back a transaction left open."""


async def create_pool(
    dsn: str,
    *,
    password: str | None = None,
    min_size: int = 1,
    max_size: int = 4,
    wait_seconds: float = 30.0,
    keep_session: bool = False,
    server_settings: Mapping[str, str] | None = None,
) -> asyncpg.Pool:
    """Opens the pool, retrying while the database starts; raises after `wait_seconds`. `password` as `connect`;
    `server_settings`: session settings every connection starts with.

    `keep_session`: a connection goes back to the pool without asyncpg's reset statement (`RESET ALL`, `UNLISTEN *`,
    `CLOSE ALL`, advisory locks released: one more round trip at the end of every use, on the reply's path), only a
    transaction left open is still rolled back. For pools whose users change no session state."""
    # Hand-written, not tenacity: the same loop there (AsyncRetrying with retry, stop, wait, before_sleep and
    # reraise, then the ConnectionError) is no shorter, and would be one more dependency in every image.
    deadline = time.monotonic() + wait_seconds
    delay = 0.2
    while True:
        try:
            pool: asyncpg.Pool = await asyncpg.create_pool(
                dsn,
                password=password,
                min_size=min_size,
                max_size=max_size,
                command_timeout=60,
                reset=_session_kept if keep_session else None,
                server_settings=dict(server_settings or {}),
            )
            return pool
        except TRANSIENT_ERRORS as exc:
            if time.monotonic() >= deadline:
                raise ConnectionError(f"database not reachable after {wait_seconds:.0f}s: {exc}") from exc
            logger.info("waiting for the database: %s", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
