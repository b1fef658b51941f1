"""Run the Alembic migrations programmatically: `python -m oddstore.migrate [upgrade|downgrade] [rev]`.

Upgrade takes an empty database, one at any of our revisions, or one at the old system's (pawaRisk) head, which
is verified and adopted first (oddstore/takeover.py). `downgrade o9p8q1r2s3t4` gives a taken-over database back.
"""

import asyncio
import logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from oddstore import takeover
from oddstore.config import DEFAULT_DATABASE_URL
from oddstore.takeover import OLD_HEAD, TakeoverRefused

ALEMBIC_INI = Path(__file__).resolve().parent.parent / "alembic.ini"

logger = logging.getLogger(__name__)


def alembic_config(dsn: str) -> Config:
    config = Config(str(ALEMBIC_INI))
    # '%' is ConfigParser's interpolation character; a password could contain one.
    config.set_main_option("sqlalchemy.url", dsn.replace("%", "%%"))
    # Callers own logging; env.py must not reconfigure it from the ini file.
    config.attributes["configure_logger"] = False
    return config


def _run(action: Callable[[], None]) -> None:
    """env.py calls asyncio.run, which cannot nest in a running loop; use a worker thread then."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        action()
        return
    errors: list[BaseException] = []

    def target() -> None:
        try:
            action()
        except BaseException as exc:  # re-raised in the caller's thread below
            errors.append(exc)

    worker = threading.Thread(target=target, name="alembic")
    worker.start()
    worker.join()
    if errors:
        raise errors[0]


def our_revisions(dsn: str) -> set[str]:
    return {script.revision for script in ScriptDirectory.from_config(alembic_config(dsn)).walk_revisions()}


VERSIONS = "SELECT version_num FROM alembic_version"


async def _adopt_if_old_head(dsn: str, ours: set[str]) -> None:
    """Adopts a database at the old head; refuses any other revision that is not ours."""
    conn = await asyncpg.connect(_asyncpg_dsn(dsn))
    try:
        if not await conn.fetchval("SELECT to_regclass('alembic_version') IS NOT NULL"):
            return
        versions = [r[0] for r in await conn.fetch(VERSIONS)]
        if set(versions) <= ours:
            return
        if versions != [OLD_HEAD]:
            raise TakeoverRefused(
                f"the database is at revision {', '.join(versions)}, which is neither one of this project's nor "
                f"the pawaRisk head {OLD_HEAD}. If it is a pawaRisk database, first upgrade it to {OLD_HEAD} with "
                "the old system's own tooling (its `alembic upgrade head`), then run this command again."
            )
        logger.info("pawaRisk head %s found: verifying its schema and adopting it", OLD_HEAD)
        await takeover.adopt(conn)
    finally:
        await conn.close()


async def _unadopt(dsn: str, *, check_only: bool) -> None:
    conn = await asyncpg.connect(_asyncpg_dsn(dsn))
    try:
        if check_only:
            await takeover.require_taken_over(conn)
        else:
            await takeover.unadopt(conn)
    finally:
        await conn.close()


def _asyncpg_dsn(dsn: str) -> str:
    return dsn.replace("postgresql+asyncpg://", "postgresql://", 1)


def upgrade(dsn: str, revision: str = "head") -> None:
    """Raises TakeoverRefused for a database this project cannot take over as it is."""
    ours = our_revisions(dsn)
    _run(lambda: asyncio.run(_adopt_if_old_head(dsn, ours)))
    _run(lambda: command.upgrade(alembic_config(dsn), revision))


def downgrade(dsn: str, revision: str = "base") -> None:
    """`revision` may be the pawaRisk head for a database that was taken over from it."""
    if revision != OLD_HEAD:
        _run(lambda: command.downgrade(alembic_config(dsn), revision))
        return
    # Checked first: a database that was never pawaRisk's must not lose our tables on the way to a refusal.
    _run(lambda: asyncio.run(_unadopt(dsn, check_only=True)))
    _run(lambda: command.downgrade(alembic_config(dsn), "0001"))
    _run(lambda: asyncio.run(_unadopt(dsn, check_only=False)))


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    action = argv[0] if argv else "upgrade"
    if action not in ("upgrade", "downgrade") or len(argv) > 2:
        print("usage: python -m oddstore.migrate [upgrade|downgrade] [revision]", file=sys.stderr)
        return 2
    dsn = os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
    try:
        if action == "upgrade":
            upgrade(dsn, argv[1] if len(argv) > 1 else "head")
        else:
            downgrade(dsn, argv[1] if len(argv) > 1 else "base")
    except TakeoverRefused as exc:
        print(f"migrate: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
