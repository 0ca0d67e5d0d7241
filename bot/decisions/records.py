"""Architecture Decision Records: the structured fields, Markdown, storage, numbering, export.

A record is numbered per workspace (platform/workspace: 0001, 0002, ...) and
stored with the Markdown it was posted as, so `!adr N` and the export show
exactly what the thread saw. Everything here is pure or SQLite; the model
call that fills the fields lives in `bot.decisions.commands`.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sqlite3
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from bot.store import Store, ThreadRow, utcnow

log = logging.getLogger(__name__)

SLUG_MAX_CHARS = 50
TITLE_MAX_CHARS = 120
FIELD_MAX_CHARS = 2_000  # one prose field of a record
ITEM_MAX_CHARS = 400  # one pro, con, consequence or follow-up
MAX_OPTIONS = 6
MAX_ITEMS = 10


def _cut(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _one_line(text: str, limit: int) -> str:
    return _cut(" ".join(text.split()), limit)


def _items(values: list[str]) -> list[str]:
    return [_one_line(v, ITEM_MAX_CHARS) for v in values if v.strip()][:MAX_ITEMS]


class ConsideredOption(BaseModel):
    """One option the thread weighed, with its trade-offs."""

    name: str
    pros: list[str] = Field(default_factory=list)
    cons: list[str] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _one_line(value, TITLE_MAX_CHARS)

    @field_validator("pros", "cons")
    @classmethod
    def _lists(cls, value: list[str]) -> list[str]:
        return _items(value)


class DecisionFields(BaseModel):
    """What the model fills in (the `record_decision` tool's input), capped on the way in."""

    has_decision: bool
    reason: str = ""  # why there is no decision yet (when has_decision is false)
    title: str = ""
    status: Literal["proposed", "accepted"] = "accepted"
    context: str = ""
    options: list[ConsideredOption] = Field(default_factory=list)
    decision: str = ""
    consequences: list[str] = Field(default_factory=list)
    follow_ups: list[str] = Field(default_factory=list)

    @field_validator("title")
    @classmethod
    def _title(cls, value: str) -> str:
        return _one_line(value.lstrip("#").strip(), TITLE_MAX_CHARS)

    @field_validator("reason", "context", "decision")
    @classmethod
    def _prose(cls, value: str) -> str:
        return _cut(value, FIELD_MAX_CHARS)

    @field_validator("options")
    @classmethod
    def _options(cls, value: list[ConsideredOption]) -> list[ConsideredOption]:
        return value[:MAX_OPTIONS]

    @field_validator("consequences", "follow_ups")
    @classmethod
    def _lists(cls, value: list[str]) -> list[str]:
        return _items(value)

    @property
    def complete(self) -> bool:
        """True when the fields make a record: a title and a decision."""
        return self.has_decision and bool(self.title) and bool(self.decision.strip())


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """A stored record."""

    number: int
    workspace_key: str
    channel_key: str
    title: str
    status: str
    date: str
    markdown: str
    link: str | None

    @property
    def file_name(self) -> str:
        """`NNNN-title-slug.md`, the adr-tools layout."""
        return f"{self.number:04d}-{slugify(self.title)}.md"


def slugify(title: str) -> str:
    """An ASCII file-name slug of a title: lower case, words joined by `-`, at most 50 chars."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")
    if len(slug) > SLUG_MAX_CHARS:
        slug = slug[:SLUG_MAX_CHARS].rsplit("-", 1)[0] or slug[:SLUG_MAX_CHARS]
    return slug or "decision"


def render_markdown(number: int, date: str, fields: DecisionFields, link: str | None) -> str:
    """The record as Markdown in the MADR / Nygard shape (what is posted, attached and exported)."""
    lines = [f"# {number}. {fields.title}", "", f"Date: {date}", "", "## Status", ""]
    lines += [fields.status.capitalize(), "", "## Context", "", fields.context or "(not stated)"]
    lines += ["", "## Options considered", ""]
    if not fields.options:
        lines.append("(none recorded)")
    for option in fields.options:
        lines += [f"### {option.name}", ""]
        lines += [f"- Good: {p}" for p in option.pros]
        lines += [f"- Bad: {c}" for c in option.cons]
        if not (option.pros or option.cons):
            lines.append("- (no trade-offs recorded)")
        lines.append("")
    if fields.options:
        lines.pop()
    lines += ["", "## Decision", "", fields.decision, "", "## Consequences", ""]
    lines += [f"- {c}" for c in fields.consequences] or ["(none recorded)"]
    lines += ["", "## Follow-ups", ""]
    lines += [f"- {f}" for f in fields.follow_ups] or ["(none)"]
    if link:
        lines += ["", f"Discussion: {link}"]
    return "\n".join(lines) + "\n"


def workspace_key(thread: ThreadRow) -> str:
    """The numbering scope of a thread's records: its platform and workspace."""
    return f"{thread.platform}/{thread.workspace}"


def thread_link(thread: ThreadRow) -> str | None:
    """A link to a thread built from its ids, for platforms whose links need nothing more."""
    if thread.platform == "discord" and thread.workspace.isdigit() and thread.thread.isdigit():
        return f"https://discord.com/channels/{thread.workspace}/{thread.thread}"
    return None


def _record(r: sqlite3.Row) -> DecisionRecord:
    return DecisionRecord(
        r["number"],
        r["workspace_key"],
        r["channel_key"],
        r["title"],
        r["status"],
        r["date"],
        r["markdown"],
        r["link"],
    )


_COLUMNS = "number, workspace_key, channel_key, title, status, date, markdown, link"


def add_record(
    store: Store, thread: ThreadRow, fields: DecisionFields, *, created_by: str
) -> DecisionRecord:
    """Number, render and store a record; numbers are never reused within a workspace."""
    scope = workspace_key(thread)
    now = utcnow()
    date = now[:10]
    link = thread_link(thread)
    with store.transaction():
        number = int(
            store.conn.execute(
                "SELECT coalesce(max(number), 0) + 1 FROM decision_records WHERE workspace_key = ?",
                (scope,),
            ).fetchone()[0]
        )
        markdown = render_markdown(number, date, fields, link)
        store.conn.execute(
            "INSERT INTO decision_records (workspace_key, number, thread_id, channel_key, title,"
            " status, date, markdown, fields, link, created_by, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                scope,
                number,
                thread.id,
                thread.channel_key,
                fields.title,
                fields.status,
                date,
                markdown,
                fields.model_dump_json(),
                link,
                created_by,
                now,
            ),
        )
    log.info("decision record %04d stored for %s", number, thread.key)
    return DecisionRecord(
        number, scope, thread.channel_key, fields.title, fields.status, date, markdown, link
    )


