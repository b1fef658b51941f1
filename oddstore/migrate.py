"""Run the Alembic migrations programmatically: `python -m oddstore.migrate [upgrade|downgrade] [rev]`."""

import asyncio
import logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config

from oddstore.config import DEFAULT_DATABASE_URL

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


def upgrade(dsn: str, revision: str = "head") -> None:
    _run(lambda: command.upgrade(alembic_config(dsn), revision))


def downgrade(dsn: str, revision: str = "base") -> None:
    _run(lambda: command.downgrade(alembic_config(dsn), revision))


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    action = argv[0] if argv else "upgrade"
    if action not in ("upgrade", "downgrade") or len(argv) > 2:
        print("usage: python -m oddstore.migrate [upgrade|downgrade] [revision]", file=sys.stderr)
        return 2
    dsn = os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
    if action == "upgrade":
        upgrade(dsn, argv[1] if len(argv) > 1 else "head")
    else:
        downgrade(dsn, argv[1] if len(argv) > 1 else "base")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
