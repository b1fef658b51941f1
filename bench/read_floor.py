"""The floor of the read benchmark: each read done by direct SQL over asyncpg on the same database.

A floor read fetches the rows a service needs to answer the same request (event, links, markets,
snapshot times; history rows and the current row; the last point per market at an instant), legacy
tables included where the service must consult them, and stops there: no decoding of outcomes, no
margins, no protobuf or JSON. The statements are written here, independent of the query service's
own SQL, so the floor does not inherit its choices.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

INLINE_FILTER = "(c.market_id IN ('3743', '3795', '4693') OR (c.market_id = '5000' AND c.line = 2.5))"

EVENTS_PAGE = """
SELECT e.id, e.sportradar_id, e.name, e.home_team, e.away_team, e.kickoff, e.created_at,
       t.id, t.name, t.country, s.name
FROM events e
JOIN tournaments t ON t.id = e.tournament_id
JOIN sports s ON s.id = t.sport_id
WHERE e.kickoff > $1 AND EXISTS (SELECT 1 FROM event_bookmakers eb WHERE eb.event_id = e.id)
ORDER BY e.kickoff, e.id
LIMIT $2 OFFSET $3
"""
EVENTS_COUNT = """
SELECT count(*) FROM events e
WHERE e.kickoff > $1 AND EXISTS (SELECT 1 FROM event_bookmakers eb WHERE eb.event_id = e.id)
"""
EVENT = """
SELECT e.id, e.sportradar_id, e.name, e.home_team, e.away_team, e.kickoff, e.created_at,
       t.id, t.name, t.country, s.name
FROM events e
JOIN tournaments t ON t.id = e.tournament_id
JOIN sports s ON s.id = t.sport_id
WHERE e.id = $1
"""
LINKS = """
SELECT eb.event_id, b.slug, b.name, eb.external_event_id
FROM event_bookmakers eb JOIN bookmakers b ON b.id = eb.bookmaker_id
WHERE eb.event_id = ANY($1::bigint[])
"""
INLINE_MARKETS = f"""
SELECT c.event_id, c.bookmaker_slug, c.market_id, c.line, c.market_name, c.outcomes, c.last_confirmed_at,
       c.unavailable_at
FROM market_odds_current c
WHERE c.event_id = ANY($1::bigint[]) AND {INLINE_FILTER}
"""
HAS_ODDS = """
SELECT event_id, bookmaker_slug, max(last_confirmed_at) FROM market_odds_current
WHERE event_id = ANY($1::bigint[]) GROUP BY event_id, bookmaker_slug
"""
ALL_MARKETS = """
SELECT c.bookmaker_slug, c.market_id, c.line, c.market_name, c.market_groups, c.outcomes, c.last_confirmed_at,
       c.unavailable_at
FROM market_odds_current c
WHERE c.event_id = $1
"""
SNAPSHOTS = "SELECT event_id, bookmaker_slug, captured_at FROM latest_snapshots WHERE event_id = ANY($1::bigint[])"

HISTORY = """
SELECT captured_at, available, outcomes FROM market_odds_history
WHERE event_id = $1 AND bookmaker_slug = $2 AND market_id = $3 AND line IS NOT DISTINCT FROM $4::float8
ORDER BY captured_at
"""
CURRENT = """
SELECT c.outcomes, c.unavailable_at, c.last_confirmed_at, s.captured_at
FROM market_odds_current c
LEFT JOIN latest_snapshots s ON s.event_id = c.event_id AND s.bookmaker_slug = c.bookmaker_slug
WHERE c.event_id = $1 AND c.bookmaker_slug = $2 AND c.market_id = $3 AND c.line IS NOT DISTINCT FROM $4::float8
"""
LEGACY_HISTORY = """
SELECT s.captured_at, m.outcomes, m.unavailable_at
FROM odds_snapshots s
JOIN bookmakers b ON b.id = s.bookmaker_id
JOIN market_odds m ON m.snapshot_id = s.id
WHERE s.event_id = $1 AND b.slug = $2 AND m.betpawa_market_id = $3 AND m.line IS NOT DISTINCT FROM $4::float8
UNION ALL
SELECT cs.captured_at, cm.outcomes, cm.unavailable_at
FROM competitor_events ce
JOIN competitor_odds_snapshots cs ON cs.competitor_event_id = ce.id
JOIN competitor_market_odds cm ON cm.snapshot_id = cs.id
WHERE ce.betpawa_event_id = $1 AND ce.source = $2 AND cm.betpawa_market_id = $3
  AND cm.line IS NOT DISTINCT FROM $4::float8
