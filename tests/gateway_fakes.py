"""A fake QueryService with canned, realistic data, served by a real grpc.aio server, for gateway tests.

No mocks: the gateway talks to it over gRPC on loopback exactly as it talks to the real query service.
Every request the fake receives is recorded, so tests can assert what the gateway sent.
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
from oddstore.v1 import query_pb2, query_pb2_grpc

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
    """Canned answers; `abort_with` makes every call fail with that status (e.g. UNAVAILABLE)."""

    received: list[tuple[str, Message]] = field(default_factory=list)
    abort_with: grpc.StatusCode | None = None
    delay_seconds: float = 0.0
    alerts: int = 1

    def reset(self) -> None:
        self.received.clear()
        self.abort_with = None
        self.delay_seconds = 0.0

    def requests(self, method: str) -> list[Any]:
        return [r for m, r in self.received if m == method]

    async def _enter(self, method: str, request: Message, context: grpc.aio.ServicerContext) -> None:
        self.received.append((method, request))
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        if self.abort_with is not None:
            await context.abort(self.abort_with, f"fake {method} failing with {self.abort_with.name}")

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


@contextmanager
def fake_backend_in_thread() -> Iterator[FakeBackend]:
    """The fake on its own event loop in a daemon thread, for synchronous callers (schemathesis)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-query", daemon=True)
    thread.start()
    backend = asyncio.run_coroutine_threadsafe(start_fake_backend(), loop).result(timeout=10)
    try:
        yield backend
    finally:
        asyncio.run_coroutine_threadsafe(backend.server.stop(0), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