def set_link(store: Store, thread_key: str, link: str) -> int:
    """Give a thread's records that have no link this one (an adapter learns it when posting)."""
    rows = store.conn.execute(
        "SELECT id, number, date, fields FROM decision_records WHERE link IS NULL AND thread_id ="
        " (SELECT id FROM threads WHERE key = ?)",
        (thread_key,),
    ).fetchall()
    with store.transaction():
        for row in rows:
            fields = DecisionFields.model_validate_json(row["fields"])
            markdown = render_markdown(row["number"], row["date"], fields, link)
            store.conn.execute(
                "UPDATE decision_records SET link = ?, markdown = ? WHERE id = ?",
                (link, markdown, row["id"]),
            )
    return len(rows)


def channel_records(store: Store, channel_key: str) -> list[DecisionRecord]:
    """A channel's records, by number."""
    rows = store.conn.execute(
        f"SELECT {_COLUMNS} FROM decision_records WHERE channel_key = ? ORDER BY number",
        (channel_key,),
    ).fetchall()
    return [_record(r) for r in rows]


def get_record(store: Store, scope: str, number: int) -> DecisionRecord | None:
    """Record `number` of a workspace, if there is one."""
    row = store.conn.execute(
        f"SELECT {_COLUMNS} FROM decision_records WHERE workspace_key = ? AND number = ?",
        (scope, number),
    ).fetchone()
    return _record(row) if row is not None else None


