"""QueryService servicer: protobuf to domain and back, errors to status codes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta

import asyncpg
import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from oddstore.convert import from_timestamp, to_timestamp
from oddstore.grpc_errors import StatusMapping
from oddstore.v1 import query_pb2 as pb
from oddstore.v1 import query_pb2_grpc
from services.query import events, history, metrics
from services.query import repository as repo
from services.query.cache import Book, EventInfo, OddsCache
from services.query.events import EventQuery, InvalidQuery, Mode
from services.query.history_cache import HistoryCache
from services.query.history_repository import HistoryReader, UnknownBookmaker
from services.query.odds import Odds

Clock = Callable[[], datetime]

MODES = {
    pb.AVAILABILITY_UNSPECIFIED: Mode.BETPAWA,
    pb.AVAILABILITY_BETPAWA: Mode.BETPAWA,
    pb.AVAILABILITY_COMPETITOR: Mode.COMPETITOR,
    pb.AVAILABILITY_ALERTS: Mode.ALERTS,
}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class NotFound(LookupError):
    pass


_ERRORS = StatusMapping(
    "query",
    (
        (InvalidQuery, grpc.StatusCode.INVALID_ARGUMENT),
        (NotFound, grpc.StatusCode.NOT_FOUND),
        (UnknownBookmaker, grpc.StatusCode.NOT_FOUND),
    ),
)


def _now() -> datetime:
    return datetime.now(UTC)


def _ts(value: datetime | None) -> Timestamp | None:
    return None if value is None else to_timestamp(value)


def _opt_time(request: object, name: str) -> datetime | None:
    return from_timestamp(getattr(request, name)) if request.HasField(name) else None  # type: ignore[attr-defined]


def query_from_pb(r: pb.ListEventsRequest) -> EventQuery:
    mode = MODES.get(r.availability)
    if mode is None:
        raise InvalidQuery(f"availability: unknown value {r.availability}")
    return EventQuery(
        mode=mode,
        tournament_ids=frozenset(r.tournament_ids),
        sport_id=r.sport_id if r.HasField("sport_id") else None,
        kickoff_from=_opt_time(r, "kickoff_from"),
        kickoff_to=_opt_time(r, "kickoff_to"),
        include_started=r.include_started,
        min_bookmakers=r.min_bookmakers or 1,
        search=r.search,
        countries=frozenset(r.countries),
        page=r.page or 1,
        page_size=r.page_size or 50,
    )


def _outcomes(outcomes: Iterable[Odds]) -> list[pb.OutcomeOdds]:
    return [pb.OutcomeOdds(name=n, odds=o, is_active=a) for n, o, a in outcomes]


def inline_to_pb(m: events.MarketView) -> pb.InlineMarket:
    return pb.InlineMarket(
        market_id=m.market_id,
        market_name=m.market_name,
        line=m.line,
        outcomes=_outcomes(m.outcomes),
        margin=m.margin,
        available=m.available,
        unavailable_since=_ts(m.unavailable_since),
    )


def detail_to_pb(m: events.MarketView | history.MarketState) -> pb.MarketDetail:
    unavailable = m.unavailable_since
    return pb.MarketDetail(
        market_id=m.market_id,
        market_name=m.market_name,
        line=m.line,
        outcomes=_outcomes(m.outcomes),
        margin=m.margin,
        market_groups=list(m.market_groups or ()),
        market_groups_null=m.market_groups is None,
        available=m.available,
        unavailable_since=_ts(unavailable),
    )


def event_to_pb(e: events.EventView) -> pb.EventSummary:
    return pb.EventSummary(
        id=e.id,
        sportradar_id=e.sportradar_id,
        name=e.name,
        home_team=e.home_team,
        away_team=e.away_team,
        kickoff=_ts(e.kickoff),
        tournament_id=e.tournament_id,
        tournament_name=e.tournament_name,
        tournament_country=e.tournament_country,
        sport_name=e.sport_name,
        created_at=_ts(e.created_at),
        bookmakers=[
            pb.BookmakerOdds(
                bookmaker_slug=b.slug,
                bookmaker_name=b.name,
                external_event_id=b.external_event_id,
                has_odds=b.has_odds,
                inline_odds=[inline_to_pb(m) for m in b.inline],
                snapshot_time=_ts(b.snapshot_time),
            )
            for b in e.bookmakers
        ],
    )


def _piece(book: Book, kind: str, build: Callable[[], bytes]) -> bytes:
    """A serialized piece built from `book.markets` alone, kept until they change (Book.version):
    most reads find a bookmaker's markets as the previous read left them."""
    held = book.memo.get(kind)
    if held is not None and held[0] == book.version:
        return held[1]
    piece = build()
    book.memo[kind] = (book.version, piece)
    return piece


