"""Taking over a pawaRisk database of realistic size: generate one in the old head's shape, time the upgrade.

The pawaRisk fixture (its schema, bookmakers, settings, alembic_version) is restored into a throw-away database,
then 14 days of old-style writes are added with set-based SQL (generate_series): legacy snapshots of every
event at every bookmaker each cycle, all their markets each time (~10 M market rows by default), and the old
v2.9 tables beside them (current rows, history at market level). Then `python -m oddstore.migrate upgrade` runs
in its two parts, timed: the schema (adoption and revisions 0002-0004) and revision 0005 with the conversion.
Baseline in the same run: the floor of the v2.9 history step, one INSERT ... SELECT of the same rows through the
same codec function into an unindexed table.

    python -m bench.takeover [--rows 10000000] [--events 400] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from bench.databases import Server
from bench.results import configure_logging
from bench.write import run_and_report, server_dsn
from oddstore import migrate, pawarisk_conversion

logger = logging.getLogger("bench.takeover")

REPO = Path(__file__).resolve().parents[1]
FIXTURE = Path(os.environ.get("PAWARISK_HEAD_DUMP", REPO.parent / "shared" / "fixtures" / "pawarisk-head.dump"))

# Per cycle and event: BetPawa lists 20 markets, each of the two competitors 10 (the production ratio of ~167 :
# 100 : 67 scaled down; the row count is what the conversion pays for).
BETPAWA_MARKETS, COMPETITOR_MARKETS = 20, 10
MARKETS_PER_EVENT = BETPAWA_MARKETS + 2 * COMPETITOR_MARKETS
CHANGE_EVERY = 20  # cycles between price changes of a market: ~5 % of markets move per cycle
START = "2026-03-01 00:00:00+00"  # inside the old head's hand-made monthly partitions (Feb-Apr 2026)
DAYS = 14


@dataclass(slots=True)
class Results:
    rows: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.takeover", description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=10_000_000, help="legacy market rows to generate (default 10 M)")
    p.add_argument("--events", type=int, default=400, help="events scraped every cycle")
    p.add_argument("--database-url", help="server for the throw-away database (default: DATABASE_URL, else embedded)")
    p.add_argument("--fixture", type=Path, default=FIXTURE, help="the pawaRisk fixture dump (schema and seeds)")
    return p.parse_args(argv)


# $1 events, $2 cycles, $3 minutes between cycles. Ids start above the fixture's.
GENERATE = (
    """
CREATE TEMP TABLE g AS SELECT $1::int AS events, $2::int AS cycles, $3::float8 AS minutes,
    (SELECT id FROM bookmakers WHERE slug = 'betpawa') AS betpawa,
    (SELECT max(id) FROM events) AS e0, (SELECT max(id) FROM competitor_events) AS ce0,
    (SELECT max(id) FROM odds_snapshots) AS s0, (SELECT max(id) FROM competitor_odds_snapshots) AS cs0,
    (SELECT max(id) FROM tournaments) AS t0, (SELECT max(id) FROM competitor_tournaments) AS ct0,
    (SELECT min(id) FROM sports) AS sport
""",
    """
INSERT INTO tournaments (id, sport_id, name, country)
SELECT t0 + i, sport, 'League ' || i, 'Country ' || (i % 7) FROM g, generate_series(1, 20) i
""",
    """
