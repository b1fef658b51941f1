"""Live updates in the query service: which changes are announced, conflation per subscriber, the bound."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.query.feed import odds_changed
from services.query.updates import Closed, OddsChanged, Overflow, Updates
from services.query.writer_feed import Changes

AT = datetime(2026, 2, 24, 10, tzinfo=UTC)
ONE_X_TWO = ("3743", None)


def test_pairs_whose_markets_changed_are_announced_once_at_their_newest_time_and_confirmations_are_not() -> None:
    first = Changes(AT, [(1, "betpawa", ONE_X_TWO)], [(1, "betpawa", AT), (2, "betpawa", AT)])
    second = Changes(AT, [(1, "betpawa", ("5000", 2.5))], [(1, "betpawa", AT + timedelta(minutes=1))])
    assert odds_changed([first, second]) == [OddsChanged(1, "betpawa", AT + timedelta(minutes=1), 2)]


async def test_a_subscriber_gets_the_latest_change_per_key_and_only_what_its_filters_match() -> None:
    updates = Updates()
    everything, one_event = updates.subscribe(), updates.subscribe(event_ids=[1], bookmakers=["betpawa"])
    updates.publish([OddsChanged(1, "betpawa", AT, 1), OddsChanged(1, "sportybet", AT, 1)])
    updates.publish([OddsChanged(1, "betpawa", AT + timedelta(minutes=1), 1), OddsChanged(2, "betpawa", AT, 1)])
    assert await one_event.next() == [OddsChanged(1, "betpawa", AT + timedelta(minutes=1), 2)]
    assert len(await everything.next()) == 3
    updates.unsubscribe(everything)
    assert updates.subscribers == 1


async def test_a_subscriber_holding_more_unsent_keys_than_allowed_is_ended() -> None:
    updates = Updates(max_pending=2)
    slow = updates.subscribe()
    updates.publish(OddsChanged(e, "betpawa", AT, 1) for e in (1, 2))
    updates.publish([OddsChanged(1, "betpawa", AT, 1)])  # an existing key: conflated, still within the bound
    assert not slow.overflowed
    updates.publish([OddsChanged(3, "betpawa", AT, 1)])
    with pytest.raises(Overflow):
        await slow.next()


async def test_closing_ends_every_waiting_subscriber() -> None:
    updates = Updates()
    waiting = updates.subscribe()
    updates.close()
    with pytest.raises(Closed):
        await waiting.next()
