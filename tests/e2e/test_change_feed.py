"""The writer → query change feed over real gRPC on loopback: delivery, resume after a dropped stream, and the
resyncs that cover what the feed cannot deliver (a lost publish, a new writer process, a subscriber too far behind)."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
import pytest

from oddstore.model import Market
from services.query import repository as query_repo
from services.query.cache import MarketKey, OddsCache
from services.query.feed import Feed
from services.query.writer_feed import WriterFeed
from services.writer.changes import ChangeLog, MarketChange, PairAdvance
from services.writer.writer import Writer
from tests.factories import market, new_event_id, now, snapshot, write
from tests.feeds import ServedWriter, SteppedSleep
from tests.polling import eventually
from tests.proxy import Proxy

ONE_X_TWO = ("3743", None)
KEEPALIVE = 0.2  # seconds: short, so that the hung-connection test does not wait 20 s for the detection


class LosingChangeLog(ChangeLog):
    """Commits go through, but the next announcement is lost: a writer that died between commit and publish."""

    lose_next = False

    def publish(
        self,
        committed_at: datetime,
        markets: Sequence[MarketChange],
        pairs: Sequence[PairAdvance],
        events: Sequence[int] = (),
    ) -> int:
        if self.lose_next:
            self.lose_next = False
            return self.sequence
        return super().publish(committed_at, markets, pairs, events)


@dataclass
class Rig:
    pool: asyncpg.Pool
    served: ServedWriter
    proxy: Proxy  # between the query's feed and the writer: the test cuts it to drop the stream
    subscription: WriterFeed
    feed: Feed
    cache: OddsCache
    safety: SteppedSleep

    @property
    def writer(self) -> Writer:
        return self.served.writer

    def odds(self, event_id: int, slug: str = "betpawa") -> bytes | None:
        book = self.cache.books_of(event_id).get(slug)
        found = book.markets.get(ONE_X_TWO) if book is not None else None
        return found.outcomes if found is not None else None

    async def following(self) -> int:
        """Waits for the stream to be open and the resync its first start asked for; returns resyncs so far."""
        await eventually(lambda: self.subscription.connected.is_set(), "the feed connected")
        await eventually(lambda: self.feed.resyncs >= 1, "the first resync")
        return self.feed.resyncs


@pytest.fixture
async def rig(migrated_dsn: str) -> AsyncIterator[Rig]:
    pool = await asyncpg.create_pool(migrated_dsn, min_size=1, max_size=4)
    served = await ServedWriter.start(pool, Writer(pool, changes=LosingChangeLog(capacity=50)))
    proxy = Proxy("127.0.0.1", served.server.port)
    await proxy.start()
    subscription = WriterFeed(f"127.0.0.1:{proxy.port}", max_delay=0.2, keepalive_seconds=KEEPALIVE)
    cache, safety = OddsCache(), SteppedSleep()
    feed = Feed(pool, cache, timedelta(hours=2), [subscription.run], sleep=safety)
    await feed.start()
    rig = Rig(pool, served, proxy, subscription, feed, cache, safety)
    yield rig
    await feed.stop()
    await rig.served.stop()
    await proxy.cut()
    await pool.close()


async def test_a_write_reaches_the_cache_through_the_feed(rig: Rig) -> None:
    await rig.following()
    e, t = new_event_id(), now() - timedelta(minutes=10)
    await write(rig.writer, [snapshot(e, t, [market(odds=(2.0, 3.0, 4.0))])])
    await eventually(lambda: rig.odds(e) is not None, "the new market cached")
    assert rig.cache.events[e].home_team == f"Home {e}"  # a new event comes with its metadata
    first = rig.odds(e)

    await write(rig.writer, [snapshot(e, t + timedelta(minutes=1), [market(odds=(2.5, 3.0, 3.0))])])
    await eventually(lambda: rig.odds(e) != first, "the changed odds cached")

    # The market disappears: kept, flagged unavailable, and the event becomes an alert.
    await write(rig.writer, [snapshot(e, t + timedelta(minutes=2), [market("3795", None, (1.8, 1.9), ("Yes", "No"))])])
    await eventually(lambda: rig.cache.books_of(e)["betpawa"].unavailable == 1, "the market cached as unavailable")
    assert rig.cache.books_of(e)["betpawa"].markets[ONE_X_TWO].unavailable_at == t + timedelta(minutes=2)

    # A scrape without changes moves only the snapshot time, and that is announced too.
    await write(rig.writer, [snapshot(e, t + timedelta(minutes=3), [market("3795", None, (1.8, 1.9), ("Yes", "No"))])])
    await eventually(lambda: rig.cache.books_of(e)["betpawa"].captured_at == t + timedelta(minutes=3), "the new time")


async def test_the_feed_carries_the_committed_states_equal_to_the_database(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Random scrapes (changed odds, markets gone and back, renamed, regrouped, several snapshots of a pair in one
    batch): the cache the feed built equals one loaded from the database, and only the unavailable markets
    (whose kept name and odds only the database knows) were read back."""
    resyncs = await rig.following()
    read_back: list[tuple[int, str, MarketKey]] = []
    original = query_repo.markets_by_key

    async def markets_by_key(conn: asyncpg.Connection, keys: list[tuple[int, str, MarketKey]]) -> list[asyncpg.Record]:
        read_back.extend(keys)
        return await original(conn, keys)

    monkeypatch.setattr(query_repo, "markets_by_key", markets_by_key)
    rng = random.Random(11)
    events, t = [new_event_id(), new_event_id()], now() - timedelta(minutes=50)
    groups = [(), ("popular",), ("popular", "main"), ("goals",)]

    def scrape(i: int) -> list[Market]:
        found = []
        for n in range(6):
            if n >= 3 and rng.random() < 0.3:
                continue  # missing from this scrape: unavailable (or still); markets 0-2 never are
            m = market(str(3700 + n), None if n % 2 else 2.5, (rng.choice((1.5, 2.0, 2.5)), 3.0, 4.0))
            if rng.random() < 0.2:
                m = dataclasses.replace(m, market_name=f"Market {n} v{i}", market_groups=rng.choice(groups))
            found.append(m)
        return found

    for i in range(12):
        batch = []
        for e in events:
            for slug in ("betpawa", "sportybet"):
                for j in range(rng.choice((1, 2))):  # two snapshots of one pair in one batch, now and then
                    at = t + timedelta(minutes=2 * i + j)
                    batch.append(snapshot(e, at, scrape(i), bookmaker=slug))
        await write(rig.writer, batch)
    marker = new_event_id()
    await write(rig.writer, [snapshot(marker, t, [market()])])
    await eventually(lambda: rig.odds(marker) is not None, "every batch applied (the feed is ordered)")

    loaded = OddsCache()
    await Feed(rig.pool, loaded, timedelta(hours=2), []).warm_up()
    for e in events:
        assert rig.cache.books_of(e) == loaded.books_of(e)
    assert read_back and all(int(market_id) >= 3703 for _e, _slug, (market_id, _line) in read_back)
    assert rig.feed.resyncs == resyncs  # every batch applied as it came (a failed one would resync)


