"""Events list, detail, alerts, tournaments and countries (UI contract §1–§5) from current state; pure."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from services.query import odds
from services.query.cache import Book, CurrentMarket, EventInfo, MarketKey

# §1.2: the inline markets, and the one line kept for those that have several.
INLINE_MARKETS = ("3743", "5000", "3795", "4693")
INLINE_LINES: dict[str, float] = {"5000": 2.5}
HIDDEN_MARKET_WORDS = ("scorer",)  # "goalscorer" contains it too (§2)
PRIMARY_COMPETITOR = "sportybet"  # §1 competitor mode: its record wins when both list the event
COMPETITOR_NAMES = {"sportybet": "SportyBet", "bet9ja": "Bet9ja"}
MAX_PAGE_SIZE = 100
MAX_MIN_BOOKMAKERS = 3


class Mode(Enum):
    BETPAWA = "betpawa"
    COMPETITOR = "competitor"
    ALERTS = "alerts"


class InvalidQuery(ValueError):
    """A filter out of its documented range; the message names the field."""


@dataclass(frozen=True, slots=True)
class EventQuery:
    mode: Mode = Mode.BETPAWA
    tournament_ids: frozenset[int] = frozenset()
    sport_id: int | None = None
    kickoff_from: datetime | None = None
    kickoff_to: datetime | None = None
    include_started: bool = False
    min_bookmakers: int = 1
    search: str = ""
    countries: frozenset[str] = frozenset()  # compared case-insensitively
    page: int = 1
    page_size: int = 50

    def validate(self) -> None:
        if not 1 <= self.page_size <= MAX_PAGE_SIZE:
            raise InvalidQuery(f"page_size: {self.page_size} is outside 1..{MAX_PAGE_SIZE}")
        if not 1 <= self.min_bookmakers <= MAX_MIN_BOOKMAKERS:
            raise InvalidQuery(f"min_bookmakers: {self.min_bookmakers} is outside 1..{MAX_MIN_BOOKMAKERS}")
        if self.page < 1:
            raise InvalidQuery(f"page: {self.page} is below 1")

    def lower_bound(self, now: datetime) -> datetime | None:
        """The earliest kickoff the query can return (inclusive), whatever the mode."""
        if self.include_started and self.mode is not Mode.ALERTS:
            return self.kickoff_from
        return now if self.kickoff_from is None else max(now, self.kickoff_from)


@dataclass(frozen=True, slots=True)
class MarketView:
    market_id: str
    market_name: str
    line: float | None
    outcomes: Sequence[odds.Odds]
    margin: float | None
    market_groups: tuple[str, ...] | None
    available: bool
    unavailable_since: datetime | None


@dataclass(frozen=True, slots=True)
class BookmakerView:
    slug: str
    name: str
    external_event_id: str
    has_odds: bool
    inline: list[MarketView]
    snapshot_time: datetime | None


@dataclass(frozen=True, slots=True)
class EventView:
    id: int  # negative for competitor-only events
    sportradar_id: str
    name: str
    home_team: str
    away_team: str
    kickoff: datetime
    created_at: datetime | None
    tournament_id: int
    tournament_name: str
    tournament_country: str | None
    sport_name: str
    bookmakers: list[BookmakerView]


@dataclass(frozen=True, slots=True)
class BookmakerMarkets:
    slug: str
    name: str
    snapshot_time: datetime | None
    markets: list[MarketView]


@dataclass(frozen=True, slots=True)
class EventDetail:
    event: EventView
    markets_by_bookmaker: list[BookmakerMarkets]


@dataclass(frozen=True, slots=True)
class Page:
    events: list[EventView]
    total: int


@dataclass(frozen=True, slots=True)
class Tournament:
    id: int
    name: str
    country: str | None


@dataclass(frozen=True, slots=True)
class CompetitorEvent:
    """A legacy competitor_events row with no BetPawa match (kickoff as aware UTC)."""

    id: int
    source: str
    sportradar_id: str
    name: str
    home_team: str
    away_team: str
    kickoff: datetime
    created_at: datetime | None
    tournament_id: int
    tournament_name: str
    tournament_country: str | None
    sport_id: int
    sport_name: str
    external_event_id: str


@dataclass(frozen=True, slots=True)
class CompetitorMarket:
    """A competitor_market_odds row (unavailable_at as aware UTC)."""

    market_name: str
    outcomes: list[odds.Odds]
    unavailable_at: datetime | None


@dataclass(frozen=True, slots=True)
class CompetitorBook:
    """The latest competitor_odds_snapshots row of one competitor event: its captured_at (aware UTC),
    whether it holds any market row at all, and its rows of the inline market ids."""

    snapshot_time: datetime
    has_odds: bool
    markets: Mapping[MarketKey, CompetitorMarket]


BooksOf = Callable[[int], Mapping[str, Book]]


def market_view(key: MarketKey, m: CurrentMarket) -> MarketView:
    outcomes = odds.decode(m.outcomes)
    return MarketView(
        market_id=key[0],
        market_name=m.market_name,
        line=key[1],
        outcomes=outcomes,
        margin=odds.margin(outcomes),
        market_groups=m.market_groups,
        available=m.unavailable_at is None,
        unavailable_since=m.unavailable_at,
    )


def inline_keys(keys: Collection[MarketKey]) -> list[MarketKey]:
    """§1.2: the keys among `keys` (a market mapping's keys) shown inline, in INLINE_MARKETS order."""
    chosen: list[MarketKey] = []
    for market_id in INLINE_MARKETS:
        wanted_line = INLINE_LINES.get(market_id)
        if wanted_line is not None:
            if (market_id, wanted_line) in keys:
                chosen.append((market_id, wanted_line))
            continue
        # Without a required line every line of the market is kept; in practice these have none.
        chosen.extend(key for key in keys if key[0] == market_id)
    return chosen


def inline_markets(book: Book) -> list[MarketView]:
    return [market_view(key, book.markets[key]) for key in inline_keys(book.markets)]


def detail_markets(book: Book) -> list[MarketView]:
    return [
        market_view(key, m)
        for key, m in book.markets.items()
        if not any(word in m.market_name.lower() for word in HIDDEN_MARKET_WORDS)
    ]


def summarize(info: EventInfo, books: Mapping[str, Book], *, inline: bool = True) -> EventView:
    """The list entry of an event: one bookmaker entry per link, with its inline odds (left empty
    with inline=False, for a caller that fills them from its own memo of them)."""
    bookmakers = []
    for link in info.links:
        book = books.get(link.slug)
        bookmakers.append(
            BookmakerView(
                slug=link.slug,
                name=link.name,
                external_event_id=link.external_event_id,
                has_odds=book is not None and book.has_odds,
                inline=inline_markets(book) if book is not None and inline else [],
                snapshot_time=book.snapshot_time if book is not None else None,
            )
        )
    return _view(info, bookmakers)


def _view(info: EventInfo, bookmakers: list[BookmakerView]) -> EventView:
    return EventView(
        id=info.id,
        sportradar_id=info.sportradar_id,
        name=info.name,
        home_team=info.home_team,
        away_team=info.away_team,
        kickoff=info.kickoff,
        created_at=info.created_at,
        tournament_id=info.tournament_id,
        tournament_name=info.tournament_name,
        tournament_country=info.tournament_country,
        sport_name=info.sport_name,
        bookmakers=bookmakers,
    )


def event_detail(info: EventInfo, books: Mapping[str, Book], *, markets: bool = True) -> EventDetail:
    """§2: every link has an entry, empty when that bookmaker has no data; tournament_country is
    filled (the old backend's null was a defect). With markets=False every market list (and the
    summary's inline odds) is left empty, for a caller that fills them from its own memo of them."""
    by_bookmaker = []
    for link in info.links:
        book = books.get(link.slug)
        by_bookmaker.append(
            BookmakerMarkets(
                slug=link.slug,
                name=link.name,
                snapshot_time=book.snapshot_time if book is not None else None,
                markets=detail_markets(book) if book is not None and markets else [],
            )
        )
    return EventDetail(summarize(info, books, inline=markets), by_bookmaker)


def is_alert(info: EventInfo, books: Mapping[str, Book], now: datetime) -> bool:
    """§3: upcoming, with at least one market currently unavailable at any bookmaker."""
    return info.kickoff > now and any(b.unavailable > 0 for b in books.values())


def count_alerts(events: Iterable[EventInfo], books_of: BooksOf, now: datetime) -> int:
    return sum(1 for e in events if is_alert(e, books_of(e.id), now))


def _matches(e: EventInfo, q: EventQuery, now: datetime, books_of: BooksOf) -> bool:
    if q.tournament_ids and e.tournament_id not in q.tournament_ids:
        return False
    if q.sport_id is not None and e.sport_id != q.sport_id:
        return False
    if q.kickoff_from is not None and e.kickoff < q.kickoff_from:
        return False
    if q.kickoff_to is not None and e.kickoff > q.kickoff_to:
        return False
    if not q.include_started and e.kickoff <= now:
        return False
    if len(e.links) < q.min_bookmakers:
        return False
    if q.search and not _contains(q.search, e.home_team, e.away_team):
        return False
    if q.countries and (e.tournament_country or "").lower() not in _lowered(q.countries):
        return False
    return q.mode is not Mode.ALERTS or is_alert(e, books_of(e.id), now)


def _contains(needle: str, *haystacks: str) -> bool:
    n = needle.lower()
    return any(n in h.lower() for h in haystacks)


def _lowered(values: frozenset[str]) -> frozenset[str]:
    return frozenset(v.lower() for v in values)


def select(events: Iterable[EventInfo], q: EventQuery, now: datetime, books_of: BooksOf) -> tuple[list[EventInfo], int]:
    """§1 betpawa and alerts modes: the page of matching events sorted by kickoff (id breaks ties,
    so pages are stable), and the total before pagination. Needs only metadata, except alerts."""
    matched = sorted((e for e in events if _matches(e, q, now, books_of)), key=lambda e: (e.kickoff, e.id))
    start = (q.page - 1) * q.page_size
    return matched[start : start + q.page_size], len(matched)


def list_events(events: Iterable[EventInfo], q: EventQuery, now: datetime, books_of: BooksOf) -> Page:
    page, total = select(events, q, now, books_of)
    return Page([summarize(e, books_of(e.id)) for e in page], total)


def competitor_page(
    rows: Sequence[CompetitorEvent],
    q: EventQuery,
    now: datetime,
    tournament_keys: Sequence[tuple[str, str | None]] | None,
    books: Mapping[int, CompetitorBook] | None = None,
) -> Page:
    """§1 competitor mode in one step, for callers that already hold the odds (`books`, by
    competitor event id); the service selects first and loads odds for the page only."""
    groups, total = select_competitor(rows, q, now, tournament_keys)
    return Page([competitor_view(g, books or {}) for g in groups], total)


def select_competitor(
    rows: Sequence[CompetitorEvent],
    q: EventQuery,
    now: datetime,
    tournament_keys: Sequence[tuple[str, str | None]] | None,
) -> tuple[list[list[CompetitorEvent]], int]:
    """§1 competitor mode over legacy competitor-only events: the page of records grouped by
    Sportradar id (primary first), sorted by kickoff, and the number of groups before pagination.
    `tournament_keys` are the (name, country) pairs of the requested BetPawa tournament ids (None
    when none were requested); min_bookmakers is ignored, as the contract says."""
    wanted = None
    if tournament_keys is not None:
        wanted = {(n.lower(), c.lower() if c is not None else None) for n, c in tournament_keys}
        if not wanted:
            return [], 0
    countries = _lowered(q.countries)
    by_sportradar: dict[str, list[CompetitorEvent]] = {}
    for r in rows:
        if wanted is not None:
            country = r.tournament_country.lower() if r.tournament_country is not None else None
            if (r.tournament_name.lower(), country) not in wanted:
                continue
        if q.sport_id is not None and r.sport_id != q.sport_id:
            continue
        if q.kickoff_from is not None and r.kickoff < q.kickoff_from:
            continue
        if q.kickoff_to is not None and r.kickoff > q.kickoff_to:
            continue
        if not q.include_started and r.kickoff <= now:
            continue
        if q.search and not _contains(q.search, r.home_team, r.away_team):
            continue
        if countries and (r.tournament_country or "").lower() not in countries:
            continue
        by_sportradar.setdefault(r.sportradar_id, []).append(r)
    groups = [sorted(g, key=lambda r: (r.source != PRIMARY_COMPETITOR, r.id)) for g in by_sportradar.values()]
    groups.sort(key=lambda g: (g[0].kickoff, -g[0].id))  # the order of the views' (kickoff, id)
    start = (q.page - 1) * q.page_size
    return groups[start : start + q.page_size], len(groups)


def competitor_ids(groups: Iterable[Sequence[CompetitorEvent]]) -> list[int]:
    """Every competitor event id of a page: the records whose odds it shows."""
    return [r.id for g in groups for r in g]


def competitor_inline(book: CompetitorBook) -> list[MarketView]:
    """§1.2 over a competitor's latest legacy snapshot: the same markets and shape as betpawa mode."""
    views = []
    for key in inline_keys(book.markets):
        m = book.markets[key]
        views.append(
            MarketView(
                market_id=key[0],
                market_name=m.market_name,
                line=key[1],
                outcomes=m.outcomes,
                margin=odds.margin(m.outcomes),
                market_groups=None,
                available=m.unavailable_at is None,
                unavailable_since=m.unavailable_at,
            )
        )
    return views


def competitor_view(group: Sequence[CompetitorEvent], books: Mapping[int, CompetitorBook]) -> EventView:
    """One competitor-only event: `group` is its records, primary first; `books` the latest
    snapshot of each record that has one, by competitor event id."""
    primary = group[0]
    bookmakers = []
    for r in group:
        book = books.get(r.id)
        bookmakers.append(
            BookmakerView(
                slug=r.source,
                name=COMPETITOR_NAMES.get(r.source, r.source),
                external_event_id=r.external_event_id,
                has_odds=book is not None and book.has_odds,
                inline=competitor_inline(book) if book is not None else [],
                snapshot_time=book.snapshot_time if book is not None else None,
            )
        )
    return EventView(
        id=-primary.id,
        sportradar_id=primary.sportradar_id,
        name=primary.name,
        home_team=primary.home_team,
        away_team=primary.away_team,
        kickoff=primary.kickoff,
        created_at=primary.created_at,
        tournament_id=primary.tournament_id,
        tournament_name=primary.tournament_name,
        tournament_country=primary.tournament_country,
        sport_name=primary.sport_name,
        bookmakers=bookmakers,
    )


def tournaments(events: Iterable[EventInfo], now: datetime) -> list[Tournament]:
    """§4 betpawa mode: tournaments with at least one upcoming event, by name."""
    found = {e.tournament_id: Tournament(e.tournament_id, e.tournament_name, e.tournament_country) for e in events
             if e.kickoff > now}  # fmt: skip
    return sorted(found.values(), key=lambda t: (t.name, t.id))


def countries(events: Iterable[EventInfo], now: datetime) -> list[str]:
    """§5 betpawa mode: distinct non-null countries of upcoming events, alphabetically."""
    return sorted({e.tournament_country for e in events if e.kickoff > now and e.tournament_country is not None})