def _inline_piece(book: Book) -> bytes:
    """A BookmakerOdds holding only the book's inline odds."""
    return _piece(
        book,
        "inline",
        lambda: pb.BookmakerOdds(
            inline_odds=[inline_to_pb(m) for m in events.inline_markets(book)]
        ).SerializeToString(),
    )


def _detail_piece(book: Book) -> bytes:
    """A BookmakerMarkets holding only the book's detail markets."""
    return _piece(
        book,
        "detail",
        lambda: pb.BookmakerMarkets(markets=[detail_to_pb(m) for m in events.detail_markets(book)]).SerializeToString(),
    )


def _stale(book: Book) -> bool:
    return any(book.memo.get(kind, (-1, b""))[0] != book.version for kind in ("inline", "detail"))


async def keep_rendered(cache: OddsCache, interval: float = 1.0, batch: int = 5) -> None:
    """Renders, in the background, the pieces of every cached bookmaker whose markets changed, so a
    read finds them ready: a cold 336-market event detail costs ~2.5 ms to build against ~0.1 ms
    assembled, and most changes (a scrape moves ~5 % of markets) reach books that will be read again.
    Yields to the event loop every `batch` books, so reads are never held up for long."""
    while True:
        done = 0
        for books in list(cache.books.values()):
            for book in list(books.values()):
                if _stale(book):
                    _inline_piece(book)
                    _detail_piece(book)
                    done += 1
                    if done % batch == 0:
                        await asyncio.sleep(0)
        await asyncio.sleep(interval)


def _fill(
    entries: Iterable[pb.BookmakerOdds] | Iterable[pb.BookmakerMarkets],
    books: Mapping[str, Book],
    piece: Callable[[Book], bytes],
) -> None:
    """Merges each bookmaker's piece into its entry, built with its markets left empty."""
    for entry in entries:
        book = books.get(entry.bookmaker_slug)
        if book is not None:
            entry.MergeFromString(piece(book))


def summary_to_pb(info: EventInfo, books: Mapping[str, Book]) -> pb.EventSummary:
    """event_to_pb(events.summarize(info, books)), the inline odds coming from each book's memo."""
    summary = event_to_pb(events.summarize(info, books, inline=False))
    _fill(summary.bookmakers, books, _inline_piece)
    return summary


def event_detail_to_pb(info: EventInfo, books: Mapping[str, Book]) -> pb.EventDetail:
    """The EventDetail of events.event_detail(info, books), the markets coming from each book's memo."""
    detail = events.event_detail(info, books, markets=False)
    out = pb.EventDetail(
        event=event_to_pb(detail.event),
        markets_by_bookmaker=[
            pb.BookmakerMarkets(bookmaker_slug=b.slug, bookmaker_name=b.name, snapshot_time=_ts(b.snapshot_time))
            for b in detail.markets_by_bookmaker
        ],
    )
    _fill(out.event.bookmakers, books, _inline_piece)
    _fill(out.markets_by_bookmaker, books, _detail_piece)
    return out


def point_to_pb(p: history.Point) -> pb.HistoryPoint:
    return pb.HistoryPoint(
        captured_at=_ts(p.captured_at),
        outcomes=_outcomes(p.outcomes),
        margin=p.margin,
        available=p.available,
        unavailable_at=_ts(p.unavailable_at),
        confirmed=p.confirmed,
    )


def _offsets(seconds: Iterable[int]) -> tuple[timedelta, ...]:
    offsets = tuple(timedelta(seconds=s) for s in seconds)
    if any(o < timedelta(0) for o in offsets):
        raise InvalidQuery("offsets_seconds: offsets before kickoff cannot be negative")
    return offsets or history.DEFAULT_OFFSETS


