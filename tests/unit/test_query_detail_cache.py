"""The query service's memo of serialized markets per bookmaker (Book.version, rendering pieces): a
memoized answer equals one built afresh, and every change a read can show reaches it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import cast

import grpc

from oddstore import codec
from oddstore.convert import to_timestamp
from oddstore.v1 import query_pb2 as pb
from services.query import contract_json, events, grpc_api, rendering
from services.query.cache import Book, EventInfo, Link, OddsCache
from tests.polling import eventually
from tests.unit.test_query_events import LINKS, NOW, cache_of, info, market

T0 = NOW - timedelta(minutes=30)
NO_CONTEXT = cast(grpc.aio.ServicerContext, None)  # a servicer uses its context only to abort
ODDS = (("1", 2.1, True), ("X", 3.4, True), ("2", 3.5, True))


def fresh(info: EventInfo, books: Mapping[str, Book]) -> pb.EventDetail:
    """The answer built straight from the views, as GetEvent built it before the memo."""
    detail = events.event_detail(info, books)
    return pb.EventDetail(
        event=rendering.event_to_pb(detail.event),
        markets_by_bookmaker=[
            pb.BookmakerMarkets(
                bookmaker_slug=b.slug,
                bookmaker_name=b.name,
                snapshot_time=None if b.snapshot_time is None else to_timestamp(b.snapshot_time),
                markets=[rendering.detail_to_pb(m) for m in b.markets],
            )
            for b in detail.markets_by_bookmaker
        ],
    )


def row(
    slug: str,
    market_id: str,
    line: float | None = None,
    *,
    odds: tuple[tuple[str, float, bool], ...] = ODDS,
    updated: object = T0,
    gone: object = None,
    name: str | None = None,
    groups: list[str] | None = None,
) -> tuple[object, ...]:
    """A row of event 1 as OddsCache.load_rows takes it."""
    encoded = codec.encode([(n, codec.to_milli(o), a) for n, o, a in odds])
    return (1, slug, market_id, line, name or f"Market {market_id}", groups, encoded, updated, updated, gone)


def loaded() -> OddsCache:
    cache = cache_of(info(1, 1))
    cache.load_rows(
        [row("betpawa", "3743", groups=["popular"]), row("betpawa", "5000", 2.5), row("betpawa", "5000", 3.5),
         row("betpawa", "9000", name="Anytime Goalscorer"), row("betpawa", "1234", groups=["corners", "popular"]),
         row("sportybet", "3743"), row("sportybet", "4693", odds=(("Yes", 1.8, True), ("No", 1.9, False)))]
    )  # fmt: skip
    cache.confirm(1, "betpawa", T0 + timedelta(minutes=1))
    return cache


def answer(cache: OddsCache, event_id: int = 1) -> pb.EventDetail:
    return rendering.event_detail_to_pb(cache.events[event_id], cache.books_of(event_id))


def assert_current(cache: OddsCache, event_id: int = 1) -> pb.EventDetail:
    """The memoized answer equals a fresh one, twice over (the second read is served from the memo),
    and the list's summary equals its fresh counterpart too."""
    got = answer(cache, event_id)
    expected = fresh(cache.events[event_id], cache.books_of(event_id))
    assert got == expected
    assert answer(cache, event_id) == expected
    books = cache.books_of(event_id)
    summary = rendering.summary_to_pb(cache.events[event_id], books)
    assert summary == rendering.event_to_pb(events.summarize(cache.events[event_id], books)) == expected.event
    return got


def test_a_memoized_answer_equals_a_freshly_built_one_and_is_kept_while_nothing_changes() -> None:
    cache = loaded()
    first = assert_current(cache)
    betpawa = cache.books_of(1)["betpawa"]
    held = dict(betpawa.memo)
    assert set(held) == {"detail", "inline"}
    assert answer(cache) == first
    assert all(betpawa.memo[k] is held[k] for k in held)  # served from the memo, not rebuilt
    # The same state loaded into a new cache (no memo) answers the same.
    assert answer(loaded()) == first
    # A bookmaker without data still has its empty entry; the scorer market stays hidden.
    assert [b.bookmaker_slug for b in first.markets_by_bookmaker] == ["betpawa", "sportybet", "bet9ja"]
    assert len(first.markets_by_bookmaker[0].markets) == 4 and not first.markets_by_bookmaker[2].markets