INSERT INTO events (id, tournament_id, name, home_team, away_team, kickoff, sportradar_id)
SELECT e0 + i, t0 + 1 + i % 20, 'Home ' || i || ' - Away ' || i, 'Home ' || i, 'Away ' || i,
       timestamptz '"""
    + START
    + """' + interval '15 days' + i * interval '7 minutes', 'sr:match:9' || lpad(i::text, 8, '0')
FROM g, generate_series(1, events) i
""",
    """
INSERT INTO event_bookmakers (event_id, bookmaker_id, external_event_id)
SELECT e0 + i, b.id, 'x' || (e0 + i) FROM g, generate_series(1, events) i, bookmakers b
WHERE b.slug IN ('betpawa', 'sportybet', 'bet9ja')
""",
    """
INSERT INTO competitor_tournaments (id, source, sport_id, name, country_raw, external_id)
SELECT ct0 + i, CASE WHEN i <= 20 THEN 'sportybet' ELSE 'bet9ja' END, sport, 'League ' || (1 + (i - 1) % 20),
       'Country ' || (i % 7), 'ct' || i
FROM g, generate_series(1, 40) i
""",
    """
INSERT INTO competitor_events (id, source, tournament_id, betpawa_event_id, name, home_team, away_team, kickoff,
                               external_id, sportradar_id)
SELECT ce0 + 2 * i - c, CASE c WHEN 1 THEN 'sportybet' ELSE 'bet9ja' END, ct0 + 1 + i % 20 + (1 - c) * 20,
       e0 + i, 'Home ' || i || ' - Away ' || i, 'Home ' || i, 'Away ' || i,
       (timestamptz '"""
    + START
    + """' + interval '15 days' + i * interval '7 minutes') AT TIME ZONE 'UTC', 'c' || i,
       'sr:match:9' || lpad(i::text, 8, '0')
FROM g, generate_series(1, events) i, generate_series(0, 1) c
""",
    # One snapshot per event per cycle at BetPawa (ids event-major within a cycle), then its markets.
    """
INSERT INTO odds_snapshots (id, event_id, bookmaker_id, captured_at)
SELECT s0 + c * events + i, e0 + i, betpawa, timestamptz '"""
    + START
    + """' + c * minutes * interval '1 minute' + i * interval '50 ms'
FROM g, generate_series(0, cycles - 1) c, generate_series(1, events) i
""",
    """
INSERT INTO market_odds (id, snapshot_id, betpawa_market_id, betpawa_market_name, line, outcomes, market_groups)
SELECT s.id * 100 + k, s.id, (3700 + k)::text, 'Market ' || k, CASE WHEN k % 2 = 0 THEN 0.5 + k % 5 END,
       json_build_array(
           json_build_object('name', 'Over', 'odds', 1.3 + p.step / 10.0, 'is_active', true),
           json_build_object('name', 'Under', 'odds', 2.9 - p.step / 10.0, 'is_active', true)),
       '["popular"]'::json
FROM g, odds_snapshots s, generate_series(1, """
    + str(BETPAWA_MARKETS)
    + """) k, LATERAL (SELECT (k + s.event_id + (s.id - g.s0) / g.events / """
    + str(CHANGE_EVERY)
    + """) % 17 AS step) p
WHERE s.id > g.s0
""",
    """
INSERT INTO competitor_odds_snapshots (id, competitor_event_id, captured_at)
SELECT cs0 + (c * events + i) * 2 + x, ce0 + 2 * i - x,
       (timestamptz '"""
    + START
    + """' + c * minutes * interval '1 minute' + i * interval '50 ms' + interval '20 s') AT TIME ZONE 'UTC'
FROM g, generate_series(0, cycles - 1) c, generate_series(1, events) i, generate_series(0, 1) x
""",
    """
INSERT INTO competitor_market_odds (id, snapshot_id, betpawa_market_id, betpawa_market_name, line, outcomes)
SELECT s.id * 100 + k, s.id, (3700 + k)::text, 'Market ' || k, CASE WHEN k % 2 = 0 THEN 0.5 + k % 5 END,
       json_build_array(
           json_build_object('name', 'Over', 'odds', 1.35 + p.step / 10.0),
           json_build_object('name', 'Under', 'odds', 2.8 - p.step / 10.0))
FROM g, competitor_odds_snapshots s, generate_series(1, """
    + str(COMPETITOR_MARKETS)
    + """) k, LATERAL (SELECT (k + (s.id - g.cs0) / 2 / g.events / """
    + str(CHANGE_EVERY)
    + """) % 13 AS step) p
WHERE s.id > g.cs0
""",
    # The old v2.9 write path beside them: a history row per price change, current rows at the end.
    """
INSERT INTO market_odds_history (event_id, bookmaker_slug, betpawa_market_id, line, outcomes, captured_at)
SELECT e0 + i, b.slug, (3700 + k)::text, CASE WHEN k % 2 = 0 THEN 0.5 + k % 5 END,
       jsonb_build_array(
           jsonb_build_object('name', 'Over', 'odds', 1.3 + ((k + c) % 17) / 10.0, 'is_active', true),
           jsonb_build_object('name', 'Under', 'odds', 2.9 - ((k + c) % 17) / 10.0, 'is_active', true)),
       timestamptz '"""
    + START
    + """' + c * minutes * interval '1 minute' + i * interval '50 ms'
FROM g, generate_series(0, cycles - 1, """
    + str(CHANGE_EVERY)
    + """) c, generate_series(1, events) i,
     (VALUES ('betpawa', """
    + str(BETPAWA_MARKETS)
    + """), ('sportybet', """
    + str(COMPETITOR_MARKETS)
    + """), ('bet9ja', """
    + str(COMPETITOR_MARKETS)
    + """)) b(slug, markets),
     LATERAL generate_series(1, b.markets) k
""",
    """
INSERT INTO market_odds_current (event_id, bookmaker_slug, betpawa_market_id, betpawa_market_name, line, outcomes,
                                 last_updated_at, last_confirmed_at)
SELECT DISTINCT ON (event_id, bookmaker_slug, betpawa_market_id, line)
       event_id, bookmaker_slug, betpawa_market_id, 'Market ' || betpawa_market_id, line, outcomes,
       captured_at, captured_at
FROM market_odds_history WHERE event_id > (SELECT e0 FROM g)
ORDER BY event_id, bookmaker_slug, betpawa_market_id, line, captured_at DESC
""",
    "ANALYZE",
)

