"""The old system's legacy tables in their real shape, and the progress marker of a takeover's data conversion.

- Legacy columns as the old system's real head has them (0001 was written from its ORM models): a fresh
  database gets competitor_tournaments.country_raw/country_iso and timestamptz unavailable_at, so reads are the
  same SQL over both kinds of database. A taken-over database already has them and is not rewritten.
- On a taken-over database, the table `pawarisk_conversion`: the old v2.9 history and the current state are
  converted after the schema steps, in committed batches that advance it (oddstore/pawarisk_conversion.py, run
  by `python -m oddstore.migrate upgrade`), so a large conversion resumes where it stopped.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from oddstore.pawarisk_conversion import CREATE_MARKER, INIT_MARKER, MARKER

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _exists(relation: str) -> bool:
    return bool(op.get_bind().scalar(sa.text("SELECT to_regclass(:r) IS NOT NULL"), {"r": relation}))


def _column_type(table: str, column: str) -> object:
    return op.get_bind().scalar(
        sa.text(
            "SELECT data_type FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = :t AND column_name = :c"
        ),
        {"t": table, "c": column},
    )


def upgrade() -> None:
    if _column_type("competitor_tournaments", "country") is not None:
        op.execute("ALTER TABLE competitor_tournaments RENAME COLUMN country TO country_raw")
        op.execute("ALTER TABLE competitor_tournaments ADD COLUMN country_iso varchar(3)")
    for table in ("market_odds", "competitor_market_odds"):
        if _column_type(table, "unavailable_at") == "timestamp without time zone":
            op.execute(
                f"ALTER TABLE {table} ALTER COLUMN unavailable_at TYPE timestamptz"
                " USING unavailable_at AT TIME ZONE 'UTC'"
            )
    if _exists("pawarisk_takeover"):
        op.execute(CREATE_MARKER)
        op.execute(INIT_MARKER)


def downgrade() -> None:
    # The converted and seeded rows stay: they are this project's rows now, and 0002's downgrade drops them.
    op.execute(f"DROP TABLE IF EXISTS {MARKER}")
    # Only for a database that 0001 created: a taken-over one had this shape before it was ours.
    if _exists("pawarisk_takeover"):
        return
    op.execute("ALTER TABLE competitor_tournaments DROP COLUMN country_iso")
    op.execute("ALTER TABLE competitor_tournaments RENAME COLUMN country_raw TO country")
    for table in ("market_odds", "competitor_market_odds"):
        op.execute(
            f"ALTER TABLE {table} ALTER COLUMN unavailable_at TYPE timestamp USING unavailable_at AT TIME ZONE 'UTC'"
        )
