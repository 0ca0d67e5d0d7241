"""Slack agent sessions: `processing` (with Slack's stop button) while a thread's turn runs,
`active` once it ends.

Where the app is not declared an agent, or the workspace refuses sessions, `begin`
answers False and the adapter shows the thinking indicator instead; the refusal is
remembered per workspace and asked again only after `RECHECK_SECONDS` (an admin
may declare the app an agent meanwhile). Several messages of one thread share its
session: it goes `processing` with the first and `active` after the last.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.client import CALL_ERRORS, describe
from bot.progress import shown_value

log = logging.getLogger(__name__)

SESSION_TITLE_MAX_CHARS = 200  # Slack's limit
RECHECK_SECONDS = 3600.0
PROCESSING = "processing"
ACTIVE = "active"
# Errors that mean "not for this app or workspace", not "not this time".
_REFUSALS = frozenset(
    {
        "missing_scope",
        "not_allowed_token_type",
        "unknown_method",
        "method_deprecated",
        "not_allowed",
        "feature_not_enabled",
        "invalid_auth",
        "not_authed",
        "access_denied",
        "no_permission",
        "team_access_not_granted",
        "app_not_agent",
    }
)
# Accepted, but without the stop button: the app does not get `agent_session_stopped`.
_REFUSING_WARNINGS = frozenset({"missing_agent_session_stopped_event_subscription"})


def session_title(text: str) -> str:
    """A session's title from the question: one line, no markup or mentions, at most 200 chars."""
    return shown_value(text, SESSION_TITLE_MAX_CHARS)


def response_warnings(data: Any) -> set[str]:
    """The warnings a Web API answer carries (`warning` and `response_metadata.warnings`)."""
    if not isinstance(data, dict):
        return set()
    found = {w for w in str(data.get("warning") or "").split(",") if w}
    metadata = data.get("response_metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("warnings"), list):
        found.update(str(w) for w in metadata["warnings"])
    return found


class AgentSessions:
    """Moves a thread's agent session between `processing` and `active`, where Slack allows it."""

    def __init__(
        self, client: AsyncWebClient, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.client = client
        self._clock = clock
        self._refused: dict[str, float] = {}  # workspace -> when to ask again
        self._running: dict[tuple[str, str], int] = {}  # (channel, thread_ts) -> messages
        self._status: dict[tuple[str, str], str] = {}  # what Slack shows now

    def available(self, workspace: str) -> bool:
        """False while a workspace that refused sessions waits for its recheck."""
        until = self._refused.get(workspace)
        if until is None:
            return True
        if self._clock() >= until:
            del self._refused[workspace]
            return True
        return False

    async def begin(self, workspace: str, channel: str, thread_ts: str, title: str) -> bool:
        """A message's turn starts: show `processing`; False when sessions are not available."""
        if not self.available(workspace):
            return False
        key = (channel, thread_ts)
        self._running[key] = self._running.get(key, 0) + 1
        if self._status.get(key) == PROCESSING:
            return True
        self._status[key] = PROCESSING  # a second message arriving meanwhile sends no second call
        if await self._set(workspace, key, PROCESSING, title=title or None):
            return True
        if self._status.get(key) == PROCESSING:
            del self._status[key]
        self._release(key)
        return False

    def closing_status(self, channel: str, thread_ts: str) -> str | None:
        """`active` when the one message still running is the last: chat.stopStream may say so."""
        return ACTIVE if self._running.get((channel, thread_ts)) == 1 else None

    async def end(
        self, workspace: str, channel: str, thread_ts: str, *, closed_by_stream: bool = False
    ) -> None:
        """A message's turn ended: `active` after the last (unless its stream already said so)."""
        key = (channel, thread_ts)
        left = self._release(key)
        if closed_by_stream:
            self._status[key] = ACTIVE
        if left == 0:
            if self._status.get(key) == PROCESSING:
                await self._set(workspace, key, ACTIVE)
            self._status.pop(key, None)
        elif self._status.get(key) != PROCESSING:
            # A message arrived while the stream closed the session: it is still working.
            await self._set(workspace, key, PROCESSING)

    async def settle(self, workspace: str, channel: str, thread_ts: str) -> None:
        """After a stop with nothing running here: move the session out of `processing`."""
        if self.available(workspace) and not self._running.get((channel, thread_ts)):
            await self._set(workspace, (channel, thread_ts), ACTIVE)
            self._status.pop((channel, thread_ts), None)

    def _release(self, key: tuple[str, str]) -> int:
        left = max(0, self._running.get(key, 0) - 1)
        if left:
            self._running[key] = left
        else:
            self._running.pop(key, None)
        return left

    async def _set(
        self, workspace: str, key: tuple[str, str], status: str, title: str | None = None
    ) -> bool:
        channel, thread_ts = key
        try:
            response = await self.client.agents_sessions_setStatus(
                channel_id=channel, thread_ts=thread_ts, status=status, title=title
            )
        except SlackApiError as exc:
            error = str(exc.response.get("error") or "")
            if error in _REFUSALS:
                self._refuse(workspace, error)
            else:
                log.warning(
                    "slack: agent session %s in %s failed: %s", status, channel, describe(exc)
                )
            return False
        except CALL_ERRORS as exc:
            log.warning("slack: agent session %s in %s failed: %s", status, channel, describe(exc))
            return False
        self._status[key] = status
        refusing = response_warnings(response.data) & _REFUSING_WARNINGS
        if refusing and status == PROCESSING:
            # Shown without a stop button: take it back and use the thinking indicator.
            self._refuse(workspace, ", ".join(sorted(refusing)))
            await self._set(workspace, key, ACTIVE)
            return False
        return True

    def _refuse(self, workspace: str, why: str) -> None:
        log.info(
            "slack: agent sessions unavailable in workspace %s (%s); using the thinking "
            "indicator, asking again in %d minutes",
            workspace,
            why,
            int(RECHECK_SECONDS // 60),
        )
        self._refused[workspace] = self._clock() + RECHECK_SECONDS