def test_new_odds_through_load_rows_reach_the_next_answer() -> None:
    cache = loaded()
    before = assert_current(cache)
    cache.load_rows([row("betpawa", "3743", odds=(("1", 1.5, True), ("X", 4.0, True), ("2", 6.0, True)),
                         updated=T0 + timedelta(minutes=5))])  # fmt: skip
    after = assert_current(cache)
    assert after != before
    one_x_two = next(m for m in after.markets_by_bookmaker[0].markets if m.market_id == "3743")
    assert [o.odds for o in one_x_two.outcomes] == [1.5, 4.0, 6.0]
    assert [o.odds for o in after.event.bookmakers[0].inline_odds[0].outcomes] == [1.5, 4.0, 6.0]
    # A new market, and a new line of a known one, appear.
    cache.load_rows([row("betpawa", "7777", updated=T0 + timedelta(minutes=6)),
                     row("sportybet", "5000", 2.5, updated=T0 + timedelta(minutes=6))])  # fmt: skip
    grown = assert_current(cache)
    assert len(grown.markets_by_bookmaker[0].markets) == 5
    assert [(m.market_id, m.line) for m in grown.event.bookmakers[1].inline_odds] == [
        ("3743", 0.0), ("5000", 2.5), ("4693", 0.0),
    ]  # fmt: skip


def test_an_older_state_changes_nothing_and_keeps_the_memo() -> None:
    cache = loaded()
    before = assert_current(cache)
    version = cache.books_of(1)["betpawa"].version
    cache.load_rows([row("betpawa", "3743", odds=(("1", 9.0, True),), updated=T0 - timedelta(minutes=5))])
    assert cache.books_of(1)["betpawa"].version == version
    assert assert_current(cache) == before


def test_a_market_becoming_unavailable_and_returning_reaches_the_next_answer() -> None:
    cache = loaded()
    assert_current(cache)
    gone = T0 + timedelta(minutes=3)
    cache.load_rows([row("sportybet", "4693", odds=(("Yes", 1.8, True), ("No", 1.9, False)), updated=gone, gone=gone)])
    after = assert_current(cache)
    detail = next(m for m in after.markets_by_bookmaker[1].markets if m.market_id == "4693")
    assert not detail.available and detail.unavailable_since == to_timestamp(gone)
    inline = next(m for m in after.event.bookmakers[1].inline_odds if m.market_id == "4693")
    assert not inline.available and inline.unavailable_since == to_timestamp(gone)
    cache.load_rows([row("sportybet", "4693", updated=gone + timedelta(minutes=1))])
    back = assert_current(cache)
    assert next(m for m in back.markets_by_bookmaker[1].markets if m.market_id == "4693").available


def test_a_confirmation_moves_the_snapshot_time_of_both_the_detail_and_the_summary() -> None:
    cache = loaded()
    assert_current(cache)
    later = T0 + timedelta(minutes=10)
    cache.confirm(1, "betpawa", later)
    cache.confirm(1, "sportybet", later)
    after = assert_current(cache)
    assert after.markets_by_bookmaker[0].snapshot_time == to_timestamp(later)
    assert after.markets_by_bookmaker[1].snapshot_time == to_timestamp(later)
    assert after.event.bookmakers[1].snapshot_time == to_timestamp(later)


def test_event_metadata_and_bookmaker_names_come_from_the_current_event() -> None:
    cache = loaded()
    assert_current(cache)
    renamed = (Link("betpawa", "Betpawa NG", "1b"), LINKS[1])  # bet9ja unlinked, betpawa renamed
    cache.put_event(info(1, 2, name="Renamed", links=renamed))
    after = assert_current(cache)
    assert after.event.name == "Renamed"
    assert [(b.bookmaker_slug, b.bookmaker_name) for b in after.markets_by_bookmaker] == [
        ("betpawa", "Betpawa NG"), ("sportybet", "SportyBet"),
    ]  # fmt: skip
    assert after.event.bookmakers[0].external_event_id == "1b"


