"""SQLite storage: threads, turns, messages, todos, usage, events, bindings, HTTP cache.

One `Store` per process, used only on the event loop's thread. WAL and a
busy timeout let several processes (the bot, `archbot chat`, `checkin run`)
share one file. Migrations run on open, under a write lock, so processes
starting together on a fresh file do not collide.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sqlite3
import time
import uuid
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from bot.errors import StorageError
from bot.events import ContextMessage, IncomingMessage
from bot.migrations import known_names, migrations

log = logging.getLogger(__name__)

TODO_STATUSES = ("open", "in_progress", "done", "dropped")
CONTENT_CACHE_SIZE = 20_000  # parsed messages kept in memory (`Store._parsed`)
# ...and at most this much of their JSON text (the parsed blocks take a few times as much): a
# thread of pasted logs must not hold the process's memory. A message over an eighth of it is
# parsed every time instead of pushing the rest out.
CONTENT_CACHE_BYTES = 16 * 1024 * 1024
# Threads whose history is kept in memory (`Store._history`), and at most this many characters
# of their JSON text: a turn reads its thread's history from memory instead of rebuilding it.
HISTORY_CACHE_THREADS = 1_000
HISTORY_CACHE_CHARS = 8 * 1024 * 1024
_LAST = 2**63  # sorts after every message id: (turn, _LAST) ends a turn's messages
BUSY_TIMEOUT_S = 10.0  # a writer waits this long for another process's write to commit
# Opening waits longer: several processes starting on a fresh file queue for
# the migration lock one after the other instead of failing "database is locked".
OPEN_BUSY_TIMEOUT_S = 30.0
# A recovery claim not renewed for this long belongs to a process that died.
RECOVERY_LEASE = timedelta(seconds=60)
# Platforms redeliver within minutes; a week of event ids is ample, and the table stays small.
EVENT_RETENTION = timedelta(days=7)
PRUNE_EVENTS_EVERY = 1000  # claims


def utcnow() -> str:
    """Current UTC time as an ISO-8601 string (sortable, stored everywhere)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def estimate_tokens(content: Any) -> int:
    """A cheap token estimate (about 4 characters a token) for the history budget."""
    text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    return max(1, len(text) // 4)


@dataclass(frozen=True, slots=True)
class ThreadRow:
    id: int
    key: str
    platform: str
    workspace: str
    channel: str
    thread: str
    channel_key: str
    repo: str | None
    summary: str | None
    summary_until: int
    context_imported: bool
    checkin: str | None
    joined: bool = False


@dataclass(frozen=True, slots=True)
class TurnRow:
    id: int
    thread_id: int
    event_key: str | None
    user: str
    user_name: str
    text: str
    status: str
    reply: str | None
    posted_at: str | None


@dataclass(frozen=True, slots=True)
class StoredMessage:
    id: int
    turn_id: int | None
    role: str
    content: list[dict[str, Any]]
    status: str
    tokens: int


@dataclass(slots=True)
class _ThreadHistory:
    """One thread's messages of turns after `after`, in history order, as the database has them."""

    after: int
    messages: list[StoredMessage] = field(default_factory=list)
    keys: list[tuple[int, int]] = field(default_factory=list)  # (turn or 0, id), sorted
    sizes: list[int] = field(default_factory=list)  # characters of each message's JSON text
    chars: int = 0  # their sum

    def add(self, message: StoredMessage, chars: int) -> None:
        key = (message.turn_id or 0, message.id)
        at = bisect_right(self.keys, key)
        self.keys.insert(at, key)
        self.messages.insert(at, message)
        self.sizes.insert(at, chars)
        self.chars += chars

    def drop_until(self, turn: int) -> int:
        """Forget the messages of turns up to `turn` (summarised); returns their characters."""
        cut = self.span(self.after, turn)[1]
        dropped = sum(self.sizes[:cut])
        del self.messages[:cut], self.keys[:cut], self.sizes[:cut]
        self.after = turn
        self.chars -= dropped
        return dropped

    def span(self, after_turn: int, upto_turn: int) -> tuple[int, int]:
        return bisect_right(self.keys, (after_turn, _LAST)), bisect_right(
            self.keys, (upto_turn, _LAST)
        )


@dataclass(frozen=True, slots=True)
class Todo:
    number: int
    title: str
    status: str


@dataclass(frozen=True, slots=True)
class UsageRecord:
    model: str
    purpose: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    latency_ms: int
    cost_usd: float


@dataclass(frozen=True, slots=True)
class UsageTotals:
    calls: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float

    @property
    def total_tokens(self) -> int:
        """All tokens billed, cached ones included."""
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_read_tokens
            + self.cache_write_tokens
        )


