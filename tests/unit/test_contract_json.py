"""The query service's prepared contract JSON (contract_json.py) is byte for byte what the gateway made of the
protobuf answer before (convert.py + model_dump_json), after any sequence of changes to the cache."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic_core import to_json

from oddstore import codec
from services.gateway import convert
from services.query import contract_json, events, grpc_api, history, history_repository, rendering
from services.query.cache import CurrentMarket, EventInfo, Link, OddsCache
from tests.unit.test_query_events import LINKS, NOW, info

T0 = NOW - timedelta(hours=2)

texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=6)
odds_values = st.integers(0, 2_000_000).map(codec.from_milli)
outcome_lists = st.lists(st.tuples(texts, odds_values, st.booleans()), max_size=4)
# Real lines and odd ones: serializers differ on exponents and on -0.0 if anywhere.
lines = st.none() | st.sampled_from([0.0, 2.5, -1.5, -0.0]) | st.floats(allow_nan=False, allow_infinity=False)
market_ids = st.sampled_from(["3743", "5000", "3795", "4693", "1234"]) | texts
# Near now mostly, and anywhere a Timestamp can hold (years 1 to 9999), microseconds included.
instants = st.integers(0, 10 * 86400 * 10**6).map(lambda us: T0 + timedelta(microseconds=us)) | st.datetimes(
    timezones=st.just(UTC)
)
groups = st.none() | st.lists(texts, max_size=3).map(tuple)


def market_change(draw: Any) -> tuple[str, tuple[str, float | None], CurrentMarket]:
    slug = draw(st.sampled_from(["betpawa", "sportybet", "bet9ja"]))
    market_id = draw(market_ids)
    line = 2.5 if market_id == "5000" and draw(st.booleans()) else draw(lines)
    outcomes = draw(outcome_lists)
    updated = draw(instants)
    gone = draw(st.none() | st.just(updated))
    name = draw(st.sampled_from(["1X2 - Full Time", "Anytime Goalscorer", 'Über 2,5 "Tore"']) | texts)
    encoded = codec.encode([(n, codec.to_milli(o), a) for n, o, a in outcomes])
    return slug, (market_id, line), CurrentMarket(name, draw(groups), encoded, updated, updated, gone)


@st.composite
def changes(draw: Any) -> list[tuple[str, Any]]:
    """A change sequence: new market states (newer or older than held), confirmations, new event metadata."""
    steps: list[tuple[str, Any]] = []
    for _ in range(draw(st.integers(1, 25))):
        kind = draw(st.sampled_from(["market", "market", "market", "confirm", "event"]))
        if kind == "market":
            steps.append((kind, market_change(draw)))
        elif kind == "confirm":
            steps.append((kind, (draw(st.sampled_from(["betpawa", "sportybet", "bet9ja"])), draw(instants))))
        else:
            links = draw(st.sampled_from([LINKS, LINKS[:2], (Link("bet9ja", "Bet 9ja", "x\u00e9"), LINKS[0])]))
            overrides = {
                "name": draw(texts),
                "tournament_country": draw(st.none() | texts),
                "created_at": draw(st.none() | instants),
                "links": links,
            }
            steps.append((kind, overrides))
    return steps


def gateway_detail(event: EventInfo, cache: OddsCache) -> bytes:
    """What the gateway sent before: the protobuf answer (built afresh from views) through its models."""
    books = cache.books_of(event.id)
    detail = events.event_detail(event, books)
    answer = grpc_api.pb.EventDetail(
        event=rendering.event_to_pb(detail.event),
        markets_by_bookmaker=[
            grpc_api.pb.BookmakerMarkets(
                bookmaker_slug=b.slug,
                bookmaker_name=b.name,
                snapshot_time=rendering.timestamp_or_none(b.snapshot_time),
                markets=[rendering.detail_to_pb(m) for m in b.markets],
            )
            for b in detail.markets_by_bookmaker
        ],
    )
    return convert.event_detail(answer).model_dump_json(by_alias=True).encode()


def gateway_list(cache: OddsCache, event_ids: list[int], total: int) -> bytes:
    summaries = [rendering.event_to_pb(events.summarize(cache.events[i], cache.books_of(i))) for i in event_ids]
    response = grpc_api.pb.ListEventsResponse(events=summaries, total=total)
    return convert.event_list(response, 2, 50).model_dump_json(by_alias=True).encode()


@settings(max_examples=150, deadline=None)
@given(changes())
def test_prepared_detail_and_list_bytes_equal_a_fresh_gateway_rendering_after_any_changes(
    steps: list[tuple[str, Any]],
) -> None:
    cache = OddsCache()
    cache.put_event(info(1, 3))
    cache.put_event(info(2, 4, created_at=None, tournament_country=None))
    for kind, change in steps:
        if kind == "market":
            cache.put_market(1, *change)
        elif kind == "confirm":
            cache.confirm(1, *change)
        else:
            cache.put_event(info(1, 3, **change))
        event = cache.events[1]
        # Read after every step, so the memo holds pieces of earlier states that a change must replace.
        assert contract_json.event_detail(event, cache.books_of(1)) == gateway_detail(event, cache)
        entries = [contract_json.summary(cache.events[i], cache.books_of(i)) for i in (1, 2)]
        assert contract_json.event_list(entries, 7, 2, 50) == gateway_list(cache, [1, 2], 7)
    assert contract_json.event_detail(cache.events[2], cache.books_of(2)) == gateway_detail(cache.events[2], cache)


def test_a_competitor_view_renders_as_the_gateway_did() -> None:
    market = events.MarketView("3743", "1X2", None, [("1", 2.0, True), ("2", 1.5, False)], 16.67, None, False, T0)
    view = events.EventView(
        -9, "sr:9", "A - B", "A", "B", NOW, None, 4, "NPFL", None, "Football",
        [events.BookmakerView("sportybet", "SportyBet", "s9", True, [market], T0),
         events.BookmakerView("bet9ja", "Bet9ja", "b9", False, [], None)],
    )  # fmt: skip
    response = grpc_api.pb.ListEventsResponse(events=[rendering.event_to_pb(view)], total=1)
    expected = convert.event_list(response, 1, 20).model_dump_json(by_alias=True).encode()
    assert contract_json.event_list([contract_json.view(view)], 1, 1, 20) == expected


points = st.builds(
    history.Point,
    instants,
    st.lists(st.tuples(texts, odds_values, st.booleans()), max_size=3).map(tuple),
    st.booleans(),
    st.none() | instants,
    st.booleans(),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(points, max_size=8), lines, st.sampled_from(["betpawa", "bet9ja"]))
def test_history_bytes_equal_the_gateway_rendering(found: list[history.Point], line: float | None, slug: str) -> None:
    h = history.MarketHistory(5, slug, slug.title(), "5000", line, tuple(found))
    expected = convert.odds_history(grpc_api.market_history_to_pb(h)).model_dump_json(by_alias=True).encode()
    assert contract_json.market_history(h) == expected


states = st.builds(
    history.MarketState, market_ids, texts, lines, outcome_lists.map(tuple), st.booleans(), st.none() | instants, groups
)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["betpawa", "bet9ja"]), st.lists(states, max_size=4)), max_size=3), instants)
def test_point_in_time_bytes_equal_the_gateway_rendering(
    books: list[tuple[str, list[history.MarketState]]], at: datetime
) -> None:
    found = [
        history.BookmakerMarkets(slug, slug.upper(), at if markets else None, tuple(markets)) for slug, markets in books
    ]
    expected = convert.event_at(grpc_api.event_at_to_pb(3, at, found)).model_dump_json(by_alias=True).encode()
    assert contract_json.event_at(3, at, found) == expected


def test_an_instant_in_another_zone_is_written_in_utc_with_a_z() -> None:
    at = datetime(2026, 2, 24, 15, 30, 0, 5, tzinfo=timezone(timedelta(hours=2)))
    expected = b'{"event_id":3,"at":"2026-02-24T13:30:00.000005Z","markets_by_bookmaker":[]}'
    assert contract_json.event_at(3, at, []) == expected


def test_non_finite_floats_are_written_as_null_as_the_gateway_models_write_them() -> None:
    # A line is a float8 from PostgreSQL, which can hold infinity and NaN; the models write null (ser_json_inf_nan).
    value = {"a": float("inf"), "b": float("-inf"), "c": float("nan")}
    assert contract_json.dumps(value) == to_json(value, inf_nan_mode="null") == b'{"a":null,"b":null,"c":null}'


def stored(at: datetime, available: bool, outcomes: list[tuple[str, float, bool]], **more: Any) -> dict[str, Any]:
    """A history row as the read gets it (asyncpg's Record reads the same way by column name)."""
    encoded = codec.encode([(n, codec.to_milli(o), a) for n, o, a in outcomes])
    return {"captured_at": at, "available": available, "outcomes": encoded, **more}


rows = st.builds(stored, instants, st.booleans(), outcome_lists)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(rows, max_size=8).map(lambda found: sorted(found, key=lambda r: r["captured_at"])),
    st.none() | points.map(lambda p: p._replace(confirmed=True)),
    st.none() | instants,
    st.none() | instants,
    lines,
)
def test_history_rendered_from_rows_equals_the_rendering_of_its_points(
    found: list[dict[str, Any]],
    confirmation: history.Point | None,
    from_time: datetime | None,
    to_time: datetime | None,
    line: float | None,
) -> None:
    merged = history.merge(map(history_repository._new_point, found), [], confirmation)  # type: ignore[arg-type]
    h = history.MarketHistory(5, "bet9ja", "Bet 9ja", "5000", line, tuple(history.between(merged, from_time, to_time)))
    fast = contract_json.market_history_rows(
        5, "bet9ja", "Bet 9ja", "5000", line, found, confirmation, from_time, to_time
    )
    assert fast == contract_json.market_history(h)


at_rows = st.builds(
    stored,
    instants,
    st.booleans(),
    outcome_lists,
    market_name=st.none() | texts,
    market_groups=st.none() | st.lists(texts, max_size=3),
)


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(st.tuples(st.sampled_from(["betpawa", "bet9ja", "x"]), market_ids, lines), at_rows, max_size=8),
    st.dictionaries(st.sampled_from(["betpawa", "bet9ja"]), texts),
    instants,
)
def test_point_in_time_rendered_from_rows_equals_the_rendering_of_its_states(
    found: dict[history_repository.MarketKey, dict[str, Any]], names: dict[str, str], at: datetime
) -> None:
    read = history_repository._EventAtRows(found, {}, names, "legacy_outcomes", "legacy_groups")  # type: ignore[arg-type]
    markets = [(k, found[k]) for k in sorted(found, key=history_repository._market_order)]
    assert contract_json.event_at_rows(3, at, markets, names) == contract_json.event_at(3, at, read.books())
