"""Live changes for client streams in the query service: which changes are announced, the buffer and its resume
tokens, a stream's selection and conflation, and the stream's steps (image or resume, deltas, heartbeats)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from services.query import stream
from services.query.cache import Book, CurrentMarket, OddsCache
from services.query.feed import odds_changed
from services.query.stream import Kind, Message, Request
from services.query.updates import Closed, FellBehind, MarketDelta, OddsChanged, Selection, Updates
from services.query.writer_feed import Changes
from tests.feeds import SteppedSleep
from tests.polling import TIMEOUT_SECONDS

AT = datetime(2026, 2, 24, 10, tzinfo=UTC)
ONE_X_TWO = ("3743", None)
OVER_UNDER = ("5000", 2.5)


def state(minute: int) -> CurrentMarket:
    at = AT + timedelta(minutes=minute)
    return CurrentMarket("1X2", None, bytes([minute]), at, at, None)


def delta(event_id: int, minute: int, key: tuple[str, float | None] = ONE_X_TWO, slug: str = "betpawa") -> MarketDelta:
    return MarketDelta(event_id, slug, key, state(minute))


def test_pairs_whose_markets_changed_are_announced_once_at_their_newest_time_and_confirmations_are_not() -> None:
    first = Changes(AT, [(1, "betpawa", ONE_X_TWO)], [(1, "betpawa", AT), (2, "betpawa", AT)])
    second = Changes(AT, [(1, "betpawa", ("5000", 2.5))], [(1, "betpawa", AT + timedelta(minutes=1))])
    assert odds_changed([first, second]) == [OddsChanged(1, "betpawa", AT + timedelta(minutes=1), 2)]


def test_a_token_resumes_while_everything_after_it_is_buffered_and_never_from_another_epoch() -> None:
    updates = Updates(capacity=3, epoch="a")
    assert updates.resume(updates.token(0)) == 0  # nothing published yet: the position is current
    first = updates.publish([delta(1, 0)], [])
    updates.publish([delta(1, 1), delta(1, 2)], [])
    assert updates.resume(updates.token(first)) == first and updates.resume(updates.token(0)) == 0
    updates.publish([delta(1, 3)], [])  # 4 changes > 3: the first application leaves the buffer
    assert updates.resume(updates.token(0)) is None and updates.resume(updates.token(first)) == first
    with pytest.raises(FellBehind, match="QUERY_STREAM_BUFFER"):
        updates.after(0)
    assert [a.sequence for a in updates.after(first)] == [2, 3]
    for foreign in (Updates(epoch="b").token(first), "a", "a.x", "", "a.99"):
        assert updates.resume(foreign) is None
    assert updates.publish([], []) == 3  # nothing applied: no new position


def test_a_selection_keeps_the_latest_state_per_market_of_what_it_matches() -> None:
    updates = Updates()
    updates.publish([delta(1, 0), delta(1, 0, OVER_UNDER), delta(2, 0)], [OddsChanged(1, "betpawa", AT, 1)])
    updates.publish(
        [delta(1, 1), delta(1, 1, slug="sportybet")],
        [OddsChanged(1, "betpawa", AT + timedelta(minutes=1), 1), OddsChanged(1, "sportybet", AT, 1)],
    )
    everything = Selection().conflate(updates.after(0))
    assert everything[0] == [delta(1, 1), delta(1, 0, OVER_UNDER), delta(2, 0), delta(1, 1, slug="sportybet")]
    later = AT + timedelta(minutes=1)
    assert everything[1] == [OddsChanged(1, "betpawa", later, 2), OddsChanged(1, "sportybet", AT, 1)]
    one = Selection(frozenset({1}), frozenset({"betpawa"}), frozenset({"5000"})).conflate(updates.after(0))
    assert one == ([delta(1, 0, OVER_UNDER)], [OddsChanged(1, "betpawa", AT + timedelta(minutes=1), 2)], [])
    # A market filter narrows the summaries to pairs with a selected market.
    assert Selection(market_ids=frozenset({"9999"})).conflate(updates.after(0)) == ([], [], [])


def test_events_that_left_the_cache_are_announced_and_their_earlier_states_dropped_from_a_conflated_step() -> None:
    updates = Updates()
    updates.publish([delta(1, 0), delta(2, 0), delta(3, 0)], [OddsChanged(1, "betpawa", AT, 1)])
    updates.publish([], [], [1, 3])
    updates.publish([delta(3, 1)], [])  # event 3 came back (its kickoff moved): its new state stays
    markets, pairs, removed = Selection().conflate(updates.after(0))
    assert (markets, pairs, removed) == ([delta(2, 0), delta(3, 1)], [], [1, 3])
    assert Selection(event_ids=frozenset({2, 3})).conflate(updates.after(0))[2] == [3]
    # A summaries-only stream (the gateway's) still hears of the change made before the event left.
    assert Selection().conflate(updates.after(0), summaries_only=True)[1] == [OddsChanged(1, "betpawa", AT, 1)]
    assert updates.publish([], [], []) == 3  # nothing left: no new position


async def test_a_stream_is_told_which_events_left_the_cache_and_a_summaries_only_stream_is_not() -> None:
    updates = Updates(epoch="e")
    full = stream.stream(updates, OddsCache(), Request(Selection()))
    summaries = stream.stream(updates, OddsCache(), Request(Selection(), summaries_only=True))
    await take(full)
    await take(summaries)
    updates.publish([], [], [7])
    step = await take(full)
    assert (step.kind, step.markets, step.removed, step.token) == (Kind.DELTA, [], [7], "e.1")
    updates.publish([delta(1, 0)], [OddsChanged(1, "betpawa", AT, 1)])
    step = await take(summaries)  # past the removal, which it was not sent
    assert (step.kind, list(step.removed), step.token) == (Kind.DELTA, [], "e.2")


def test_an_image_is_every_matching_market_in_the_cache() -> None:
    cache = OddsCache()
    cache.books.setdefault(1, {})
    for slug in ("betpawa", "sportybet"):
        book = cache.books[1].setdefault(slug, Book())
        book.put(ONE_X_TWO, state(0))
        book.put(OVER_UNDER, state(1))
    image = Selection(frozenset({1, 2}), frozenset({"sportybet"}), frozenset({"5000"})).image(cache)
    assert image == [MarketDelta(1, "sportybet", OVER_UNDER, state(1))]
    assert len(Selection().image(cache)) == 4


async def take(messages: AsyncIterator[Message]) -> Message:
    return await asyncio.wait_for(anext(messages), TIMEOUT_SECONDS)


async def test_a_stream_sends_an_image_then_conflated_deltas_each_step_ending_with_a_token() -> None:
    updates, window = Updates(epoch="e"), SteppedSleep()
    updates.publish([delta(1, 0)], [])
    cache = OddsCache()
    messages = stream.stream(updates, cache, Request(Selection(), conflation_seconds=1.0), sleep=window)
    image = await take(messages)
    assert (image.kind, list(image.markets), image.token, image.fresh_image) == (Kind.IMAGE, [], "e.1", False)

    pending = asyncio.ensure_future(take(messages))
    updates.publish([delta(1, 1)], [OddsChanged(1, "betpawa", AT, 1)])
    await asyncio.wait_for(window.waiting.wait(), TIMEOUT_SECONDS)
    updates.publish([delta(1, 2)], [OddsChanged(1, "betpawa", AT + timedelta(minutes=2), 1)])  # in the window
    window.step()
    step = await pending
    assert (step.kind, step.markets, step.token) == (Kind.DELTA, [delta(1, 2)], "e.3")
    assert step.pairs == [OddsChanged(1, "betpawa", AT + timedelta(minutes=2), 2)]


async def test_a_stream_resumes_from_a_buffered_token_and_gets_a_fresh_image_for_an_unknown_one() -> None:
    updates = Updates(epoch="e")
    updates.publish([delta(1, 0)], [])
    updates.publish([delta(1, 1)], [])
    resumed = stream.stream(updates, OddsCache(), Request(Selection(), resume_token="e.1"))
    step = await take(resumed)
    assert (step.kind, step.markets, step.token) == (Kind.DELTA, [delta(1, 1)], "e.2")

    image = await take(stream.stream(updates, OddsCache(), Request(Selection(), resume_token="other.1")))
    assert (image.kind, image.token, image.fresh_image) == (Kind.IMAGE, "e.2", True)


async def test_a_large_step_comes_in_parts_and_only_the_last_carries_the_token() -> None:
    updates = Updates(epoch="e")
    messages = stream.stream(updates, OddsCache(), Request(Selection()))
    await take(messages)
    updates.publish([delta(e, 0) for e in range(stream.CHUNK + 1)], [OddsChanged(1, "betpawa", AT, 1)])
    first, last = await take(messages), await take(messages)
    assert (len(first.markets), first.token, first.pairs) == (stream.CHUNK, "", ())
    assert (len(last.markets), last.token, len(last.pairs)) == (1, "e.1", 1)


async def test_a_stream_with_nothing_to_send_sends_heartbeats_whose_token_moves_past_what_it_does_not_select() -> None:
    updates = Updates(epoch="e")
    quiet = Request(Selection(event_ids=frozenset({7})), heartbeat_seconds=0.001)
    messages = stream.stream(updates, OddsCache(), quiet)
    await take(messages)
    updates.publish([delta(1, 0)], [])  # another event's
    beat = await take(messages)
    assert beat.kind == Kind.HEARTBEAT
    if beat.token == "e.0":  # the heartbeat may come before the change is read: the next one is past it
        beat = await take(messages)
    assert (beat.kind, beat.token) == (Kind.HEARTBEAT, "e.1")


async def test_a_stream_behind_the_buffer_is_ended_and_closing_ends_every_stream() -> None:
    updates, window = Updates(capacity=2), SteppedSleep()
    slow = stream.stream(updates, OddsCache(), Request(Selection(), conflation_seconds=1.0), sleep=window)
    await take(slow)
    pending = asyncio.ensure_future(take(slow))
    updates.publish([delta(1, 0)], [])
    await asyncio.wait_for(window.waiting.wait(), TIMEOUT_SECONDS)
    updates.publish([delta(2, 0), delta(3, 0)], [])  # while it waits: the first leaves the buffer
    window.step()
    with pytest.raises(FellBehind, match="reads too slowly"):
        await pending

    waiting = stream.stream(updates, OddsCache(), Request(Selection()))
    await take(waiting)
    updates.close()
    with pytest.raises(Closed):
        await take(waiting)