class Store:
    """The archbot database; open it with `Store.open(path)`."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.conn = db.conn
        self._content_cache: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        self._content_cache_bytes = 0  # UTF-8 bytes of the JSON texts in `_content_cache`
        self.content_cache_limits = (CONTENT_CACHE_SIZE, CONTENT_CACHE_BYTES)
        # Kept in step with this connection's own writes (`_touched` undoes a rolled-back
        # transaction's) and dropped whole when another connection commits (`data_version`).
        self._history: OrderedDict[int, _ThreadHistory] = OrderedDict()
        self._history_chars = 0
        self.history_cache_limits = (HISTORY_CACHE_THREADS, HISTORY_CACHE_CHARS)
        self._touched: set[int] = set()  # threads whose cached history this transaction changed
        self._data_version: int | None = None
        # Who holds a recovery claim: readable in the database, unique per Store.
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.recovery_lease = RECOVERY_LEASE
        self._claims = 0

    @classmethod
    def open(cls, path: str | Path) -> Store:
        """Open (creating if needed) and migrate the database at `path`.

        Safe when several processes open one fresh file at once. Raises
        StorageError, in one line, for a database a newer archbot migrated.
        """
        conn: sqlite3.Connection | None = None
        try:
            target = str(path)
            if target != ":memory:":
                Path(target).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(target, isolation_level=None, timeout=OPEN_BUSY_TIMEOUT_S)
            conn.row_factory = sqlite3.Row
            db = Database(conn)
            if target != ":memory:":
                _use_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            problem = _migrate(db) or _schema_problem(db)
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            raise StorageError(f"cannot open database {path}: {exc}") from None
        if problem is not None:
            conn.close()
            raise StorageError(f"{path} {problem}")
        return cls(db)

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A write transaction (IMMEDIATE, so concurrent writers wait instead of failing)."""
        if self.conn.in_transaction:  # joins the outer transaction: all or nothing
            yield
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.conn.execute("COMMIT")
        except BaseException:
            # What the cache learnt from this transaction's writes is undone with them.
            for thread_id in self._touched:
                self._drop_history(thread_id)
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        finally:
            self._touched.clear()

    def applied_migrations(self) -> list[str]:
        """Names of the migrations applied to this database, in order."""
        return [m.name for m in migrations.applied(self.db)]

    # threads -----------------------------------------------------------------

    def _thread_from_row(self, row: sqlite3.Row) -> ThreadRow:
        return ThreadRow(
            id=row["id"],
            key=row["key"],
            platform=row["platform"],
            workspace=row["workspace"],
            channel=row["channel"],
            thread=row["thread"],
            channel_key=row["channel_key"],
            repo=row["repo"],
            summary=row["summary"],
            summary_until=row["summary_until"],
            context_imported=bool(row["context_imported"]),
            checkin=row["checkin"],
            joined=row["joined_at"] is not None,
        )

    def get_thread(self, key: str) -> ThreadRow | None:
        """The thread with this key, if the bot has seen it."""
        row = self.conn.execute("SELECT * FROM threads WHERE key = ?", (key,)).fetchone()
        return self._thread_from_row(row) if row else None

    def get_thread_by_id(self, thread_id: int) -> ThreadRow:
        """The thread with this id."""
        row = self.conn.execute("SELECT * FROM threads WHERE id = ?", (thread_id,)).fetchone()
        return self._thread_from_row(row)

    def ensure_thread(
        self,
        key: str,
        *,
        platform: str,
        workspace: str,
        channel: str,
        thread: str,
        channel_key: str,
        checkin: str | None = None,
    ) -> ThreadRow:
        """Return the thread with this key, creating it on first sight."""
        existing = self.get_thread(key)
        if existing is not None:
            return existing
        self.conn.execute(
            "INSERT INTO threads (key, platform, workspace, channel, thread, channel_key,"
            " checkin, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO NOTHING",
            (key, platform, workspace, channel, thread, channel_key, checkin, utcnow()),
        )
        found = self.get_thread(key)
        assert found is not None
        return found

    def ensure_thread_for(self, msg: IncomingMessage) -> ThreadRow:
        """Return the thread an incoming message belongs to, creating it on first sight."""
        return self.ensure_thread(
            msg.thread_key,
            platform=msg.platform,
            workspace=msg.workspace,
            channel=msg.channel,
            thread=msg.thread,
            channel_key=msg.channel_key,
        )

    def join_thread(self, msg: IncomingMessage) -> ThreadRow:
        """Mark the message's thread as one the bot takes part in (creating it on first sight)."""
        thread = self.ensure_thread_for(msg)
        if not thread.joined:
            self.conn.execute(
                "UPDATE threads SET joined_at = ? WHERE id = ? AND joined_at IS NULL",
                (utcnow(), thread.id),
            )
            thread = self.get_thread_by_id(thread.id)
        return thread

    def threads_in_channel(self, channel_key: str) -> list[ThreadRow]:
        """Every thread the bot has in a channel."""
        rows = self.conn.execute(
            "SELECT * FROM threads WHERE channel_key = ? ORDER BY id", (channel_key,)
        ).fetchall()
        return [self._thread_from_row(r) for r in rows]

    def set_thread_repo(self, thread_id: int, repo: str | None) -> None:
        """Bind a repository to one thread (None unbinds)."""
        self.conn.execute("UPDATE threads SET repo = ? WHERE id = ?", (repo, thread_id))

    # events and turns --------------------------------------------------------

    def claim_event(self, event_key: str) -> bool:
        """Record an event id; False when it was already recorded (a redelivery)."""
        cur = self.conn.execute(
            "INSERT INTO events (key, received_at) VALUES (?, ?) ON CONFLICT(key) DO NOTHING",
            (event_key, utcnow()),
        )
        # The first claim too, so a process that restarts often still prunes.
        if self._claims % PRUNE_EVENTS_EVERY == 0:
            self.prune_events()
        self._claims += 1
        return cur.rowcount == 1

    def prune_events(self, older_than: timedelta = EVENT_RETENTION) -> int:
        """Forget processed event ids received more than `older_than` ago; returns how many."""
        cutoff = (datetime.now(UTC) - older_than).isoformat(timespec="microseconds")
        return self.conn.execute("DELETE FROM events WHERE received_at < ?", (cutoff,)).rowcount

    def start_turn(
        self,
        thread: ThreadRow,
        *,
        event_key: str | None,
        user: str,
        user_name: str,
        text: str,
        content: list[dict[str, Any]],
    ) -> int:
        """Store a user's message as a pending turn and return the turn id (inside a transaction)."""
        now = utcnow()
        cur = self.conn.execute(
            "INSERT INTO turns (thread_id, event_key, user, user_name, text, status, created_at)"
            " VALUES (?, ?, ?, ?, ?, 'pending', ?)",
            (thread.id, event_key, user, user_name, text, now),
        )
        turn_id = int(cur.lastrowid or 0)
        self.add_message(thread.id, turn_id, "user", content, status="pending")
        return turn_id

    def get_turn(self, turn_id: int) -> TurnRow:
        """One turn by id."""
        row = self.conn.execute("SELECT * FROM turns WHERE id = ?", (turn_id,)).fetchone()
        return TurnRow(
            id=row["id"],
            thread_id=row["thread_id"],
            event_key=row["event_key"],
            user=row["user"],
            user_name=row["user_name"],
            text=row["text"],
            status=row["status"],
            reply=row["reply"],
            posted_at=row["posted_at"],
        )

    def finish_turn(
        self, turn_id: int, *, status: str, reply: str, error: str | None = None
    ) -> None:
        """Close a turn: its user message stops being pending, its reply is stored.

        A stopped turn keeps its messages in the history (its question and the
        answer cut off), like a done one; a failed turn's are left out.
        """
        with self.transaction():
            self.conn.execute(
                "UPDATE turns SET status = ?, reply = ?, error = ?, finished_at = ? WHERE id = ?",
                (status, reply, error, utcnow(), turn_id),
            )
            new = "complete" if status in ("done", "stopped") else "failed"
            changed = self.conn.execute(
                "UPDATE messages SET status = ? WHERE turn_id = ? AND status = 'pending'"
                " RETURNING thread_id, id",
                (new, turn_id),
            ).fetchall()
            for thread_id, message_id in changed:
                self._set_cached_status(thread_id, turn_id, message_id, new)

    def mark_posted(self, turn_id: int) -> None:
        """Record that a turn's reply reached the platform."""
        self.conn.execute("UPDATE turns SET posted_at = ? WHERE id = ?", (utcnow(), turn_id))

    def pending_turns(self, created_before: str) -> list[TurnRow]:
        """Turns stored before `created_before` that never finished (a crash)."""
        ids = [
            r[0]
            for r in self.conn.execute(
                "SELECT id FROM turns WHERE status = 'pending' AND created_at < ? ORDER BY id",
                (created_before,),
            ).fetchall()
        ]
        return [self.get_turn(i) for i in ids]

    def unposted_turns(self, finished_after: str, finished_before: str) -> list[TurnRow]:
        """Turns finished in the window whose reply was never confirmed as posted."""
        ids = [
            r[0]
            for r in self.conn.execute(
                "SELECT id FROM turns WHERE status IN ('done', 'failed', 'stopped')"
                " AND posted_at IS NULL AND reply IS NOT NULL AND finished_at >= ? AND finished_at < ? ORDER BY id",
                (finished_after, finished_before),
            ).fetchall()
        ]
        return [self.get_turn(i) for i in ids]

    def claim_recovery(self, turn_id: int) -> bool:
        """Claim an unposted turn for recovery by this process; False if another holds it.

        One conditional UPDATE under a write lock, so of several processes
        started together exactly one wins. A claim whose lease went stale (its
        holder died) can be taken over; a posted turn cannot be claimed.
        """
        now = datetime.now(UTC)
        stale = (now - self.recovery_lease).isoformat(timespec="microseconds")
        with self.transaction():
            cur = self.conn.execute(
                "UPDATE turns SET recovery_claimed_by = ?, recovery_claimed_at = ?"
                " WHERE id = ? AND posted_at IS NULL AND (recovery_claimed_by IS NULL"
                " OR recovery_claimed_by = ? OR recovery_claimed_at < ?)",
                (self.owner, now.isoformat(timespec="microseconds"), turn_id, self.owner, stale),
            )
        return cur.rowcount == 1

    def renew_recovery(self, turn_id: int) -> bool:
        """Extend this process's recovery claim on a turn; False if it was lost."""
        cur = self.conn.execute(
            "UPDATE turns SET recovery_claimed_at = ? WHERE id = ? AND recovery_claimed_by = ?",
            (utcnow(), turn_id, self.owner),
        )
        return cur.rowcount == 1

    def release_recovery(self, turn_id: int) -> None:
        """Give up this process's recovery claim on a turn (a later start may retry it)."""
        self.conn.execute(
            "UPDATE turns SET recovery_claimed_by = NULL, recovery_claimed_at = NULL"
            " WHERE id = ? AND recovery_claimed_by = ?",
            (turn_id, self.owner),
        )

    @asynccontextmanager
    async def recovery_claim(self, turn_id: int) -> AsyncIterator[bool]:
        """Hold the recovery claim on a turn for the block, renewed; yields False if not won."""
        if not self.claim_recovery(turn_id):
            yield False
            return
        renewing = asyncio.create_task(self._keep_claim(turn_id))
        try:
            yield True
        finally:
            renewing.cancel()
            with suppress(asyncio.CancelledError):
                await renewing
            self.release_recovery(turn_id)

    async def _keep_claim(self, turn_id: int) -> None:
        while True:
            await asyncio.sleep(self.recovery_lease.total_seconds() / 4)
            if not self.renew_recovery(turn_id):
                # Only after the loop stalled for most of a lease; the other
                # process may now answer this turn too.
                log.warning("lost the recovery claim on turn %s to another process", turn_id)
                return

    def thread_has_turns(self, thread_id: int) -> bool:
        """True when anyone has talked to the bot in this thread."""
        row = self.conn.execute(
            "SELECT 1 FROM turns WHERE thread_id = ? LIMIT 1", (thread_id,)
        ).fetchone()
        return row is not None

    # messages ------------------------------------------------------------------

    def add_message(
        self,
        thread_id: int,
        turn_id: int | None,
        role: str,
        content: list[dict[str, Any]],
        *,
        status: str = "complete",
    ) -> int:
        """Append one message (a list of content blocks) to a thread."""
        body = json.dumps(content, ensure_ascii=False, separators=(",", ":"))
        tokens = estimate_tokens(body)
        cur = self.conn.execute(
            "INSERT INTO messages (thread_id, turn_id, role, content, status, tokens, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (thread_id, turn_id, role, body, status, tokens, utcnow()),
        )
        message_id = int(cur.lastrowid or 0)
        cached = self._history.get(thread_id)
        if cached is not None and (turn_id or 0) > cached.after:
            # As a fresh read would return it: parsed from the text just stored.
            stored = StoredMessage(message_id, turn_id, role, self._parsed(body), status, tokens)
            self._note_change(thread_id)
            cached.add(stored, len(body))
            self._history_chars += len(body)
            self._evict_history()
        return message_id

    def import_context(self, thread_id: int, context: Sequence[ContextMessage]) -> None:
        """Store a thread's earlier platform messages once, as context for later turns."""
        with self.transaction():
            row = self.conn.execute(
                "SELECT context_imported FROM threads WHERE id = ?", (thread_id,)
            ).fetchone()
            if row is None or row[0]:
                return
            if context:
                lines = "\n".join(
                    f"{'(bot) ' if c.is_bot else ''}{c.user}: {c.text}" for c in context
                )
                text = (
                    "Earlier messages in this thread, before you were mentioned "
                    f"(context only):\n{lines}"
                )
                self.add_message(
                    thread_id, None, "user", [{"type": "text", "text": text}], status="context"
                )
            self.conn.execute("UPDATE threads SET context_imported = 1 WHERE id = ?", (thread_id,))

    def history_messages(
        self, thread_id: int, *, after_turn: int, upto_turn: int
    ) -> list[StoredMessage]:
        """Messages of turns in (after_turn, upto_turn], in turn order then insertion order.

        Imported context has no turn and sorts as turn 0. Ordering by turn keeps a
        queued later message out of an earlier turn's history. Served from memory
        once the thread has been read (see `_thread_history`).
        """
        cached = self._thread_history(thread_id, after_turn)
        start, end = cached.span(after_turn, upto_turn)
        return cached.messages[start:end]

    def _thread_history(self, thread_id: int, after_turn: int) -> _ThreadHistory:
        """The thread's history after `after_turn`, from memory or read once from the database."""
        self._check_other_writers()
        cached = self._history.get(thread_id)
        if cached is not None and cached.after <= after_turn:
            self._history.move_to_end(thread_id)
            if cached.after < after_turn:  # compacted since: the summary holds the rest
                self._history_chars -= cached.drop_until(after_turn)
            return cached
        rows = self.conn.execute(
            "SELECT id, turn_id, role, content, status, tokens FROM messages"
            " WHERE thread_id = ? AND coalesce(turn_id, 0) > ? ORDER BY coalesce(turn_id, 0), id",
            (thread_id, after_turn),
        ).fetchall()
        loaded = _ThreadHistory(after_turn)
        for r in rows:
            raw = r["content"]
            message = StoredMessage(
                r["id"], r["turn_id"], r["role"], self._parsed(raw), r["status"], r["tokens"]
            )
            loaded.keys.append((message.turn_id or 0, message.id))
            loaded.messages.append(message)
            loaded.sizes.append(len(raw))
            loaded.chars += len(raw)
        self._drop_history(thread_id)
        self._note_change(thread_id)  # read inside a transaction: it may still roll back
        if (
            loaded.chars <= self.history_cache_limits[1] // 8
        ):  # one huge thread must not push out all the others
            self._history[thread_id] = loaded
            self._history_chars += loaded.chars
            self._evict_history()
        return loaded

    def _check_other_writers(self) -> None:
        """Forget every cached history when another connection (a process) committed since."""
        version = int(self.conn.execute("PRAGMA data_version").fetchone()[0])
        if version != self._data_version:
            self._history.clear()
            self._history_chars = 0
            self._data_version = version

    def _note_change(self, thread_id: int) -> None:
        if self.conn.in_transaction:
            self._touched.add(thread_id)

    def _set_cached_status(
        self, thread_id: int, turn_id: int, message_id: int, status: str
    ) -> None:
        cached = self._history.get(thread_id)
        if cached is None or turn_id <= cached.after:
            return
        at = bisect_right(cached.keys, (turn_id, message_id)) - 1
        if at >= 0 and cached.keys[at] == (turn_id, message_id):
            self._note_change(thread_id)
            cached.messages[at] = replace(cached.messages[at], status=status)

    def _drop_history(self, thread_id: int) -> None:
        dropped = self._history.pop(thread_id, None)
        if dropped is not None:
            self._history_chars -= dropped.chars

    def _evict_history(self) -> None:
        max_threads, max_chars = self.history_cache_limits
        while self._history and (
            len(self._history) > max_threads or self._history_chars > max_chars
        ):
            _, evicted = self._history.popitem(last=False)
            self._history_chars -= evicted.chars

    @property
    def history_cache_usage(self) -> tuple[int, int]:
        """(threads whose history is held, characters of its JSON text): see `history_cache_limits`."""
        return len(self._history), self._history_chars

    def _parsed(self, raw: str) -> list[dict[str, Any]]:
        """JSON content blocks, decoded once: every turn re-reads its thread's history."""
        # Keyed by the text itself (not the row id, which SQLite may reuse after a
        # delete), so a hit is always the same content. Callers must not mutate it.
        cache = self._content_cache
        found = cache.get(raw)
        if found is not None:
            cache.move_to_end(raw)
            return found
        parsed: list[dict[str, Any]] = json.loads(raw)  # add_message wrote a list of blocks
        found = parsed
        max_entries, max_bytes = self.content_cache_limits
        size = len(raw.encode("utf-8"))
        if size <= max_bytes // 8:
            cache[raw] = found
            self._content_cache_bytes += size
            while len(cache) > max_entries or self._content_cache_bytes > max_bytes:
                evicted, _ = cache.popitem(last=False)
                self._content_cache_bytes -= len(evicted.encode("utf-8"))
        return found

    @property
    def content_cache_usage(self) -> tuple[int, int]:
        """(parsed messages held, bytes of their JSON text): bounded by `content_cache_limits`."""
        return len(self._content_cache), self._content_cache_bytes

    def history_tokens(self, thread_id: int, *, after_turn: int, upto_turn: int) -> int:
        """Estimated tokens of the messages `history_messages` would return."""
        return sum(
            m.tokens
            for m in self.history_messages(thread_id, after_turn=after_turn, upto_turn=upto_turn)
        )

    def set_summary(self, thread_id: int, summary: str | None, until_turn: int) -> None:
        """Replace the thread's compacted summary; turns up to `until_turn` leave the history."""
        self.conn.execute(
            "UPDATE threads SET summary = ?, summary_until = ? WHERE id = ?",
            (summary, until_turn, thread_id),
        )

    def forget(self, thread_id: int) -> int:
        """Delete the thread's conversation memory (todos stay); return messages removed."""
        with self.transaction():
            cur = self.conn.execute("DELETE FROM messages WHERE thread_id = ?", (thread_id,))
            self._drop_history(thread_id)
            self.conn.execute(
                "UPDATE threads SET summary = NULL, summary_until = 0 WHERE id = ?", (thread_id,)
            )
        return cur.rowcount

    # todos -------------------------------------------------------------------------

    def list_todos(self, thread_id: int, *, include_closed: bool = True) -> list[Todo]:
        """The thread's todos in number order."""
        sql = "SELECT number, title, status FROM todos WHERE thread_id = ?"
        if not include_closed:
            sql += " AND status IN ('open', 'in_progress')"
        rows = self.conn.execute(sql + " ORDER BY number", (thread_id,)).fetchall()
        return [Todo(r["number"], r["title"], r["status"]) for r in rows]

    def add_todo(self, thread_id: int, title: str, created_by: str = "") -> Todo:
        """Add an open todo; numbers start at 1 per thread and are never reused."""
        title = " ".join(title.split())
        if not title:
            raise ValueError("a todo needs a title")
        now = utcnow()
        with self.transaction():
            number = int(
                self.conn.execute(
                    "SELECT coalesce(max(number), 0) + 1 FROM todos WHERE thread_id = ?",
                    (thread_id,),
                ).fetchone()[0]
            )
            self.conn.execute(
                "INSERT INTO todos (thread_id, number, title, status, created_by, created_at,"
                " updated_at) VALUES (?, ?, ?, 'open', ?, ?, ?)",
                (thread_id, number, title, created_by, now, now),
            )
        return Todo(number, title, "open")

    def update_todo(
        self, thread_id: int, number: int, *, status: str | None = None, title: str | None = None
    ) -> Todo:
        """Change a todo's status and/or title; KeyError when there is no such number."""
        if status is not None and status not in TODO_STATUSES:
            raise ValueError(f"status must be one of {', '.join(TODO_STATUSES)}")
        row = self.conn.execute(
            "SELECT number, title, status FROM todos WHERE thread_id = ? AND number = ?",
            (thread_id, number),
        ).fetchone()
        if row is None:
            raise KeyError(number)
        new_title = " ".join(title.split()) if title else row["title"]
        new_status = status or row["status"]
        self.conn.execute(
            "UPDATE todos SET title = ?, status = ?, updated_at = ? WHERE thread_id = ? AND number = ?",
            (new_title, new_status, utcnow(), thread_id, number),
        )
        return Todo(number, new_title, new_status)

    def open_todos_in_channel(self, channel_key: str) -> list[tuple[ThreadRow, Todo]]:
        """Open and in-progress todos of every thread in a channel."""
        out: list[tuple[ThreadRow, Todo]] = []
        for thread in self.threads_in_channel(channel_key):
            out.extend((thread, t) for t in self.list_todos(thread.id, include_closed=False))
        return out

    # usage -----------------------------------------------------------------------

    def record_usage(
        self,
        record: UsageRecord,
        *,
        thread_id: int | None,
        channel_key: str,
        user: str,
        turn_id: int | None = None,
    ) -> None:
        """Append one model call to the usage ledger."""
        self.conn.execute(
            "INSERT INTO usage (thread_id, turn_id, channel_key, user, model, purpose,"
            " input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, latency_ms,"
            " cost_usd, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                thread_id,
                turn_id,
                channel_key,
                user,
                record.model,
                record.purpose,
                record.input_tokens,
                record.output_tokens,
                record.cache_read_tokens,
                record.cache_write_tokens,
                record.latency_ms,
                record.cost_usd,
                utcnow(),
            ),
        )

    def _totals(self, where: str, params: Iterable[Any]) -> UsageTotals:
        row = self.conn.execute(
            "SELECT count(*), coalesce(sum(input_tokens),0), coalesce(sum(output_tokens),0),"
            " coalesce(sum(cache_read_tokens),0), coalesce(sum(cache_write_tokens),0),"
            f" coalesce(sum(cost_usd),0) FROM usage WHERE {where}",
            tuple(params),
        ).fetchone()
        return UsageTotals(row[0], row[1], row[2], row[3], row[4], float(row[5]))

    def usage_for_thread(self, thread_id: int) -> UsageTotals:
        """Usage totals of one thread."""
        return self._totals("thread_id = ?", (thread_id,))

    def usage_for_channel(self, channel_key: str, since: datetime) -> UsageTotals:
        """Usage totals of a channel since a moment."""
        return self._totals("channel_key = ? AND created_at >= ?", (channel_key, since.isoformat()))

    def usage_by_user(self, channel_key: str, since: datetime) -> list[tuple[str, UsageTotals]]:
        """Per-user usage totals in a channel since a moment, biggest spender first."""
        users = [
            r[0]
            for r in self.conn.execute(
                "SELECT user FROM usage WHERE channel_key = ? AND created_at >= ?"
                " GROUP BY user ORDER BY sum(cost_usd) DESC",
                (channel_key, since.isoformat()),
            ).fetchall()
        ]
        return [
            (
                u,
                self._totals(
                    "channel_key = ? AND created_at >= ? AND user = ?",
                    (channel_key, since.isoformat(), u),
                ),
            )
            for u in users
        ]

    def tokens_used_since(self, user: str, since: datetime) -> int:
        """Tokens a user spent (all channels) since a moment, for the daily budget.

        Cache reads and writes count at their price relative to fresh input
        (about 0.1x and 1.25x), as they are billed: a long thread served from
        the cache must not use up the budget ten times faster than it costs.
        """
        from bot.pricing import price_for

        used = 0.0
        for model, plain, read, write in self.conn.execute(
            "SELECT model, coalesce(sum(input_tokens + output_tokens), 0),"
            " coalesce(sum(cache_read_tokens), 0), coalesce(sum(cache_write_tokens), 0)"
            " FROM usage WHERE user = ? AND created_at >= ? GROUP BY model",
            (user, since.isoformat()),
        ):
            price = price_for(model)
            used += plain + (read * price.cache_read + write * price.cache_write) / price.input
        return round(used)

    # channel bindings ----------------------------------------------------------------

    def channel_repo(self, channel_key: str) -> str | None:
        """The repository bound to a channel, if any."""
        row = self.conn.execute(
            "SELECT repo FROM channel_bindings WHERE channel_key = ?", (channel_key,)
        ).fetchone()
        return str(row[0]) if row else None

    def bind_channel_repo(self, channel_key: str, repo: str, bound_by: str) -> None:
        """Bind a repository to a channel (replacing any earlier binding)."""
        self.conn.execute(
            "INSERT INTO channel_bindings (channel_key, repo, bound_by, bound_at) VALUES (?,?,?,?)"
            " ON CONFLICT(channel_key) DO UPDATE SET repo = excluded.repo,"
            " bound_by = excluded.bound_by, bound_at = excluded.bound_at",
            (channel_key, repo, bound_by, utcnow()),
        )

    def bound_repos(self) -> set[str]:
        """Every repository bound to any channel or thread."""
        rows = self.conn.execute(
            "SELECT repo FROM channel_bindings UNION SELECT repo FROM threads WHERE repo IS NOT NULL"
        ).fetchall()
        return {str(r[0]) for r in rows}

    # check-in runs -------------------------------------------------------------------

    def claim_checkin_run(
        self, name: str, period: str, fire_time: str, *, trigger: str
    ) -> tuple[int | None, CheckinRun | None]:
        """Claim `(name, period)` for this process: (run id, None), or (None, the run holding it).

        Under a write lock, so of two processes exactly one wins. A failed run, or
        one left `running` by a process that died, may be claimed again.
        """
        now = datetime.now(UTC)
        stale = (now - CHECKIN_RUN_LEASE).isoformat(timespec="microseconds")
        with self.transaction():
            existing = self._checkin_run_where("name = ? AND period = ?", (name, period))
            if existing is None:
                cur = self.conn.execute(
                    "INSERT INTO checkin_runs (name, period, status, started_at, fire_time,"
                    " trigger, claimed_by) VALUES (?, ?, 'running', ?, ?, ?, ?)",
                    (
                        name,
                        period,
                        now.isoformat(timespec="microseconds"),
                        fire_time,
                        trigger,
                        self.owner,
                    ),
                )
                return int(cur.lastrowid or 0), None
            retry = existing.status == "failed" or (
                existing.status == "running" and existing.started_at < stale
            )
            if not retry:
                return None, existing
            self.conn.execute(
                "UPDATE checkin_runs SET status = 'running', error = NULL, started_at = ?,"
                " finished_at = NULL, trigger = ?, claimed_by = ?, attempts = 0 WHERE id = ?",
                (now.isoformat(timespec="microseconds"), trigger, self.owner, existing.id),
            )
            return existing.id, None

    def record_skipped_checkin(self, name: str, period: str, fire_time: str, reason: str) -> bool:
        """Record a missed period that is not made up; False when it already has a run."""
        now = utcnow()
        cur = self.conn.execute(
            "INSERT INTO checkin_runs (name, period, status, error, started_at, finished_at,"
            " fire_time, trigger) VALUES (?, ?, 'skipped', ?, ?, ?, ?, 'catch-up')"
            " ON CONFLICT(name, period) DO NOTHING",
            (name, period, reason, now, now, fire_time),
        )
        return cur.rowcount == 1

    def finish_checkin_run(
        self,
        run_id: int,
        *,
        status: str,
        attempts: int,
        error: str | None = None,
        thread_key: str | None = None,
        message_id: str | None = None,
        permalink: str | None = None,
    ) -> None:
        """Close a claimed run as `posted` or `failed`, with what it posted or why it failed."""
        self.conn.execute(
            "UPDATE checkin_runs SET status = ?, error = ?, thread_key = ?, message_id = ?,"
            " permalink = ?, attempts = ?, finished_at = ? WHERE id = ?",
            (status, error, thread_key, message_id, permalink, attempts, utcnow(), run_id),
        )

    def checkin_runs(self, name: str, limit: int = 20) -> list[CheckinRun]:
        """A check-in's runs, newest first."""
        rows = self.conn.execute(
            "SELECT * FROM checkin_runs WHERE name = ? ORDER BY started_at DESC, id DESC LIMIT ?",
            (name, limit),
        ).fetchall()
        return [_checkin_run(r) for r in rows]

    def last_posted_checkin(self, name: str) -> CheckinRun | None:
        """The check-in's latest successful run."""
        return self._checkin_run_where(
            "name = ? AND status = 'posted' ORDER BY started_at DESC, id DESC", (name,)
        )

    def first_checkin_run(self, name: str) -> CheckinRun | None:
        """The check-in's earliest run that did something (posted or tried to)."""
        return self._checkin_run_where(
            "name = ? AND status != 'skipped' ORDER BY started_at, id", (name,)
        )

    def latest_checkin_fire_time(self, name: str) -> str | None:
        """The newest fire time any run of this check-in (posted, failed or skipped) belongs to."""
        row = self.conn.execute(
            "SELECT max(fire_time) FROM checkin_runs WHERE name = ?", (name,)
        ).fetchone()
        return str(row[0]) if row and row[0] else None

    def _checkin_run_where(self, where: str, params: tuple[Any, ...]) -> CheckinRun | None:
        row = self.conn.execute(
            f"SELECT * FROM checkin_runs WHERE {where} LIMIT 1", params
        ).fetchone()
        return _checkin_run(row) if row else None

    def rekey_thread(self, thread_id: int, key: str, platform: str, thread: str) -> ThreadRow:
        """Give a thread its platform identity once known (a check-in prepared before posting)."""
        self.conn.execute(
            "UPDATE threads SET key = ?, platform = ?, thread = ?,"
            " joined_at = coalesce(joined_at, ?) WHERE id = ?",
            (key, platform, thread, utcnow(), thread_id),
        )
        return self.get_thread_by_id(thread_id)


