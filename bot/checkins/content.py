"""What a check-in says: activity, open todos, the previous check-in, and the model's brief.

Pure functions. Repository text (titles, commit messages, paths) and todo titles
are untrusted: flattened to one line, capped and stripped of Markdown link syntax
before they go into the posted message; the model gets them marked as untrusted.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime

from bot.github import Activity
from bot.store import StoredMessage, ThreadRow, Todo

TITLE_LIMIT = 120
TODO_LIMIT = 25  # todos listed in the message; the rest are counted
PULL_LIMIT = 15
COMMIT_LIMIT = 8
# Section caps: together below Slack's 12,000 characters for one message, sign-off included.
ACTIVITY_LIMIT = 3_500
TODOS_LIMIT = 3_000
REVIEW_LIMIT = 4_500
PREVIOUS_LIMIT = 8_000  # characters of the previous check-in's thread the model reads
NO_MODEL_LINE = (
    "_The written review (risks, questions, focus for the week) needs a model: "
    "set ANTHROPIC_API_KEY (or ANTHROPIC_BASE_URL) and ask for it in this thread._"
)
MODEL_FAILED_LINE = (
    "_The model did not answer, so there is no written review this time: "
    "ask for it in this thread once it is back._"
)
REVIEW_REQUEST = (
    "This is this week's architecture check-in for the channel. Write the review of the "
    "week for the team: the risks you see in what changed (read the changed files with "
    "your tools before you judge them), the questions the team should answer, and the "
    "suggested focus for the coming week. Connect it to the previous check-in below: "
    "which of its decisions, open questions and todos moved, and which did not. Be "
    "concrete and brief (at most about 400 words), cite files and pull requests by link, "
    "and do not repeat the activity list."
)

LinkFor = Callable[[ThreadRow], str | None]


def one_line(text: str, limit: int = TITLE_LIMIT) -> str:
    """Untrusted text as one short line that cannot open a link, a heading or a code block."""
    flat = re.sub(r"[\x00-\x1f\x7f\u2028\u2029]+", " ", text)
    flat = re.sub(r"[\[\]`<>]", "", flat)
    flat = " ".join(flat.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def safe_url(url: str) -> str | None:
    """An https URL fit for a Markdown link (no spaces, brackets or quotes), else None."""
    if re.fullmatch(r"https://[A-Za-z0-9._~:/?#@!$&'*+,;=%-]+", url) and ")" not in url:
        return url
    return None


def _link(text: str, url: str) -> str:
    checked = safe_url(url)
    return f"[{text}]({checked})" if checked else text


def touched_areas(activity: Activity, top: int = 6) -> list[tuple[str, int]]:
    """The directories the window's changes touched most (two levels deep)."""
    counts: dict[str, int] = {}
    for path in [f for p in activity.pulls for f in p.files] + [
        f for c in activity.commits for f in c.files
    ]:
        parts = path.split("/")
        area = "/".join(parts[:2]) if len(parts) > 2 else (parts[0] if len(parts) > 1 else "(root)")
        counts[area] = counts.get(area, 0) + 1
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]


def render_activity(activity: Activity) -> str:
    """Merged PRs with links, notable commits and touched areas, as Markdown for people."""
    lines = [
        f"**Repository activity** in `{one_line(activity.repo, 100)}` since {activity.since:%Y-%m-%d %H:%M} UTC"
    ]
    if activity.pulls:
        lines.append(f"Merged pull requests ({activity.pulls_total or len(activity.pulls)}):")
        for p in activity.pulls[:PULL_LIMIT]:
            title = _link(f"#{p.number} {one_line(p.title)}", p.html_url)
            lines.append(f"- {title} by {one_line(p.author, 40)}, merged {p.merged_at[:10]}")
        if len(activity.pulls) > PULL_LIMIT:
            lines.append(f"- …and {len(activity.pulls) - PULL_LIMIT} more")
    else:
        lines.append("Merged pull requests: none.")
    notable = [c for c in activity.commits if not c.headline.startswith("Merge ")]
    if notable:
        lines.append("Notable commits:")
        for c in notable[:COMMIT_LIMIT]:
            lines.append(
                f"- {_link(c.sha[:7], c.html_url)} {one_line(c.headline)} ({one_line(c.author, 40)})"
            )
    areas = touched_areas(activity)
    if areas:
        lines.append("Areas touched: " + ", ".join(f"`{one_line(a, 60)}` ({n})" for a, n in areas))
    return "\n".join(lines)


def render_todos(todos: Sequence[tuple[ThreadRow, Todo]], link_for: LinkFor) -> str:
    """The channel's open todos, each linked to its thread."""
    if not todos:
        return "**Open todos** in this channel: none."
    lines = [f"**Open todos** in this channel ({len(todos)}):"]
    for thread, todo in todos[:TODO_LIMIT]:
        status = " (in progress)" if todo.status == "in_progress" else ""
        url = link_for(thread)
        where = f" ({_link('thread', url)})" if url else ""
        lines.append(f"- {todo.number}. {one_line(todo.title, 200)}{status}{where}")
    if len(todos) > TODO_LIMIT:
        lines.append(f"- …and {len(todos) - TODO_LIMIT} more")
    return "\n".join(lines)


def render_previous(
    thread: ThreadRow | None, todos: Sequence[Todo], messages: Sequence[StoredMessage]
) -> str:
    """The previous check-in's thread for the model: its summary, todos and latest discussion."""
    if thread is None:
        return "There was no previous check-in: this is the first one."
    parts = []
    if thread.summary:
        parts.append(f"Summary of that thread: {thread.summary}")
    if todos:
        parts.append(
            "Its todos: " + "; ".join(f"{t.number}. {t.title} [{t.status}]" for t in todos)
        )
    lines: list[str] = []
    for m in messages:
        for block in m.content:
            if block.get("type") == "text" and block.get("text"):
                lines.append(f"{m.role}: {block['text']}")
    transcript = "\n".join(lines)
    if len(transcript) > PREVIOUS_LIMIT:
        transcript = "[…earlier part cut]\n" + transcript[-PREVIOUS_LIMIT:]
    if transcript:
        parts.append(f"Its discussion (decisions and open questions are in here):\n{transcript}")
    return "The previous check-in's thread:\n" + ("\n\n".join(parts) or "(nothing was said in it)")


def header(name: str, period_key: str, started: datetime) -> str:
    """The check-in's first line."""
    return f"## Architecture check-in: {one_line(name, 80)}\n_{period_key}_"


def cap_section(text: str, limit: int) -> str:
    """A section cut at a line break within `limit` characters, saying so."""
    if len(text) <= limit:
        return text
    return text[: limit - 40].rsplit("\n", 1)[0] + "\n- […cut to fit one message]"


def compose(head: str, activity: str, todos: str, review: str) -> str:
    """The check-in message: each section capped so the whole fits one Slack message."""
    return "\n\n".join(
        [
            head,
            cap_section(activity, ACTIVITY_LIMIT),
            cap_section(todos, TODOS_LIMIT),
            cap_section(review, REVIEW_LIMIT),
        ]
    )
