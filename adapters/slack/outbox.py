"""SlackOutbox: the core's posts (check-ins, recovered turns) as Slack messages."""

from __future__ import annotations

from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.render import fallback_text, render_parts
from adapters.slack.translate import PLATFORM, reply_thread_ts


class SlackOutbox:
    """Posts Markdown to Slack as `markdown_text`, split below Slack's limit."""

    platform = PLATFORM

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client
        self.workspace = ""  # the team id, known once auth.test has answered

    async def post(
        self,
        channel: str,
        thread: str | None,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
    ) -> str:
        """Post `text` in order; return the ts of the first message (a new thread when `thread` is None).

        `blocks` (the feedback buttons) go under the last part, which is then sent as a
        `markdown` block: Slack takes `markdown_text` only without blocks.
        """
        first = ""
        thread_ts = reply_thread_ts(channel, thread) if thread else None
        parts = render_parts(text)
        for n, part in enumerate(parts, 1):
            content: dict[str, Any] = {"markdown_text": part}
            if blocks and n == len(parts):
                content = {
                    "text": fallback_text(part),
                    "blocks": [{"type": "markdown", "text": part}, *blocks],
                }
            response = await self.client.chat_postMessage(
                channel=channel,
                thread_ts=thread_ts,
                unfurl_links=False,
                unfurl_media=False,
                **content,
            )
            ts = str(response.get("ts") or "")
            if not first:
                first = ts
                # The parts of a new top-level post continue in the thread it opens.
                if thread is None:
                    thread_ts = ts
        return first
