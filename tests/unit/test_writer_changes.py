"""The writer's change log: sequence per epoch, resume positions, the bounded buffer."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from services.writer.changes import ChangeLog, Closed, FellBehind

AT = datetime(2026, 2, 24, 10, tzinfo=UTC)


def publish(log: ChangeLog, changes: int) -> int:
    """A batch of `changes` changes: one market each, plus one pair."""
    return log.publish(AT, [(1, "betpawa", str(i), None, AT, True) for i in range(changes - 1)], [(1, "betpawa", AT)])


def test_batches_are_numbered_from_one_in_publish_order() -> None:
    log = ChangeLog()
    assert [publish(log, 2), publish(log, 1), publish(log, 3)] == [1, 2, 3]
    assert [b.sequence for b in log.after(0)] == [1, 2, 3]
    assert [b.sequence for b in log.after(2)] == [3] and log.after(3) == []


def test_a_subscriber_of_this_epoch_within_the_buffer_resumes_exactly_after_its_position() -> None:
    log = ChangeLog(epoch="e1")
    for _ in range(3):
        publish(log, 1)
    assert log.start("e1", 1) == (1, True)
    assert log.start("e1", 3) == (3, True)


def test_another_epoch_or_an_unknown_position_starts_from_the_newest_batch_unresumed() -> None:
    log = ChangeLog(epoch="e1")
    publish(log, 1)
    assert log.start("", 0) == (1, False)  # a first subscription
    assert log.start("e0", 1) == (1, False)  # a previous process
    assert log.start("e1", 7) == (1, False)  # ahead of this process: not from it


def test_the_buffer_keeps_at_most_capacity_changes_and_a_position_before_it_cannot_resume() -> None:
    log = ChangeLog(capacity=5, epoch="e1")
    for _ in range(4):
        publish(log, 2)  # 8 changes published, the 2 newest batches kept
    assert [b.sequence for b in log.after(2)] == [3, 4]
    assert log.start("e1", 2) == (2, True)
    assert log.start("e1", 1) == (4, False)
    with pytest.raises(FellBehind):
        log.after(1)


def test_the_newest_batch_is_kept_even_when_larger_than_the_capacity() -> None:
    log = ChangeLog(capacity=5)
    publish(log, 2)
    publish(log, 9)
    assert [b.sequence for b in log.after(1)] == [2]


async def test_a_waiting_subscriber_wakes_on_the_next_publish_and_ends_on_close() -> None:
    log = ChangeLog()
    waiter = asyncio.create_task(log.wait_after(0))
    await asyncio.sleep(0)
    assert not waiter.done()
    publish(log, 1)
    await waiter
    closing = asyncio.create_task(log.wait_after(1))
    await asyncio.sleep(0)
    log.close()
    with pytest.raises(Closed):
        await closing
