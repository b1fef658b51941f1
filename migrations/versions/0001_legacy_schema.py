"""Legacy schema: the old system's tables as they were before its v2.9 redesign.

A database upgraded from the old system and a fresh one must have the same shape, so this reproduces
the old types faithfully, naive timestamps included. Bookmaker and sport ids are never assumed.

Revision ID: 0001
Revises:
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# One statement per op.execute: asyncpg prepares each statement, and prepared statements cannot hold several.
UPGRADE: tuple[str, ...] = (
    """
    CREATE TABLE bookmakers (
        id serial PRIMARY KEY,
        name text NOT NULL,
        slug text NOT NULL UNIQUE,
        base_url text,
        is_active boolean NOT NULL DEFAULT true,
        created_at timestamp NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE sports (
        id serial PRIMARY KEY,
        name text NOT NULL UNIQUE,
        slug text NOT NULL
    )
    """,
    """
    CREATE TABLE tournaments (
        id serial PRIMARY KEY,
        sport_id integer NOT NULL REFERENCES sports (id),
        name text NOT NULL,
        country text,
        sportradar_id text,
        created_at timestamp NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE events (
        id serial PRIMARY KEY,
        sportradar_id text NOT NULL UNIQUE,
        tournament_id integer NOT NULL REFERENCES tournaments (id),
        name text NOT NULL,
        home_team text NOT NULL,
        away_team text NOT NULL,
        kickoff timestamp without time zone NOT NULL,
        created_at timestamp NOT NULL DEFAULT now(),
        updated_at timestamp DEFAULT now()
    )
    """,
    """
    CREATE TABLE event_bookmakers (
        id serial PRIMARY KEY,
        event_id integer NOT NULL REFERENCES events (id) ON DELETE CASCADE,
        bookmaker_id integer NOT NULL REFERENCES bookmakers (id),
        external_event_id text NOT NULL,
        event_url text,
        created_at timestamp NOT NULL DEFAULT now(),
        UNIQUE (event_id, bookmaker_id)
    )
    """,
    # The old system partitioned snapshots but only ever had the DEFAULT partition.
    """
    CREATE TABLE odds_snapshots (
        id bigserial,
        event_id integer NOT NULL REFERENCES events (id),
        bookmaker_id integer NOT NULL REFERENCES bookmakers (id),
        captured_at timestamptz NOT NULL,
        scrape_run_id integer,
        last_confirmed_at timestamptz,
        PRIMARY KEY (id, captured_at)
    ) PARTITION BY RANGE (captured_at)
    """,
    "CREATE TABLE odds_snapshots_default PARTITION OF odds_snapshots DEFAULT",
    """
    CREATE INDEX ix_odds_snapshots_event_bookmaker_captured
        ON odds_snapshots (event_id, bookmaker_id, captured_at)
    """,
    # No FK to odds_snapshots: its key is (id, captured_at) and market_odds only has the id.
    """
    CREATE TABLE market_odds (
        id bigserial PRIMARY KEY,
        snapshot_id bigint NOT NULL,
        betpawa_market_id text NOT NULL,
        betpawa_market_name text NOT NULL,
        line double precision,
        handicap_type text,
        handicap_home double precision,
        handicap_away double precision,
        outcomes json NOT NULL,
        market_groups json,
        unavailable_at timestamp
    )
    """,
    "CREATE INDEX ix_market_odds_snapshot_id ON market_odds (snapshot_id)",
    """
    CREATE TABLE competitor_tournaments (
        id serial PRIMARY KEY,
        source text NOT NULL,
        external_id text NOT NULL,
        name text NOT NULL,
        country text,
        sport_id integer NOT NULL REFERENCES sports (id),
        sportradar_id text,
        created_at timestamp NOT NULL DEFAULT now(),
        UNIQUE (source, external_id)
    )
    """,
    """
    CREATE TABLE competitor_events (
        id serial PRIMARY KEY,
        source text NOT NULL,
        tournament_id integer NOT NULL REFERENCES competitor_tournaments (id),
        betpawa_event_id integer REFERENCES events (id) ON DELETE SET NULL,
        external_id text NOT NULL,
        sportradar_id text NOT NULL,
        name text NOT NULL,
        home_team text NOT NULL,
        away_team text NOT NULL,
        kickoff timestamp without time zone NOT NULL,
        created_at timestamp NOT NULL DEFAULT now(),
        deleted_at timestamp,
        UNIQUE (source, external_id)
    )
    """,
    # captured_at is naive here, as it was in the old system.
    """
    CREATE TABLE competitor_odds_snapshots (
        id bigserial PRIMARY KEY,
        competitor_event_id integer NOT NULL REFERENCES competitor_events (id) ON DELETE CASCADE,
        captured_at timestamp without time zone NOT NULL DEFAULT now(),
        scrape_run_id integer
    )
    """,
    """
    CREATE INDEX ix_competitor_odds_snapshots_event_captured
        ON competitor_odds_snapshots (competitor_event_id, captured_at)
    """,
    """
    CREATE TABLE competitor_market_odds (
        id bigserial PRIMARY KEY,
        snapshot_id bigint NOT NULL REFERENCES competitor_odds_snapshots (id) ON DELETE CASCADE,
        betpawa_market_id text NOT NULL,
        betpawa_market_name text NOT NULL,
        line double precision,
        handicap_type text,
        handicap_home double precision,
        handicap_away double precision,
        outcomes json NOT NULL,
        market_groups json,
        unavailable_at timestamp
    )
    """,
    "CREATE INDEX ix_competitor_market_odds_snapshot_id ON competitor_market_odds (snapshot_id)",
    """
    CREATE TABLE settings (
        id integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
        scrape_interval_minutes integer NOT NULL DEFAULT 5,
        enabled_platforms json NOT NULL DEFAULT '["sportybet","betpawa","bet9ja"]',
        odds_retention_days integer NOT NULL DEFAULT 30,
        match_retention_days integer NOT NULL DEFAULT 30,
        cleanup_frequency_hours integer NOT NULL DEFAULT 24,
        betpawa_concurrency integer NOT NULL DEFAULT 50,
        sportybet_concurrency integer NOT NULL DEFAULT 50,
        bet9ja_concurrency integer NOT NULL DEFAULT 15,
        bet9ja_delay_ms integer NOT NULL DEFAULT 25,
        batch_size integer NOT NULL DEFAULT 50,
        max_concurrent_events integer NOT NULL DEFAULT 10,
        created_at timestamp NOT NULL DEFAULT now(),
        updated_at timestamp
    )
    """,
    "INSERT INTO settings (id) VALUES (1) ON CONFLICT (id) DO NOTHING",
    """
    CREATE TABLE cleanup_runs (
        id serial PRIMARY KEY,
        started_at timestamp NOT NULL DEFAULT now(),
        completed_at timestamp,
        trigger text NOT NULL,
        odds_retention_days integer NOT NULL,
        match_retention_days integer NOT NULL,
        odds_deleted integer NOT NULL DEFAULT 0,
        competitor_odds_deleted integer NOT NULL DEFAULT 0,
        scrape_runs_deleted integer NOT NULL DEFAULT 0,
        scrape_batches_deleted integer NOT NULL DEFAULT 0,
        events_deleted integer NOT NULL DEFAULT 0,
        competitor_events_deleted integer NOT NULL DEFAULT 0,
        tournaments_deleted integer NOT NULL DEFAULT 0,
        competitor_tournaments_deleted integer NOT NULL DEFAULT 0,
        oldest_odds_date timestamp,
        oldest_match_date timestamp,
        status text NOT NULL DEFAULT 'running',
        error_message text,
        duration_seconds double precision
    )
    """,
    """
    CREATE TABLE storage_samples (
        id serial PRIMARY KEY,
        sampled_at timestamp NOT NULL DEFAULT now(),
        total_bytes bigint NOT NULL,
        table_sizes json NOT NULL
    )
    """,
    """
    CREATE TABLE storage_alerts (
        id serial PRIMARY KEY,
        created_at timestamp NOT NULL DEFAULT now(),
        alert_type text NOT NULL,
        message text NOT NULL,
        current_bytes bigint NOT NULL,
        previous_bytes bigint,
        growth_percent double precision,
        resolved_at timestamp
    )
    """,
    """
    INSERT INTO bookmakers (name, slug)
    VALUES ('BetPawa', 'betpawa'), ('SportyBet', 'sportybet'), ('Bet9ja', 'bet9ja')
    ON CONFLICT (slug) DO NOTHING
    """,
    "INSERT INTO sports (name, slug) VALUES ('Football', 'football') ON CONFLICT (name) DO NOTHING",
)

# Reverse dependency order; no CASCADE, so an object left behind by a later revision fails loudly.
TABLES_TO_DROP: tuple[str, ...] = (
    "storage_alerts",
    "storage_samples",
    "cleanup_runs",
    "settings",
    "competitor_market_odds",
    "competitor_odds_snapshots",
    "competitor_events",
    "competitor_tournaments",
    "market_odds",
    "odds_snapshots",
    "event_bookmakers",
    "events",
    "tournaments",
    "sports",
    "bookmakers",
)


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for table in TABLES_TO_DROP:
        op.execute(f"DROP TABLE {table}")
