"""A thread's messages reach the core in the order they arrived (bot.arrivals),
however long each one waited on Slack first."""

from __future__ import annotations

import asyncio

import pytest

from bot.arrivals import ArrivalOrder


async def test_a_slow_first_message_is_handed_over_before_the_quick_ones_behind_it() -> None:
    order = ArrivalOrder()
    handed: list[str] = []
    release_first = asyncio.Event()

    async def message(name: str, prepare: asyncio.Event | None) -> None:
        place = order.arrive("slack/T/C/1")  # before any await, like the adapter
        try:
            if prepare is not None:
                await prepare.wait()  # e.g. reading the thread's earlier messages
            await place.turn()
            handed.append(name)
        finally:
            place.leave()

    tasks = [
        asyncio.create_task(message("first", release_first)),
        asyncio.create_task(message("second", None)),
        asyncio.create_task(message("third", None)),
    ]
    await asyncio.sleep(0)  # all three have arrived; the two quick ones are waiting
    assert handed == []
    release_first.set()
    await asyncio.gather(*tasks)
    assert handed == ["first", "second", "third"]
    assert len(order) == 0  # nothing left behind per thread


async def test_other_threads_do_not_wait() -> None:
    order = ArrivalOrder()
    slow = order.arrive("thread-a")
    other = order.arrive("thread-b")
    await asyncio.wait_for(other.turn(), 1.0)  # not held up by thread-a
    other.leave()
    slow.leave()
    assert len(order) == 0


async def test_a_message_that_fails_before_its_turn_still_lets_the_next_one_go() -> None:
    order = ArrivalOrder()
    first = order.arrive("k")
    second = order.arrive("k")
    first.leave()  # what the adapter's `finally` does when taking in the first failed
    first.leave()  # idempotent
    await asyncio.wait_for(second.turn(), 1.0)
    second.leave()
    assert len(order) == 0


async def test_an_earlier_message_stuck_for_too_long_no_longer_holds_the_thread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    order = ArrivalOrder(handover_seconds=0.05)
    stuck = order.arrive("k")
    behind = order.arrive("k")
    await asyncio.wait_for(behind.turn(), 1.0)
    assert "still not handed over" in caplog.text
    behind.leave()
    stuck.leave()