async def test_a_change_whose_announcement_was_lost_is_cached_by_the_next_safety_check(rig: Rig) -> None:
    resyncs = await rig.following()
    e, marker, t = new_event_id(), new_event_id(), now() - timedelta(minutes=10)
    log = rig.writer.changes
    assert isinstance(log, LosingChangeLog)
    log.lose_next = True
    await write(rig.writer, [snapshot(e, t, [market()])])  # committed and acknowledged, never published
    # The feed is ordered: once a later batch is cached, the feed has delivered everything it will of the lost one.
    await write(rig.writer, [snapshot(marker, t, [market()])])
    await eventually(lambda: rig.odds(marker) is not None, "the later batch cached")
    assert rig.odds(e) is None and rig.feed.resyncs == resyncs

    await eventually(lambda: rig.safety.waiting.is_set(), "the safety check asleep")
    rig.safety.step()  # its interval (QUERY_RESYNC_SECONDS) has passed: the bound
    await eventually(lambda: rig.feed.resyncs == resyncs + 1, "the safety check's resync")
    assert rig.odds(e) is not None


async def test_after_a_dropped_stream_the_feed_resumes_without_a_resync(rig: Rig) -> None:
    resyncs = await rig.following()
    e, t = new_event_id(), now() - timedelta(minutes=10)
    await rig.proxy.cut()
    await eventually(lambda: not rig.subscription.connected.is_set(), "the stream dropped")
    await write(rig.writer, [snapshot(e, t, [market()])])  # published while no one listens: buffered
    await rig.proxy.restore()
    await eventually(lambda: rig.odds(e) is not None, "the change delivered on the resumed stream")
    assert rig.feed.resyncs == resyncs  # resumed from (epoch, sequence): nothing read back from the database


