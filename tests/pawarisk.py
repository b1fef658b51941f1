"""The pawaRisk fixture (a database of the old system at its head) and expectations read from its raw tables with
plain SQL, never through this project's code: shared by the takeover's integration and end-to-end tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from services.query.odds import Odds

REPO = Path(__file__).resolve().parents[1]
DUMP = Path(os.environ.get("PAWARISK_HEAD_DUMP", REPO.parent / "shared" / "fixtures" / "pawarisk-head.dump"))

MarketKey = tuple[int, str, str, float | None]  # (event_id, bookmaker_slug, market_id, line)
State = tuple[tuple[Odds, ...], bool, datetime | None]  # (sorted outcomes, available, unavailable_at)


def _skip_reason() -> str | None:
    if not DUMP.is_file():
        return f"SKIPPED LOUDLY: the pawaRisk fixture is not at {DUMP} (set PAWARISK_HEAD_DUMP to its path)"
    if shutil.which("pg_restore") is None:
        return "SKIPPED LOUDLY: pg_restore is not on PATH, the pawaRisk fixture cannot be restored"
    return None


# Every module that restores the fixture: `pytestmark = pawarisk.REQUIRED`.
REQUIRED = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")


def restore(dsn: str) -> None:
    """The old system's database, as its users have it, into the empty database `dsn`."""
    subprocess.run(["pg_restore", "--no-owner", "--exit-on-error", "-d", dsn, str(DUMP)], check=True)


async def connect(dsn: str) -> asyncpg.Connection:
    return await asyncpg.connect(dsn, server_settings={"timezone": "UTC"})


def outcomes_of(raw: str) -> tuple[Odds, ...]:
    # Thousandths, as stored; missing odds 0 and a missing flag active, as the old system wrote them.
    return tuple(
        sorted(
            (str(o["name"]), round(float(o.get("odds") or 0) * 1000) / 1000, bool(o.get("is_active", True)))
            for o in json.loads(raw)
        )
    )


def utc(t: datetime | None) -> datetime | None:
    return None if t is None else (t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC))


async def legacy_observations(dsn: str) -> dict[MarketKey, list[tuple[datetime, int, State]]]:
    """Every market row of every legacy snapshot, read from the old schema as it is."""
    conn = await connect(dsn)
    try:
        rows = await conn.fetch(
            """
            SELECT s.event_id, b.slug, m.betpawa_market_id, m.line, s.captured_at, s.id, m.outcomes::text,
                   m.unavailable_at
            FROM odds_snapshots s JOIN bookmakers b ON b.id = s.bookmaker_id JOIN market_odds m ON m.snapshot_id = s.id
            UNION ALL
            SELECT ce.betpawa_event_id, ce.source, m.betpawa_market_id, m.line, s.captured_at, s.id, m.outcomes::text,
                   m.unavailable_at
            FROM competitor_odds_snapshots s JOIN competitor_events ce ON ce.id = s.competitor_event_id
            JOIN competitor_market_odds m ON m.snapshot_id = s.id
            WHERE ce.betpawa_event_id IS NOT NULL AND ce.deleted_at IS NULL
            """
        )
    finally:
        await conn.close()
    found: dict[MarketKey, list[tuple[datetime, int, State]]] = defaultdict(list)
    for event_id, slug, market_id, line, captured_at, snapshot_id, outcomes, unavailable_at in rows:
        at = utc(captured_at)
        assert at is not None
        gone = utc(unavailable_at)
        found[(event_id, slug, market_id, line)].append((at, snapshot_id, (outcomes_of(outcomes), gone is None, gone)))
    return found


def changes(observations: list[tuple[datetime, int, State]]) -> list[tuple[datetime, State]]:
    """Consecutive snapshots with the same odds and availability are one change point."""
    points: list[tuple[datetime, State]] = []
    for at, _, state in sorted(observations, key=lambda o: (o[0], o[1])):
        if not points or points[-1][1][:2] != state[:2]:
            points.append((at, state))
    return points


async def table_fingerprints(dsn: str, tables: list[str]) -> dict[str, tuple[int, str]]:
    conn = await connect(dsn)
    try:
        return {
            t: tuple(
                await conn.fetchrow(
                    f"SELECT count(*), md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM {t} x"
                )
            )  # type: ignore[misc]
            for t in tables
        }
    finally:
        await conn.close()


def dbname(dsn: str) -> str:
    return dsn.rsplit("/", 1)[-1].split("?", 1)[0]


async def snapshot_times(dsn: str) -> dict[tuple[int, str], list[tuple[datetime, int]]]:
    """Every legacy snapshot per (event, bookmaker), markets or not, oldest first."""
    conn = await connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT s.event_id, b.slug, s.captured_at, s.id"
            " FROM odds_snapshots s JOIN bookmakers b ON b.id = s.bookmaker_id"
            " UNION ALL"
            " SELECT ce.betpawa_event_id, ce.source, s.captured_at, s.id FROM competitor_odds_snapshots s"
            " JOIN competitor_events ce ON ce.id = s.competitor_event_id"
            " WHERE ce.betpawa_event_id IS NOT NULL AND ce.deleted_at IS NULL"
        )
    finally:
        await conn.close()
    times: dict[tuple[int, str], list[tuple[datetime, int]]] = defaultdict(list)
    for event_id, slug, at, snapshot_id in rows:
        times[(event_id, slug)].append((utc(at) or at, snapshot_id))
    return {pair: sorted(t) for pair, t in times.items()}


async def shown_before_upgrade(dsn: str) -> dict[tuple[int, str], dict[tuple[str, float | None], State]]:
    """What the old system showed per (event, bookmaker): its latest legacy snapshot, with every market of an
    earlier snapshot that the latest one lacks as unavailable (ui-contract §1.3: last odds kept, unavailable since
    the old system's mark or else the first snapshot that missed it); or its v2.9 current rows where those were
    confirmed at or after that snapshot."""
    observed = await legacy_observations(dsn)
    times = await snapshot_times(dsn)
    shown: dict[tuple[int, str], dict[tuple[str, float | None], State]] = defaultdict(dict)
    for (event_id, slug, market_id, line), rows in observed.items():
        pair = (event_id, slug)
        at, snapshot_id, state = max(rows, key=lambda r: (r[0], r[1]))
        if (at, snapshot_id) == times[pair][-1]:
            shown[pair][(market_id, line)] = state
        else:
            missed_at = next(t for t, i in times[pair] if (t, i) > (at, snapshot_id))
            shown[pair][(market_id, line)] = (state[0], False, state[2] or missed_at)
    latest = {pair: t[-1] for pair, t in times.items()}
    conn = await connect(dsn)
    try:
        v29 = await conn.fetch(
            "SELECT c.event_id, c.bookmaker_slug, c.betpawa_market_id, c.line, c.outcomes::text, c.unavailable_at,"
            " max(c.last_confirmed_at) OVER (PARTITION BY c.event_id, c.bookmaker_slug) AS confirmed"
            " FROM market_odds_current c"
        )
    finally:
        await conn.close()
    replaced: set[tuple[int, str]] = set()
    for event_id, slug, market_id, line, outcomes, unavailable_at, confirmed in v29:
        pair = (event_id, slug)
        if pair in latest and latest[pair][0] > confirmed:
            continue
        if pair not in replaced:
            shown[pair], replaced = {}, replaced | {pair}
        shown[pair][(market_id, line)] = (outcomes_of(outcomes), unavailable_at is None, unavailable_at)
    return shown
