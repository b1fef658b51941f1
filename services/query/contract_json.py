"""The UI contract's JSON bodies (§1 list, §2 detail, §6 history, point in time), rendered by the query service so
that the gateway sends bytes instead of turning protobuf into models and models into JSON (~90 % of a detail's
time through the gateway, issue 14). Per bookmaker, the list's inline odds and the detail's markets are rendered
once per change of its markets (Book.version, as rendering.py's protobuf pieces) and spliced into each answer.

Bytes equal the gateway's own rendering of the same protobuf (services/gateway/convert.py + model_dump_json):
a serializer writing the same bytes as pydantic-core (whose floats and string escapes the models use), fields in the
models' order, instants through the models' format_utc; tests/unit/test_contract_json.py holds them to that.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from itertools import groupby
from typing import Any, Protocol

import orjson

from oddstore.codec import decode_decimal
from oddstore.convert import format_utc
from services.query import events, history
from services.query.cache import Book, EventInfo
from services.query.odds import Odds, margin

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # an unset Timestamp: what the gateway shows for a missing created_at
EMPTY = b"[]"
INLINE_KIND = "inline_json"
DETAIL_KIND = "detail_json"


def dumps(value: object) -> bytes:
    """orjson, not pydantic-core's to_json: the same bytes for these plain values (shortest-repr floats, non-finite
    ones as null as the models write them, UTF-8 unescaped, a UTC instant with "Z"; tests/unit/test_contract_json.py
    holds every answer to the gateway's own rendering) in ~1/5 of the time on a 14-day history (200 points)."""
    return orjson.dumps(value, option=orjson.OPT_UTC_Z)


def _time(value: datetime | None) -> datetime | str | None:
    """An instant as the models write it. One in UTC (every instant read from PostgreSQL) is left to the serializer,
    which writes it the same way ("Z", microseconds only when set) ~5x faster than format_utc in Python."""
    if value is None or value.tzinfo is UTC:
        return value
    return format_utc(value)


def _outcomes(outcomes: Iterable[Odds]) -> list[dict[str, Any]]:
    return [{"name": n, "odds": o} for n, o, _ in outcomes]


def _outcomes_active(outcomes: Iterable[Odds]) -> list[dict[str, Any]]:
    return [{"name": n, "odds": o, "is_active": a} for n, o, a in outcomes]


def inline_market(m: events.MarketView) -> dict[str, Any]:
    return {
        "market_id": m.market_id,
        "market_name": m.market_name,
        "line": m.line,
        "outcomes": _outcomes(m.outcomes),
        "margin": m.margin,
        "available": m.available,
        "unavailable_since": _time(m.unavailable_since),
    }


def detail_market(m: events.MarketView | history.MarketState) -> dict[str, Any]:
    return {
        "betpawa_market_id": m.market_id,
        "betpawa_market_name": m.market_name,
        "line": m.line,
        "outcomes": _outcomes_active(m.outcomes),
        "margin": m.margin,
        "market_groups": None if m.market_groups is None else list(m.market_groups),
        "available": m.available,
        "unavailable_since": _time(m.unavailable_since),
    }


def inline_piece(book: Book) -> bytes:
    """The JSON array of the book's inline odds, kept until its markets change."""
    return book.piece(INLINE_KIND, lambda: dumps([inline_market(m) for m in events.inline_markets(book)]))


def detail_piece(book: Book) -> bytes:
    """The JSON array of the book's detail markets, kept until its markets change."""
    return book.piece(DETAIL_KIND, lambda: dumps([detail_market(m) for m in events.detail_markets(book)]))


def stale(book: Book) -> bool:
    return any(book.memo.get(kind, (-1, b""))[0] != book.version for kind in (INLINE_KIND, DETAIL_KIND))


def _splice(head: bytes, *fields: tuple[str, bytes]) -> bytes:
    """`head` (a rendered object) with pre-rendered fields appended in order."""
    return head[:-1] + b"".join(b',"' + name.encode() + b'":' + value for name, value in fields) + b"}"


