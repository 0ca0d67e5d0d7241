"""Housekeeping: processed event ids are forgotten after 7 days (redeliveries inside the week
are still refused); the GitHub HTTP cache is bounded by bytes as well as by rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.github import CachedResponse, HttpCache
from bot.store import Store


def test_event_ids_older_than_a_week_are_pruned(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "a.db")
    try:
        old = (datetime.now(UTC) - timedelta(days=8)).isoformat(timespec="microseconds")
        recent = (datetime.now(UTC) - timedelta(days=6)).isoformat(timespec="microseconds")
        store.conn.executemany(
            "INSERT INTO events (key, received_at) VALUES (?, ?)",
            [("old-1", old), ("old-2", old), ("recent", recent)],
        )
        assert store.claim_event("fresh")  # a Store's first claim prunes
        keys = {row[0] for row in store.conn.execute("SELECT key FROM events")}
        assert keys == {"recent", "fresh"}
        assert not store.claim_event("recent")  # still a redelivery inside the week
        assert store.prune_events() == 0
    finally:
        store.close()


def response(size: int) -> CachedResponse:
    return CachedResponse('"e"', None, 200, [("content-type", "application/json")], b"x" * size)


def test_http_cache_is_bounded_by_bytes_keeping_the_newest(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "a.db")
    try:
        cache = HttpCache(store, max_rows=100, max_bytes=10_000)
        for n in range(30):
            cache.put(f"https://api.github.com/r/{n}", response(1_000))
        cache.prune()
        kept = [row[0] for row in store.conn.execute("SELECT url FROM http_cache")]
        total = store.conn.execute("SELECT sum(length(body)) FROM http_cache").fetchone()[0]
        assert total <= 10_000 and len(kept) == 10
        assert cache.get("https://api.github.com/r/29") is not None
        assert cache.get("https://api.github.com/r/0") is None
        # A body near the bound prunes at once, not 100 puts later.
        cache.put("https://api.github.com/big", response(9_500))
        total = store.conn.execute("SELECT sum(length(body)) FROM http_cache").fetchone()[0]
        assert total <= 10_000 and cache.get("https://api.github.com/big") is not None
        # Rows still bound it too.
        rows = HttpCache(store, max_rows=3, max_bytes=10**9)
        for n in range(5):
            rows.put(f"https://api.github.com/s/{n}", response(10))
        rows.prune()
        assert store.conn.execute("SELECT count(*) FROM http_cache").fetchone()[0] == 3
    finally:
        store.close()
