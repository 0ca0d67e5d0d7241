"""Recovery claims: of several processes on one file exactly one wins a turn; a dead
holder's claim lapses; a posted turn cannot be claimed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.store import Store
from tests.conftest import eventually


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[Store, Store, int]]:
    """Two connections (two processes' stores) on one file, and one pending turn in it."""
    first, second = Store.open(tmp_path / "a.db"), Store.open(tmp_path / "a.db")
    thread = first.ensure_thread(
        "slack/T/C/1", platform="slack", workspace="T", channel="C", thread="1", channel_key="c"
    )
    with first.transaction():
        turn_id = first.start_turn(
            thread,
            event_key="slack:T:Ev1",
            user="U1",
            user_name="alice",
            text="How do we backfill?",
            content=[{"type": "text", "text": "How do we backfill?"}],
        )
    try:
        yield first, second, turn_id
    finally:
        first.close()
        second.close()


def holder(store: Store, turn_id: int) -> str | None:
    row = store.conn.execute(
        "SELECT recovery_claimed_by FROM turns WHERE id = ?", (turn_id,)
    ).fetchone()
    return row[0]


def test_only_one_store_wins_a_turn(stores: tuple[Store, Store, int]) -> None:
    first, second, turn_id = stores
    assert first.owner != second.owner
    assert first.claim_recovery(turn_id) is True
    assert second.claim_recovery(turn_id) is False
    assert first.claim_recovery(turn_id) is True  # the holder may claim again (a renewal)
    assert holder(second, turn_id) == first.owner


def test_a_stale_claim_is_taken_over_and_the_old_holder_knows(
    stores: tuple[Store, Store, int],
) -> None:
    first, second, turn_id = stores
    assert first.claim_recovery(turn_id)
    stale = datetime.now(UTC) - first.recovery_lease - timedelta(seconds=1)
    first.conn.execute(  # the holder died a lease ago: nothing renewed its claim
        "UPDATE turns SET recovery_claimed_at = ? WHERE id = ?",
        (stale.isoformat(timespec="microseconds"), turn_id),
    )
    assert second.claim_recovery(turn_id) is True
    assert holder(first, turn_id) == second.owner
    assert first.renew_recovery(turn_id) is False


def test_a_renewed_claim_is_not_taken_over(stores: tuple[Store, Store, int]) -> None:
    first, second, turn_id = stores
    first.recovery_lease = second.recovery_lease = timedelta(seconds=30)
    assert first.claim_recovery(turn_id)
    assert first.renew_recovery(turn_id)
    assert second.claim_recovery(turn_id) is False


def test_a_released_claim_can_be_taken(stores: tuple[Store, Store, int]) -> None:
    first, second, turn_id = stores
    assert first.claim_recovery(turn_id)
    second.release_recovery(turn_id)  # only the holder can release
    assert second.claim_recovery(turn_id) is False
    first.release_recovery(turn_id)
    assert holder(first, turn_id) is None
    assert second.claim_recovery(turn_id) is True


def test_a_posted_turn_cannot_be_claimed(stores: tuple[Store, Store, int]) -> None:
    first, second, turn_id = stores
    first.finish_turn(turn_id, status="done", reply="Backfill by partition.")
    first.mark_posted(turn_id)
    assert first.claim_recovery(turn_id) is False
    assert second.claim_recovery(turn_id) is False


async def test_a_held_claim_is_renewed_while_the_block_runs_and_released_after(
    stores: tuple[Store, Store, int],
) -> None:
    first, second, turn_id = stores
    first.recovery_lease = timedelta(seconds=0.2)  # renewed every 0.05 s
    async with first.recovery_claim(turn_id) as claimed:
        assert claimed
        claimed_at = first.conn.execute(
            "SELECT recovery_claimed_at FROM turns WHERE id = ?", (turn_id,)
        ).fetchone()[0]

        def renewed() -> bool:
            row = second.conn.execute(
                "SELECT recovery_claimed_at FROM turns WHERE id = ?", (turn_id,)
            ).fetchone()
            return bool(row[0] > claimed_at)

        await eventually(renewed, "the claim to be renewed", within=5)
        async with second.recovery_claim(turn_id) as other:
            assert other is False
    assert holder(second, turn_id) is None
