"""Events list, detail, alerts, tournaments and countries over a hand-built cache (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from oddstore import codec
from services.query import events, repository
from services.query.cache import CurrentMarket, EventInfo, Link, OddsCache
from services.query.events import CompetitorEvent, EventQuery, InvalidQuery, Mode

NOW = datetime(2026, 2, 24, 12, 0, tzinfo=UTC)
LINKS = (
    Link("betpawa", "BetPawa", "1"),
    Link("sportybet", "SportyBet", "sr:1"),
    Link("bet9ja", "Bet9ja", "b1"),
)


def info(event_id: int, hours: float, **overrides: object) -> EventInfo:
    fields: dict[str, object] = {
        "id": event_id,
        "sportradar_id": f"sr:match:{event_id}",
        "name": f"Home{event_id} - Away{event_id}",
        "home_team": f"Home{event_id}",
        "away_team": f"Away{event_id}",
        "kickoff": NOW + timedelta(hours=hours),
        "created_at": NOW - timedelta(days=1),
        "tournament_id": 17,
        "tournament_name": "Premier League",
        "tournament_country": "England",
        "sport_id": 1,
        "sport_name": "Football",
        "links": LINKS,
    }
    fields.update(overrides)
    return EventInfo(**fields)  # type: ignore[arg-type]


def market(
    name: str = "1X2 - Full Time",
    odds: tuple[tuple[str, float, bool], ...] = (("1", 2.1, True), ("X", 3.4, True), ("2", 3.5, True)),
    updated: datetime = NOW - timedelta(minutes=10),
    unavailable_at: datetime | None = None,
    groups: tuple[str, ...] | None = ("popular",),
) -> CurrentMarket:
    encoded = codec.encode([(n, codec.to_milli(o), a) for n, o, a in odds])
    return CurrentMarket(name, groups, encoded, updated, updated, unavailable_at)


def cache_of(*infos: EventInfo) -> OddsCache:
    cache = OddsCache()
    for i in infos:
        cache.put_event(i)
    return cache


def page(cache: OddsCache, **query: object) -> events.Page:
    return events.list_events(cache.events.values(), EventQuery(**query), NOW, cache.books_of)  # type: ignore[arg-type]


def ids(p: events.Page) -> list[int]:
    return [e.id for e in p.events]


def test_list_is_sorted_by_kickoff_and_excludes_started_events_by_default() -> None:
    cache = cache_of(info(1, 5), info(2, 1), info(3, -1), info(4, 3))
    assert ids(page(cache)) == [2, 4, 1]
    assert ids(page(cache, include_started=True)) == [3, 2, 4, 1]


def test_an_event_kicking_off_exactly_now_counts_as_started() -> None:
    cache = cache_of(info(1, 0), info(2, 0.5))
    assert ids(page(cache)) == [2]


def test_pagination_slices_after_sorting_and_total_counts_everything_matched() -> None:
    cache = cache_of(*(info(i, i) for i in range(1, 8)))
    p = page(cache, page=2, page_size=3)
    assert ids(p) == [4, 5, 6]
    assert p.total == 7
    assert ids(page(cache, page=3, page_size=3)) == [7]
    assert ids(page(cache, page=4, page_size=3)) == []


def test_kickoff_bounds_are_inclusive() -> None:
    cache = cache_of(info(1, 1), info(2, 2), info(3, 3))
    p = page(cache, kickoff_from=NOW + timedelta(hours=1), kickoff_to=NOW + timedelta(hours=2))
    assert ids(p) == [1, 2]


def test_filters_by_tournament_sport_search_and_country() -> None:
    cache = cache_of(
        info(1, 1, tournament_id=5, home_team="Arsenal"),
        info(2, 2, sport_id=2, away_team="Chelsea FC"),
        info(3, 3, tournament_country="Spain"),
        info(4, 4, tournament_country=None),
    )
    assert ids(page(cache, tournament_ids=frozenset({5}))) == [1]
    assert ids(page(cache, sport_id=2)) == [2]
    assert ids(page(cache, search="ARSEN")) == [1]
    assert ids(page(cache, search="chelsea")) == [2]
    assert ids(page(cache, search="Premier")) == []  # only team names are searched
    assert ids(page(cache, countries=frozenset({"spain", "ENGLAND"}))) == [1, 2, 3]
    assert ids(page(cache, countries=frozenset({"SPAIN"}))) == [3]
    assert ids(page(cache, countries=frozenset({"spa"}))) == []  # exact, not substring


def test_min_bookmakers_counts_links_whether_or_not_they_have_odds() -> None:
    cache = cache_of(info(1, 1, links=LINKS[:1]), info(2, 2, links=LINKS[:2]), info(3, 3))
    assert ids(page(cache, min_bookmakers=2)) == [2, 3]
    assert ids(page(cache, min_bookmakers=3)) == [3]


@pytest.mark.parametrize(
    ("query", "field"),
    [({"page_size": 0}, "page_size"), ({"page_size": 101}, "page_size"), ({"min_bookmakers": 4}, "min_bookmakers"),
     ({"min_bookmakers": 0}, "min_bookmakers"), ({"page": 0}, "page")],
)  # fmt: skip
def test_out_of_range_filters_are_rejected_naming_the_field(query: dict[str, int], field: str) -> None:
    with pytest.raises(InvalidQuery, match=field):
        EventQuery(**query).validate()  # type: ignore[arg-type]


def test_inline_odds_keep_only_the_four_markets_and_the_2_5_line_of_over_under() -> None:
    cache = cache_of(info(1, 1))
    for key in [("3743", None), ("5000", 1.5), ("5000", 2.5), ("3795", None), ("4693", None), ("1234", None)]:
        cache.put_market(1, "betpawa", key, market(name=f"M{key[0]}"))
    bookmakers = page(cache).events[0].bookmakers
    betpawa = bookmakers[0]
    assert sorted((m.market_id, m.line) for m in betpawa.inline) == [
        ("3743", None), ("3795", None), ("4693", None), ("5000", 2.5),
    ]  # fmt: skip
    one_x_two = next(m for m in betpawa.inline if m.market_id == "3743")
    assert [(n, o) for n, o, _ in one_x_two.outcomes] == [("1", 2.1), ("X", 3.4), ("2", 3.5)]
    assert one_x_two.margin == 5.6
    assert betpawa.has_odds and betpawa.snapshot_time == NOW - timedelta(minutes=10)
    # Every link has an entry, in link order, even without any data.
    assert [(b.slug, b.has_odds, b.inline, b.snapshot_time) for b in bookmakers[1:]] == [
        ("sportybet", False, [], None), ("bet9ja", False, [], None),
    ]  # fmt: skip


def test_an_unavailable_market_keeps_its_odds_and_says_since_when() -> None:
    cache = cache_of(info(1, 1))
    gone = NOW - timedelta(minutes=5)
    cache.put_market(1, "betpawa", ("3743", None), market(updated=gone, unavailable_at=gone))
    m = page(cache).events[0].bookmakers[0].inline[0]
    assert (m.available, m.unavailable_since, m.margin) == (False, gone, 5.6)


def test_snapshot_time_is_the_latest_confirmation_falling_back_to_the_latest_change() -> None:
    cache = cache_of(info(1, 1))
    changed = NOW - timedelta(minutes=30)
    cache.put_market(1, "betpawa", ("3743", None), market(updated=changed))
    assert page(cache).events[0].bookmakers[0].snapshot_time == changed
    cache.confirm(1, "betpawa", NOW - timedelta(minutes=1))
    assert page(cache).events[0].bookmakers[0].snapshot_time == NOW - timedelta(minutes=1)


def test_the_cache_never_applies_an_older_state_over_a_newer_one() -> None:
    cache = cache_of(info(1, 1))
    newer = market(odds=(("1", 1.5, True),), updated=NOW - timedelta(minutes=1))
    older = market(odds=(("1", 9.0, True),), updated=NOW - timedelta(minutes=2))
    assert cache.put_market(1, "betpawa", ("3743", None), newer)
    assert not cache.put_market(1, "betpawa", ("3743", None), older)
    assert cache.books_of(1)["betpawa"].markets[("3743", None)] is newer
    assert cache.market_count == 1


def test_detail_lists_every_market_except_scorer_markets_with_an_entry_per_link() -> None:
    cache = cache_of(info(1, 1, tournament_country="England"))
    cache.put_market(1, "betpawa", ("3743", None), market())
    cache.put_market(1, "betpawa", ("9000", None), market(name="Anytime Goalscorer"))
    cache.put_market(1, "betpawa", ("9001", None), market(name="First SCORER"))
    cache.put_market(1, "betpawa", ("5000", 3.5), market(name="Over/Under", groups=None))
    detail = events.event_detail(cache.events[1], cache.books_of(1))
    assert detail.event.tournament_country == "England"
    assert [b.slug for b in detail.markets_by_bookmaker] == ["betpawa", "sportybet", "bet9ja"]
    betpawa = detail.markets_by_bookmaker[0]
    assert sorted((m.market_id, m.line, m.market_groups) for m in betpawa.markets) == [
        ("3743", None, ("popular",)), ("5000", 3.5, None),
    ]  # fmt: skip
    assert detail.markets_by_bookmaker[1].markets == [] and detail.markets_by_bookmaker[1].snapshot_time is None


def test_alerts_are_upcoming_events_with_an_unavailable_market_at_any_bookmaker() -> None:
    cache = cache_of(info(1, 1), info(2, 2), info(3, -1), info(4, 3))
    gone = NOW - timedelta(minutes=5)
    cache.put_market(1, "sportybet", ("3743", None), market(updated=gone, unavailable_at=gone))
    cache.put_market(2, "betpawa", ("3743", None), market())
    cache.put_market(3, "betpawa", ("3743", None), market(updated=gone, unavailable_at=gone))  # started
    cache.put_market(4, "betpawa", ("3743", None), market(updated=gone, unavailable_at=gone))
    assert events.count_alerts(cache.events.values(), cache.books_of, NOW) == 2
    # The list's alerts mode and the count agree, even when started events are asked for.
    assert ids(page(cache, mode=Mode.ALERTS, include_started=True)) == [1, 4]
    # A market that came back clears the alert.
    back = market(updated=NOW - timedelta(minutes=1))
    cache.put_market(4, "betpawa", ("3743", None), back)
    assert events.count_alerts(cache.events.values(), cache.books_of, NOW) == 1


def test_tournaments_and_countries_come_from_upcoming_events_sorted() -> None:
    cache = cache_of(
        info(1, 1, tournament_id=2, tournament_name="LaLiga", tournament_country="Spain"),
        info(2, 2),
        info(3, 3, tournament_id=9, tournament_name="Cup", tournament_country=None),
        info(4, -1, tournament_id=8, tournament_name="Old", tournament_country="Italy"),
    )
    assert [(t.id, t.name) for t in events.tournaments(cache.events.values(), NOW)] == [
        (9, "Cup"), (2, "LaLiga"), (17, "Premier League"),
    ]  # fmt: skip
    assert events.countries(cache.events.values(), NOW) == ["England", "Spain"]


def competitor(cid: int, source: str, sr: str, hours: float, **overrides: object) -> CompetitorEvent:
    fields: dict[str, object] = {
        "id": cid, "source": source, "sportradar_id": sr, "name": "A - B", "home_team": "A", "away_team": "B",
        "kickoff": NOW + timedelta(hours=hours), "created_at": None, "tournament_id": 50 + cid,
        "tournament_name": "Premier League", "tournament_country": "England", "sport_id": 1,
        "sport_name": "Football", "external_event_id": f"x{cid}",
    }  # fmt: skip
    fields.update(overrides)
    return CompetitorEvent(**fields)  # type: ignore[arg-type]


def test_competitor_mode_dedupes_by_sportradar_id_with_sportybet_primary_and_negative_ids() -> None:
    rows = [
        competitor(7, "bet9ja", "sr:1", 2),
        competitor(8, "sportybet", "sr:1", 2),
        competitor(9, "bet9ja", "sr:2", 1, tournament_country=None),
    ]
    p = events.competitor_page(rows, EventQuery(mode=Mode.COMPETITOR, min_bookmakers=3), NOW, None)
    assert p.total == 2
    assert [e.id for e in p.events] == [-9, -8]  # sorted by kickoff; min_bookmakers ignored
    assert [(b.slug, b.name) for b in p.events[1].bookmakers] == [("sportybet", "SportyBet"), ("bet9ja", "Bet9ja")]
    assert p.events[0].tournament_country is None


def test_competitor_mode_matches_tournaments_by_name_and_country_with_null_matching_null() -> None:
    rows = [
        competitor(1, "sportybet", "sr:1", 1, tournament_name="premier league", tournament_country="ENGLAND"),
        competitor(2, "sportybet", "sr:2", 2, tournament_country=None),
        competitor(3, "sportybet", "sr:3", 3, tournament_name="Other"),
    ]
    q = EventQuery(mode=Mode.COMPETITOR)
    assert [e.id for e in events.competitor_page(rows, q, NOW, [("Premier League", "England")]).events] == [-1]
    assert [e.id for e in events.competitor_page(rows, q, NOW, [("Premier League", None)]).events] == [-2]
    assert events.competitor_page(rows, q, NOW, []).total == 0  # requested ids that do not exist


def competitor_book(
    markets: dict[tuple[str, float | None], events.CompetitorMarket],
    captured: datetime = NOW - timedelta(minutes=3),
    has_odds: bool | None = None,
) -> events.CompetitorBook:
    return events.CompetitorBook(captured, bool(markets) if has_odds is None else has_odds, markets)


def competitor_market(
    odds: tuple[tuple[str, float, bool], ...] = (("1", 2.1, True), ("X", 3.4, True), ("2", 3.5, True)),
    unavailable_at: datetime | None = None,
    name: str = "1X2 - Full Time",
) -> events.CompetitorMarket:
    return events.CompetitorMarket(name, list(odds), unavailable_at)


def test_competitor_mode_fills_each_platform_from_its_latest_snapshot_like_betpawa_mode() -> None:
    rows = [competitor(7, "bet9ja", "sr:1", 2), competitor(8, "sportybet", "sr:1", 2)]
    gone = NOW - timedelta(minutes=20)
    sporty = competitor_book({
        ("3743", None): competitor_market(),
        ("5000", 1.5): competitor_market((("Over", 1.2, True), ("Under", 4.0, True)), name="Over/Under"),
        ("5000", 2.5): competitor_market((("Over", 1.9, True), ("Under", 1.95, False)), name="Over/Under"),
        ("3795", None): competitor_market((("Yes", 1.8, True), ("No", 1.9, True)), gone, "BTTS"),
        ("4693", None): competitor_market((), name="Double Chance"),  # kept without outcomes, margin null
    })  # fmt: skip
    empty = competitor_book({}, captured=NOW - timedelta(minutes=1))  # the latest scrape had no market at all
    p = events.competitor_page(rows, EventQuery(mode=Mode.COMPETITOR), NOW, None, {8: sporty, 7: empty})
    sportybet, bet9ja = p.events[0].bookmakers
    assert (sportybet.slug, sportybet.has_odds) == ("sportybet", True)
    assert sportybet.snapshot_time == NOW - timedelta(minutes=3)
    by_key = {(m.market_id, m.line): m for m in sportybet.inline}
    assert sorted(by_key, key=str) == sorted([("3743", None), ("3795", None), ("4693", None), ("5000", 2.5)], key=str)
    one_x_two = by_key[("3743", None)]
    assert (one_x_two.market_name, one_x_two.margin, one_x_two.available, one_x_two.unavailable_since) == (
        "1X2 - Full Time", 5.6, True, None,
    )  # fmt: skip
    assert one_x_two.outcomes == [("1", 2.1, True), ("X", 3.4, True), ("2", 3.5, True)]
    assert by_key[("5000", 2.5)].margin == 3.91  # the inactive outcome counts
    assert (by_key[("3795", None)].available, by_key[("3795", None)].unavailable_since) == (False, gone)
    assert (by_key[("4693", None)].outcomes, by_key[("4693", None)].margin) == ([], None)
    assert all(m.market_groups is None for m in sportybet.inline)
    assert (bet9ja.slug, bet9ja.has_odds, bet9ja.inline, bet9ja.snapshot_time) == (
        "bet9ja", False, [], NOW - timedelta(minutes=1),
    )  # fmt: skip


def test_a_competitor_record_without_any_snapshot_has_no_odds_and_no_snapshot_time() -> None:
    p = events.competitor_page([competitor(3, "bet9ja", "sr:3", 1)], EventQuery(mode=Mode.COMPETITOR), NOW, None)
    (bet9ja,) = p.events[0].bookmakers
    assert (bet9ja.has_odds, bet9ja.inline, bet9ja.snapshot_time) == (False, [], None)


def test_competitor_selection_pages_before_odds_are_needed() -> None:
    rows = [
        competitor(1, "sportybet", "sr:1", 1),
        competitor(2, "bet9ja", "sr:2", 2),
        competitor(3, "sportybet", "sr:2", 2),
        competitor(4, "bet9ja", "sr:3", 3),
    ]
    groups, total = events.select_competitor(rows, EventQuery(mode=Mode.COMPETITOR, page=2, page_size=1), NOW, None)
    assert total == 3
    assert [[r.id for r in g] for g in groups] == [[3, 2]]  # SportyBet first
    assert events.competitor_ids(groups) == [3, 2]  # only the page's records are looked up
    # Same page, same order as the one-step helper.
    one_step = events.competitor_page(rows, EventQuery(mode=Mode.COMPETITOR, page=2, page_size=1), NOW, None)
    assert [e.id for e in one_step.events] == [-3]


def test_legacy_outcomes_are_parsed_with_odds_rounded_like_the_history_reads() -> None:
    raw = '[{"name": "1", "odds": 2.1234, "is_active": true}, {"name": "X", "odds": null}, {"name": 2, "odds": 3.5,' \
          ' "is_active": false}]'  # fmt: skip
    assert repository.legacy_outcomes(raw) == [("1", 2.123, True), ("X", 0.0, True), ("2", 3.5, False)]
    assert repository.legacy_outcomes("null") == []
    assert repository.legacy_outcomes(None) == []