async def test_a_subscriber_further_behind_than_the_writers_buffer_resyncs(rig: Rig) -> None:
    resyncs = await rig.following()
    first, last, t = new_event_id(), new_event_id(), now() - timedelta(minutes=10)
    await rig.proxy.cut()
    await eventually(lambda: not rig.subscription.connected.is_set(), "the stream dropped")
    # 2 changes (a market, a pair), then 59 of one each (unchanged odds, a new time): beyond the buffer of 50.
    await write(rig.writer, [snapshot(first, t, [market()])])
    for i in range(1, 60):
        await write(rig.writer, [snapshot(last, t + timedelta(minutes=i), [market()])])
    assert rig.writer.changes.start(rig.subscription.epoch, rig.subscription.sequence) == (
        rig.writer.changes.sequence,
        False,
    )
    await rig.proxy.restore()
    await eventually(lambda: rig.feed.resyncs == resyncs + 1, "the resync")
    assert rig.odds(first) is not None and rig.cache.books_of(last)["betpawa"].captured_at == t + timedelta(minutes=59)


async def test_a_writer_killed_between_commit_and_publish_is_covered_by_the_new_process_resync(rig: Rig) -> None:
    resyncs = await rig.following()
    old_epoch = rig.subscription.epoch
    e, t = new_event_id(), now() - timedelta(minutes=10)
    log = rig.writer.changes
    assert isinstance(log, LosingChangeLog)
    log.lose_next = True
    await write(rig.writer, [snapshot(e, t, [market()])])  # committed; the process dies before publishing
    await rig.served.stop()

    # Its replacement (a new process: a new epoch) comes up where the old one was.
    rig.served = await ServedWriter.start(rig.pool)
    rig.proxy.retarget(rig.served.server.port)
    await eventually(lambda: rig.feed.resyncs == resyncs + 1, "the resync of the new epoch")
    assert rig.subscription.epoch not in ("", old_epoch) and rig.odds(e) is not None

    # And the new process's feed is followed from there.
    later = new_event_id()
    await write(rig.served.writer, [snapshot(later, t, [market()])])
    await eventually(lambda: rig.odds(later) is not None, "a change from the new process")
    assert rig.feed.resyncs == resyncs + 1


async def test_a_hung_connection_to_the_writer_is_noticed_by_keepalive_and_the_feed_resumes(rig: Rig) -> None:
    resyncs = await rig.following()
    rig.proxy.freeze()  # the connection stays open, nothing passes: without keepalive the feed would wait forever
    await eventually(lambda: not rig.subscription.connected.is_set(), "the hung stream dropped by keepalive")
    rig.proxy.thaw()
    e, t = new_event_id(), now() - timedelta(minutes=10)
    await write(rig.writer, [snapshot(e, t, [market()])])
    await eventually(lambda: rig.odds(e) is not None, "a change delivered on the new stream")
    assert rig.feed.resyncs == resyncs  # resumed by (epoch, sequence)
