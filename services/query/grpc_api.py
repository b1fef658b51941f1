"""QueryService servicer: protobuf to domain and back, errors to status codes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta

import asyncpg
import grpc

from oddstore.convert import from_timestamp, to_timestamp
from oddstore.grpc_errors import StatusMapping
from oddstore.v1 import query_pb2 as pb
from oddstore.v1 import query_pb2_grpc
from services.query import contract_json, history, odds, stream
from services.query.cache import OddsCache
from services.query.events import EventQuery, InvalidQuery, Mode
from services.query.history_cache import HistoryCache
from services.query.history_repository import HistoryReader, UnknownBookmaker
from services.query.reads import NotFound, Reads
from services.query.rendering import (
    detail_to_pb,
    event_detail_to_pb,
    event_to_pb,
    outcomes_to_pb,
    summary_to_pb,
    timestamp_or_none,
)
from services.query.updates import Closed, FellBehind, MarketDelta, Selection, Updates

Clock = Callable[[], datetime]

MODES = {
    pb.AVAILABILITY_UNSPECIFIED: Mode.BETPAWA,
    pb.AVAILABILITY_BETPAWA: Mode.BETPAWA,
    pb.AVAILABILITY_COMPETITOR: Mode.COMPETITOR,
    pb.AVAILABILITY_ALERTS: Mode.ALERTS,
}


_ERRORS = StatusMapping(
    "query",
    (
        (InvalidQuery, grpc.StatusCode.INVALID_ARGUMENT),
        (NotFound, grpc.StatusCode.NOT_FOUND),
        (UnknownBookmaker, grpc.StatusCode.NOT_FOUND),
    ),
)


_KINDS = {
    stream.Kind.IMAGE: pb.STREAM_MESSAGE_KIND_IMAGE,
    stream.Kind.DELTA: pb.STREAM_MESSAGE_KIND_DELTA,
    stream.Kind.HEARTBEAT: pb.STREAM_MESSAGE_KIND_HEARTBEAT,
}


def _market_state(d: MarketDelta, keep: bool) -> pb.MarketState:
    """With `keep`, built once per buffered delta whatever the number of streams sending it (decoding the outcomes
    is the cost). Not for an image's states: they are this stream's alone, and kept protobufs of a whole image
    (430,000 markets) measured ~0.5 GB per stream in bench/feed.py."""
    if d.memo is None:
        m = d.market
        state = pb.MarketState(
            event_id=d.event_id,
            bookmaker=d.bookmaker,
            market_id=d.key[0],
            line=d.key[1],
            market_name=m.market_name,
            outcomes=outcomes_to_pb(odds.decode(m.outcomes)),
            available=m.unavailable_at is None,
            captured_at=to_timestamp(m.last_updated_at),
        )
        if not keep:
            return state
        d.memo = state
    assert isinstance(d.memo, pb.MarketState)
    return d.memo


def _now() -> datetime:
    return datetime.now(UTC)


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


def point_to_pb(p: history.Point) -> pb.HistoryPoint:
    return pb.HistoryPoint(
        captured_at=timestamp_or_none(p.captured_at),
        outcomes=outcomes_to_pb(p.outcomes),
        margin=p.margin,
        available=p.available,
        unavailable_at=timestamp_or_none(p.unavailable_at),
        confirmed=p.confirmed,
    )


def market_history_to_pb(h: history.MarketHistory) -> pb.MarketHistory:
    return pb.MarketHistory(
        event_id=h.event_id,
        bookmaker_slug=h.bookmaker_slug,
        bookmaker_name=h.bookmaker_name,
        market_id=h.market_id,
        line=h.line,
        points=[point_to_pb(p) for p in h.points],
    )


def event_at_to_pb(event_id: int, at: datetime, books: Iterable[history.BookmakerMarkets]) -> pb.EventAt:
    return pb.EventAt(
        event_id=event_id,
        at=timestamp_or_none(at),
        markets_by_bookmaker=[
            pb.BookmakerMarkets(
                bookmaker_slug=b.bookmaker_slug,
                bookmaker_name=b.bookmaker_name,
                snapshot_time=timestamp_or_none(b.snapshot_time),
                markets=[detail_to_pb(m) for m in b.markets],
            )
            for b in books
        ],
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
        updates: Updates | None = None,
        stream_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._reads = Reads(cache, pool, cutoff, clock)
        self._updates = updates if updates is not None else Updates()
        self._cache = cache
        self._stream_sleep = stream_sleep
        self._reader = reader
        self._history = history if history is not None else HistoryCache(reader, None, lambda _: False)
        self._clock = clock

    async def ListEvents(
        self, request: pb.ListEventsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListEventsResponse:
        async def work() -> pb.ListEventsResponse:
            page = await self._reads.list_events(query_from_pb(request))
            found = [*(event_to_pb(v) for v in page.views), *(summary_to_pb(e, books) for e, books in page.events)]
            return pb.ListEventsResponse(events=found, total=page.total)

        return await _ERRORS.answer(context, "ListEvents", work)

    async def ListEventsJson(self, request: pb.ListEventsRequest, context: grpc.aio.ServicerContext) -> pb.JsonBody:
        async def work() -> pb.JsonBody:
            q = query_from_pb(request)
            page = await self._reads.list_events(q)
            entries = [*map(contract_json.view, page.views), *(contract_json.summary(e, b) for e, b in page.events)]
            return pb.JsonBody(json=contract_json.event_list(entries, page.total, q.page, q.page_size))

        return await _ERRORS.answer(context, "ListEventsJson", work)

    async def GetEventJson(self, request: pb.GetEventRequest, context: grpc.aio.ServicerContext) -> pb.JsonBody:
        async def work() -> pb.JsonBody:
            return pb.JsonBody(json=contract_json.event_detail(*await self._reads.event(request.event_id)))

        return await _ERRORS.answer(context, "GetEventJson", work)

    async def GetEvent(self, request: pb.GetEventRequest, context: grpc.aio.ServicerContext) -> pb.EventDetail:
        async def work() -> pb.EventDetail:
            return event_detail_to_pb(*await self._reads.event(request.event_id))

        return await _ERRORS.answer(context, "GetEvent", work)

    async def Subscribe(
        self, request: pb.SubscribeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.SubscribeResponse]:
        wanted = stream.Request(
            Selection(frozenset(request.event_ids), frozenset(request.bookmakers), frozenset(request.market_ids)),
            request.resume_token,
            request.heartbeat_ms / 1000,
            request.conflation_ms / 1000,
            request.summaries_only,
        )
        # A stream opened while the cache warms would get an image of part of it: it waits for the whole.
        await self._updates.ready.wait()
        self._updates.subscribers += 1
        try:
            async for message in stream.stream(self._updates, self._cache, wanted, sleep=self._stream_sleep):
                yield pb.SubscribeResponse(
                    kind=_KINDS[message.kind],
                    markets=[_market_state(d, message.kind is stream.Kind.DELTA) for d in message.markets],
                    changes=[
                        pb.OddsChanged(
                            event_id=c.event_id,
                            bookmaker=c.bookmaker,
                            captured_at=to_timestamp(c.captured_at),
                            snapshots=c.snapshots,
                        )
                        for c in message.pairs
                    ],
                    resume_token=message.token,
                    fresh_image=message.fresh_image,
                    removed_event_ids=message.removed,
                )
        except FellBehind as exc:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        except Closed:
            return
        finally:
            self._updates.subscribers -= 1

    async def CountAlerts(
        self, request: pb.CountAlertsRequest, context: grpc.aio.ServicerContext
    ) -> pb.CountAlertsResponse:
        async def work() -> pb.CountAlertsResponse:
            return pb.CountAlertsResponse(count=await self._reads.count_alerts())

        # From PostgreSQL while the cache loads: its errors map to status codes as every read's do.
        return await _ERRORS.answer(context, "CountAlerts", work)

    async def ListTournaments(
        self, request: pb.ListTournamentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTournamentsResponse:
        async def work() -> pb.ListTournamentsResponse:
            found = await self._reads.tournaments(_listing_mode(request.availability))
            return pb.ListTournamentsResponse(
                tournaments=[pb.Tournament(id=t.id, name=t.name, country=t.country) for t in found]
            )

        return await _ERRORS.answer(context, "ListTournaments", work)

    async def ListCountries(
        self, request: pb.ListCountriesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCountriesResponse:
        async def work() -> pb.ListCountriesResponse:
            return pb.ListCountriesResponse(countries=await self._reads.countries(_listing_mode(request.availability)))

        return await _ERRORS.answer(context, "ListCountries", work)

    def _history_args(
        self, request: pb.GetMarketHistoryRequest
    ) -> tuple[int, str, str, float | None, datetime | None, datetime | None]:
        return (
            request.event_id,
            request.market_id,
            request.bookmaker_slug,
            request.line if request.HasField("line") else None,
            _opt_time(request, "from_time"),
            _opt_time(request, "to_time"),
        )

    async def GetMarketHistoryJson(
        self, request: pb.GetMarketHistoryRequest, context: grpc.aio.ServicerContext
    ) -> pb.JsonBody:
        async def work() -> pb.JsonBody:
            return pb.JsonBody(json=await self._history.market_history_json(*self._history_args(request)))

        return await _ERRORS.answer(context, "GetMarketHistoryJson", work)

    async def GetMarketHistory(
        self, request: pb.GetMarketHistoryRequest, context: grpc.aio.ServicerContext
    ) -> pb.MarketHistory:
        async def work() -> pb.MarketHistory:
            return market_history_to_pb(await self._history.market_history(*self._history_args(request)))

        return await _ERRORS.answer(context, "GetMarketHistory", work)

    async def GetEventAtJson(self, request: pb.GetEventAtRequest, context: grpc.aio.ServicerContext) -> pb.JsonBody:
        async def work() -> pb.JsonBody:
            at = _opt_time(request, "at") or self._clock()
            return pb.JsonBody(json=await self._reader.event_at_json(request.event_id, at))

        return await _ERRORS.answer(context, "GetEventAtJson", work)

    async def GetEventAt(self, request: pb.GetEventAtRequest, context: grpc.aio.ServicerContext) -> pb.EventAt:
        async def work() -> pb.EventAt:
            at = _opt_time(request, "at") or self._clock()
            return event_at_to_pb(request.event_id, at, await self._reader.event_at(request.event_id, at))

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
                kickoff=timestamp_or_none(kickoff),
                market_id=request.market_id,
                line=line,
                bookmakers=[
                    pb.BookmakerToKickoff(
                        bookmaker_slug=b.bookmaker_slug,
                        bookmaker_name=b.bookmaker_name,
                        points=[
                            pb.OffsetOdds(
                                offset_seconds=int(p.offset.total_seconds()),
                                at=timestamp_or_none(p.at),
                                has_data=p.has_data,
                                outcomes=outcomes_to_pb(p.outcomes),
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


def _listing_mode(availability: int) -> Mode:
    """§4/§5 take betpawa (the default) or competitor only."""
    if availability in (pb.AVAILABILITY_UNSPECIFIED, pb.AVAILABILITY_BETPAWA):
        return Mode.BETPAWA
    if availability == pb.AVAILABILITY_COMPETITOR:
        return Mode.COMPETITOR
    raise InvalidQuery(f"availability: {availability} is not accepted here (betpawa or competitor only)")