COUNTS = {
    "legacy market rows": "SELECT (SELECT count(*) FROM market_odds) + (SELECT count(*) FROM competitor_market_odds)",
    "legacy snapshots": (
        "SELECT (SELECT count(*) FROM odds_snapshots) + (SELECT count(*) FROM competitor_odds_snapshots)"
    ),
    "v2.9 history rows": "SELECT count(*) FROM market_odds_history",
    "v2.9 current rows": "SELECT count(*) FROM market_odds_current",
}

FLOOR = f"""
CREATE TABLE bench_floor AS
SELECT h.event_id, h.captured_at, h.line, true AS available, h.bookmaker_slug, h.betpawa_market_id AS market_id,
       pg_temp.oddstore_outcomes(h.outcomes) AS outcomes
FROM {pawarisk_conversion.V29_HISTORY} h
"""


async def generate(dsn: str, args: argparse.Namespace, results: Results) -> None:
    cycles = max(1, args.rows // (args.events * MARKETS_PER_EVENT))
    minutes = DAYS * 24 * 60 / cycles
    logger.info("generating %d events x %d cycles (every %.1f min) over %d days", args.events, cycles, minutes, DAYS)
    conn = await asyncpg.connect(dsn)
    try:
        began = time.perf_counter()
        for statement in GENERATE:
            step = time.perf_counter()
            status = await conn.execute(statement, *((args.events, cycles, minutes) if "$1" in statement else ()))
            logger.info("%s (%.1f s)", status, time.perf_counter() - step)
        results.seconds["generate"] = time.perf_counter() - began
        for name, sql in COUNTS.items():
            results.rows[name] = int(await conn.fetchval(sql))
    finally:
        await conn.close()


async def floor(dsn: str, results: Results) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for statement in pawarisk_conversion.FUNCTIONS:
            await conn.execute(statement)
        began = time.perf_counter()
        await conn.execute(FLOOR)
        results.seconds["floor"] = time.perf_counter() - began
        await conn.execute("DROP TABLE bench_floor")
    finally:
        await conn.close()


async def run(args: argparse.Namespace, server_url: str, results: Results) -> None:
    server = Server(server_url)
    try:
        dsn = await server.create("takeover")
        restore = ["pg_restore", "--no-owner", "--exit-on-error", "-d", dsn, str(args.fixture)]
        await asyncio.to_thread(subprocess.run, restore, check=True)
        await generate(dsn, args, results)
        print("\n".join(migrate.plan(dsn)), file=sys.stderr)
        began = time.perf_counter()
        migrate.upgrade(dsn, "0004")
        results.seconds["schema"] = time.perf_counter() - began
        began = time.perf_counter()
        migrate.upgrade(dsn)
        results.seconds["conversion"] = time.perf_counter() - began
        await floor(dsn, results)
    finally:
        await server.drop_all()


def report(results: Results, args: argparse.Namespace, wall: float) -> str:
    rows, seconds = results.rows, results.seconds
    v29, legacy = rows.get("v2.9 history rows", 0), rows.get("legacy market rows", 0)
    lines = ["", "Taking over a generated pawaRisk database (14 days of old-style writes)", ""]
    lines += [f"  {name:<22} {count:>12,}" for name, count in rows.items()]
    lines += ["", f"  {'step':<46} {'seconds':>9}  rate"]

    def line(name: str, key: str, count: int, unit: str) -> None:
        if key in seconds:
            rate = f"{count / seconds[key]:,.0f} {unit}/s" if count and seconds[key] > 0 else ""
            lines.append(f"  {name:<46} {seconds[key]:>9.1f}  {rate}")

    line("generate the old database (set-based SQL)", "generate", legacy, "legacy rows")
    line("upgrade: adopt + revisions 0002-0004", "schema", 0, "")
    line("upgrade: 0005 + conversion (v2.9 history, seed)", "conversion", v29 + legacy, "rows")
    line("baseline: floor, v2.9 history in one INSERT", "floor", v29, "v2.9 rows")
    if "schema" in seconds and "conversion" in seconds:
        lines.append(f"  {'upgrade, total':<46} {seconds['schema'] + seconds['conversion']:>9.1f}")
    lines.append(f"\n  wall {wall:.0f} s; --rows {args.rows} --events {args.events}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    args = parse_args(sys.argv[1:] if argv is None else argv)
    dsn, embedded = server_dsn(args)
    results = Results()
    return run_and_report(
        lambda: run(args, dsn, results), lambda s: report(results, args, s), embedded, "the database was dropped"
    )


if __name__ == "__main__":
    sys.exit(main())