def test_an_event_swept_and_seen_again_is_built_from_its_new_markets() -> None:
    cache = loaded()
    assert_current(cache)
    assert len(cache.sweep(NOW + timedelta(hours=1))) == 1
    cache.put_event(info(1, 2))
    cache.load_rows([row("betpawa", "3743", odds=(("1", 1.1, True),), updated=T0 - timedelta(hours=1))])
    after = assert_current(cache)
    assert [m.market_id for m in after.markets_by_bookmaker[0].markets] == ["3743"]
    assert after.markets_by_bookmaker[1].markets == []


async def test_the_list_page_uses_the_same_memo_and_sees_new_odds() -> None:
    cache = loaded()
    cache.put_event(info(2, 3))
    cache.put_market(2, "bet9ja", ("3743", None), market(updated=T0))
    query = pb.ListEventsRequest()
    servicer = grpc_api.QueryServicer(cache, None, None, cutoff=lambda: NOW - timedelta(hours=3), clock=lambda: NOW)  # type: ignore[arg-type]

    first = await servicer.ListEvents(query, NO_CONTEXT)
    expected = [rendering.event_to_pb(events.summarize(cache.events[i], cache.books_of(i))) for i in (1, 2)]
    assert list(first.events) == expected and first.total == 2
    cache.put_market(2, "bet9ja", ("3743", None), market(odds=(("1", 9.5, True),), updated=T0 + timedelta(minutes=1)))
    second = await servicer.ListEvents(query, NO_CONTEXT)
    assert [o.odds for o in second.events[1].bookmakers[2].inline_odds[0].outcomes] == [9.5]
    assert second.events[1] == rendering.event_to_pb(events.summarize(cache.events[2], cache.books_of(2)))
    # GetEvent through the servicer answers from the same cache.
    assert await servicer.GetEvent(pb.GetEventRequest(event_id=2), NO_CONTEXT) == fresh(
        cache.events[2], cache.books_of(2)
    )


async def test_the_background_renderer_rebuilds_changed_books_before_they_are_read() -> None:
    import asyncio

    cache = loaded()
    task = asyncio.create_task(rendering.keep_rendered(cache, interval=0.01))
    try:
        await eventually(lambda: not any(contract_json.stale(b) for b in cache.books_of(1).values()), "all rendered")
        cache.load_rows([row("betpawa", "3743", odds=(("1", 1.5, True), ("X", 4.0, True), ("2", 6.0, True)),
                             updated=T0 + timedelta(minutes=5))])  # fmt: skip
        assert contract_json.stale(cache.books_of(1)["betpawa"])
        # Nothing reads the book meanwhile: only the renderer can make it fresh again.
        await eventually(lambda: not contract_json.stale(cache.books_of(1)["betpawa"]), "the changed book re-rendered")
        assert_current(cache)
    finally:
        task.cancel()


def test_markets_loaded_share_one_copy_of_each_repeated_key_name_and_instant() -> None:
    cache = cache_of(info(1, 1), info(2, 1))
    # Each row brings its own objects, equal but not the same, as asyncpg's rows do.
    rows = [
        (event_id, "betpawa", "".join(["50", "00"]), float("2.5"), "".join(["Over/Under", " - Full Time"]), None,
         b"", T0 + timedelta(0), T0 + timedelta(0), None)
        for event_id in (1, 2)
    ]  # fmt: skip
    assert rows[0][2] is not rows[1][2] and rows[0][7] is not rows[1][7]
    assert cache.load_rows(rows) == 2
    (k1, m1), (k2, m2) = (next(iter(cache.books_of(e)["betpawa"].markets.items())) for e in (1, 2))
    assert k1 == ("5000", 2.5) and k1 is k2
    assert m1 == m2 and m1.market_name is m2.market_name
    assert m1.last_updated_at is m2.last_updated_at is m1.last_confirmed_at
