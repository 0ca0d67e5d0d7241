"""Cached display names of platform users (Slack's `slack_users` table), with their age.

The adapter looks names up (users.info) and keeps them here, so a restart or a
busy thread does not ask again; a name older than the adapter's TTL is refreshed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from bot.store import Store, utcnow


def cached_names(
    store: Store, workspace: str, user_ids: Iterable[str], fresh_since: str
) -> dict[str, str]:
    """The stored names of `user_ids` fetched at or after `fresh_since` (ISO time)."""
    ids = list(dict.fromkeys(user_ids))
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    rows = store.conn.execute(
        f"SELECT user_id, name FROM slack_users WHERE workspace = ? AND user_id IN ({marks})"
        " AND fetched_at >= ?",
        (workspace, *ids, fresh_since),
    ).fetchall()
    return {row["user_id"]: row["name"] for row in rows}


def remember_names(store: Store, workspace: str, names: Mapping[str, str]) -> None:
    """Store freshly fetched names (replacing older ones)."""
    if not names:
        return
    now = utcnow()
    with store.transaction():
        store.conn.executemany(
            "INSERT OR REPLACE INTO slack_users (workspace, user_id, name, fetched_at)"
            " VALUES (?, ?, ?, ?)",
            [(workspace, uid, name, now) for uid, name in names.items()],
        )
