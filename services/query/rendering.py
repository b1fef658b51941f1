"""Cached events rendered to protobuf: the views' messages, and serialized pieces memoized per bookmaker and
rebuilt in the background when its markets change."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from oddstore.convert import to_timestamp
from oddstore.v1 import query_pb2 as pb
from services.query import contract_json, events, history
from services.query.cache import Book, EventInfo, OddsCache
from services.query.odds import Odds


def timestamp_or_none(value: datetime | None) -> Timestamp | None:
    return None if value is None else to_timestamp(value)


def outcomes_to_pb(outcomes: Iterable[Odds]) -> list[pb.OutcomeOdds]:
    return [pb.OutcomeOdds(name=n, odds=o, is_active=a) for n, o, a in outcomes]


def inline_to_pb(m: events.MarketView) -> pb.InlineMarket:
    return pb.InlineMarket(
        market_id=m.market_id,
        market_name=m.market_name,
        line=m.line,
        outcomes=outcomes_to_pb(m.outcomes),
        margin=m.margin,
        available=m.available,
        unavailable_since=timestamp_or_none(m.unavailable_since),
    )


def detail_to_pb(m: events.MarketView | history.MarketState) -> pb.MarketDetail:
    unavailable = m.unavailable_since
    return pb.MarketDetail(
        market_id=m.market_id,
        market_name=m.market_name,
        line=m.line,
        outcomes=outcomes_to_pb(m.outcomes),
        margin=m.margin,
        market_groups=list(m.market_groups or ()),
        market_groups_null=m.market_groups is None,
        available=m.available,
        unavailable_since=timestamp_or_none(unavailable),
    )


def event_to_pb(e: events.EventView) -> pb.EventSummary:
    return pb.EventSummary(
        id=e.id,
        sportradar_id=e.sportradar_id,
        name=e.name,
        home_team=e.home_team,
        away_team=e.away_team,
        kickoff=timestamp_or_none(e.kickoff),
        tournament_id=e.tournament_id,
        tournament_name=e.tournament_name,
        tournament_country=e.tournament_country,
        sport_name=e.sport_name,
        created_at=timestamp_or_none(e.created_at),
        bookmakers=[
            pb.BookmakerOdds(
                bookmaker_slug=b.slug,
                bookmaker_name=b.name,
                external_event_id=b.external_event_id,
                has_odds=b.has_odds,
                inline_odds=[inline_to_pb(m) for m in b.inline],
                snapshot_time=timestamp_or_none(b.snapshot_time),
            )
            for b in e.bookmakers
        ],
    )


def _inline_piece(book: Book) -> bytes:
    """A BookmakerOdds holding only the book's inline odds."""
    return book.piece(
        "inline",
        lambda: pb.BookmakerOdds(
            inline_odds=[inline_to_pb(m) for m in events.inline_markets(book)]
        ).SerializeToString(),
    )


def _detail_piece(book: Book) -> bytes:
    """A BookmakerMarkets holding only the book's detail markets."""
    return book.piece(
        "detail",
        lambda: pb.BookmakerMarkets(markets=[detail_to_pb(m) for m in events.detail_markets(book)]).SerializeToString(),
    )


async def keep_rendered(cache: OddsCache, interval: float = 1.0, batch: int = 1) -> None:
    """Renders, in the background, the contract-JSON pieces (contract_json.py) of every cached bookmaker whose
    markets changed (cache.changed), so a read finds them ready: a cold 336-market event detail costs milliseconds
    to build against a splice of bytes, and most changes (a scrape moves ~5 % of markets) reach books that will be
    read again. The protobuf pieces are built on first read only (the gateway reads JSON; both for every book would
    double the memory). Yields to the event loop after every `batch` books: one by default, since right after
    warm-up it renders every book, and with 5 the first reads of bench-read had their p99 there."""
    while True:
        done = 0
        while cache.changed:
            event_id, slug = cache.changed.pop()
            book = cache.books_of(event_id).get(slug)  # None: the event left (sweep)
            if book is not None and contract_json.stale(book):
                contract_json.inline_piece(book)
                contract_json.detail_piece(book)
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
            pb.BookmakerMarkets(
                bookmaker_slug=b.slug, bookmaker_name=b.name, snapshot_time=timestamp_or_none(b.snapshot_time)
            )
            for b in detail.markets_by_bookmaker
        ],
    )
    _fill(out.event.bookmakers, books, _inline_piece)
    _fill(out.markets_by_bookmaker, books, _detail_piece)
    return out
