"""Tool progress as Slack stream chunks: one `task_update` card per tool call.

Pure functions on JSON: the core's `ToolProgress` (title already neutralised,
links built from validated parts) becomes the chunk shape chat.startStream /
appendStream / stopStream take, and a call's text and cards become its content
arguments.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from adapters.slack.render import neutralize_broadcasts
from bot.progress import STATUSES, ToolProgress

TASK_TITLE_MAX_CHARS = 150
TASK_ID_MAX_CHARS = 100
SOURCE_TEXT_MAX_CHARS = 100
SOURCES_MAX = 5
_LINK_PREFIX = "https://github.com/"


def task_chunk(item: ToolProgress) -> dict[str, Any]:
    """The `task_update` chunk that shows one tool call's state (and its GitHub links)."""
    status = item.status if item.status in STATUSES else "error"
    title = " ".join(neutralize_broadcasts(item.title).split())[:TASK_TITLE_MAX_CHARS]
    chunk: dict[str, Any] = {
        "type": "task_update",
        "id": item.id[:TASK_ID_MAX_CHARS] or "task",
        "title": title or "Working",
        "status": status,
    }
    sources = [
        {"type": "url", "url": s.url, "text": s.title[:SOURCE_TEXT_MAX_CHARS]}
        for s in item.sources
        # The core builds these from validated parts; anything else is not shown.
        if s.url.startswith(_LINK_PREFIX) and s.title.strip()
    ][:SOURCES_MAX]
    if sources:
        chunk["sources"] = sources
    return chunk


def stream_content(text: str, tasks: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The content arguments of one streaming call: `markdown_text` alone, or `chunks`.

    Text comes first: what the model wrote before a tool call is shown above its card.
    """
    if not tasks:
        return {"markdown_text": text or None}
    chunks: list[dict[str, Any]] = [{"type": "markdown_text", "text": text}] if text else []
    chunks.extend(dict(t) for t in tasks)
    return {"chunks": chunks}
