"""A fake QueryService and a fake RetentionService with canned, realistic data, each served by a real grpc.aio
server, for gateway tests.

No mocks: the gateway talks to them over gRPC on loopback exactly as it talks to the real services.
Every request a fake receives is recorded, so tests can assert what the gateway sent.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from oddstore.grpc_server import Server, create_server
from oddstore.v1 import query_pb2, query_pb2_grpc, retention_pb2, retention_pb2_grpc
from services.gateway import convert

SERVICE_NAME = query_pb2.DESCRIPTOR.services_by_name["QueryService"].full_name

EVENT_ID = 1234  # BetPawa event with three bookmaker links
EVENT_NO_COUNTRY_ID = 1240  # BetPawa event whose tournament has no country
COMPETITOR_EVENT_ID = -901  # competitor-only event
TOURNAMENT_ID = 17
SLUGS = {"betpawa": "BetPawa", "sportybet": "SportyBet", "bet9ja": "Bet9ja"}
KICKOFF = datetime(2026, 3, 1, 15, 0, tzinfo=UTC)
CREATED_AT = datetime(2026, 2, 20, 8, 1, 2, 123456, tzinfo=UTC)
SNAPSHOT_TIME = datetime(2026, 2, 24, 10, 5, tzinfo=UTC)
UNAVAILABLE_SINCE = datetime(2026, 2, 24, 9, 50, tzinfo=UTC)
DEFAULT_OFFSETS_SECONDS = [7 * 86400, 3 * 86400, 86400, 6 * 3600, 3600, 0]


def ts(value: datetime) -> Timestamp:
    t = Timestamp()
    t.FromDatetime(value)
    return t


def margin(odds: list[float]) -> float | None:
    total = sum(1 / o for o in odds if o > 0)
    return round((total - 1) * 100, 2) if total else None


def outcomes(pairs: list[tuple[str, float]], inactive: frozenset[str] = frozenset()) -> list[query_pb2.OutcomeOdds]:
    return [query_pb2.OutcomeOdds(name=n, odds=o, is_active=n not in inactive) for n, o in pairs]


ODDS = {
    # (slug, market_id, line) -> outcomes
    ("betpawa", "3743", None): [("1", 2.1), ("X", 3.4), ("2", 3.5)],
    ("betpawa", "5000", 2.5): [("Over", 1.9), ("Under", 1.95)],
    ("betpawa", "3774", 0.0): [("1", 1.85), ("2", 1.95)],  # Asian handicap 0.0: a real line, not null
    ("betpawa", "3795", None): [("Yes", 1.7), ("No", 2.05)],
    ("bet9ja", "3743", None): [("1", 2.05), ("X", 3.3), ("2", 3.6)],
    ("bet9ja", "4693", None): [("1X", 1.3), ("X2", 1.7), ("12", 1.33)],
}
MARKET_NAMES = {
    "3743": "1X2 - Full Time",
    "5000": "Over/Under - Full Time",
    "3774": "Asian Handicap - Full Time",
    "3795": "Both Teams To Score - Full Time",
    "4693": "Double Chance - Full Time",
}
INLINE_IDS = {"3743", "3795", "4693"}


def _unavailable(slug: str, market_id: str) -> bool:
    return (slug, market_id) == ("betpawa", "5000")


def inline_market(slug: str, market_id: str, line: float | None) -> query_pb2.InlineMarket:
    pairs = ODDS[(slug, market_id, line)]
    m = query_pb2.InlineMarket(
        market_id=market_id,
        market_name=MARKET_NAMES[market_id],
        outcomes=outcomes(pairs),
        available=not _unavailable(slug, market_id),
    )
    if line is not None:
        m.line = line
    value = margin([o for _, o in pairs])
    if value is not None:
        m.margin = value
    if _unavailable(slug, market_id):
        m.unavailable_since.CopyFrom(ts(UNAVAILABLE_SINCE))
    return m


def market_detail(slug: str, market_id: str, line: float | None) -> query_pb2.MarketDetail:
    pairs = ODDS[(slug, market_id, line)]
    m = query_pb2.MarketDetail(
        market_id=market_id,
        market_name=MARKET_NAMES[market_id],
        outcomes=outcomes(pairs, inactive=frozenset({"2"}) if market_id == "3774" else frozenset()),
        available=not _unavailable(slug, market_id),
    )
    if line is not None:
        m.line = line
    value = margin([o for _, o in pairs])
    if value is not None:
        m.margin = value
    if market_id == "3795":
        m.market_groups_null = True  # stored NULL: the UI reads it as ["other"]
    else:
        m.market_groups.extend(["popular", "goals"] if market_id == "5000" else ["popular"])
    if _unavailable(slug, market_id):
        m.unavailable_since.CopyFrom(ts(UNAVAILABLE_SINCE))
    return m


def _keys(slug: str) -> list[tuple[str, float | None]]:
    return [(mid, line) for (s, mid, line) in ODDS if s == slug]


def bookmaker_odds(slug: str, external_id: str) -> query_pb2.BookmakerOdds:
    keys = _keys(slug)
    b = query_pb2.BookmakerOdds(
        bookmaker_slug=slug, bookmaker_name=SLUGS[slug], external_event_id=external_id, has_odds=bool(keys)
    )
    for mid, line in keys:
        if mid in INLINE_IDS or (mid == "5000" and line == 2.5):
            b.inline_odds.append(inline_market(slug, mid, line))
    if keys:
        b.snapshot_time.CopyFrom(ts(SNAPSHOT_TIME))
    return b


def event_summary(event_id: int = EVENT_ID) -> query_pb2.EventSummary:
    e = query_pb2.EventSummary(
        id=event_id,
        sportradar_id=f"sr:match:{abs(event_id) + 4444}",
        name="Arsenal - Chelsea",
        home_team="Arsenal",
        away_team="Chelsea",
        kickoff=ts(KICKOFF),
        tournament_id=TOURNAMENT_ID,
        tournament_name="Premier League",
        sport_name="Football",
        created_at=ts(CREATED_AT),
    )
    if event_id == EVENT_ID:
        e.tournament_country = "England"
        e.bookmakers.extend(
            [
                bookmaker_odds("betpawa", "31415"),
                bookmaker_odds("sportybet", "sr:match:5678"),  # linked, no odds: snapshot_time null
                bookmaker_odds("bet9ja", "77001"),
            ]
        )
    elif event_id == EVENT_NO_COUNTRY_ID:
        e.name, e.home_team, e.away_team = "Lazio - Roma", "Lazio", "Roma"
        e.kickoff.CopyFrom(ts(KICKOFF + timedelta(days=1)))
        e.bookmakers.append(bookmaker_odds("betpawa", "31416"))
    else:  # competitor-only: negative id, raw country may be null
        e.name, e.home_team, e.away_team = "Enyimba - Rivers United", "Enyimba", "Rivers United"
        e.tournament_id, e.tournament_name = 9001, "NPFL"
        e.bookmakers.append(bookmaker_odds("bet9ja", "88002"))
    return e


def event_detail(event_id: int = EVENT_ID) -> query_pb2.EventDetail:
    d = query_pb2.EventDetail(event=event_summary(event_id))
    for slug in ("betpawa", "sportybet", "bet9ja"):
        keys = _keys(slug)
        b = query_pb2.BookmakerMarkets(bookmaker_slug=slug, bookmaker_name=SLUGS[slug])
        if keys:
            b.snapshot_time.CopyFrom(ts(SNAPSHOT_TIME))
        b.markets.extend(market_detail(slug, mid, line) for mid, line in keys)
        d.markets_by_bookmaker.append(b)
    return d


def history(request: query_pb2.GetMarketHistoryRequest) -> query_pb2.MarketHistory:
    h = query_pb2.MarketHistory(
        event_id=request.event_id,
        bookmaker_slug=request.bookmaker_slug,
        bookmaker_name=SLUGS[request.bookmaker_slug],
        market_id=request.market_id,
    )
    line = request.line if request.HasField("line") else None
    if line is not None:
        h.line = line
    key = (request.bookmaker_slug, request.market_id, line)
    if request.event_id != EVENT_ID or key not in ODDS:
        return h
    current = ODDS[key]
    earlier = [(n, round(o + 0.1, 2)) for n, o in current]
    t0 = SNAPSHOT_TIME - timedelta(hours=6)
    for captured, pairs in ((t0, earlier), (t0 + timedelta(hours=2), current)):
        p = query_pb2.HistoryPoint(captured_at=ts(captured), outcomes=outcomes(pairs), available=True)
        p.margin = margin([o for _, o in pairs]) or 0.0
        h.points.append(p)
    if _unavailable(request.bookmaker_slug, request.market_id):
        gone = query_pb2.HistoryPoint(captured_at=ts(UNAVAILABLE_SINCE), outcomes=outcomes(current), available=False)
        gone.unavailable_at.CopyFrom(ts(UNAVAILABLE_SINCE))
        h.points.append(gone)
    confirm = query_pb2.HistoryPoint(
        captured_at=ts(SNAPSHOT_TIME),
        outcomes=outcomes(current),
        available=not _unavailable(request.bookmaker_slug, request.market_id),
        confirmed=True,
    )
    confirm.margin = margin([o for _, o in current]) or 0.0
    h.points.append(confirm)
    return h


@dataclass
class FakeQueryService(query_pb2_grpc.QueryServiceServicer):
    """Canned answers; `abort_with` makes every call fail with that status (e.g. UNAVAILABLE); while `held` is
    an unset event, every call waits for it (a hung service: deadlines are tested without timing anything)."""

    received: list[tuple[str, Message]] = field(default_factory=list)
    abort_with: grpc.StatusCode | None = None
    held: asyncio.Event | None = None
    alerts: int = 1

    def reset(self) -> None:
        self.received.clear()
        self.abort_with = None
        if self.held is not None:
            self.held.set()  # calls still waiting finish instead of outliving the test that held them
        self.held = None

    def requests(self, method: str) -> list[Any]:
        return [r for m, r in self.received if m == method]

    async def _enter(self, method: str, request: Message, context: grpc.aio.ServicerContext) -> None:
        self.received.append((method, request))
        if self.held is not None:
            await self.held.wait()
        if self.abort_with is not None:
            await context.abort(self.abort_with, f"fake {method} failing with {self.abort_with.name}")

    async def Subscribe(self, request, context):
        # UNIMPLEMENTED, as the base class answers, but by abort: the base class raised NotImplementedError, which
        # grpc logs with a traceback on every retry of the gateway's live feed. Formatting it runs ast.parse on the
        # fakes' thread, and CPython 3.11 keeps the AST constructor's recursion depth in state shared by threads:
        # schemathesis crashed ("SystemError: AST constructor recursion depth mismatch") when the test's thread
        # parsed at the same moment.
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "the fake query service has no live feed")
        yield query_pb2.SubscribeResponse()  # never reached; makes this a streaming handler

    async def ListEvents(self, request, context):
        await self._enter("ListEvents", request, context)
        if request.min_bookmakers > 3 or request.page_size > 100:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "min_bookmakers or page_size out of range")
        if request.availability == query_pb2.AVAILABILITY_COMPETITOR:
            events = [event_summary(COMPETITOR_EVENT_ID)]
        elif request.availability == query_pb2.AVAILABILITY_ALERTS:
            events = [event_summary(EVENT_ID)]
        else:
            events = [event_summary(EVENT_ID), event_summary(EVENT_NO_COUNTRY_ID)]
        if request.search:
            events = [e for e in events if request.search.lower() in f"{e.home_team} {e.away_team}".lower()]
        page, size = request.page or 1, request.page_size or 50
        start = (page - 1) * size
        return query_pb2.ListEventsResponse(events=events[start : start + size], total=len(events))

    async def GetEvent(self, request, context):
        await self._enter("GetEvent", request, context)
        if request.event_id not in (EVENT_ID, EVENT_NO_COUNTRY_ID):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"event {request.event_id} not found")
        return event_detail(request.event_id)

    async def CountAlerts(self, request, context):
        await self._enter("CountAlerts", request, context)
        return query_pb2.CountAlertsResponse(count=self.alerts)

    async def ListTournaments(self, request, context):
        await self._enter("ListTournaments", request, context)
        if request.availability == query_pb2.AVAILABILITY_COMPETITOR:
            return query_pb2.ListTournamentsResponse(tournaments=[query_pb2.Tournament(id=40, name="NPFL")])
        return query_pb2.ListTournamentsResponse(
            tournaments=[
                query_pb2.Tournament(id=18, name="La Liga", country="Spain"),
                query_pb2.Tournament(id=TOURNAMENT_ID, name="Premier League", country="England"),
            ]
        )

    async def ListCountries(self, request, context):
        await self._enter("ListCountries", request, context)
        if request.availability == query_pb2.AVAILABILITY_COMPETITOR:
            return query_pb2.ListCountriesResponse(countries=["Nigeria"])
        return query_pb2.ListCountriesResponse(countries=["England", "Spain"])

    async def GetMarketHistory(self, request, context):
        await self._enter("GetMarketHistory", request, context)
        if request.bookmaker_slug not in SLUGS:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"bookmaker_slug {request.bookmaker_slug!r} is unknown")
        return history(request)

    async def GetEventAt(self, request, context):
        await self._enter("GetEventAt", request, context)
        if request.event_id != EVENT_ID:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"event {request.event_id} not found")
        at = request.at.ToDatetime(tzinfo=UTC)
        response = query_pb2.EventAt(event_id=request.event_id, at=request.at)
        for b in event_detail().markets_by_bookmaker:
            if at < SNAPSHOT_TIME - timedelta(days=30):  # before anything was stored: entries with no markets
                del b.markets[:]
                b.ClearField("snapshot_time")
            response.markets_by_bookmaker.append(b)
        return response

    # The contract-JSON reads: the protobuf answer above (recorded under its name) in the gateway's own rendering
    # of it, which is what the real service's prepared bytes equal (tests/unit/test_contract_json.py).
    async def ListEventsJson(self, request, context):
        model = convert.event_list(await self.ListEvents(request, context), request.page or 1, request.page_size or 50)
        return query_pb2.JsonBody(json=model.model_dump_json(by_alias=True).encode())

    async def GetEventJson(self, request, context):
        model = convert.event_detail(await self.GetEvent(request, context))
        return query_pb2.JsonBody(json=model.model_dump_json(by_alias=True).encode())

    async def GetMarketHistoryJson(self, request, context):
        model = convert.odds_history(await self.GetMarketHistory(request, context))
        return query_pb2.JsonBody(json=model.model_dump_json(by_alias=True).encode())

    async def GetEventAtJson(self, request, context):
        model = convert.event_at(await self.GetEventAt(request, context))
        return query_pb2.JsonBody(json=model.model_dump_json(by_alias=True).encode())

    async def GetTimeToKickoff(self, request, context):
        await self._enter("GetTimeToKickoff", request, context)
        if request.event_id != EVENT_ID:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"event {request.event_id} not found")
        line = request.line if request.HasField("line") else None
        response = query_pb2.TimeToKickoff(event_id=request.event_id, kickoff=ts(KICKOFF), market_id=request.market_id)
        if line is not None:
            response.line = line
        for slug, name in SLUGS.items():
            b = query_pb2.BookmakerToKickoff(bookmaker_slug=slug, bookmaker_name=name)
            pairs = ODDS.get((slug, request.market_id, line))
            for offset in list(request.offsets_seconds) or DEFAULT_OFFSETS_SECONDS:
                p = query_pb2.OffsetOdds(offset_seconds=offset, at=ts(KICKOFF - timedelta(seconds=offset)))
                # Known from three days before kickoff on; earlier offsets have no data.
                if pairs is not None and offset <= 3 * 86400:
                    p.has_data, p.available = True, True
                    p.outcomes.extend(outcomes(pairs))
                    p.margin = margin([o for _, o in pairs]) or 0.0
                b.points.append(p)
            response.bookmakers.append(b)
        return response

    async def GetTournamentMarginToKickoff(self, request, context):
        await self._enter("GetTournamentMarginToKickoff", request, context)
        if request.tournament_id != TOURNAMENT_ID:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"tournament {request.tournament_id} not found")
        response = query_pb2.TournamentMarginToKickoff(tournament_id=request.tournament_id, market_id=request.market_id)
        if request.HasField("line"):
            response.line = request.line
        for i, (slug, name) in enumerate(SLUGS.items()):
            b = query_pb2.BookmakerMarginToKickoff(bookmaker_slug=slug, bookmaker_name=name)
            for offset in list(request.offsets_seconds) or DEFAULT_OFFSETS_SECONDS:
                p = query_pb2.OffsetMargin(offset_seconds=offset)
                if offset <= 3 * 86400:
                    p.average_margin, p.events = 4.5 + i + offset / 86400, 12
                b.points.append(p)
            response.bookmakers.append(b)
        return response


@dataclass
class FakeBackend:
    fake: FakeQueryService
    server: Server

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"


async def start_fake_backend() -> FakeBackend:
    """A real grpc.aio server with the standard health service, reporting SERVING."""
    fake = FakeQueryService()
    server = create_server(
        "127.0.0.1:0", lambda s: query_pb2_grpc.add_QueryServiceServicer_to_server(fake, s), [SERVICE_NAME]
    )
    await server.start()
    await server.set_serving(True)
    return FakeBackend(fake, server)


# The retention service (storage, cleanup, settings).

RETENTION_SERVICE_NAME = retention_pb2.DESCRIPTOR.services_by_name["RetentionService"].full_name
NOW = datetime(2026, 2, 24, 10, 0, 0, 123456, tzinfo=UTC)  # the fake's "now": cutoffs and measurements
SETTINGS_UPDATED_AT = datetime(2026, 2, 24, 9, 0, 0, 123456, tzinfo=UTC)
ALERT_IDS = (3, 2)  # the unresolved alerts, newest first
RUN_ID = 10  # the id a manual run gets
RUNS_TOTAL = 31
SAMPLES_TOTAL = 42
SETTINGS_RANGES = {
    "scrape_interval_minutes": (1, 60),
    "odds_retention_days": (1, 365),
    "match_retention_days": (1, 365),
    "cleanup_frequency_hours": (1, 168),
    "betpawa_concurrency": (1, 100),
    "sportybet_concurrency": (1, 100),
    "bet9ja_concurrency": (1, 50),
    "bet9ja_delay_ms": (0, 100),
    "batch_size": (10, 200),
    "max_concurrent_events": (1, 50),
}


def default_settings() -> retention_pb2.Settings:
    """The settings row as the latest migration leaves it: retention 14 days, never updated (updated_at null)."""
    return retention_pb2.Settings(
        scrape_interval_minutes=5,
        enabled_platforms=["sportybet", "betpawa", "bet9ja"],
        odds_retention_days=14,
        match_retention_days=14,
        cleanup_frequency_hours=24,
        betpawa_concurrency=50,
        sportybet_concurrency=50,
        bet9ja_concurrency=15,
        bet9ja_delay_ms=25,
        batch_size=50,
        max_concurrent_events=10,
    )


def table_stats(count: int, oldest: datetime | None = None, newest: datetime | None = None) -> retention_pb2.TableStats:
    t = retention_pb2.TableStats(count=count)
    if oldest is not None:
        t.oldest.CopyFrom(ts(oldest))
    if newest is not None:
        t.newest.CopyFrom(ts(newest))
    return t


def data_stats() -> retention_pb2.DataStats:
    return retention_pb2.DataStats(
        odds_snapshots=table_stats(120000, datetime(2026, 2, 10, tzinfo=UTC), datetime(2026, 2, 24, 10, tzinfo=UTC)),
        competitor_odds_snapshots=table_stats(90000),
        events=table_stats(5000, datetime(2026, 2, 10, 12, tzinfo=UTC), datetime(2026, 3, 10, 19, tzinfo=UTC)),
        competitor_events=table_stats(8000),
        tournaments=table_stats(300),
        competitor_tournaments=table_stats(600),
        scrape_runs=table_stats(4000, datetime(2026, 2, 10, tzinfo=UTC), datetime(2026, 2, 24, 10, tzinfo=UTC)),
        scrape_batches=table_stats(0),
        events_by_platform=[
            retention_pb2.PlatformCount(platform="betpawa", count=5000),
            retention_pb2.PlatformCount(platform="sportybet", count=4200),
        ],
        competitor_events_by_source=[retention_pb2.PlatformCount(platform="sportybet", count=4100)],
        market_odds_history=table_stats(
            15000000, datetime(2026, 2, 10, 0, 0, 1, tzinfo=UTC), datetime(2026, 2, 24, 9, 59, 58, 5, tzinfo=UTC)
        ),
    )


def cleanup_counts(odds_days: int, match_days: int, *, run: bool) -> retention_pb2.CleanupCounts:
    c = retention_pb2.CleanupCounts(
        odds_cutoff=ts(NOW - timedelta(days=odds_days)),
        match_cutoff=ts(NOW - timedelta(days=match_days)),
        odds_snapshots=1000,
        competitor_odds_snapshots=800,
        market_odds_history=50000,
        history_partitions=2,
        market_odds_current=700,
        scrape_runs=400,
        events=120,
        competitor_events=200,
        tournaments=5,
        competitor_tournaments=9,
    )
    if run:
        c.oldest_odds_date.CopyFrom(ts(datetime(2026, 1, 20, tzinfo=UTC)))
        c.oldest_match_date.CopyFrom(ts(datetime(2026, 1, 21, 18, tzinfo=UTC)))
        c.duration_seconds = 12.3456
        c.run_id = RUN_ID
    return c


def cleanup_runs() -> list[retention_pb2.CleanupRun]:
    """Newest first: a manual run in progress, a completed scheduled run, a failed scheduled run."""
    running = retention_pb2.CleanupRun(
        id=9,
        started_at=ts(datetime(2026, 2, 24, 9, 30, tzinfo=UTC)),
        trigger="manual",
        odds_retention_days=7,
        match_retention_days=30,
        status="running",
    )
    completed = retention_pb2.CleanupRun(
        id=8,
        started_at=ts(datetime(2026, 2, 24, 2, 0, 0, 500000, tzinfo=UTC)),
        completed_at=ts(datetime(2026, 2, 24, 2, 0, 13, tzinfo=UTC)),
        trigger="scheduled",
        odds_retention_days=14,
        match_retention_days=14,
        deleted=cleanup_counts(14, 14, run=True),
        status="completed",
        duration_seconds=12.3456,
    )
    failed = retention_pb2.CleanupRun(
        id=7,
        started_at=ts(datetime(2026, 2, 23, 2, 0, tzinfo=UTC)),
        completed_at=ts(datetime(2026, 2, 23, 2, 0, 1, tzinfo=UTC)),
        trigger="scheduled",
        odds_retention_days=14,
        match_retention_days=14,
        status="failed",
        error_message="canceling statement due to lock timeout",
        duration_seconds=1.0,
    )
    return [running, completed, failed]


def storage_sizes() -> retention_pb2.StorageSizes:
    history = retention_pb2.TableSize(
        table_name="market_odds_history",
        size_bytes=2147483648,
        size_human="2048 MB",
        row_count=15000000,
        partitions=[
            retention_pb2.TableSize(
                table_name="market_odds_history_20260224", size_bytes=153391689, size_human="146 MB", row_count=1071428
            )
        ],
    )
    return retention_pb2.StorageSizes(
        tables=[
            history,
            retention_pb2.TableSize(table_name="market_odds_current", size_bytes=536870912, size_human="512 MB"),
            retention_pb2.TableSize(table_name="events", size_bytes=1048576, size_human="1024 kB", row_count=5000),
        ],
        total_bytes=3221225472,
        total_human="3072 MB",
        measured_at=ts(NOW),
    )


def storage_samples(limit: int) -> retention_pb2.StorageSamples:
    samples = [
        retention_pb2.StorageSample(
            id=SAMPLES_TOTAL - i,
            sampled_at=ts(datetime(2026, 2, 24, 3, 0, 0, 512345, tzinfo=UTC) - timedelta(days=i)),
            total_bytes=3221225472 - i * 10485760,
            table_sizes={"events": 1048576, "market_odds_history": 2147483648 - i * 10485760},
        )
        for i in range(SAMPLES_TOTAL)
    ]
    return retention_pb2.StorageSamples(samples=samples[:limit], total=SAMPLES_TOTAL)


def storage_alert(alert_id: int) -> retention_pb2.StorageAlert:
    if alert_id == 3:
        return retention_pb2.StorageAlert(
            id=3,
            created_at=ts(datetime(2026, 2, 24, 3, 0, 1, tzinfo=UTC)),
            alert_type="growth_warning",
            message="Database grew 23.4% since last sample (2.50 GB → 3.09 GB)",
            current_bytes=3318000000,
            previous_bytes=2690000000,
            growth_percent=23.4,
        )
    return retention_pb2.StorageAlert(
        id=alert_id,
        created_at=ts(datetime(2026, 2, 20, 3, 0, 1, tzinfo=UTC)),
        alert_type="size_critical",
        message="Database size 51.00 GB exceeds 50 GB",
        current_bytes=54760833024,
        previous_bytes=54500000000,
        growth_percent=0.0,
    )


@dataclass
class FakeRetentionService(retention_pb2_grpc.RetentionServiceServicer):
    """Canned answers that validate like the real service (INVALID_ARGUMENT out of range); settings are kept.

    `cleanup_running` makes RunCleanup answer ABORTED; `abort_with` makes every call fail with that status; while
    `held` is an unset event, every call waits for it.
    """

    received: list[tuple[str, Message]] = field(default_factory=list)
    abort_with: grpc.StatusCode | None = None
    held: asyncio.Event | None = None
    cleanup_running: bool = False
    settings: retention_pb2.Settings = field(default_factory=default_settings)
    audit: list[retention_pb2.AuditEntry] = field(default_factory=list)  # kept apart from `received`

    def reset(self) -> None:
        self.received.clear()
        self.audit.clear()
        self.abort_with = None
        if self.held is not None:
            self.held.set()  # calls still waiting finish instead of outliving the test that held them
        self.held = None
        self.cleanup_running = False
        self.settings = default_settings()

    def requests(self, method: str) -> list[Any]:
        return [r for m, r in self.received if m == method]

    async def _enter(self, method: str, request: Message, context: grpc.aio.ServicerContext) -> None:
        self.received.append((method, request))
        if self.held is not None:
            await self.held.wait()
        if self.abort_with is not None:
            await context.abort(self.abort_with, f"fake {method} failing with {self.abort_with.name}")

    async def _check_range(self, context: grpc.aio.ServicerContext, name: str, value: int, low: int, high: int) -> None:
        if not low <= value <= high:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{name} must be within {low}..{high}, got {value}")

    async def _retentions(self, request: retention_pb2.CleanupRequest, context: Any) -> tuple[int, int]:
        odds = request.odds_retention_days if request.HasField("odds_retention_days") else None
        match = request.match_retention_days if request.HasField("match_retention_days") else None
        for name, value in (("odds_retention_days", odds), ("match_retention_days", match)):
            if value is not None:
                await self._check_range(context, name, value, 1, 365)
        return (
            odds if odds is not None else self.settings.odds_retention_days,
            match if match is not None else self.settings.match_retention_days,
        )

    async def RecordAudit(self, request, context):
        entry = retention_pb2.AuditEntry()
        entry.CopyFrom(request)
        entry.id = len(self.audit) + 1
        self.audit.append(entry)
        return entry

    async def ListAudit(self, request, context):
        return retention_pb2.AuditEntries(entries=list(reversed(self.audit))[: request.limit or 100])

    async def GetSettings(self, request, context):
        await self._enter("GetSettings", request, context)
        return self.settings

    async def UpdateSettings(self, request, context):
        await self._enter("UpdateSettings", request, context)
        updated = retention_pb2.Settings()
        updated.CopyFrom(self.settings)
        for name, (low, high) in SETTINGS_RANGES.items():
            if request.HasField(name):
                await self._check_range(context, name, getattr(request, name), low, high)
                setattr(updated, name, getattr(request, name))
        if request.set_enabled_platforms:
            del updated.enabled_platforms[:]
            updated.enabled_platforms.extend(request.enabled_platforms)
        updated.updated_at.CopyFrom(ts(SETTINGS_UPDATED_AT))
        self.settings = updated
        return updated

    async def GetDataStats(self, request, context):
        await self._enter("GetDataStats", request, context)
        return data_stats()

    async def PreviewCleanup(self, request, context):
        await self._enter("PreviewCleanup", request, context)
        odds, match = await self._retentions(request, context)
        return cleanup_counts(odds, match, run=False)

    async def RunCleanup(self, request, context):
        await self._enter("RunCleanup", request, context)
        if self.cleanup_running:
            await context.abort(grpc.StatusCode.ABORTED, "cleanup run 9 (manual) is in progress")
        odds, match = await self._retentions(request, context)
        return cleanup_counts(odds, match, run=True)

    async def ListCleanupRuns(self, request, context):
        await self._enter("ListCleanupRuns", request, context)
        await self._check_range(context, "limit", request.limit, 1, 100)
        return retention_pb2.CleanupRuns(runs=cleanup_runs()[: request.limit], total=RUNS_TOTAL)

    async def GetStorageSizes(self, request, context):
        await self._enter("GetStorageSizes", request, context)
        return storage_sizes()

    async def ListStorageSamples(self, request, context):
        await self._enter("ListStorageSamples", request, context)
        await self._check_range(context, "limit", request.limit, 1, 100)
        return storage_samples(request.limit)

    async def ListStorageAlerts(self, request, context):
        await self._enter("ListStorageAlerts", request, context)
        return retention_pb2.StorageAlerts(alerts=[storage_alert(i) for i in ALERT_IDS])

    async def ResolveStorageAlert(self, request, context):
        await self._enter("ResolveStorageAlert", request, context)
        if request.alert_id not in ALERT_IDS:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"storage alert {request.alert_id} not found")
        alert = storage_alert(request.alert_id)
        alert.resolved_at.CopyFrom(ts(NOW))
        return alert

    async def GetPartitions(self, request, context):
        await self._enter("GetPartitions", request, context)
        day = datetime(2026, 2, 24, tzinfo=UTC)
        return retention_pb2.Partitions(
            partitions=[
                retention_pb2.Partition(
                    name=f"market_odds_history_{(day + timedelta(days=i)):%Y%m%d}",
                    start=ts(day + timedelta(days=i)),
                    end=ts(day + timedelta(days=i + 1)),
                )
                for i in range(-14, 8)
            ],
            days_ahead=7,
        )


@dataclass
class FakeRetentionBackend:
    fake: FakeRetentionService
    server: Server

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"


async def start_fake_retention_backend() -> FakeRetentionBackend:
    """A real grpc.aio server with the standard health service, reporting SERVING."""
    fake = FakeRetentionService()
    server = create_server(
        "127.0.0.1:0",
        lambda s: retention_pb2_grpc.add_RetentionServiceServicer_to_server(fake, s),
        [RETENTION_SERVICE_NAME],
    )
    await server.start()
    await server.set_serving(True)
    return FakeRetentionBackend(fake, server)


@contextmanager
def fake_backends_in_thread() -> Iterator[tuple[FakeBackend, FakeRetentionBackend]]:
    """Both fakes on one event loop in a daemon thread, for synchronous callers (schemathesis)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-backends", daemon=True)
    thread.start()
    query = asyncio.run_coroutine_threadsafe(start_fake_backend(), loop).result(timeout=10)
    retention = asyncio.run_coroutine_threadsafe(start_fake_retention_backend(), loop).result(timeout=10)
    try:
        yield query, retention
    finally:
        for server in (query.server, retention.server):
            asyncio.run_coroutine_threadsafe(server.stop(0), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
