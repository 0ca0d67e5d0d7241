"""`archbot backup PATH`: a consistent copy through SQLite's online backup API, taken while a
writer keeps inserting; refusals (no database, existing file); the CLI report."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from bot.backup import backup_database
from bot.errors import ArchbotError
from bot.store import Store
from tests.conftest import run_cli, wait_until


def make_db(path: Path, events: int = 0) -> None:
    store = Store.open(path)
    try:
        for n in range(events):
            store.claim_event(f"seed-{n}")
    finally:
        store.close()


def test_backup_while_a_writer_inserts_is_consistent(tmp_path: Path) -> None:
    live = tmp_path / "live.db"
    make_db(live, events=200)
    written = 0
    stop = threading.Event()

    def writer() -> None:
        nonlocal written
        conn = sqlite3.connect(live, isolation_level=None, timeout=10)
        try:
            while not stop.is_set():
                conn.execute(
                    "INSERT INTO events (key, received_at) VALUES (?, 'now')", (f"w-{written}",)
                )
                written += 1
        finally:
            conn.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        wait_until(lambda: written >= 500, what="the writer to insert rows")
        before = written
        report = backup_database(live, tmp_path / "copy.db")
        wait_until(lambda: written >= before + 100, what="the writer to go on during the backup")
    finally:
        stop.set()
        thread.join(10)
    copy = sqlite3.connect(tmp_path / "copy.db")
    try:
        assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = copy.execute("SELECT count(*) FROM events").fetchone()[0]
        assert copy.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    finally:
        copy.close()
    assert rows >= 200 + before  # every row committed before the backup began
    assert report.rows["events"] == rows
    assert report.size_bytes == (tmp_path / "copy.db").stat().st_size
    assert not list(tmp_path.glob(".copy.db.partial*"))
    Store.open(tmp_path / "copy.db").close()  # the copy opens as an archbot database


def test_backup_refuses_an_existing_file_unless_forced(tmp_path: Path) -> None:
    live = tmp_path / "live.db"
    make_db(live, events=3)
    target = tmp_path / "copy.db"
    target.write_text("keep me")
    with pytest.raises(ArchbotError, match="already exists"):
        backup_database(live, target)
    assert target.read_text() == "keep me"
    report = backup_database(live, target, overwrite=True)
    assert report.rows["events"] == 3
    with pytest.raises(ArchbotError, match="live database itself"):
        backup_database(live, live, overwrite=True)


def test_backup_of_a_missing_database_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(ArchbotError, match="no database"):
        backup_database(tmp_path / "absent.db", tmp_path / "copy.db")
    assert not (tmp_path / "absent.db").exists()
    assert not (tmp_path / "copy.db").exists()


def test_backup_cli_reports_size_and_rows(tmp_path: Path) -> None:
    live = tmp_path / "live.db"
    make_db(live, events=7)
    env = {"ARCHBOT_STORAGE__PATH": str(live)}
    done = run_cli(["backup", "b.db"], cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert "wrote b.db:" in done.stdout and "bytes" in done.stdout
    assert "  events: 7" in done.stdout
    again = run_cli(["backup", "b.db"], cwd=tmp_path, env=env)
    assert again.returncode == 1
    assert again.stderr.strip() == (
        "archbot: b.db already exists; not overwriting it (pass --force to replace)"
    )
    assert "Traceback" not in again.stderr
