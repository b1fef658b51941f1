"""Run the Alembic migrations programmatically: `python -m oddstore.migrate [upgrade [--dry-run]|downgrade] [rev]`.

Upgrade takes an empty database, one at any of our revisions, or one at the old system's (pawaRisk) head, which
is verified and adopted first (oddstore/takeover.py); a taken-over database's data is then converted in
resumable batches (oddstore/pawarisk_conversion.py). `--dry-run` prints what an upgrade would do and changes
nothing. `downgrade o9p8q1r2s3t4` gives a taken-over database back.
"""

import asyncio
import logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from oddstore import db, pawarisk_conversion, takeover
from oddstore.takeover import OLD_HEAD, TakeoverRefused

ALEMBIC_INI = Path(__file__).resolve().parent.parent / "alembic.ini"

logger = logging.getLogger(__name__)


def alembic_config(dsn: str, password: str | None = None) -> Config:
    config = Config(str(ALEMBIC_INI))
    # '%' is ConfigParser's interpolation character; a password could contain one.
    config.set_main_option("sqlalchemy.url", dsn.replace("%", "%%"))
    # For migrations/env.py; an attribute, not an option: options end up in Alembic's messages.
    config.attributes["database_password"] = password
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

# The revision that distributes the odds tables on Citus (a no-op on plain PostgreSQL). A taken-over database's data
# is converted before it, on ordinary tables, and distribution then moves the rows into shards: Citus cannot plan
# all of the conversion's statements (temporary tables, lateral joins with the legacy tables) over distributed
# tables. Upgrading to its predecessor from a later revision changes nothing.
DISTRIBUTION_REVISION = "0007"


def _before_distribution(dsn: str) -> str:
    down = ScriptDirectory.from_config(alembic_config(dsn)).get_revision(DISTRIBUTION_REVISION).down_revision
    assert isinstance(down, str), "the distribution revision follows exactly one revision"
    return down


async def _adopt_if_old_head(dsn: str, password: str | None, ours: set[str]) -> None:
    """Adopts a database at the old head; refuses any other revision that is not ours."""
    conn = await db.connect(_asyncpg_dsn(dsn), password=password)
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


async def _unadopt(dsn: str, password: str | None, *, check_only: bool) -> None:
    conn = await db.connect(_asyncpg_dsn(dsn), password=password)
    try:
        if check_only:
            await takeover.require_taken_over(conn)
        else:
            await takeover.unadopt(conn)
    finally:
        await conn.close()


def _asyncpg_dsn(dsn: str) -> str:
    return dsn.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _convert(dsn: str, password: str | None, batch_ids: int, after_batch: Callable[[int], None] | None) -> None:
    conn = await db.connect(_asyncpg_dsn(dsn), password=password)
    try:
        await pawarisk_conversion.convert(conn, batch_ids=batch_ids, after_batch=after_batch)
    finally:
        await conn.close()


def upgrade(
    dsn: str,
    revision: str = "head",
    *,
    batch_ids: int = pawarisk_conversion.BATCH_IDS,
    after_batch: Callable[[int], None] | None = None,
    password: str | None = None,
) -> None:
    """Raises TakeoverRefused for a database this project cannot take over as it is. Run again after an
    interruption, it resumes a taken-over database's conversion where it stopped."""
    ours = our_revisions(dsn)
    _run(lambda: asyncio.run(_adopt_if_old_head(dsn, password, ours)))
    staged = revision == "head"
    _run(lambda: command.upgrade(alembic_config(dsn, password), _before_distribution(dsn) if staged else revision))
    _run(lambda: asyncio.run(_convert(dsn, password, batch_ids, after_batch)))
    if staged:
        _run(lambda: command.upgrade(alembic_config(dsn, password), revision))


def _pending_revisions(dsn: str, current: str | None) -> list[str]:
    script = ScriptDirectory.from_config(alembic_config(dsn))
    return [r.revision for r in reversed(list(script.iterate_revisions("head", current or "base")))]


