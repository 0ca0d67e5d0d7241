"""Platform-neutral Markdown splitting for platforms with a message size limit.

`split_markdown` cuts at paragraph boundaries, never inside a code fence: a
code block longer than one message is cut at line boundaries, each part's
fence closed, and the fence reopened with its language in the next part.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


@dataclass
class _Block:
    text: str
    fence: str = ""  # the opening fence line (e.g. "```python") for code blocks
    closer: str = ""  # the closing fence (e.g. "```")

    @property
    def is_code(self) -> bool:
        return bool(self.fence)


def _blocks(text: str) -> list[_Block]:
    """Paragraphs and fenced code blocks, in order; an unclosed fence is closed at the end."""
    blocks: list[_Block] = []
    para: list[str] = []
    lines = text.split("\n")
    i = 0

    def flush() -> None:
        if para:
            blocks.append(_Block("\n".join(para)))
            para.clear()

    while i < len(lines):
        line = lines[i]
        m = _FENCE.match(line)
        if m and not (m.group("fence")[0] == "`" and "`" in m.group("info")):
            flush()
            marker = m.group("fence")
            body: list[str] = []
            i += 1
            while i < len(lines):
                close = _FENCE.match(lines[i])
                if (
                    close
                    and close.group("fence")[0] == marker[0]
                    and len(close.group("fence")) >= len(marker)
                    and not close.group("info").strip()
                ):
                    break
                body.append(lines[i])
                i += 1
            closer = m.group("indent") + marker
            blocks.append(_Block("\n".join(body), fence=line.rstrip(), closer=closer))
            i += 1  # skip the closing fence (or run past the end)
            continue
        if line.strip() == "":
            flush()
        else:
            para.append(line)
        i += 1
    flush()
    return blocks


def _cut_text(text: str, limit: int) -> list[str]:
    """Cut plain text into pieces <= limit, preferring line, then sentence, then word breaks."""
    pieces: list[str] = []
    rest = text
    while len(rest) > limit:
        window = rest[:limit]
        cut = window.rfind("\n")
        if cut < limit // 2:
            sentence = max(window.rfind(". "), window.rfind("! "), window.rfind("? "))
            cut = sentence + 1 if sentence >= limit // 2 else window.rfind(" ")
        if cut <= 0:
            cut = limit
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip("\n ")
    if rest:
        pieces.append(rest)
    return [p for p in pieces if p]


def _render_code(fence: str, lines: list[str], closer: str) -> str:
    return "\n".join([fence, *lines, closer])


def _cut_code(block: _Block, limit: int) -> list[str]:
    """Cut a code block at line boundaries into closed, reopened fences <= limit."""
    overhead = len(block.fence) + len(block.closer) + 2
    room = max(1, limit - overhead)
    lines: list[str] = []
    for line in block.text.split("\n") if block.text else [""]:
        # A single line longer than the room is hard-wrapped; rare (minified data).
        while len(line) > room:
            lines.append(line[:room])
            line = line[room:]
        lines.append(line)
    parts: list[str] = []
    current: list[str] = []
    size = overhead
    for line in lines:
        added = len(line) + (1 if current else 0)
        if current and size + added > limit:
            parts.append(_render_code(block.fence, current, block.closer))
            current, size = [], overhead
            added = len(line)
        current.append(line)
        size += added
    if current or not parts:
        parts.append(_render_code(block.fence, current, block.closer))
    return parts


def split_markdown(text: str, limit: int) -> list[str]:
    """Split Markdown into parts of at most `limit` characters, never inside a code fence."""
    if limit < 40:
        raise ValueError("limit too small to split Markdown sensibly")
    text = text.strip("\n")
    if len(text) <= limit and not _has_unclosed_fence(text):
        return [text] if text else []
    pieces: list[str] = []
    for block in _blocks(text):
        if block.is_code:
            whole = _render_code(block.fence, block.text.split("\n"), block.closer)
            pieces.extend([whole] if len(whole) <= limit else _cut_code(block, limit))
        else:
            pieces.extend(
                [block.text] if len(block.text) <= limit else _cut_text(block.text, limit)
            )
    parts: list[str] = []
    for piece in pieces:
        if parts and len(parts[-1]) + 2 + len(piece) <= limit:
            parts[-1] = f"{parts[-1]}\n\n{piece}"
        else:
            parts.append(piece)
    return parts


def _has_unclosed_fence(text: str) -> bool:
    return bool(open_fence(text)[0])


def open_fence(text: str) -> tuple[str, str]:
    """The opening line and closing fence of a code block left open at the end of `text` ("", "" if none)."""
    opener, marker, indent = "", "", ""
    for line in text.split("\n"):
        m = _FENCE.match(line)
        if not m:
            continue
        fence = m.group("fence")
        if not marker:
            opener, marker, indent = line.rstrip(), fence, m.group("indent")
        elif fence[0] == marker[0] and len(fence) >= len(marker) and not m.group("info").strip():
            opener, marker, indent = "", "", ""
    return (opener, indent + marker) if marker else ("", "")


def fences_balanced(part: str) -> bool:
    """True when every code fence opened in `part` is closed in it (used by tests and adapters)."""
    return not _has_unclosed_fence(part)
