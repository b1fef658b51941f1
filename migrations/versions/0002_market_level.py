"""Market-level storage: current state, daily-partitioned change history, latest snapshot per event
and bookmaker.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

EVENT_TIMES = ("kickoff", "created_at", "updated_at")


def _is_naive(table: str, column: str) -> bool:
    kind = op.get_bind().scalar(
        sa.text(
            "SELECT data_type FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = :t AND column_name = :c"
        ),
        {"t": table, "c": column},
    )
    return kind == "timestamp without time zone"


def upgrade() -> None:
    # Event metadata is written by the writer from now on: its times become timezone-aware UTC. Only naive
    # columns (naive UTC) are converted: on one that is already timestamptz, as in the old system's real
    # head, AT TIME ZONE 'UTC' would yield a naive value cast back in the session's time zone, shifting it.
    for column in EVENT_TIMES:
        if _is_naive("events", column):
            op.execute(f"ALTER TABLE events ALTER COLUMN {column} TYPE timestamptz USING {column} AT TIME ZONE 'UTC'")
    op.execute("CREATE INDEX IF NOT EXISTS events_kickoff_idx ON events (kickoff)")
    op.execute(
        "CREATE UNIQUE INDEX tournaments_sport_name_country_key"
        " ON tournaments (sport_id, name, country) NULLS NOT DISTINCT"
    )
    # One row per market of an event at a bookmaker. A NULL line and line 0 are different keys
    # (NULLS NOT DISTINCT keeps one NULL-line row per market and works with ON CONFLICT).
    op.execute(
        """
        CREATE TABLE market_odds_current (
            event_id          bigint NOT NULL,
            bookmaker_slug    text NOT NULL,
            market_id         text NOT NULL,
            line              double precision,
            market_name       text NOT NULL,
            handicap_type     text,
            handicap_home     double precision,
            handicap_away     double precision,
            market_groups     text[],
            outcomes          bytea NOT NULL,
            last_updated_at   timestamptz NOT NULL,
            last_confirmed_at timestamptz NOT NULL,
            unavailable_at    timestamptz,
            CONSTRAINT market_odds_current_key
                UNIQUE NULLS NOT DISTINCT (event_id, bookmaker_slug, market_id, line)
        )
        """
    )
    # Append-only, one row per change, availability transitions included. Columns are ordered for
    # alignment (8-byte fields first) and outcomes use the compact codec, so a row costs ~90 bytes
    # of heap. No unique index: a row is only ever inserted in the transaction that advances
    # latest_snapshots under a row lock, which is what makes writes idempotent; the lookup index is
    # non-unique so B-tree deduplication stores many rows of one market per index tuple. Daily
    # partitions, the retention unit; no DEFAULT partition (it would block DETACH CONCURRENTLY).
    op.execute(
        """
        CREATE TABLE market_odds_history (
            event_id       bigint NOT NULL,
            captured_at    timestamptz NOT NULL,
            line           double precision,
            available      boolean NOT NULL,
            bookmaker_slug text NOT NULL,
            market_id      text NOT NULL,
            outcomes       bytea NOT NULL
        ) PARTITION BY RANGE (captured_at)
        """
    )
    op.execute(
        "CREATE INDEX market_odds_history_market_idx ON market_odds_history (event_id, bookmaker_slug, market_id)"
    )
    # The newest snapshot applied per event and bookmaker: the judge of ordering (a snapshot at or
    # before it is superseded) and the confirmation time of every market still available in it,
    # so unchanged markets cost one row update per snapshot instead of one per market.
    op.execute(
        """
        CREATE TABLE latest_snapshots (
            event_id       bigint NOT NULL,
            bookmaker_slug text NOT NULL,
            captured_at    timestamptz,
            PRIMARY KEY (event_id, bookmaker_slug)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE latest_snapshots")
    op.execute("DROP TABLE market_odds_history")
    op.execute("DROP TABLE market_odds_current")
    op.execute("DROP INDEX tournaments_sport_name_country_key")
    op.execute("DROP INDEX IF EXISTS events_kickoff_idx")
    op.execute(
        """
        ALTER TABLE events
            ALTER COLUMN kickoff TYPE timestamp USING kickoff AT TIME ZONE 'UTC',
            ALTER COLUMN created_at TYPE timestamp USING created_at AT TIME ZONE 'UTC',
            ALTER COLUMN updated_at TYPE timestamp USING updated_at AT TIME ZONE 'UTC'
        """
    )
