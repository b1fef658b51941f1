"""Closed history days can be columnar: the lookup index per partition instead of on the parent, and citus_columnar.

- market_odds_history's lookup index was a partitioned index, which every partition must carry. A closed day in
  columnar storage without that index costs ~12 B per row against ~62 B with it (measured, ../shared/vendor), so
  the index moves to the partitions: each heap day has its own `<partition>_market_idx` (the writer and retention
  create it with the partition), and a day converted to columnar drops it (services/retention). Plans are the
  same: the planner only ever uses the partitions' indexes.
- The citus_columnar extension, where the server has it and we may create it (superuser, or already there). It
  needs no shared_preload_libraries, so plain PostgreSQL gets it too. Without it closed days stay heap.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX_COLUMNS = "(event_id, bookmaker_slug, market_id)"
PARENT_INDEX = "market_odds_history_market_idx"
PARTITIONS = """
SELECT c.relname, a.amname FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_am a ON a.oid = c.relam
WHERE i.inhparent = 'market_odds_history'::regclass ORDER BY c.relname
"""
CAN_CREATE_COLUMNAR = """
SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'citus_columnar')
   AND (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
"""


def upgrade() -> None:
    bind = op.get_bind()
    if bind.scalar(sa.text(CAN_CREATE_COLUMNAR)):
        op.execute("CREATE EXTENSION IF NOT EXISTS citus_columnar")
    op.execute(f"DROP INDEX {PARENT_INDEX}")
    # IF NOT EXISTS: a partition that a taken-over database's conversion (before 0007) created on Citus with
    # PARTITION OF has its own index besides the parent's, which the DROP above just removed.
    for name, _ in bind.execute(sa.text(PARTITIONS)):
        op.execute(f"CREATE INDEX IF NOT EXISTS {name}_market_idx ON {name} {INDEX_COLUMNS}")


def downgrade() -> None:
    # Back to one index on the parent: it creates the partitions' indexes again, columnar days' included. On Citus
    # their shards' index names are long enough that Citus refuses to create them after a parallel statement in
    # the same transaction: sequential from the start.
    bind = op.get_bind()
    if bind.scalar(sa.text("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')")):
        op.execute("SET LOCAL citus.multi_shard_modify_mode TO 'sequential'")
    for name, _ in bind.execute(sa.text(PARTITIONS)):
        op.execute(f"DROP INDEX IF EXISTS {name}_market_idx")
    op.execute(f"CREATE INDEX {PARENT_INDEX} ON market_odds_history {INDEX_COLUMNS}")
