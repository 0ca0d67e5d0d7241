"""Schema migrations: named functions, applied in order, never edited once merged.

To change the schema, append a new function. The store runs pending
migrations every time it opens the database, under a write lock, and refuses a
database that a newer archbot migrated (see `known_names`).
"""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

migrations = Migrations("archbot")


def known_names() -> list[str]:
    """Names of every migration this version knows, in the order they apply."""
    return [m.name for m in migrations._migrations]


@migrations()
def m001_initial(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE threads (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL UNIQUE,
            platform TEXT NOT NULL,
            workspace TEXT NOT NULL,
            channel TEXT NOT NULL,
            thread TEXT NOT NULL,
            channel_key TEXT NOT NULL,
            repo TEXT,
            summary TEXT,
            summary_until INTEGER NOT NULL DEFAULT 0,
            context_imported INTEGER NOT NULL DEFAULT 0,
            checkin TEXT,
            created_at TEXT NOT NULL
        );
        CREATE INDEX threads_channel ON threads(channel_key);

        CREATE TABLE turns (
            id INTEGER PRIMARY KEY,
            thread_id INTEGER NOT NULL REFERENCES threads(id),
            event_key TEXT UNIQUE,
            user TEXT NOT NULL,
            user_name TEXT NOT NULL DEFAULT '',
            text TEXT NOT NULL,
            status TEXT NOT NULL,          -- pending | done | failed
            reply TEXT,
            error TEXT,
            posted_at TEXT,
            created_at TEXT NOT NULL,
            finished_at TEXT
        );
        CREATE INDEX turns_thread ON turns(thread_id, id);
        CREATE INDEX turns_status ON turns(status) WHERE status = 'pending';

        CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            thread_id INTEGER NOT NULL REFERENCES threads(id),
            turn_id INTEGER REFERENCES turns(id),
            role TEXT NOT NULL,            -- user | assistant
            content TEXT NOT NULL,         -- JSON list of content blocks
            status TEXT NOT NULL,          -- pending | complete | failed | context
            tokens INTEGER NOT NULL,       -- estimate, for the history budget
            created_at TEXT NOT NULL
        );
        CREATE INDEX messages_thread ON messages(thread_id, id);

        CREATE TABLE todos (
            id INTEGER PRIMARY KEY,
            thread_id INTEGER NOT NULL REFERENCES threads(id),
            number INTEGER NOT NULL,
            title TEXT NOT NULL,
            status TEXT NOT NULL,          -- open | in_progress | done | dropped
            created_by TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            UNIQUE (thread_id, number)
        );

        CREATE TABLE usage (
            id INTEGER PRIMARY KEY,
            thread_id INTEGER,
            channel_key TEXT NOT NULL DEFAULT '',
            user TEXT NOT NULL DEFAULT '',
            model TEXT NOT NULL,
            purpose TEXT NOT NULL,         -- chat | compaction | delegation | checkin
            input_tokens INTEGER NOT NULL,
            output_tokens INTEGER NOT NULL,
            cache_read_tokens INTEGER NOT NULL,
            cache_write_tokens INTEGER NOT NULL,
            latency_ms INTEGER NOT NULL,
            cost_usd REAL NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE INDEX usage_thread ON usage(thread_id);
        CREATE INDEX usage_channel ON usage(channel_key, created_at);
        CREATE INDEX usage_user ON usage(user, created_at);

        CREATE TABLE events (
            key TEXT PRIMARY KEY,
            received_at TEXT NOT NULL
        );

        CREATE TABLE channel_bindings (
            channel_key TEXT PRIMARY KEY,
            repo TEXT NOT NULL,
            bound_by TEXT NOT NULL,
            bound_at TEXT NOT NULL
        );

        CREATE TABLE http_cache (
            url TEXT PRIMARY KEY,
            etag TEXT,
            last_modified TEXT,
            status INTEGER NOT NULL,
            headers TEXT NOT NULL,
            body BLOB NOT NULL,
            fetched_at TEXT NOT NULL
        );

        CREATE TABLE checkin_runs (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            period TEXT NOT NULL,
            status TEXT NOT NULL,          -- running | posted | failed
            error TEXT,
            thread_key TEXT,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            UNIQUE (name, period)
        );
        """
    )


@migrations()
def m002_messages_by_turn(db: Database) -> None:
    # finish_turn updates a turn's messages; without this it scans every message.
    db.execute("CREATE INDEX messages_turn ON messages(turn_id)")


@migrations()
def m003_threads_joined(db: Database) -> None:
    # A thread is joined the moment the bot accepts the mention that starts it,
    # before its first turn exists, so a follow-up a second later is answered.
    db.execute("ALTER TABLE threads ADD COLUMN joined_at TEXT")


@migrations()
def m004_turn_recovery_claims(db: Database) -> None:
    # Processes started together (a rolling deploy) claim an interrupted turn
    # here before recovering it, so its answer is posted once. The claim is a
    # lease: renewed while the claimer works, free to take once it goes stale.
    db.execute("ALTER TABLE turns ADD COLUMN recovery_claimed_by TEXT")
    db.execute("ALTER TABLE turns ADD COLUMN recovery_claimed_at TEXT")


@migrations()
def m005_slack_users(db: Database) -> None:
    # Display names from Slack's users.info, so the model reads "Alice", not "U0ALICE01".
    db.execute(
        """
        CREATE TABLE slack_users (
            workspace TEXT NOT NULL,
            user_id TEXT NOT NULL,
            name TEXT NOT NULL,
            fetched_at TEXT NOT NULL,
            PRIMARY KEY (workspace, user_id)
        )
        """
    )


@migrations()
def m006_decision_records(db: Database) -> None:
    # Architecture Decision Records written by `!adr`, numbered per workspace
    # (platform/workspace), and what `archbot adr export` last wrote to each
    # file, so a file someone edited since is never overwritten.
    db.executescript(
        """
        CREATE TABLE decision_records (
            id INTEGER PRIMARY KEY,
            workspace_key TEXT NOT NULL,
            number INTEGER NOT NULL,
            thread_id INTEGER NOT NULL REFERENCES threads(id),
            channel_key TEXT NOT NULL,
            title TEXT NOT NULL,
            status TEXT NOT NULL,
            date TEXT NOT NULL,
            markdown TEXT NOT NULL,
            fields TEXT NOT NULL,
            link TEXT,
            created_by TEXT NOT NULL,
            created_at TEXT NOT NULL,
            UNIQUE (workspace_key, number)
        );
        CREATE INDEX decision_records_channel ON decision_records(channel_key);

        CREATE TABLE decision_exports (
            path TEXT PRIMARY KEY,
            sha256 TEXT NOT NULL,
            written_at TEXT NOT NULL
        );
        """
    )


@migrations()
def m007_answer_feedback(db: Database) -> None:
    # One vote per answer (turn) and person; a later click replaces the earlier one.
    db.executescript(
        """
        CREATE TABLE feedback (
            turn_id INTEGER NOT NULL REFERENCES turns(id),
            user TEXT NOT NULL,
            vote TEXT NOT NULL,            -- up | down
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (turn_id, user)
        );
        CREATE INDEX feedback_updated ON feedback(updated_at);
        """
    )


@migrations()
def m008_checkin_runs_detail(db: Database) -> None:
    # A check-in run records what it posted (so `checkin list` can link it), how
    # many posting attempts it took, which fire time it belongs to and who holds it.
    db.execute("ALTER TABLE checkin_runs ADD COLUMN fire_time TEXT")
    db.execute("ALTER TABLE checkin_runs ADD COLUMN trigger TEXT NOT NULL DEFAULT 'manual'")
    db.execute("ALTER TABLE checkin_runs ADD COLUMN message_id TEXT")
    db.execute("ALTER TABLE checkin_runs ADD COLUMN permalink TEXT")
    db.execute("ALTER TABLE checkin_runs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE checkin_runs ADD COLUMN claimed_by TEXT")
    db.execute("CREATE INDEX checkin_runs_name ON checkin_runs(name, started_at)")


@migrations()
def m009_extension_calls(db: Database) -> None:
    # The usage ledger's side for extensions: one row per MCP tool call, so
    # operators see which team servers the architect leans on (and how often they fail).
    db.execute(
        """
        CREATE TABLE extension_calls (
            id INTEGER PRIMARY KEY,
            thread_id INTEGER,
            channel_key TEXT NOT NULL,
            user TEXT NOT NULL,
            server TEXT NOT NULL,
            tool TEXT NOT NULL,
            is_error INTEGER NOT NULL,
            latency_ms INTEGER NOT NULL,
            created_at TEXT NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX extension_calls_channel ON extension_calls(channel_key, created_at)")


@migrations()
def m010_usage_turn(db: Database) -> None:
    # Each model call's ledger row names its turn, so an answer's feedback can be
    # weighed against what it cost (`!quality`: cost per helpful answer).
    db.execute("ALTER TABLE usage ADD COLUMN turn_id INTEGER")
    db.execute("CREATE INDEX usage_turn ON usage(turn_id)")
