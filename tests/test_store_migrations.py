"""Migrations: safe when processes race to open one fresh file, and older files move forward.

The children import only the store (not tests.conftest), so they start quickly.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
from multiprocessing.synchronize import Barrier
from pathlib import Path
from queue import Empty
from typing import Any

from bot.migrations import known_names
from bot.store import Store

PROCESSES = 5
ROUNDS = 8


def _open_each(paths: list[str], barrier: Barrier, results: Any) -> None:
    """In a child process: open every path once, all children starting each round together."""
    for path in paths:
        barrier.wait(timeout=60)
        try:
            Store.open(path).close()
            results.put((path, "ok"))
        except Exception as exc:  # reported to the parent, which fails the test
            results.put((path, f"{type(exc).__name__}: {exc}"))


def test_processes_opening_one_fresh_file_at_once_all_succeed(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    paths = [str(tmp_path / f"fresh{i}.db") for i in range(ROUNDS)]
    barrier = ctx.Barrier(PROCESSES)
    results = ctx.Queue()
    children = [
        ctx.Process(target=_open_each, args=(paths, barrier, results)) for _ in range(PROCESSES)
    ]
    for child in children:
        child.start()
    outcomes: list[tuple[str, str]] = []
    try:
        while len(outcomes) < PROCESSES * ROUNDS:
            try:
                outcomes.append(results.get(timeout=120))
            except Empty:
                raise AssertionError(f"children stopped reporting after {outcomes}") from None
    finally:
        for child in children:
            child.join(30)
            if child.is_alive():
                child.kill()
    failures = [o for o in outcomes if o[1] != "ok"]
    assert failures == []
    for path in paths:
        store = Store.open(path)
        assert store.applied_migrations() == known_names()
        store.close()


def test_an_older_database_is_migrated_forward(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    Store.open(path).close()
    conn = sqlite3.connect(path)  # what a database of the previous release looks like
    conn.execute("ALTER TABLE turns DROP COLUMN recovery_claimed_by")
    conn.execute("ALTER TABLE turns DROP COLUMN recovery_claimed_at")
    conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm004_turn_recovery_claims'")
    conn.commit()
    conn.close()
    store = Store.open(path)
    # Migrations added after m004 were applied before it was taken back out: compare as sets.
    assert sorted(store.applied_migrations()) == sorted(known_names())
    columns = {r[1] for r in store.conn.execute("PRAGMA table_info(turns)")}
    assert {"recovery_claimed_by", "recovery_claimed_at"} <= columns
    store.close()