def all_records(store: Store) -> list[DecisionRecord]:
    """Every stored record, by workspace then number."""
    rows = store.conn.execute(
        f"SELECT {_COLUMNS} FROM decision_records ORDER BY workspace_key, number"
    ).fetchall()
    return [_record(r) for r in rows]


@dataclass
class ExportReport:
    """What one export did, file by file."""

    written: list[Path]
    unchanged: list[Path]
    skipped: list[Path]  # edited since the last export: left alone


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def export_records(store: Store, directory: Path) -> ExportReport:
    """Write every record as `DIR/NNNN-title-slug.md`; never overwrite a file edited since.

    A file is (re)written when it does not exist or still holds exactly what
    the last export wrote (its hash is stored); any other file at that path
    is someone's edit and is skipped. Records of more than one workspace go to
    one subdirectory per workspace, since each workspace numbers from 0001.
    """
    records = all_records(store)
    scopes = sorted({r.workspace_key for r in records})
    report = ExportReport([], [], [])
    for record in records:
        folder = directory
        if len(scopes) > 1:
            folder = directory / slugify(record.workspace_key.replace("/", "-"))
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / record.file_name
        key = str(path.resolve())
        wanted = record.markdown.encode()
        row = store.conn.execute(
            "SELECT sha256 FROM decision_exports WHERE path = ?", (key,)
        ).fetchone()
        if path.exists():
            current = path.read_bytes()
            if current == wanted:
                report.unchanged.append(path)
                _remember(store, key, wanted)
                continue
            if row is None or row["sha256"] != _sha256(current):
                report.skipped.append(path)
                continue
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(wanted)
        tmp.replace(path)  # a reader never sees half a file
        _remember(store, key, wanted)
        report.written.append(path)
    return report


def _remember(store: Store, key: str, content: bytes) -> None:
    store.conn.execute(
        "INSERT INTO decision_exports (path, sha256, written_at) VALUES (?, ?, ?)"
        " ON CONFLICT (path) DO UPDATE SET sha256 = excluded.sha256,"
        " written_at = excluded.written_at",
        (key, _sha256(content), utcnow()),
    )


_LIST = {"type": "array", "items": {"type": "string"}}

# The tool's input schema: the descriptions are what the model reads.
RECORD_TOOL: dict[str, object] = {
    "name": "record_decision",
    "description": (
        "Record the decision this thread reached as an Architecture Decision Record. "
        "Set has_decision to false (and say why in reason) when the thread has not decided "
        "anything yet: never invent a decision, an option or a trade-off that was not discussed."
    ),
    "input_schema": {
        "type": "object",
        "properties": {
            "has_decision": {
                "type": "boolean",
                "description": "true only when the thread settled on a choice",
            },
            "reason": {
                "type": "string",
                "description": "when has_decision is false: what is still open, in one sentence",
            },
            "title": {
                "type": "string",
                "description": "short imperative title of the decision, e.g. 'Use Parquet on S3 "
                "for tick storage'",
            },
            "status": {
                "type": "string",
                "enum": ["proposed", "accepted"],
                "description": "accepted when the team agreed; proposed when it awaits sign-off",
            },
            "context": {
                "type": "string",
                "description": "the problem, constraints and numbers that forced the decision",
            },
            "options": {
                "type": "array",
                "description": "the options the thread considered, the chosen one included",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "pros": {**_LIST, "description": "trade-offs in its favour"},
                        "cons": {**_LIST, "description": "trade-offs against it"},
                    },
                    "required": ["name", "pros", "cons"],
                },
            },
            "decision": {
                "type": "string",
                "description": "what was decided and why, in a few sentences",
            },
            "consequences": {**_LIST, "description": "what becomes easier or harder"},
            "follow_ups": {**_LIST, "description": "work the decision leaves to do"},
        },
        "required": ["has_decision"],
    },
}
