"""Posting check-ins to Slack through the Web API alone (no Socket Mode, no `archbot run`)."""

from __future__ import annotations

import logging
import re

from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.client import CALL_ERRORS, describe, make_client, secret
from adapters.slack.outbox import SlackOutbox
from adapters.slack.translate import PLATFORM
from bot.checkins.engine import PostedMessage
from bot.errors import ArchbotError
from bot.settings import Secrets, Settings

log = logging.getLogger(__name__)

_ID = re.compile(r"[A-Z0-9]{2,20}")
_TS = re.compile(r"[0-9]{1,12}\.[0-9]{1,8}")
_WORKSPACE_URL = re.compile(r"https://[a-z0-9-]+(?:\.[a-z0-9-]+)+/")


class SlackCheckinPoster:
    """A check-in as one `chat.postMessage` (its `ts` is the thread), plus its permalink."""

    platform = PLATFORM

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client
        self.outbox = SlackOutbox(client)
        self._team = ""
        self._url = ""

    async def workspace(self, channel: str) -> str:
        """The team id from auth.test (the workspace part of every Slack thread key)."""
        if not self._team:
            try:
                auth = await self.client.auth_test()
            except CALL_ERRORS as exc:
                raise ArchbotError(f"slack: auth.test failed: {describe(exc)}") from None
            self._team = str(auth.get("team_id") or "")
            url = str(auth.get("url") or "")
            self._url = url if _WORKSPACE_URL.fullmatch(url) else ""
            self.outbox.workspace = self._team
        return self._team

    def thread_link(self, workspace: str, channel: str, thread: str) -> str | None:
        """`https://team.slack.com/archives/C…/p…` for a thread whose ids look like Slack's."""
        if not self._url or not _ID.fullmatch(channel):
            return None
        if thread == channel:
            return f"{self._url}archives/{channel}"
        if not _TS.fullmatch(thread):
            return None
        return f"{self._url}archives/{channel}/p{thread.replace('.', '')}"

    async def post(self, channel: str, title: str, text: str) -> PostedMessage:
        """Post the check-in; ArchbotError with Slack's error code when it is refused."""
        try:
            ts = await self.outbox.post(channel, None, text)
        except CALL_ERRORS as exc:
            raise ArchbotError(describe(exc)) from None
        if not ts:
            raise ArchbotError("Slack accepted the post but returned no message ts")
        return PostedMessage(ts, ts, await self._permalink(channel, ts))

    async def _permalink(self, channel: str, ts: str) -> str:
        try:
            response = await self.client.chat_getPermalink(channel=channel, message_ts=ts)
        except CALL_ERRORS as exc:
            # The post is there; only its link is missing from the record.
            log.warning("slack: chat.getPermalink for %s failed: %s", channel, describe(exc))
            return self.thread_link(self._team, channel, ts) or ""
        return str(response.get("permalink") or "")

    async def aclose(self) -> None:
        """Nothing to close: the client opens a session per call."""


async def create_poster(settings: Settings, secrets: Secrets) -> SlackCheckinPoster:
    """A poster on `[slack] api_url` with SLACK_BOT_TOKEN (what `archbot checkin run` uses)."""
    token = secret(secrets.slack_bot_token, "SLACK_BOT_TOKEN")
    return SlackCheckinPoster(make_client(token, settings.slack.api_url))
