"""The core's Markdown as Slack message parts: pings neutralised, split below Slack's limit."""

from __future__ import annotations

import re

from bot.formatting import split_markdown

# Slack accepts up to 12,000 characters of `markdown_text` (or one markdown block) per message.
MARKDOWN_LIMIT = 12_000

# <!channel>, <!here>, <!everyone>, optionally with a label: <!here|here>.
_BROADCAST = re.compile(r"<!(?P<name>channel|here|everyone)(?:\|[^>]*)?>", re.IGNORECASE)
# <!subteam^S123> and <!subteam^S123|@platform-team>: user-group pings.
_SUBTEAM = re.compile(r"<!subteam\^(?P<id>[A-Z0-9]+)(?:\|@?(?P<label>[^>]*))?>", re.IGNORECASE)
# The bare words, which some renderers also turn into pings.
_BARE_BROADCAST = re.compile(r"(?<![\w@])@(?P<name>channel|here|everyone)\b", re.IGNORECASE)
# What is left of a ping's opening after the replacements above: a token still open at the
# end of a streamed piece (its `>` may come in a later one) or an odd form such as
# `<!channel foo>`. Breaking the `<!` leaves nothing that can close into a ping.
_PING_OPENING = re.compile(r"<(?=!(?:channel|here|everyone|subteam))", re.IGNORECASE)
# A zero-width space after "@" keeps the text readable and pings nobody.
_ZWSP = "\u200b"


def neutralize_broadcasts(text: str) -> str:
    """Make `<!channel>`, `<!here>`, `<!everyone>` and `<!subteam^…>` readable text that pings nobody."""
    text = _BROADCAST.sub(lambda m: f"@{_ZWSP}{m.group('name').lower()}", text)
    text = _SUBTEAM.sub(
        lambda m: f"@{_ZWSP}{(m.group('label') or 'subteam').strip() or 'subteam'}", text
    )
    text = _BARE_BROADCAST.sub(lambda m: f"@{_ZWSP}{m.group('name')}", text)
    return _PING_OPENING.sub(f"<{_ZWSP}", text)


def render_parts(text: str, limit: int = MARKDOWN_LIMIT) -> list[str]:
    """The Markdown parts one reply is posted as: neutralised, split outside code fences."""
    return split_markdown(neutralize_broadcasts(text), limit) or [""]


def fallback_text(part: str, size: int = 300) -> str:
    """Plain notification text for a Markdown part (what a message with blocks shows in alerts)."""
    flat = " ".join(part.split())
    return flat if len(flat) <= size else f"{flat[: size - 1]}…"