"""

EVENT_AT = """
SELECT DISTINCT ON (bookmaker_slug, market_id, line)
       bookmaker_slug, market_id, line, captured_at, available, outcomes
FROM market_odds_history
WHERE event_id = $1 AND captured_at <= $2
ORDER BY bookmaker_slug, market_id, line, captured_at DESC
"""
MARKET_NAMES = """
SELECT bookmaker_slug, market_id, line, market_name, market_groups FROM market_odds_current WHERE event_id = $1
"""
LEGACY_EVENT_AT = """
SELECT DISTINCT ON (slug, market_id, line) *
FROM (
    SELECT b.slug, m.betpawa_market_id AS market_id, m.line, s.captured_at, m.outcomes
    FROM odds_snapshots s
    JOIN bookmakers b ON b.id = s.bookmaker_id
    JOIN market_odds m ON m.snapshot_id = s.id
    WHERE s.event_id = $1 AND s.captured_at <= $2
    UNION ALL
    SELECT ce.source, cm.betpawa_market_id, cm.line, cs.captured_at AT TIME ZONE 'UTC', cm.outcomes
    FROM competitor_events ce
    JOIN competitor_odds_snapshots cs ON cs.competitor_event_id = ce.id
    JOIN competitor_market_odds cm ON cm.snapshot_id = cs.id
    WHERE ce.betpawa_event_id = $1 AND cs.captured_at <= ($2 AT TIME ZONE 'UTC')
) x
ORDER BY slug, market_id, line, captured_at DESC
"""


async def event_list(conn: asyncpg.Connection, now: datetime, page: int, page_size: int) -> int:
    """One page of upcoming events with links, inline markets, has_odds and snapshot times; rows fetched."""
    events = await conn.fetch(EVENTS_PAGE, now, page_size, (page - 1) * page_size)
    await conn.fetchval(EVENTS_COUNT, now)
    ids = [r[0] for r in events]
    links = await conn.fetch(LINKS, ids)
    markets = await conn.fetch(INLINE_MARKETS, ids)
    has = await conn.fetch(HAS_ODDS, ids)
    snaps = await conn.fetch(SNAPSHOTS, ids)
    return len(events) + len(links) + len(markets) + len(has) + len(snaps)


async def event_detail(conn: asyncpg.Connection, event_id: int) -> int:
    event = await conn.fetchrow(EVENT, event_id)
    links = await conn.fetch(LINKS, [event_id])
    markets = await conn.fetch(ALL_MARKETS, event_id)
    snaps = await conn.fetch(SNAPSHOTS, [event_id])
    return (event is not None) + len(links) + len(markets) + len(snaps)


async def history(conn: asyncpg.Connection, event_id: int, slug: str, market_id: str, line: float | None) -> int:
    rows = await conn.fetch(HISTORY, event_id, slug, market_id, line)
    legacy = await conn.fetch(LEGACY_HISTORY, event_id, slug, market_id, line)
    current = await conn.fetchrow(CURRENT, event_id, slug, market_id, line)
    return len(rows) + len(legacy) + (current is not None)


async def event_at(conn: asyncpg.Connection, event_id: int, at: datetime) -> int:
    rows = await conn.fetch(EVENT_AT, event_id, at)
    names = await conn.fetch(MARKET_NAMES, event_id)
    legacy = await conn.fetch(LEGACY_EVENT_AT, event_id, at)
    return len(rows) + len(names) + len(legacy)
