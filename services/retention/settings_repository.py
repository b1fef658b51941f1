"""SQL of the settings row the UI edits."""

from __future__ import annotations

import json
from datetime import datetime

import asyncpg

from services.retention.naive_utc import aware, naive
from services.retention.stored_settings import SettingsUpdate, StoredSettings

ENSURE_SETTINGS = "INSERT INTO settings (id) VALUES (1) ON CONFLICT (id) DO NOTHING"
GET_SETTINGS = "SELECT * FROM settings WHERE id = 1"

# A fixed statement: each field keeps its value when its parameter is NULL, so no SQL is built from input.
UPDATE_SETTINGS = """
UPDATE settings SET
    scrape_interval_minutes = COALESCE($1, scrape_interval_minutes),
    enabled_platforms = COALESCE($2::json, enabled_platforms),
    odds_retention_days = COALESCE($3, odds_retention_days),
    match_retention_days = COALESCE($4, match_retention_days),
    cleanup_frequency_hours = COALESCE($5, cleanup_frequency_hours),
    betpawa_concurrency = COALESCE($6, betpawa_concurrency),
    sportybet_concurrency = COALESCE($7, sportybet_concurrency),
    bet9ja_concurrency = COALESCE($8, bet9ja_concurrency),
    bet9ja_delay_ms = COALESCE($9, bet9ja_delay_ms),
    batch_size = COALESCE($10, batch_size),
    max_concurrent_events = COALESCE($11, max_concurrent_events),
    updated_at = $12
WHERE id = 1
RETURNING *
"""


def settings_from_row(r: asyncpg.Record) -> StoredSettings:
    platforms = r["enabled_platforms"]
    if isinstance(platforms, str):
        platforms = json.loads(platforms)
    return StoredSettings(
        scrape_interval_minutes=r["scrape_interval_minutes"],
        enabled_platforms=tuple(str(p) for p in platforms),
        odds_retention_days=r["odds_retention_days"],
        match_retention_days=r["match_retention_days"],
        cleanup_frequency_hours=r["cleanup_frequency_hours"],
        betpawa_concurrency=r["betpawa_concurrency"],
        sportybet_concurrency=r["sportybet_concurrency"],
        bet9ja_concurrency=r["bet9ja_concurrency"],
        bet9ja_delay_ms=r["bet9ja_delay_ms"],
        batch_size=r["batch_size"],
        max_concurrent_events=r["max_concurrent_events"],
        updated_at=aware(r["updated_at"]),
    )


async def get_settings(conn: asyncpg.Connection | asyncpg.Pool) -> StoredSettings:
    row = await conn.fetchrow(GET_SETTINGS)
    if row is None:
        # The row is created with the column defaults (14-day retention since revision 0003).
        await conn.execute(ENSURE_SETTINGS)
        row = await conn.fetchrow(GET_SETTINGS)
    return settings_from_row(row)


async def update_settings(pool: asyncpg.Pool, u: SettingsUpdate, now: datetime) -> StoredSettings:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(ENSURE_SETTINGS)
        row = await conn.fetchrow(
            UPDATE_SETTINGS,
            u.scrape_interval_minutes,
            None if u.enabled_platforms is None else json.dumps(list(u.enabled_platforms)),
            u.odds_retention_days,
            u.match_retention_days,
            u.cleanup_frequency_hours,
            u.betpawa_concurrency,
            u.sportybet_concurrency,
            u.bet9ja_concurrency,
            u.bet9ja_delay_ms,
            u.batch_size,
            u.max_concurrent_events,
            naive(now),
        )
    return settings_from_row(row)
