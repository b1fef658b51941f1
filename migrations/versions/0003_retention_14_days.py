"""Retention: keep odds and matches for 14 days instead of 30 (the v2.9 default), unless taken over.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _set_retention(days: int) -> None:
    op.execute(
        f"ALTER TABLE settings ALTER COLUMN odds_retention_days SET DEFAULT {days}, "
        f"ALTER COLUMN match_retention_days SET DEFAULT {days}"
    )
    # A database taken over from the old system keeps the retention its users chose: overwriting it would make
    # the first scheduled cleanup delete every day they meant to keep.
    op.execute(
        f"UPDATE settings SET odds_retention_days = {days}, match_retention_days = {days}"
        " WHERE id = 1 AND to_regclass('pawarisk_takeover') IS NULL"
    )


def upgrade() -> None:
    _set_retention(14)


def downgrade() -> None:
    _set_retention(30)