def _bookmaker(
    slug: str, name: str, external_id: str, has_odds: bool, inline: bytes, snapshot_time: datetime | None
) -> bytes:
    head = dumps(
        {
            "bookmaker_slug": slug,
            "bookmaker_name": name,
            "external_event_id": external_id,
            "event_url": None,  # never populated (contract §1)
            "has_odds": has_odds,
        }
    )
    return _splice(head, ("inline_odds", inline), ("snapshot_time", dumps(_time(snapshot_time))))


def _event(info: EventInfo | events.EventView, tournament_country: str | None, bookmakers: Sequence[bytes]) -> bytes:
    head = dumps(
        {
            "id": info.id,
            "sportradar_id": info.sportradar_id,
            "name": info.name,
            "home_team": info.home_team,
            "away_team": info.away_team,
            "kickoff": _time(info.kickoff),
            "tournament_id": info.tournament_id,
            "tournament_name": info.tournament_name,
            "tournament_country": tournament_country,
            "sport_name": info.sport_name,
        }
    )
    return _splice(
        head,
        ("bookmakers", b"[" + b",".join(bookmakers) + b"]"),
        ("created_at", dumps(_time(info.created_at or EPOCH))),
    )


def summary(info: EventInfo, books: Mapping[str, Book]) -> bytes:
    """A cached event's list entry (§1), its inline odds from each book's piece."""
    parts = []
    for link in info.links:
        book = books.get(link.slug)
        if book is None:
            parts.append(_bookmaker(link.slug, link.name, link.external_event_id, False, EMPTY, None))
        else:
            parts.append(
                _bookmaker(
                    link.slug, link.name, link.external_event_id, book.has_odds, inline_piece(book), book.snapshot_time
                )
            )
    return _event(info, info.tournament_country, parts)


def view(v: events.EventView) -> bytes:
    """A list entry built for one read (competitor mode)."""
    parts = []
    for b in v.bookmakers:
        inline = dumps([inline_market(m) for m in b.inline])
        parts.append(_bookmaker(b.slug, b.name, b.external_event_id, b.has_odds, inline, b.snapshot_time))
    return _event(v, v.tournament_country, parts)


def event_list(entries: Iterable[bytes], total: int, page: int, page_size: int) -> bytes:
    tail = dumps({"total": total, "page": page, "page_size": page_size})
    return b'{"events":[' + b",".join(entries) + b"]," + tail[1:]


def _markets_entry(slug: str, name: str, snapshot_time: datetime | None, markets: bytes) -> bytes:
    head = dumps({"bookmaker_slug": slug, "bookmaker_name": name, "snapshot_time": _time(snapshot_time)})
    return _splice(head, ("markets", markets))


def event_detail(info: EventInfo, books: Mapping[str, Book]) -> bytes:
    """§2: the list entry plus every link's detail markets, empty where the bookmaker has no data."""
    entries = []
    for link in info.links:
        book = books.get(link.slug)
        if book is None:
            entries.append(_markets_entry(link.slug, link.name, None, EMPTY))
        else:
            entries.append(_markets_entry(link.slug, link.name, book.snapshot_time, detail_piece(book)))
    return _splice(summary(info, books), ("markets_by_bookmaker", b"[" + b",".join(entries) + b"]"))


def history_point(p: history.Point) -> dict[str, Any]:
    return {
        "captured_at": _time(p.captured_at),
        "outcomes": _outcomes(p.outcomes),
        "margin": p.margin,
        "available": p.available,
        "unavailable_at": _time(p.unavailable_at),
        "confirmed": p.confirmed,
    }


def market_history(h: history.MarketHistory) -> bytes:
    """§6 odds history; market_name is the market id and line the request's only when there are points."""
    return _history(
        h.event_id, h.bookmaker_slug, h.bookmaker_name, h.market_id, h.line, [history_point(p) for p in h.points]
    )


def _history(
    event_id: int, bookmaker_slug: str, bookmaker_name: str, market_id: str, line: float | None, points: list[Any]
) -> bytes:
    return dumps(
        {
            "event_id": event_id,
            "bookmaker_slug": bookmaker_slug,
            "bookmaker_name": bookmaker_name,
            "market_id": market_id,
            "market_name": market_id,
            "line": line if points else None,
            "history": points,
        }
    )