async def _plan(dsn: str, password: str | None, ours: set[str]) -> list[str]:
    conn = await db.connect(_asyncpg_dsn(dsn), password=password)
    try:
        versions = []
        if await conn.fetchval("SELECT to_regclass('alembic_version') IS NOT NULL"):
            versions = [r[0] for r in await conn.fetch(VERSIONS)]
        taken_over = bool(await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", takeover.TAKEOVER_TABLE))
        if versions == [OLD_HEAD]:
            differences = await takeover.schema_differences(conn)
            if differences:
                return [f"pawaRisk head {OLD_HEAD}, but its schema differs; the upgrade would refuse:"] + [
                    f"  {d}" for d in differences
                ]
            lines = [f"pawaRisk head {OLD_HEAD}, schema verified: adopted at 0001 in one transaction"]
            work = await pawarisk_conversion.pending(conn, history="market_odds_history", adopted=False)
            current: str | None = "0001"
        elif not set(versions) <= ours:
            return [f"revision {', '.join(versions)}: neither this project's nor the pawaRisk head; refused"]
        else:
            current = versions[0] if versions else None
            lines = [f"at revision {current}" if current else "no revision: the schema is created"]
            marker = await conn.fetchval(pawarisk_conversion.MARKER_EXISTS)
            work = await pawarisk_conversion.pending(conn, adopted=bool(marker) or not taken_over)
        revisions = _pending_revisions(dsn, current)
        lines.append(f"revisions to apply: {' '.join(revisions) if revisions else 'none'}")
        if work.v29_rows or work.legacy_rows:
            lines += [
                f"v2.9 history to convert: {work.v29_rows} of {work.v29_total} rows, in batches of "
                f"{pawarisk_conversion.BATCH_IDS} ids, each committed (resumable)",
                f"current state seeded from {work.legacy_rows} legacy market rows, in one transaction",
                f"estimate: ~{work.estimate_seconds:.0f} s (at {pawarisk_conversion.V29_ROWS_PER_SECOND:.0f} v2.9 "
                f"rows/s and {pawarisk_conversion.LEGACY_ROWS_PER_SECOND:.0f} legacy rows/s, measured by "
                "bench/takeover.py: BENCHMARKS.md)",
            ]
        else:
            lines.append("nothing to convert")
        return lines
    finally:
        await conn.close()


def plan(dsn: str, *, password: str | None = None) -> list[str]:
    """What `upgrade` would do, as lines for a person; reads only."""
    ours = our_revisions(dsn)
    result: list[str] = []
    _run(lambda: result.extend(asyncio.run(_plan(dsn, password, ours))))
    return result


def downgrade(dsn: str, revision: str = "base", *, password: str | None = None) -> None:
    """`revision` may be the pawaRisk head for a database that was taken over from it."""
    if revision != OLD_HEAD:
        _run(lambda: command.downgrade(alembic_config(dsn, password), revision))
        return
    # Checked first: a database that was never pawaRisk's must not lose our tables on the way to a refusal.
    _run(lambda: asyncio.run(_unadopt(dsn, password, check_only=True)))
    _run(lambda: command.downgrade(alembic_config(dsn, password), "0001"))
    _run(lambda: asyncio.run(_unadopt(dsn, password, check_only=False)))


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    dry_run = "--dry-run" in argv
    argv = [a for a in argv if a != "--dry-run"]
    action = argv[0] if argv else "upgrade"
    if action not in ("upgrade", "downgrade") or len(argv) > 2 or (dry_run and (action != "upgrade" or len(argv) > 1)):
        print("usage: python -m oddstore.migrate [upgrade [--dry-run]|downgrade] [revision]", file=sys.stderr)
        return 2
    dsn = os.environ.get("DATABASE_URL", db.DEFAULT_DATABASE_URL)
    try:
        password = db.password_from_environment()
        if dry_run:
            print("\n".join(plan(dsn, password=password)))
        elif action == "upgrade":
            upgrade(dsn, argv[1] if len(argv) > 1 else "head", password=password)
        else:
            downgrade(dsn, argv[1] if len(argv) > 1 else "base", password=password)
    except db.DatabasePasswordError as exc:
        print(f"migrate: {exc}", file=sys.stderr)
        return 2
    except TakeoverRefused as exc:
        print(f"migrate: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
