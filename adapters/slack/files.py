"""Reply files as Slack uploads, and the thread permalink a decision record links to.

Uploads take Slack's three steps (files.getUploadURLExternal, the upload
itself, files.completeUploadExternal) through slack-sdk's `files_upload_v2`;
they need the `files:write` scope. A failed upload is logged and said in the
thread: the reply's text is already there.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.client import CALL_ERRORS, describe
from bot.events import ReplyFile

log = logging.getLogger(__name__)

FILE_MAX_BYTES = 1_000_000  # a reply file is a Markdown record, never near Slack's limit
TITLE_MAX_CHARS = 100


async def upload_files(
    client: AsyncWebClient, channel: str, thread_ts: str | None, files: Sequence[ReplyFile]
) -> list[str]:
    """Upload `files` into a channel or thread; return the names that could not be uploaded."""
    failed: list[str] = []
    for file in files:
        if len(file.content) > FILE_MAX_BYTES:
            log.warning("slack: %s is %d bytes; not uploaded", file.name, len(file.content))
            failed.append(file.name)
            continue
        try:
            await client.files_upload_v2(
                filename=file.name,
                content=file.content,
                title=file.name[:TITLE_MAX_CHARS],
                snippet_type="markdown" if file.mimetype == "text/markdown" else None,
                # Screen readers say what a picture is; a diagram's name is its title.
                alt_txt=image_alt(file) if file.mimetype.startswith("image/") else None,
                channel=channel,
                thread_ts=thread_ts,
            )
        except CALL_ERRORS as exc:
            log.error("slack: uploading %s to %s failed: %s", file.name, channel, describe(exc))
            failed.append(file.name)
    return failed


def image_alt(file: ReplyFile) -> str:
    """The alt text of an attached picture, from its file name."""
    return f"Diagram: {file.name.rsplit('.', 1)[0]}"[:TITLE_MAX_CHARS]


async def permalink(client: AsyncWebClient, channel: str, ts: str) -> str | None:
    """The message's permalink (`https://<team>.slack.com/archives/C/pTS`), or None."""
    try:
        response = await client.chat_getPermalink(channel=channel, message_ts=ts)
    except CALL_ERRORS as exc:
        log.warning("slack: no permalink for %s/%s: %s", channel, ts, describe(exc))
        return None
    link = response.get("permalink")
    return link if isinstance(link, str) and link.startswith("https://") else None