class QueryServicer(query_pb2_grpc.QueryServiceServicer):
    def __init__(
        self,
        cache: OddsCache,
        pool: asyncpg.Pool,
        reader: HistoryReader,
        cutoff: Clock,
        clock: Clock = _now,
        *,
        history: HistoryCache | None = None,
    ) -> None:
        self._cache = cache
        self._pool = pool
        self._reader = reader
        self._history = history if history is not None else HistoryCache(reader, None, lambda _: False)
        self._cutoff = cutoff  # events with kickoff at or before it are not in the cache
        self._clock = clock

    async def ListEvents(
        self, request: pb.ListEventsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListEventsResponse:
        return await _ERRORS.answer(context, "ListEvents", lambda: self._list_events(request))

    async def GetEvent(self, request: pb.GetEventRequest, context: grpc.aio.ServicerContext) -> pb.EventDetail:
        return await _ERRORS.answer(context, "GetEvent", lambda: self._get_event(request.event_id))

    async def CountAlerts(
        self, request: pb.CountAlertsRequest, context: grpc.aio.ServicerContext
    ) -> pb.CountAlertsResponse:
        cache = self._cache
        return pb.CountAlertsResponse(count=events.count_alerts(cache.events.values(), cache.books_of, self._clock()))

    async def ListTournaments(
        self, request: pb.ListTournamentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTournamentsResponse:
        async def work() -> pb.ListTournamentsResponse:
            now = self._clock()
            if _listing_mode(request.availability) is Mode.COMPETITOR:
                found = [events.Tournament(*t) for t in await repo.competitor_tournaments(self._pool, now)]
            else:
                found = events.tournaments(self._cache.events.values(), now)
            return pb.ListTournamentsResponse(
                tournaments=[pb.Tournament(id=t.id, name=t.name, country=t.country) for t in found]
            )

        return await _ERRORS.answer(context, "ListTournaments", work)

    async def ListCountries(
        self, request: pb.ListCountriesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCountriesResponse:
        async def work() -> pb.ListCountriesResponse:
            now = self._clock()
            if _listing_mode(request.availability) is Mode.COMPETITOR:
                found = await repo.competitor_countries(self._pool, now)
            else:
                found = events.countries(self._cache.events.values(), now)
            return pb.ListCountriesResponse(countries=found)

        return await _ERRORS.answer(context, "ListCountries", work)

    async def GetMarketHistory(
        self, request: pb.GetMarketHistoryRequest, context: grpc.aio.ServicerContext
    ) -> pb.MarketHistory:
        async def work() -> pb.MarketHistory:
            h = await self._history.market_history(
                request.event_id,
                request.market_id,
                request.bookmaker_slug,
                request.line if request.HasField("line") else None,
                _opt_time(request, "from_time"),
                _opt_time(request, "to_time"),
            )
            return pb.MarketHistory(
                event_id=h.event_id,
                bookmaker_slug=h.bookmaker_slug,
                bookmaker_name=h.bookmaker_name,
                market_id=h.market_id,
                line=h.line,
                points=[point_to_pb(p) for p in h.points],
            )

        return await _ERRORS.answer(context, "GetMarketHistory", work)

    async def GetEventAt(self, request: pb.GetEventAtRequest, context: grpc.aio.ServicerContext) -> pb.EventAt:
        async def work() -> pb.EventAt:
            at = _opt_time(request, "at") or self._clock()
            books = await self._reader.event_at(request.event_id, at)
            return pb.EventAt(
                event_id=request.event_id,
                at=_ts(at),
                markets_by_bookmaker=[
                    pb.BookmakerMarkets(
                        bookmaker_slug=b.bookmaker_slug,
                        bookmaker_name=b.bookmaker_name,
                        snapshot_time=_ts(b.snapshot_time),
                        markets=[detail_to_pb(m) for m in b.markets],
                    )
                    for b in books
                ],
            )

        return await _ERRORS.answer(context, "GetEventAt", work)

    async def GetTimeToKickoff(
        self, request: pb.GetTimeToKickoffRequest, context: grpc.aio.ServicerContext
    ) -> pb.TimeToKickoff:
        async def work() -> pb.TimeToKickoff:
            line = request.line if request.HasField("line") else None
            kickoff, books = await self._reader.time_to_kickoff(
                request.event_id, request.market_id, line, _offsets(request.offsets_seconds)
            )
            if kickoff is None:
                raise NotFound(f"event {request.event_id} not found")
            return pb.TimeToKickoff(
                event_id=request.event_id,
                kickoff=_ts(kickoff),
                market_id=request.market_id,
                line=line,
                bookmakers=[
                    pb.BookmakerToKickoff(
                        bookmaker_slug=b.bookmaker_slug,
                        bookmaker_name=b.bookmaker_name,
                        points=[
                            pb.OffsetOdds(
                                offset_seconds=int(p.offset.total_seconds()),
                                at=_ts(p.at),
                                has_data=p.has_data,
                                outcomes=_outcomes(p.outcomes),
                                margin=p.margin,
                                available=p.available,
                            )
                            for p in b.points
                        ],
                    )
                    for b in books
                ],
            )

        return await _ERRORS.answer(context, "GetTimeToKickoff", work)

    async def GetTournamentMarginToKickoff(
        self, request: pb.GetTournamentMarginToKickoffRequest, context: grpc.aio.ServicerContext
    ) -> pb.TournamentMarginToKickoff:
        async def work() -> pb.TournamentMarginToKickoff:
            line = request.line if request.HasField("line") else None
            books = await self._reader.tournament_margin_to_kickoff(
                request.tournament_id, request.market_id, line, _offsets(request.offsets_seconds)
            )
            return pb.TournamentMarginToKickoff(
                tournament_id=request.tournament_id,
                market_id=request.market_id,
                line=line,
                bookmakers=[
                    pb.BookmakerMarginToKickoff(
                        bookmaker_slug=b.bookmaker_slug,
                        bookmaker_name=b.bookmaker_name,
                        points=[
                            pb.OffsetMargin(
                                offset_seconds=int(p.offset.total_seconds()),
                                average_margin=p.average_margin,
                                events=p.events,
                            )
                            for p in b.points
                        ],
                    )
                    for b in books
                ],
            )

        return await _ERRORS.answer(context, "GetTournamentMarginToKickoff", work)

    async def _list_events(self, request: pb.ListEventsRequest) -> pb.ListEventsResponse:
        q = query_from_pb(request)
        q.validate()
        now = self._clock()
        if q.mode is Mode.COMPETITOR:
            keys = await repo.tournament_keys(self._pool, sorted(q.tournament_ids)) if q.tournament_ids else None
            rows = await repo.competitor_events(self._pool, q.lower_bound(now), q.kickoff_to)
            groups, total = events.select_competitor(rows, q, now, keys)
            books = await repo.competitor_latest_odds(self._pool, events.competitor_ids(groups))  # the page only
            views = [events.competitor_view(g, books) for g in groups]
            return pb.ListEventsResponse(events=[event_to_pb(e) for e in views], total=total)

        cache = self._cache
        candidates: Iterable[EventInfo] = cache.events.values()
        books_of: Callable[[int], Mapping[str, Book]] = cache.books_of
        cutoff = self._cutoff()
        start = q.lower_bound(now)
        if start is None or start <= cutoff:
            # The window reaches back before the cache horizon (Historical Analysis): older events
            # come from PostgreSQL; filtering needs only their metadata, odds only for the page.
            end = cutoff if q.kickoff_to is None else min(cutoff, q.kickoff_to)
            older = [e for e in await repo.events_between(self._pool, start or EPOCH, end) if e.id not in cache.events]
            if older:
                metrics.FALLBACKS.labels("list").inc()
                candidates = [*cache.events.values(), *older]
        page, total = events.select(candidates, q, now, books_of)
        missing = [e.id for e in page if e.id not in cache.events]
        if missing:
            loaded = await repo.load_books(self._pool, missing, events.INLINE_MARKETS)
            books_of = lambda event_id: loaded[event_id] if event_id in loaded else cache.books_of(event_id)  # noqa: E731
        return pb.ListEventsResponse(events=[summary_to_pb(e, books_of(e.id)) for e in page], total=total)

    async def _get_event(self, event_id: int) -> pb.EventDetail:
        info = self._cache.events.get(event_id)
        if info is not None:
            return event_detail_to_pb(info, self._cache.books_of(event_id))
        # A miss (older than the horizon, or not yet seen): the same answer from PostgreSQL.
        found = await repo.events_by_id(self._pool, [event_id]) if event_id > 0 else []
        if not found:
            raise NotFound(f"event {event_id} not found")
        metrics.FALLBACKS.labels("event").inc()
        books = await repo.load_books(self._pool, [event_id])
        return event_detail_to_pb(found[0], books.get(event_id, {}))


def _listing_mode(availability: int) -> Mode:
    """§4/§5 take betpawa (the default) or competitor only."""
    if availability in (pb.AVAILABILITY_UNSPECIFIED, pb.AVAILABILITY_BETPAWA):
        return Mode.BETPAWA
    if availability == pb.AVAILABILITY_COMPETITOR:
        return Mode.COMPETITOR
    raise InvalidQuery(f"availability: {availability} is not accepted here (betpawa or competitor only)")
