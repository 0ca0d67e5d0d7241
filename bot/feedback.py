"""Answer feedback (👍/👎 per answer and person): the storage side.

The platform buttons record a vote with `record_vote`; the latest click of a
person on an answer wins. `archbot eval --from-feedback` reads the 👎 ones back
(`down_votes_since`) to turn them into draft scenarios.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from bot.errors import CommandError
from bot.store import Store, utcnow

log = logging.getLogger(__name__)

VOTES = ("up", "down")


@dataclass(frozen=True, slots=True)
class Vote:
    """One person's current vote on one answer."""

    turn_id: int
    user: str
    vote: str
    updated_at: str


def record_vote(store: Store, turn_id: int, user: str, vote: str) -> None:
    """Store `user`'s vote on the answer of `turn_id`, replacing their earlier one."""
    if vote not in VOTES:
        raise CommandError(f"a vote is 'up' or 'down', not {vote[:20]!r}")
    now = utcnow()
    with store.transaction():
        if store.conn.execute("SELECT 1 FROM turns WHERE id = ?", (turn_id,)).fetchone() is None:
            raise CommandError(f"there is no answer {turn_id} to vote on")
        store.conn.execute(
            "INSERT INTO feedback (turn_id, user, vote, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT(turn_id, user) DO UPDATE SET"
            " vote = excluded.vote, updated_at = excluded.updated_at",
            (turn_id, user, vote, now, now),
        )


def votes_for(store: Store, turn_id: int) -> list[Vote]:
    """Every person's current vote on one answer."""
    rows = store.conn.execute(
        "SELECT turn_id, user, vote, updated_at FROM feedback WHERE turn_id = ? ORDER BY user",
        (turn_id,),
    ).fetchall()
    return [Vote(int(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]


def down_votes_since(store: Store, since: datetime) -> list[Vote]:
    """Current 👎 votes cast (or changed) since a moment, oldest answer first."""
    rows = store.conn.execute(
        "SELECT turn_id, user, vote, updated_at FROM feedback"
        " WHERE vote = 'down' AND updated_at >= ? ORDER BY turn_id, user",
        (since.isoformat(),),
    ).fetchall()
    return [Vote(int(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]
