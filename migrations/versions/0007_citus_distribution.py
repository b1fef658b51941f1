"""On Citus: the odds tables distributed by event_id, colocated; the shared tables they join replicated.

Nothing happens on plain PostgreSQL (no citus extension): the same migrations serve both.

- Distributed by event_id, colocated (one shard group per range of events, so the writer's statements for one
  event and the query's joins by event stay on one worker): latest_snapshots, market_odds_current,
  market_odds_history (its daily partitions are distributed with it).
- Reference tables (a copy on every node, written with two-phase commit): the shared metadata the writer
  upserts in the same transaction and the reads join with: bookmakers, sports, tournaments, events,
  event_bookmakers. events cannot be distributed by id: its unique sportradar_id does not contain the
  distribution column, and the old system's tables reference it.
- Everything else stays on the coordinator (Citus turns the legacy tables that reference a reference table
  into "citus local tables", still one copy on the coordinator): the legacy snapshot tables are read in place
  and only shrink (retention deletes them day by day), and their keys (snapshot ids) do not carry event_id,
  so distributing them would mean rewriting tables that are gone within the retention window; the retention
  service's own tables (settings, cleanup_runs, storage_*) are small and never joined with odds.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Referenced tables before the tables that reference them.
REFERENCE: tuple[str, ...] = ("bookmakers", "sports", "tournaments", "events", "event_bookmakers")
# The first one starts a colocation group of its own, which the others join.
DISTRIBUTED: tuple[str, ...] = ("latest_snapshots", "market_odds_current", "market_odds_history")


def _citus() -> bool:
    return bool(op.get_bind().scalar(sa.text("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')")))


def upgrade() -> None:
    if not _citus():
        return
    for table in REFERENCE:
        op.execute(f"SELECT create_reference_table('{table}')")
    for table in DISTRIBUTED:
        group = "none" if table == DISTRIBUTED[0] else DISTRIBUTED[0]
        op.execute(f"SELECT create_distributed_table('{table}', 'event_id', colocate_with => '{group}')")


def downgrade() -> None:
    if not _citus():
        return
    # Back to ordinary tables on the coordinator, data included. Sequential: undistributing after a parallel
    # multi-shard operation in the same transaction is refused. The cascade along foreign keys also turns the
    # legacy tables back (Citus had made them citus local tables), so a table may already be done.
    op.execute("SET LOCAL citus.multi_shard_modify_mode TO 'sequential'")
    for table in (*DISTRIBUTED, *REFERENCE):
        op.execute(
            "SELECT undistribute_table(logicalrelid, cascade_via_foreign_keys => true)"
            f" FROM pg_dist_partition WHERE logicalrelid = '{table}'::regclass"
        )
