"""What the architect is doing while a turn runs: one progress item per tool call.

The core reports each tool call twice through a `ProgressSink`: `in_progress`
when it starts and `complete` or `error` when it ends, under the same `id` (the
model's tool_use id). Adapters show it their way: Slack as `task_update` chunks
of the streamed answer, Discord as lines of the working message, the console as
dim lines. Titles are built here from the call's input, which the model wrote:
every value is neutralised and capped, and links are built only from validated
repository parts.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

STATUSES = ("in_progress", "complete", "error")
VALUE_MAX_CHARS = 60  # of one quoted value in a title
TITLE_MAX_CHARS = 120
_REPO = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")
_PATH_SEGMENT = re.compile(r"^[A-Za-z0-9._ @+=,-]+$")


@dataclass(frozen=True, slots=True)
class Source:
    """A link shown with a progress item (a file or search on GitHub)."""

    url: str
    title: str


@dataclass(frozen=True, slots=True)
class ToolProgress:
    """One tool call's state: `in_progress`, then `complete` or `error`, under one id."""

    id: str
    tool: str
    title: str
    status: str = "in_progress"
    sources: tuple[Source, ...] = ()

    def finished(self, ok: bool) -> ToolProgress:
        """The same item, ended."""
        return ToolProgress(
            self.id, self.tool, self.title, "complete" if ok else "error", self.sources
        )

    @property
    def line(self) -> str:
        """The item as one short line of plain Markdown, for platforms without cards."""
        mark = {"in_progress": "…", "complete": "✓", "error": "✗"}[self.status]
        return f"{mark} {self.title}"


ProgressSink = Callable[[ToolProgress], Awaitable[None]]


def shown_value(value: object, limit: int = VALUE_MAX_CHARS) -> str:
    """A model-written value made safe to show inside backticks: one line, no controls, capped."""
    text = unicodedata.normalize("NFKC", str(value))
    text = "".join(" " if unicodedata.category(c)[0] in "CZ" else c for c in text)
    # Shown inside a code span: no backtick (it would close it), no mention or link syntax.
    text = re.sub(r"[`<>|]", "", text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _repo(raw: object, default: str | None) -> str | None:
    candidate = str(raw).strip() if isinstance(raw, str) and raw.strip() else default
    if candidate and _REPO.match(candidate) and ".." not in candidate:
        return candidate
    return None


def _github_link(repo: str, path: str, ref: str | None) -> Source | None:
    """A blob link, only from segments that need no guessing."""
    segments = [s for s in path.split("/") if s]
    if not segments or any(s in (".", "..") or not _PATH_SEGMENT.match(s) for s in segments):
        return None
    if ref is not None and not re.fullmatch(r"[A-Za-z0-9._/-]{1,100}", ref or ""):
        return None
    url = f"https://github.com/{repo}/blob/{quote(ref or 'HEAD', safe='/')}/" + "/".join(
        quote(s, safe="") for s in segments
    )
    return Source(url, "/".join(segments))


def _search_link(repo: str, query: str) -> Source:
    url = f"https://github.com/search?q={quote(f'repo:{repo} {query}', safe='')}&type=code"
    return Source(url, f"Search in {repo}")


def describe_call(
    tool_use_id: str, name: str, raw_input: object, default_repo: str | None = None
) -> ToolProgress:
    """The in-progress item for one tool call: a title saying what is looked at, and links."""
    args: Mapping[str, Any] = raw_input if isinstance(raw_input, Mapping) else {}
    repo = _repo(args.get("repo"), default_repo)
    in_repo = f" in {repo}" if repo else ""
    sources: tuple[Source, ...] = ()
    path = args.get("path")
    if name == "read_file":
        shown = shown_value(path) if isinstance(path, str) and path.strip() else ""
        title = f"Reading `{shown}`{in_repo}" if shown else f"Listing the top level{in_repo}"
        ref = args.get("ref") if isinstance(args.get("ref"), str) else None
        link = _github_link(repo, path, ref) if repo and isinstance(path, str) else None
        sources = (link,) if link else ()
    elif name == "search_code":
        query = str(args.get("query") or "")
        title = f"Searching {repo or 'the repository'} for `{shown_value(query)}`"
        sources = (_search_link(repo, query[:200]),) if repo and query.strip() else ()
    elif name == "find_usages":
        symbol = str(args.get("symbol") or "")
        title = f"Finding usages of `{shown_value(symbol)}`{in_repo}"
        sources = (_search_link(repo, symbol[:200]),) if repo and symbol.strip() else ()
    elif name == "recent_changes":
        where = f" to `{shown_value(path)}`" if isinstance(path, str) and path.strip() else ""
        title = f"Reading recent changes{where}{in_repo}"
    elif name == "fetch_url":
        host = re.sub(r"[^a-z0-9.-]", "", urlsplit(str(args.get("url") or "")).hostname or "")
        title = f"Reading a page on {host[:VALUE_MAX_CHARS]}" if host else "Reading a web page"
    elif name in ("list_todos", "add_todo", "update_todo"):
        title = "Reading the todo list" if name == "list_todos" else "Updating the todo list"
    elif name.startswith("delegate_"):
        title = "Asking a software architect for a second opinion"
    elif "__" in name:
        server, _, tool = name.partition("__")
        title = f"Calling `{shown_value(tool)}` on the `{shown_value(server)}` extension"
    else:
        title = f"Running `{shown_value(name)}`"
    return ToolProgress(str(tool_use_id)[:100], name[:64], title[:TITLE_MAX_CHARS], sources=sources)
