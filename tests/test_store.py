"""Storage: migrations on a blank database, reopening, sharing the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.errors import StorageError
from bot.migrations import migrations
from bot.store import Store


def test_blank_database_is_migrated(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "new.db")
    assert store.applied_migrations() == [m.name for m in migrations._migrations]
    tables = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"threads", "turns", "messages", "todos", "usage", "events"} <= tables
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()


def test_reopening_keeps_data_and_applies_nothing_twice(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    store = Store.open(path)
    thread = store.ensure_thread(
        "console/x", platform="console", workspace="", channel="", thread="x", channel_key="c"
    )
    store.add_todo(thread.id, "Measure the backfill")
    store.close()

    again = Store.open(path)
    assert again.applied_migrations() == [m.name for m in migrations._migrations]
    reopened = again.get_thread("console/x")
    assert reopened is not None
    assert [t.title for t in again.list_todos(reopened.id)] == ["Measure the backfill"]
    again.close()


def test_two_connections_share_the_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    first, second = Store.open(path), Store.open(path)
    assert first.claim_event("slack:T1:Ev1") is True
    assert second.claim_event("slack:T1:Ev1") is False
    first.close()
    second.close()


def test_todo_numbers_are_per_thread_and_never_reused(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "t.db")
    a = store.ensure_thread(
        "k/a", platform="p", workspace="", channel="", thread="a", channel_key="c"
    )
    b = store.ensure_thread(
        "k/b", platform="p", workspace="", channel="", thread="b", channel_key="c"
    )
    assert store.add_todo(a.id, "one").number == 1
    assert store.add_todo(a.id, "two").number == 2
    assert store.add_todo(b.id, "other").number == 1
    store.update_todo(a.id, 2, status="dropped")
    assert store.add_todo(a.id, "three").number == 3
    with pytest.raises(KeyError):
        store.update_todo(a.id, 9, status="done")
    store.close()


def test_unopenable_database_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(StorageError):
        Store.open(tmp_path / "dir.db")