@dataclass(frozen=True, slots=True)
class CheckinRun:
    id: int
    name: str
    period: str
    status: str  # running | posted | failed | skipped
    error: str | None
    thread_key: str | None
    started_at: str
    finished_at: str | None
    fire_time: str | None
    trigger: str
    message_id: str | None
    permalink: str | None
    attempts: int


# A run still `running` after this long belongs to a process that died mid-run.
CHECKIN_RUN_LEASE = timedelta(minutes=15)


def _checkin_run(row: sqlite3.Row) -> CheckinRun:
    return CheckinRun(
        id=row["id"],
        name=row["name"],
        period=row["period"],
        status=row["status"],
        error=row["error"],
        thread_key=row["thread_key"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        fire_time=row["fire_time"],
        trigger=row["trigger"],
        message_id=row["message_id"],
        permalink=row["permalink"],
        attempts=row["attempts"],
    )


def day_start(now: datetime | None = None) -> datetime:
    """Midnight UTC of today (the daily budget's window)."""
    now = now or datetime.now(UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def week_start(now: datetime | None = None) -> datetime:
    """Monday 00:00 UTC of this week."""
    start = day_start(now)
    return start - timedelta(days=start.weekday())


def _use_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL, waiting out peers doing the same.

    SQLite answers "database is locked" at once, without the busy handler,
    when another connection holds the file while its journal mode changes:
    so retry until the busy timeout.
    """
    deadline = time.monotonic() + OPEN_BUSY_TIMEOUT_S
    pause = 0.005
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(pause)  # only while opening: nothing is served yet
        pause = min(pause * 2, 0.2)


def _applied_names(db: Database) -> list[str]:
    return [m.name for m in migrations.applied(db)]


def _unknown_applied(db: Database) -> str | None:
    unknown = [name for name in _applied_names(db) if name not in known_names()]
    if not unknown:
        return None
    shown = ", ".join(unknown[:3]) + (", ..." if len(unknown) > 3 else "")
    return (
        f"was migrated by a newer archbot (has {shown}, this version knows up to "
        f"{known_names()[-1]}): upgrade archbot"
    )


def _migrate(db: Database) -> str | None:
    """Apply pending migrations under a write lock; why not, when a newer archbot migrated it.

    Without the lock, two processes opening a fresh file both see nothing
    applied and both create the tables ("table threads already exists"); so
    what is applied is read again once the lock is held.
    """
    if _unknown_applied(db) is None and set(known_names()) <= set(_applied_names(db)):
        return None  # the usual open: nothing to do, no write lock taken
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        newer = _unknown_applied(db)
        if newer is None:
            migrations.apply(db)  # each migration nests as a savepoint in this transaction
    except BaseException:
        if db.conn.in_transaction:
            db.conn.execute("ROLLBACK")
        raise
    db.conn.execute("COMMIT")
    return newer


@cache
def _expected_columns() -> dict[str, frozenset[str]]:
    """Every table and column this version's migrations create (built once, in memory)."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        db = Database(conn)
        migrations.apply(db)
        return _columns(db)
    finally:
        conn.close()


def _columns(db: Database) -> dict[str, frozenset[str]]:
    tables = [
        r[0]
        for r in db.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    return {
        t: frozenset(r[1] for r in db.conn.execute("SELECT * FROM pragma_table_info(?)", (t,)))
        for t in tables
    }


def _schema_problem(db: Database) -> str | None:
    """Why this file does not fit this version's schema (a renamed or dropped column), if so."""
    found = _columns(db)
    for table, columns in _expected_columns().items():
        missing = sorted(columns - found.get(table, frozenset()))
        if missing:
            what = f"table {table}" if table not in found else f"column {table}.{missing[0]}"
            applied = _applied_names(db)
            return (
                f"does not fit this archbot's schema ({what} is missing; the file has "
                f"{applied[-1] if applied else 'no migrations'}, this version knows up to "
                f"{known_names()[-1]}): it was changed by a newer archbot or by hand; "
                "upgrade archbot"
            )
    return None
