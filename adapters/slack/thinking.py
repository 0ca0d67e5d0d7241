"""The thinking indicator shown while a turn runs: assistant status, else a reaction."""

from __future__ import annotations

import logging

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.client import CALL_ERRORS, describe

log = logging.getLogger(__name__)

THINKING_REACTION = "hourglass_flowing_sand"
THINKING_STATUS = "is thinking..."


class ThinkingIndicator:
    """assistant.threads.setStatus where the workspace allows it, else a reaction; removed after."""

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client
        # Learned per kind of conversation (DM or channel): the API answers the same each time.
        self.status_works: dict[bool, bool] = {}

    async def start(self, channel: str, thread_ts: str | None, message_ts: str, dm: bool) -> str:
        """Show the indicator; return how ("status", "reaction" or "")."""
        if thread_ts and self.status_works.get(dm, True):
            try:
                await self.client.assistant_threads_setStatus(
                    channel_id=channel, thread_ts=thread_ts, status=THINKING_STATUS
                )
                self.status_works[dm] = True
                return "status"
            except SlackApiError as exc:
                log.debug("assistant status unavailable (%s); using a reaction", describe(exc))
                self.status_works[dm] = False
            except CALL_ERRORS as exc:
                log.warning("thinking status failed: %s", describe(exc))
                return ""
        try:
            await self.client.reactions_add(
                channel=channel, timestamp=message_ts, name=THINKING_REACTION
            )
            return "reaction"
        except CALL_ERRORS as exc:
            log.warning("thinking reaction failed in %s: %s", channel, describe(exc))
            return ""

    async def stop(
        self, how: str, channel: str, thread_ts: str | None, message_ts: str, posted: bool
    ) -> None:
        """Remove the indicator (a posted reply already clears the assistant status)."""
        try:
            if how == "reaction":
                await self.client.reactions_remove(
                    channel=channel, timestamp=message_ts, name=THINKING_REACTION
                )
            elif how == "status" and not posted and thread_ts:
                await self.client.assistant_threads_setStatus(
                    channel_id=channel, thread_ts=thread_ts, status=""
                )
        except CALL_ERRORS as exc:
            log.warning("removing the thinking indicator in %s failed: %s", channel, describe(exc))
