"""A database a newer archbot migrated is refused in one line, by the store and by the CLI."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bot.errors import StorageError
from bot.migrations import known_names
from bot.store import Store
from tests.conftest import run_cli


def _mark_applied_by_newer_archbot(path: Path, name: str) -> None:
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES (?, ?, ?)",
        ("archbot", name, "2027-01-01 00:00:00+00:00"),
    )
    conn.commit()
    conn.close()


def test_a_database_with_an_unknown_migration_is_refused_naming_both_versions(
    tmp_path: Path,
) -> None:
    path = tmp_path / "archbot.db"
    Store.open(path).close()
    _mark_applied_by_newer_archbot(path, "m009_future_things")
    with pytest.raises(StorageError) as refused:
        Store.open(path)
    message = str(refused.value)
    assert message == (
        f"{path} was migrated by a newer archbot (has m009_future_things, "
        f"this version knows up to {known_names()[-1]}): upgrade archbot"
    )


def test_a_refused_database_is_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "archbot.db"
    Store.open(path).close()
    _mark_applied_by_newer_archbot(path, "m009_future_things")
    before = sqlite3.connect(path).execute("SELECT count(*) FROM _sqlite_migrations").fetchone()
    with pytest.raises(StorageError):
        Store.open(path)
    after = sqlite3.connect(path).execute("SELECT count(*) FROM _sqlite_migrations").fetchone()
    assert before == after


def test_a_renamed_column_is_refused_naming_the_column_and_versions(tmp_path: Path) -> None:
    path = tmp_path / "archbot.db"
    Store.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE turns RENAME COLUMN reply TO answer")
    conn.commit()
    conn.close()
    with pytest.raises(StorageError) as refused:
        Store.open(path)
    message = str(refused.value)
    assert "\n" not in message
    assert "column turns.reply is missing" in message
    assert f"this version knows up to {known_names()[-1]}" in message
    assert "upgrade archbot" in message


def test_a_dropped_table_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "archbot.db"
    Store.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE http_cache")
    conn.commit()
    conn.close()
    with pytest.raises(StorageError, match="table http_cache is missing"):
        Store.open(path)


def test_the_cli_prints_the_refusal_as_one_line_and_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "archbot.db"
    Store.open(path).close()
    _mark_applied_by_newer_archbot(path, "m009_future_things")
    done = run_cli(
        ["chat", "--thread", "t1"],
        cwd=tmp_path,
        stdin="How do we version features?\n",
        env={"ARCHBOT_STORAGE__PATH": str(path)},
    )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"archbot: {path} was migrated by a newer archbot (has m009_future_things, "
        f"this version knows up to {known_names()[-1]}): upgrade archbot"
    ]
    assert "Traceback" not in done.stdout
