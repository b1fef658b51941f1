"""Cleanup runs count what the old system's runs ignored: history rows, history partitions and
current-state rows removed.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# bigint: one day of history alone can exceed what the old integer counters were sized for.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("market_odds_history_deleted", "bigint"),
    ("history_partitions_dropped", "integer"),
    ("market_odds_current_deleted", "bigint"),
)


def upgrade() -> None:
    # One statement per op.execute: asyncpg prepares each statement, and prepared statements cannot hold several.
    for name, kind in COLUMNS:
        op.execute(f"ALTER TABLE cleanup_runs ADD COLUMN {name} {kind} NOT NULL DEFAULT 0")


def downgrade() -> None:
    for name, _ in reversed(COLUMNS):
        op.execute(f"ALTER TABLE cleanup_runs DROP COLUMN {name}")