class StoredRow(Protocol):
    """A market_odds_history row as asyncpg returns it (columns captured_at, available, outcomes)."""

    def __getitem__(self, column: str) -> Any: ...


def _stored_point(row: StoredRow) -> dict[str, Any]:
    """history_point of the row's Point (history_repository._new_point) without building the Point: a 14-day read
    renders ~200 of them, and building the Points and merging them was ~40 % of its Python time (issue 14)."""
    at, available = _time(row["captured_at"]), row["available"]
    outcomes = decode_decimal(row["outcomes"])
    return {
        "captured_at": at,
        "outcomes": _outcomes(outcomes),
        "margin": margin(outcomes),
        "available": available,
        "unavailable_at": None if available else at,  # a disappearance's row is the moment it became unavailable
        "confirmed": False,
    }


def market_history_rows(
    event_id: int,
    bookmaker_slug: str,
    bookmaker_name: str,
    market_id: str,
    line: float | None,
    rows: Sequence[StoredRow],
    confirmation: history.Point | None,
    from_time: datetime | None,
    to_time: datetime | None,
) -> bytes:
    """market_history of a market whose only points are the new table's `rows` (by captured_at) and the confirmation,
    with history.with_confirmation and history.between applied: the same bytes (tests/unit/test_contract_json.py)."""

    def inside(at: datetime) -> bool:
        return (from_time is None or at >= from_time) and (to_time is None or at <= to_time)

    points = [_stored_point(r) for r in rows if inside(r["captured_at"])]
    if confirmation is not None and inside(confirmation.captured_at):
        if not rows or confirmation.captured_at > rows[-1]["captured_at"]:  # history.with_confirmation
            points.append(history_point(confirmation))
    return _history(event_id, bookmaker_slug, bookmaker_name, market_id, line, points)


def event_at(event_id: int, at: datetime, books: Iterable[history.BookmakerMarkets]) -> bytes:
    return dumps(
        {
            "event_id": event_id,
            "at": _time(at),
            "markets_by_bookmaker": [
                {
                    "bookmaker_slug": b.bookmaker_slug,
                    "bookmaker_name": b.bookmaker_name,
                    "snapshot_time": _time(b.snapshot_time),
                    "markets": [detail_market(m) for m in b.markets],
                }
                for b in books
            ],
        }
    )


def _stored_market(market_id: str, line: float | None, row: StoredRow) -> dict[str, Any]:
    """detail_market of the row's MarketState (history_repository._EventAtRows.books) without building it."""
    available, outcomes = row["available"], decode_decimal(row["outcomes"])
    name = row["market_name"]  # None: the market has no current row, so no name or groups
    groups = row["market_groups"]
    return {
        "betpawa_market_id": market_id,
        "betpawa_market_name": market_id if name is None else name,
        "line": line,
        "outcomes": _outcomes_active(outcomes),
        "margin": margin(outcomes),
        "market_groups": None if name is None or groups is None else list(groups),
        "available": available,
        "unavailable_since": None if available else _time(row["captured_at"]),
    }


def event_at_rows(
    event_id: int,
    at: datetime,
    markets: Iterable[tuple[tuple[str, str, float | None], StoredRow]],
    names: Mapping[str, str],
) -> bytes:
    """event_at of an event whose markets have new-table rows only: `markets` are ((bookmaker_slug, market_id,
    line), the market's last row at or before `at`) in the answer's order. The same bytes as event_at over the
    BookmakerMarkets built from them (tests/unit/test_contract_json.py)."""
    books = []
    for slug, group in groupby(markets, key=lambda m: m[0][0]):
        entries = list(group)
        newest = max(row["captured_at"] for _, row in entries)
        shown = [_stored_market(market_id, line, row) for (_, market_id, line), row in entries]
        books.append(
            {
                "bookmaker_slug": slug,
                "bookmaker_name": names.get(slug, slug),
                "snapshot_time": _time(newest),
                "markets": shown,
            }
        )
    return dumps({"event_id": event_id, "at": _time(at), "markets_by_bookmaker": books})
