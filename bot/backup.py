"""`archbot backup PATH`: a consistent copy of the live database.

SQLite's online backup API copies the pages under one read snapshot, so the
copy is consistent while `archbot run` keeps writing (WAL lets the writer go
on). The copy is written beside the target and renamed into place only once
it passed `PRAGMA integrity_check`, so PATH is never a half-written file.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from bot.errors import ArchbotError

log = logging.getLogger(__name__)

# Waits out a writer's checkpoint instead of failing at once.
BUSY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class BackupReport:
    """What a backup wrote: the file, its size and each table's row count."""

    path: Path
    size_bytes: int
    rows: dict[str, int]

    def lines(self) -> list[str]:
        """The report as printed by the CLI."""
        total = sum(self.rows.values())
        head = f"wrote {self.path}: {self.size_bytes:,} bytes, {total:,} rows"
        return [head, *(f"  {name}: {count:,}" for name, count in sorted(self.rows.items()))]


def backup_database(source: Path, target: Path, *, overwrite: bool = False) -> BackupReport:
    """Copy the database at `source` to `target` consistently; refuse to replace a file unless told."""
    if not source.is_file():
        # Opening would create an empty database: a backup of nothing.
        raise ArchbotError(f"no database at {source} (check [storage] path)")
    if target.exists() and target.resolve() == source.resolve():
        raise ArchbotError(f"{target} is the live database itself; choose another path")
    if target.exists() and not overwrite:
        raise ArchbotError(f"{target} already exists; not overwriting it (pass --force to replace)")
    if target.is_dir():
        raise ArchbotError(f"{target} is a directory; give a file name such as {target}/archbot.db")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    partial.unlink(missing_ok=True)
    try:
        rows = _copy(source, partial)
        os.replace(partial, target)
    except sqlite3.Error as exc:
        raise ArchbotError(f"backup of {source} failed: {exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    report = BackupReport(target, target.stat().st_size, rows)
    log.info("backup written to %s (%d bytes)", target, report.size_bytes)
    return report


def _copy(source: Path, partial: Path) -> dict[str, int]:
    """Back up into `partial`, check it, and count its rows."""
    # mode=rw: never create the source as a side effect.
    src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=rw", uri=True, timeout=BUSY_TIMEOUT_S)
    try:
        dst = sqlite3.connect(partial, isolation_level=None)
        try:
            # pages=-1: one step under one read snapshot, so writers cannot force restarts.
            src.backup(dst, pages=-1)
            # A self-contained single file: no -wal/-shm beside the copy.
            dst.execute("PRAGMA journal_mode = DELETE")
            problems = [row[0] for row in dst.execute("PRAGMA integrity_check")]
            if problems != ["ok"]:
                raise ArchbotError(f"the copy failed its integrity check: {problems[0]}")
            return _row_counts(dst)
        finally:
            dst.close()
    finally:
        src.close()


def _row_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Rows in each table of `conn`."""
    names = [
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    # Names come from sqlite_master; quoted so an odd name cannot break the statement.
    return {
        name: conn.execute(
            f'SELECT count(*) FROM "{name.replace(chr(34), chr(34) * 2)}"'
        ).fetchone()[0]
        for name in names
    }
